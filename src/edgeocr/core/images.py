"""Turn whatever a caller hands us into a uint8 BGR or gray image, or fail with a clear ImageError.

:func:`load_image` is the one entry point of the readers: it accepts a file path, encoded bytes
(``bytes``/``bytearray``/``memoryview``), a numpy array or a PIL image, and returns a uint8
``[H, W, 3]`` BGR or ``[H, W]`` gray array. Every failure (missing file, empty or corrupt data,
unsupported dtype or channel count, an image too large) raises :class:`ImageError` whose message
starts with the source (the path, ``<bytes: N>``, ``<array ...>`` or ``<PIL ...>``), so the
operator knows which input was refused.

Design choices:

* **Decoding is OpenCV's** (``cv2.imdecode`` with ``IMREAD_COLOR``), which also applies the EXIF
  orientation of JPEG/PNG/WebP files, so polygons and crops are in the upright image a person
  sees. PIL is optional: it is imported only when a PIL image is passed (then
  ``ImageOps.exif_transpose`` applies its orientation).
* **An allow-list of formats, and budgets before the work.** Encoded bytes are accepted only in
  :data:`ACCEPTED_FORMATS` (PNG, JPEG, BMP, TIFF, WebP, PBM/PGM/PPM), told by their first bytes,
  never by a file name; every other format OpenCV could decode (GIF, Radiance HDR, PFM, PAM, Sun
  raster, JPEG 2000, ...) is refused, since a 25 kB run-length HDR decodes to gigabytes of floats.
  For each accepted format the size is read from its header here (PNG IHDR, JPEG SOF, the BMP DIB
  header, the first TIFF directory, the WebP VP8/VP8L/VP8X chunk, the PNM header: a few bytes
  each, no PIL) and checked against ``max_pixels`` *before* decoding; a header that gives no size
  is refused, never decoded to find out. ``max_pixels=None`` turns this limit off, but OpenCV's
  own (``OPENCV_IO_MAX_IMAGE_PIXELS``, set to 2^28 before cv2 is imported, see
  :data:`OPENCV_MAX_PIXELS`) still stands behind it. Decoded images, arrays and PIL images are
  checked too.
* **Truncated JPEGs** are refused even where libjpeg would return a half-grey image with a
  warning (older OpenCV): the last scan must be followed by an end-of-image marker.
* **Arrays** are taken as OpenCV's BGR (or gray) order. uint16 is stretched linearly from its
  own minimum..maximum to 0..255 (12-bit camera data would otherwise be nearly black), floats
  must lie in [0, 1] and are scaled by 255, bool becomes 0/255, other integer types are accepted
  when every value is in 0..255. Alpha (BGRA, PIL RGBA/LA/PA) is composited on **white**: labels
  and transparent renders are usually dark print on an empty background, and white keeps that
  contrast (dropping alpha would turn transparent pixels into whatever colour they store, often
  black). uint8 arrays that need no conversion are returned as they are (not copied); nothing
  here ever writes into them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Union

#: OpenCV's own pixel limit for any image it decodes, read once when cv2 is imported (so it is set
#: here, and in :mod:`edgeocr.core` which every edgeocr module imports first, before any ``import cv2``;
#: a program that imports cv2 before edgeocr keeps OpenCV's default of 2^30). 2^28 pixels are 805 MB
#: as BGR: a backstop behind the header check below, which refuses far smaller images first. An
#: OPENCV_IO_MAX_IMAGE_PIXELS already in the environment is kept.
OPENCV_MAX_PIXELS = 1 << 28
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(OPENCV_MAX_PIXELS))

import cv2  # noqa: E402 - after the limit above
import numpy as np  # noqa: E402

from edgeocr.core.errors import ImageError  # noqa: E402
from edgeocr.core.files import read_file_bytes  # noqa: E402

if TYPE_CHECKING:  # PIL is optional at run time
    from PIL import Image as PILImage

#: Images with more pixels than this are refused unless the caller raises the limit (50 MP: a
#: large industrial camera frame fits, a 40000 x 40000 "bomb" header does not).
DEFAULT_MAX_PIXELS = 50_000_000
#: OpenCV refuses images with a side over this (OPENCV_IO_MAX_IMAGE_WIDTH/HEIGHT's default); so do we,
#: from the header, with a clearer message.
OPENCV_MAX_SIDE = 1 << 20

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, "PILImage.Image"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8"
# Start-of-frame markers carry the image size; C4 (DHT), C8 (JPG) and CC (DAC) share the range.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset(range(0xD0, 0xDA)) | {0x01}  # markers without a length field
_JPEG_MAX_SEGMENTS = 4096  # real files have a dozen before the frame header
_TIFF_MAX_ENTRIES = 4096  # entries in one TIFF directory (real files: 10 to 50)
_TIFF_INT_SIZES = {3: 2, 4: 4, 16: 8}  # SHORT, LONG, LONG8 (BigTIFF)
_PNM_HEADER_BYTES = 4096  # the magic, comments, width and height must fit in this


# --- naming the source ---------------------------------------------------------------------------


def describe_source(source: object) -> str:
    """A short name for ``source`` in error messages: the path, or the kind and size of the data."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{type(source).__name__}: {memoryview(source).nbytes} bytes>"
    if isinstance(source, np.ndarray):
        return f"<array {source.dtype} {list(source.shape)}>"
    if _is_pil_image(source):
        width, height = source.size  # type: ignore[attr-defined]
        return f"<PIL image mode={source.mode} size={width}x{height}>"  # type: ignore[attr-defined]
    return f"<{type(source).__name__}>"


def _is_pil_image(source: object) -> bool:
    # A PIL image can only exist if PIL.Image was imported, so PIL itself is never imported here.
    pil_image = sys.modules.get("PIL.Image")
    return pil_image is not None and isinstance(source, pil_image.Image)


# --- size guard ----------------------------------------------------------------------------------


def check_pixel_count(width: int, height: int, max_pixels: int | None, source: str) -> None:
    """Raise ImageError when a ``width`` x ``height`` image is empty or exceeds ``max_pixels``."""
    if width <= 0 or height <= 0:
        raise ImageError(f"{source}: image has no pixels ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            f"{source}: image is {width}x{height} = {width * height / 1e6:.1f} megapixels, over the "
            f"limit of {max_pixels / 1e6:.1f} megapixels (a decompression-bomb guard); downscale it "
            "or raise max_pixels"
        )


class _Reader:
    """Bounds-checked big- or little-endian integers out of a header (None past the end)."""

    def __init__(self, data: bytes, order: str) -> None:
        self.data, self.order = data, order

    def uint(self, offset: int, size: int) -> int | None:
        if offset < 0 or offset + size > len(self.data):
            return None
        return int.from_bytes(self.data[offset : offset + size], self.order)  # type: ignore[arg-type]


def _png_size(data: bytes) -> tuple[int, int] | None:
    # IHDR is always the first chunk: width and height are big-endian uint32 at bytes 16..24.
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the first start-of-frame segment, walking at most a few thousand marker segments."""
    pos, end = 2, len(data)
    for _ in range(_JPEG_MAX_SEGMENTS):
        if pos + 4 > end or data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if marker == 0xDA:  # a scan before any frame header: malformed
            return None
        if marker in _JPEG_SOF:
            if pos + 9 > end:
                return None
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            return (width, height) if height else None  # height 0: defined later by DNL (refused)
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


def _bmp_size(data: bytes) -> tuple[int, int] | None:
    # BITMAPFILEHEADER (14 bytes), then the DIB header: its size says which layout follows.
    header = _Reader(data, "little")
    dib = header.uint(14, 4)
    if dib == 12:  # OS/2 BITMAPCOREHEADER: unsigned 16-bit sides
        width, height = header.uint(18, 2), header.uint(20, 2)
    elif dib is not None and dib >= 40:  # BITMAPINFOHEADER and its successors: signed 32-bit sides
        width, height = header.uint(18, 4), header.uint(22, 4)
        if width is not None and height is not None:
            width = width - (1 << 32) if width >= 1 << 31 else width
            height = abs(height - (1 << 32) if height >= 1 << 31 else height)  # negative: rows stored top-down
    else:
        return None
    return None if width is None or height is None else (width, height)


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """ImageWidth and ImageLength of the first directory (the page OpenCV decodes), classic TIFF or BigTIFF."""
    header = _Reader(data, "little" if data[:2] == b"II" else "big")
    big = header.uint(2, 2) == 43
    if big:
        offset, count_size, entry_size, value_at = header.uint(8, 8), 8, 20, 12
    else:
        offset, count_size, entry_size, value_at = header.uint(4, 4), 2, 12, 8
    count = None if offset is None else header.uint(offset, count_size)
    if count is None or count > _TIFF_MAX_ENTRIES:
        return None
    sides: dict[int, int] = {}
    for index in range(count):
        entry = offset + count_size + index * entry_size  # type: ignore[operator]
        tag, kind = header.uint(entry, 2), header.uint(entry + 2, 2)
        if tag in (256, 257) and kind in _TIFF_INT_SIZES:
            value = header.uint(entry + value_at, _TIFF_INT_SIZES[kind])
            if value is None:
                return None
            sides[tag] = value
    if 256 not in sides or 257 not in sides:
        return None
    return sides[256], sides[257]


def _webp_size(data: bytes) -> tuple[int, int] | None:
    # RIFF size WEBP, then the first chunk: VP8 (lossy), VP8L (lossless) or VP8X (extended: the canvas).
    header = _Reader(data, "little")
    kind = data[12:16]
    if kind == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":  # the key frame's start code
            return None
        width, height = header.uint(26, 2), header.uint(28, 2)
        return None if width is None or height is None else (width & 0x3FFF, height & 0x3FFF)
    if kind == b"VP8L":
        bits = header.uint(21, 4)
        if data[20:21] != b"\x2f" or bits is None:
            return None
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X":
        width, height = header.uint(24, 3), header.uint(27, 3)
        return None if width is None or height is None else (width + 1, height + 1)
    return None


def _pnm_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PBM/PGM/PPM header: the first two numbers after the magic, comments skipped."""
    head = data[2:_PNM_HEADER_BYTES]
    numbers: list[int] = []
    pos = 0
    while len(numbers) < 2 and pos < len(head):
        char = head[pos : pos + 1]
        if char.isspace():
            pos += 1
        elif char == b"#":  # a comment runs to the end of its line
            newline = head.find(b"\n", pos)
            if newline < 0:
                return None
            pos = newline + 1
        elif char.isdigit():
            start = pos
            while pos < len(head) and head[pos : pos + 1].isdigit() and pos - start <= 10:
                pos += 1
            numbers.append(int(head[start:pos]))
        else:
            return None
    return (numbers[0], numbers[1]) if len(numbers) == 2 else None


# Accepted formats: (name, signature test, header size reader). Anything else is refused before decoding.
_ACCEPTED: tuple[tuple[str, Callable[[bytes], bool], Callable[[bytes], tuple[int, int] | None]], ...] = (
    ("PNG", lambda d: d[:8] == _PNG_SIGNATURE, _png_size),
    ("JPEG", lambda d: d[:3] == b"\xff\xd8\xff", _jpeg_size),
    ("BMP", lambda d: d[:2] == b"BM", _bmp_size),
    ("TIFF", lambda d: d[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), _tiff_size),
    ("WebP", lambda d: d[:4] == b"RIFF" and d[8:12] == b"WEBP", _webp_size),
    ("PBM/PGM/PPM", lambda d: d[:1] == b"P" and d[1:2] in b"123456" and d[2:3].isspace(), _pnm_size),
)
#: The formats :func:`decode_image` accepts (by their first bytes, never by a file name).
ACCEPTED_FORMATS: tuple[str, ...] = tuple(name for name, _, _ in _ACCEPTED)
_ACCEPTED_TEXT = ", ".join(ACCEPTED_FORMATS)
# Formats OpenCV would decode but that are refused here, named in the error.
_REFUSED: tuple[tuple[str, Callable[[bytes], bool]], ...] = (
    ("GIF", lambda d: d[:4] == b"GIF8"),
    ("Radiance HDR", lambda d: d[:2] == b"#?"),
    ("PFM", lambda d: d[:2] in (b"PF", b"Pf")),
    ("PAM", lambda d: d[:2] == b"P7"),
    ("Sun raster", lambda d: d[:4] == b"\x59\xa6\x6a\x95"),
    ("JPEG 2000", lambda d: d[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or d[:4] == b"\xff\x4f\xff\x51"),
    ("OpenEXR", lambda d: d[:4] == b"\x76\x2f\x31\x01"),
    ("AVIF/HEIF", lambda d: d[4:8] == b"ftyp"),
)


def image_format(data: bytes | memoryview) -> str | None:
    """The accepted format of encoded image bytes, by their first bytes (see :data:`ACCEPTED_FORMATS`), or None."""
    head = bytes(data[:16])
    for name, matches, _ in _ACCEPTED:
        if matches(head):
            return name
    return None


def header_size(data: bytes | memoryview, source: str = "<bytes>") -> tuple[int, int] | None:
    """(width, height) read from an accepted format's header without decoding, None if unknown or unreadable."""
    data = data if isinstance(data, bytes) else bytes(data)
    head = data[:16]
    for _, matches, size_of in _ACCEPTED:
        if matches(head):
            return size_of(data)
    return None


def encoded_size(data: bytes, source: str = "<bytes>") -> tuple[str, int, int]:
    """(format, width, height) of encoded image bytes from their header alone; ImageError naming ``source``
    when the format is not accepted or its header gives no size. Nothing is decoded."""
    head = data[:16]
    for name, matches, size_of in _ACCEPTED:
        if matches(head):
            size = size_of(data)
            if size is None:
                raise ImageError(
                    f"{source}: not a decodable image: its {name} header gives no image size "
                    f"(truncated or malformed, {len(data)} bytes)"
                )
            return name, size[0], size[1]
    for name, matches in _REFUSED:
        if matches(head):
            raise ImageError(f"{source}: {name} images are not accepted; send {_ACCEPTED_TEXT}")
    raise ImageError(
        f"{source}: not a decodable image: not {_ACCEPTED_TEXT} data ({len(data)} bytes, the format "
        "is told by the first bytes, never by a file name)"
    )


def check_encoded_size(data: bytes, source: str, max_pixels: int | None) -> tuple[str, int, int]:
    """:func:`encoded_size`, and an ImageError when the header's size is empty, over ``max_pixels`` or over
    OpenCV's side limit: the budget, checked before anything is decoded."""
    name, width, height = encoded_size(data, source)
    check_pixel_count(width, height, max_pixels, source)
    if max(width, height) > OPENCV_MAX_SIDE:
        raise ImageError(
            f"{source}: image is {width}x{height}, a side over {OPENCV_MAX_SIDE} pixels (OpenCV's limit); "
            "no text line is that long"
        )
    return name, width, height


def _jpeg_is_complete(data: bytes | memoryview) -> bool:
    # Inside entropy-coded data 0xFF is always stuffed (FF 00), so FF DA / FF D9 are real markers.
    raw = bytes(data)
    last_scan = raw.rfind(b"\xff\xda")
    return last_scan >= 0 and raw.find(b"\xff\xd9", last_scan) >= 0


# --- encoded bytes and files ---------------------------------------------------------------------


def decode_image(
    data: bytes | bytearray | memoryview,
    source: str = "<bytes>",
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode encoded image bytes to uint8 BGR, EXIF orientation applied; ImageError names ``source``.

    Refused before anything is decoded: a format not in :data:`ACCEPTED_FORMATS`, a header that gives
    no size, an image over ``max_pixels`` or with a side over :data:`OPENCV_MAX_SIDE`."""
    if isinstance(data, memoryview):
        data = data.tobytes()  # handles non-contiguous and non-byte formats
    elif isinstance(data, bytearray):
        data = bytes(data)
    if not data:
        raise ImageError(f"{source}: empty image data")
    # The budget before the work: the format must be accepted and its header's size within the limits.
    name, width, height = check_encoded_size(data, source, max_pixels)
    if name == "JPEG" and not _jpeg_is_complete(data):
        raise ImageError(f"{source}: truncated JPEG ({len(data)} bytes, no end-of-image marker)")
    try:
        # IMREAD_COLOR applies the EXIF orientation (IMREAD_UNCHANGED would not).
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:  # e.g. OpenCV's own pixel limit
        reason = str(getattr(exc, "err", None) or exc)[:200]
        raise ImageError(f"{source}: cannot decode image ({reason})") from None
    if image is None or image.size == 0:
        raise ImageError(f"{source}: not a decodable image, or truncated ({len(data)} bytes)")
    if image.shape[0] * image.shape[1] > width * height:  # never more pixels than the header said
        raise ImageError(
            f"{source}: decoded to {image.shape[1]}x{image.shape[0]}, more than the {width}x{height} of its header"
        )
    check_pixel_count(image.shape[1], image.shape[0], max_pixels, source)
    return image


def read_image(path: Path | str, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file (any format OpenCV decodes) as uint8 BGR, EXIF orientation applied."""
    path = Path(path)
    data = read_file_bytes(path)  # regular files under the size cap only: never a FIFO, a device or a loop
    return decode_image(data, str(path), max_pixels=max_pixels)


# --- arrays --------------------------------------------------------------------------------------


def _to_uint8(values: np.ndarray, source: str) -> np.ndarray:
    """Colour or gray values of any supported dtype as uint8 (see the module docstring)."""
    dtype = values.dtype
    if dtype == np.uint8:
        return values
    if dtype == np.bool_:
        return values.astype(np.uint8) * np.uint8(255)
    if dtype == np.uint16:
        low, high = int(values.min()), int(values.max())
        if high == low:
            return np.full(values.shape, round(low / 257), np.uint8)
        scaled = (values.astype(np.float32) - low) * (255.0 / (high - low))
        return np.rint(scaled).astype(np.uint8)
    if np.issubdtype(dtype, np.integer):
        low, high = int(values.min()), int(values.max())
        if low < 0 or high > 255:
            raise ImageError(
                f"{source}: {dtype} values range from {low} to {high}; integer images other than "
                "uint16 must hold 0..255 (convert to uint8, or to uint16 to have them rescaled)"
            )
        return values.astype(np.uint8)
    if np.issubdtype(dtype, np.floating):
        if not np.isfinite(values).all():
            raise ImageError(f"{source}: float image contains NaN or infinity")
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            raise ImageError(
                f"{source}: float images must hold values in [0, 1], got {low:g}..{high:g} "
                "(for 0..255 data use .astype(np.uint8))"
            )
        return np.rint(values.astype(np.float32) * 255.0).astype(np.uint8)
    raise ImageError(f"{source}: unsupported dtype {dtype}; use uint8, uint16, bool or float in [0, 1]")


def _alpha_fraction(alpha: np.ndarray, source: str) -> np.ndarray:
    """Alpha as float32 in [0, 1]: integer alpha is relative to its dtype's maximum."""
    if alpha.dtype == np.bool_:
        return alpha.astype(np.float32)
    if alpha.dtype in (np.uint8, np.uint16):
        return alpha.astype(np.float32) / float(np.iinfo(alpha.dtype).max)
    if np.issubdtype(alpha.dtype, np.floating):
        return _to_uint8(alpha, source).astype(np.float32) / 255.0  # validates [0, 1]
    raise ImageError(f"{source}: alpha channel of dtype {alpha.dtype} is not supported")


def _composite_on_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    weight = alpha[..., np.newaxis]
    blended = colour.astype(np.float32) * weight + 255.0 * (1.0 - weight)
    return np.rint(blended).astype(np.uint8)


def _from_array(array: np.ndarray, source: str, max_pixels: int | None) -> np.ndarray:
    if array.dtype.kind not in "biuf":  # complex, object, strings, structured...
        raise ImageError(f"{source}: unsupported dtype {array.dtype}; use uint8, uint16, bool or float in [0, 1]")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3):
        raise ImageError(f"{source}: expected a gray [H, W] or colour [H, W, C] image, got {array.ndim} dimensions")
    if array.ndim == 3 and array.shape[2] not in (3, 4):
        raise ImageError(f"{source}: {array.shape[2]} channels; expected 1 (gray), 3 (BGR) or 4 (BGRA)")
    check_pixel_count(array.shape[1], array.shape[0], max_pixels, source)
    if array.ndim == 3 and array.shape[2] == 4:
        colour = _to_uint8(array[:, :, :3], source)
        image = _composite_on_white(colour, _alpha_fraction(array[:, :, 3], source))
    else:
        image = _to_uint8(array, source)
    return np.ascontiguousarray(image)


# --- PIL images ----------------------------------------------------------------------------------


def _from_pil(image: PILImage.Image, source: str, max_pixels: int | None) -> np.ndarray:
    from PIL import ImageOps

    check_pixel_count(image.size[0], image.size[1], max_pixels, source)
    try:
        image = ImageOps.exif_transpose(image)  # a copy, upright; the caller's image is untouched
        mode = image.mode
        if mode in ("L", "1"):
            return _from_array(np.asarray(image.convert("L")), source, max_pixels)
        if mode.startswith("I;16") or mode == "I":
            values = np.asarray(image)
            if values.min() < 0 or values.max() > 65535:
                raise ImageError(f"{source}: 32-bit integer values outside 0..65535 are not supported")
            return _from_array(values.astype(np.uint16), source, max_pixels)
        if mode == "F":
            return _from_array(np.asarray(image), source, max_pixels)
        has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info
        rgb = np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - lazy PIL decoding raises OSError, SyntaxError, ValueError...
        raise ImageError(f"{source}: cannot decode or convert PIL image ({exc})") from None
    bgr = rgb[:, :, [2, 1, 0, 3]] if has_alpha else rgb[:, :, ::-1]
    return _from_array(bgr, source, max_pixels)


# --- the entry point -----------------------------------------------------------------------------


def load_image(
    source: ImageSource, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, name: str | None = None
) -> np.ndarray:
    """Any supported image input as a uint8 BGR ``[H, W, 3]`` or gray ``[H, W]`` array.

    ``source``: a path (str or PathLike), encoded bytes (bytes, bytearray, memoryview), a numpy
    array (gray, BGR or BGRA; uint8, uint16, bool or float in [0, 1]) or a PIL image (any mode).
    Files and bytes must be in one of :data:`ACCEPTED_FORMATS`. ``max_pixels``: refuse larger
    images (files and bytes: from the header, before decoding); None disables the guard (OpenCV's
    own limit still applies). ``name``: how errors refer to the source (e.g. an upload's file name);
    defaults to :func:`describe_source`.
    Files and bytes always come back as BGR; arrays and PIL images keep gray as gray.
    """
    label = name or describe_source(source)
    if isinstance(source, np.ndarray):
        return _from_array(source, label, max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_image(source, label, max_pixels=max_pixels)
    if isinstance(source, (str, os.PathLike)):
        if isinstance(source, str) and not source:
            raise ImageError("<empty path>: no image path given")
        data = read_file_bytes(Path(source), name=label)  # regular files under the size cap only
        return decode_image(data, label, max_pixels=max_pixels)
    if _is_pil_image(source):
        return _from_pil(source, label, max_pixels)  # type: ignore[arg-type]
    raise ImageError(
        f"{label}: unsupported image input of type {type(source).__name__}; pass a path, encoded "
        "bytes, a numpy array or a PIL image"
    )
