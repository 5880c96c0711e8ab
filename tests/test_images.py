"""load_image: every accepted input gives the same pixels; every bad input gives an ImageError naming it."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeocr.core.errors import EdgeOCRError, ImageError
from edgeocr.core.images import (
    DEFAULT_MAX_PIXELS,
    decode_image,
    describe_source,
    header_size,
    load_image,
    read_image,
)

SRC = Path(__file__).resolve().parents[1] / "src"


def gray_scene(height: int = 30, width: int = 80) -> np.ndarray:
    """A gray uint8 image using the full 0..255 range (so a uint16 range stretch is the identity)."""
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (height, width), dtype=np.uint8)
    img[0, 0], img[-1, -1] = 0, 255
    return img


def png_bytes(img: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", img)
    assert ok
    return encoded.tobytes()


def bgr(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)


# --- accepted inputs -----------------------------------------------------------------------------


def test_files_and_bytes_decode_to_the_same_bgr(tmp_path) -> None:
    img = bgr(gray_scene())
    path = tmp_path / "scene.png"
    path.write_bytes(png_bytes(img))
    data = path.read_bytes()
    for source in (path, str(path), data, bytearray(data), memoryview(data)):
        loaded = load_image(source)
        assert loaded.dtype == np.uint8 and loaded.shape == img.shape
        np.testing.assert_array_equal(loaded, img)
    # The historical helpers keep working for their callers.
    np.testing.assert_array_equal(read_image(path), img)
    np.testing.assert_array_equal(decode_image(data, "x"), img)


def test_arrays_of_every_supported_kind_convert_exactly() -> None:
    gray = gray_scene()
    colour = bgr(gray)
    np.testing.assert_array_equal(load_image(colour), colour)
    assert load_image(colour) is colour  # nothing to convert: not copied
    np.testing.assert_array_equal(load_image(gray), gray)
    np.testing.assert_array_equal(load_image(gray[:, :, None]), gray)
    np.testing.assert_array_equal(load_image(colour[:, ::2]), colour[:, ::2])  # non-contiguous view
    assert load_image(colour[:, ::2]).flags.c_contiguous
    opaque = np.dstack([colour, np.full(gray.shape, 255, np.uint8)])
    np.testing.assert_array_equal(load_image(opaque), colour)
    np.testing.assert_array_equal(load_image(colour.astype(np.uint16) * 257), colour)
    np.testing.assert_array_equal(load_image(gray.astype(np.float32) / 255.0), gray)
    np.testing.assert_array_equal(load_image(colour.astype(np.float64) / 255.0), colour)
    np.testing.assert_array_equal(load_image(gray.astype(np.int64)), gray)  # ints within 0..255
    binary = gray > 127
    np.testing.assert_array_equal(load_image(binary), np.where(binary, 255, 0).astype(np.uint8))


def test_uint16_is_stretched_by_its_range_not_truncated() -> None:
    twelve_bit = np.array([[0, 1024], [2048, 4095]], np.uint16)  # a 12-bit camera
    assert load_image(twelve_bit).tolist() == [[0, 64], [128, 255]]
    assert load_image(np.full((2, 2), 1000, np.uint16)).tolist() == [[4, 4], [4, 4]]  # flat: 1000/257


def test_alpha_is_composited_on_white() -> None:
    bgra = np.zeros((2, 2, 4), np.uint8)  # black ink
    bgra[0, 0, 3] = 255  # opaque
    bgra[0, 1, 3] = 0  # transparent
    bgra[1, :, 3] = 128  # half
    out = load_image(bgra)
    assert out.shape == (2, 2, 3)
    assert out[0, 0].tolist() == [0, 0, 0] and out[0, 1].tolist() == [255, 255, 255]
    assert out[1, 0].tolist() == [127, 127, 127]
    assert load_image(bgra.astype(np.uint16) * 257)[0, 1].tolist() == [255, 255, 255]


def test_pil_images_of_every_mode_match_the_array() -> None:
    image_module = pytest.importorskip("PIL.Image", reason="PIL is optional; its inputs need it")
    gray = gray_scene()
    colour = bgr(gray)
    rgb = image_module.fromarray(colour[:, :, ::-1].copy())
    np.testing.assert_array_equal(load_image(rgb), colour)
    np.testing.assert_array_equal(load_image(image_module.fromarray(gray)), gray)  # L
    np.testing.assert_array_equal(load_image(rgb.convert("RGBA")), colour)
    np.testing.assert_array_equal(load_image(rgb.convert("CMYK")), colour)
    ycbcr = load_image(rgb.convert("YCbCr"))  # a lossy colour space: close, not exact
    assert ycbcr.shape == colour.shape and np.abs(ycbcr.astype(int) - colour).max() <= 3
    palette = image_module.new("P", gray.shape[::-1])  # gray levels through an exact palette
    palette.putdata(gray.ravel().tolist())
    palette.putpalette([v for level in range(256) for v in (level, level, level)])
    np.testing.assert_array_equal(load_image(palette), colour)
    sixteen = image_module.fromarray(gray.astype(np.uint16) * 257)
    assert sixteen.mode.startswith("I;16")
    np.testing.assert_array_equal(load_image(sixteen), gray)
    np.testing.assert_array_equal(load_image(image_module.fromarray(gray.astype(np.int32) * 16)), gray)  # mode I
    la = image_module.fromarray(gray).convert("LA")
    np.testing.assert_array_equal(load_image(la), colour)
    bilevel = image_module.fromarray(gray).convert("1")
    assert set(np.unique(load_image(bilevel)).tolist()) <= {0, 255}


# --- EXIF orientation ----------------------------------------------------------------------------


def _with_orientation(img_bgr: np.ndarray, orientation: int, fmt: str) -> bytes:
    image_module = pytest.importorskip("PIL.Image", reason="PIL writes the test's EXIF tag")
    pil = image_module.fromarray(img_bgr[:, :, ::-1].copy())
    exif = pil.getexif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    pil.save(buffer, fmt, exif=exif, **({"quality": 100} if fmt == "JPEG" else {}))
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_exif_orientation_is_honoured(tmp_path, fmt) -> None:
    img = np.full((20, 60, 3), 230, np.uint8)
    img[:, :15] = 10  # a dark band on the left of the upright... stored image
    # Orientation 6: the stored pixels must be turned 90 degrees clockwise to display upright.
    data = _with_orientation(img, 6, fmt)
    path = tmp_path / f"rotated.{fmt.lower()}"
    path.write_bytes(data)
    for source in (path, data):
        upright = load_image(source)
        assert upright.shape == (60, 20, 3)
        assert upright[:10].mean() < 40 and upright[-30:].mean() > 200  # the band is now on top
    if fmt == "PNG":  # lossless: exactly numpy's clockwise turn
        np.testing.assert_array_equal(load_image(data), np.rot90(img, k=-1))
    from PIL import Image

    with Image.open(path) as pil:
        np.testing.assert_array_equal(load_image(pil), load_image(path))
    np.testing.assert_array_equal(load_image(_with_orientation(img, 3, "PNG")), img[::-1, ::-1])


# --- refused inputs ------------------------------------------------------------------------------


def _refuses(source, *, expect: str | None = None, **kwargs) -> ImageError:
    with pytest.raises(ImageError) as excinfo:
        load_image(source, **kwargs)
    message = str(excinfo.value)
    assert (kwargs.get("name") or describe_source(source)) in message
    if expect:
        assert expect in message
    assert isinstance(excinfo.value, EdgeOCRError)
    return excinfo.value


def test_bad_files_are_refused_with_their_path(tmp_path) -> None:
    _refuses(tmp_path / "missing.png", expect="no such file")
    _refuses(tmp_path, expect="a directory, not a regular file")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    _refuses(empty, expect="empty")
    text = tmp_path / "notes.png"
    text.write_text("this is not an image\n")
    _refuses(text, expect="not a decodable image")
    _refuses("", expect="no image path")


def test_corrupt_and_truncated_bytes_are_refused() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    _refuses(b"", expect="empty")
    _refuses(bytes(rng.integers(0, 256, 500, dtype=np.uint8)), expect="not a decodable image")
    png = png_bytes(img)
    _refuses(png[: len(png) // 2])
    _refuses(png[:40])  # header only
    ok, jpeg = cv2.imencode(".jpg", img)
    jpeg = jpeg.tobytes()
    _refuses(jpeg[: len(jpeg) // 2], expect="truncated")
    _refuses(jpeg[:-2], expect="truncated")  # everything but the end-of-image marker
    _refuses(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)
    assert load_image(jpeg).shape == img.shape  # the complete file is fine
    _refuses(bytearray(png[:100]), name="upload.png")  # the caller's name for the source


@pytest.mark.parametrize(
    "array, expect",
    [
        (np.zeros((0, 10), np.uint8), "no pixels"),
        (np.zeros((10, 0, 3), np.uint8), "no pixels"),
        (np.zeros((4, 4), np.complex64), "dtype"),
        (np.array([[object(), object()]], dtype=object), "dtype"),
        (np.array([["a", "b"]]), "dtype"),
        (np.full((4, 4), 300, np.int64), "0..255"),
        (np.full((4, 4), -1, np.int16), "0..255"),
        (np.full((4, 4), 2.0, np.float32), "[0, 1]"),
        (np.full((4, 4), np.nan, np.float32), "NaN"),
        (np.zeros((4, 4, 2), np.uint8), "2 channels"),
        (np.zeros((4, 4, 5), np.uint8), "5 channels"),
        (np.zeros((2, 4, 4, 3), np.uint8), "4 dimensions"),
        (np.zeros(16, np.uint8), "1 dimensions"),
    ],
    ids=[
        "empty-rows",
        "empty-cols",
        "complex",
        "object",
        "str",
        "int64-range",
        "negative",
        "float-range",
        "nan",
        "2ch",
        "5ch",
        "4d",
        "1d",
    ],
)
def test_bad_arrays_are_refused(array, expect) -> None:
    _refuses(array, expect=expect)


def test_unsupported_types_and_broken_pil_images_are_refused(tmp_path) -> None:
    _refuses([[0, 1], [2, 3]], expect="unsupported image input")
    _refuses(42, expect="unsupported image input")
    image_module = pytest.importorskip("PIL.Image", reason="PIL is optional")
    path = tmp_path / "cut.png"
    path.write_bytes(png_bytes(gray_scene(64, 64))[:200])
    with image_module.open(path) as broken:  # the header is fine, the pixels are missing
        _refuses(broken, expect="cannot decode")


# --- decompression-bomb guard --------------------------------------------------------------------


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height RGB pixels, with a tiny (incomplete) image body."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * 1000)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def test_bomb_guard_refuses_a_huge_png_header_before_decoding(monkeypatch) -> None:
    def no_decoding(*args, **kwargs):
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    data = bomb_png(40_000, 40_000)  # 1.6 gigapixels, ~4.8 GB decoded
    assert header_size(data) == (40_000, 40_000)
    tracemalloc.start()
    try:
        error = _refuses(data, expect="megapixels")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000
    assert "40000x40000" in str(error)
    # 8000 x 8000 = 64 MP is just over the default limit; the limit is configurable.
    assert 8000 * 8000 > DEFAULT_MAX_PIXELS
    _refuses(bomb_png(8000, 8000), expect="megapixels")
    _refuses(bomb_png(100, 100), max_pixels=5000, expect="megapixels")


def test_bomb_guard_reads_jpeg_and_other_headers(monkeypatch) -> None:
    img = np.full((48, 64, 3), 128, np.uint8)
    ok, jpeg = cv2.imencode(".jpg", img)
    jpeg = jpeg.tobytes()
    assert header_size(jpeg) == (64, 48)
    assert header_size(png_bytes(img)) == (64, 48)
    sof = max(jpeg.find(b"\xff\xc0"), jpeg.find(b"\xff\xc2"))
    assert sof > 0
    huge = bytearray(jpeg)
    huge[sof + 5 : sof + 9] = struct.pack(">HH", 60_000, 60_000)  # claims 3.6 gigapixels
    monkeypatch.setattr(cv2, "imdecode", lambda *a, **k: pytest.fail("decoded"))
    _refuses(bytes(huge), expect="megapixels")
    _refuses(jpeg, max_pixels=1000, expect="megapixels")
    pytest.importorskip("PIL.Image", reason="formats other than PNG/JPEG are sized by PIL")
    ok, tiff = cv2.imencode(".tiff", img)
    assert header_size(tiff.tobytes()) == (64, 48)
    _refuses(tiff.tobytes(), max_pixels=1000, expect="megapixels")


def test_limit_applies_to_arrays_and_can_be_disabled() -> None:
    img = np.zeros((100, 100), np.uint8)
    _refuses(img, max_pixels=9999, expect="megapixels")
    assert load_image(img, max_pixels=None) is img
    data = png_bytes(img)
    assert load_image(data, max_pixels=None).shape == (100, 100, 3)


# --- PIL stays optional --------------------------------------------------------------------------

_WITHOUT_PIL = """
import sys
sys.modules["PIL"] = None  # any "import PIL" now raises ImportError
import numpy as np, cv2
from edgeocr.core.errors import ImageError
from edgeocr.core.images import load_image
ok, png = cv2.imencode(".png", np.full((8, 12), 90, np.uint8))
assert load_image(png.tobytes()).shape == (8, 12, 3)
assert load_image(np.zeros((8, 12), np.uint16)).shape == (8, 12)
try:
    load_image(png.tobytes(), max_pixels=50)
except ImageError as exc:
    assert "megapixels" in str(exc)
else:
    raise AssertionError("the PNG header was not checked")
ok, bmp = cv2.imencode(".bmp", np.zeros((8, 12), np.uint8))
assert load_image(bmp.tobytes()).shape == (8, 12, 3)  # unknown header: decoded, then checked
print("ok")
"""


def test_works_without_pil() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", _WITHOUT_PIL], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
