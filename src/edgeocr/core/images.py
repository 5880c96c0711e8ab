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
  ``ImageOps.exif_transpose`` applies its orientation) or to read the size of a format other
  than PNG/JPEG before decoding.
* **Decompression bombs** are refused *before* decoding: the size is read from the header (PNG
  IHDR and JPEG SOF are parsed here, a few bytes each, so the guard works without PIL; other
  formats go through PIL's lazy ``Image.open`` when PIL is installed, else OpenCV's own limit of
  2^30 pixels applies) and checked against ``max_pixels``. Decoded images, arrays and PIL images
  are checked too. ``max_pixels=None`` turns the guard off.
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

import io
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Union

import cv2
import numpy as np

from edgeocr.core.errors import ImageError

if TYPE_CHECKING:  # PIL is optional at run time
    from PIL import Image as PILImage

#: Images with more pixels than this are refused unless the caller raises the limit (50 MP: a
#: large industrial camera frame fits, a 40000 x 40000 "bomb" header does not).
DEFAULT_MAX_PIXELS = 50_000_000

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, "PILImage.Image"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8"
# Start-of-frame markers carry the image size; C4 (DHT), C8 (JPG) and CC (DAC) share the range.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset(range(0xD0, 0xDA)) | {0x01}  # markers without a length field


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


def _png_size(data: bytes | memoryview) -> tuple[int, int] | None:
    # IHDR is always the first chunk: width and height are big-endian uint32 at bytes 16..24.
    if len(data) < 24 or bytes(data[12:16]) != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _jpeg_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """Width and height from the first start-of-frame segment, walking the marker segments."""
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
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
            return (width, height) if height else None  # height 0: defined later by DNL, rare
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


def _pil_header_size(data: bytes | memoryview, source: str) -> tuple[int, int] | None:
    """The size PIL reads from the header without decoding, or None if PIL is absent or unsure."""
    try:
        from PIL import Image
    except ImportError:
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:  # lazy: reads the header only
            return image.size
    except Image.DecompressionBombError as exc:  # PIL's own, larger limit tripped first
        raise ImageError(f"{source}: refused as a decompression bomb ({exc})") from None
    except Exception:  # noqa: BLE001 - PIL raises many types for formats it does not know
        return None


def header_size(data: bytes | memoryview, source: str = "<bytes>") -> tuple[int, int] | None:
    """(width, height) read from an encoded image's header without decoding it, None if unknown."""
    if bytes(data[:8]) == _PNG_SIGNATURE:
        return _png_size(data)
    if bytes(data[:2]) == _JPEG_SOI:
        return _jpeg_size(data)
    return _pil_header_size(data, source)


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
    """Decode encoded image bytes to uint8 BGR, EXIF orientation applied; ImageError names ``source``."""
    if isinstance(data, memoryview):
        data = data.tobytes()  # handles non-contiguous and non-byte formats
    if not data:
        raise ImageError(f"{source}: empty image data")
    size = header_size(data, source)
    if size is not None:
        check_pixel_count(*size, max_pixels, source)
    if bytes(data[:2]) == _JPEG_SOI and not _jpeg_is_complete(data):
        raise ImageError(f"{source}: truncated JPEG ({len(data)} bytes, no end-of-image marker)")
    try:
        # IMREAD_COLOR applies the EXIF orientation (IMREAD_UNCHANGED would not).
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:  # e.g. OpenCV's own pixel limit
        raise ImageError(f"{source}: cannot decode image ({getattr(exc, 'err', None) or exc})") from None
    if image is None or image.size == 0:
        raise ImageError(f"{source}: not a decodable image, or truncated ({len(data)} bytes)")
    check_pixel_count(image.shape[1], image.shape[0], max_pixels, source)
    return image


def read_image(path: Path | str, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file (any format OpenCV decodes) as uint8 BGR, EXIF orientation applied."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from exc
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
    ``max_pixels``: refuse larger images (checked from the header before decoding where the
    format allows); None disables the guard. ``name``: how errors refer to the source (e.g. an
    upload's file name); defaults to :func:`describe_source`.
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
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageError(f"{label}: cannot read ({exc.strerror or exc})") from None
        return decode_image(data, label, max_pixels=max_pixels)
    if _is_pil_image(source):
        return _from_pil(source, label, max_pixels)  # type: ignore[arg-type]
    raise ImageError(
        f"{label}: unsupported image input of type {type(source).__name__}; pass a path, encoded "
        "bytes, a numpy array or a PIL image"
    )
