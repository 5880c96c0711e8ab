"""A hostile corpus, generated on the fly (nothing binary is committed): what an attacker would send.

Every function returns bytes (or a request body) built here from a few lines of Python, small on the
wire but meant to cost a careless reader gigabytes or minutes:

* **image bombs** in every format the reader accepts (PNG, JPEG, BMP, TIFF, WebP, PGM/PPM), whose
  header claims far more pixels than any budget, and real compressed images that do decode to that
  many pixels (a 49 MP PNG is 50 kB);
* **formats the reader refuses** (Radiance HDR, PFM, GIF, PAM, Sun raster, JPEG 2000, OpenEXR),
  some of them bombs whose size only their own decoder reads;
* **extreme shapes**: a one-pixel-high strip a million pixels wide (a 110-byte PNG), its tall twin;
* **hostile request bodies**: YAML with aliases (a "billion laughs"), nested format repeats, JSON
  with a million keys or nested a hundred thousand deep;
* **tampered models**: a copy of a shipped model with one byte changed.

Run it as a script to write the corpus to a folder (for poking at a server by hand):
``python tests/hostile_corpus.py OUT_DIR``.
"""

from __future__ import annotations

import functools
import json
import shutil
import struct
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

# --- PNG ---------------------------------------------------------------------------------------


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png(
    width: int, height: int, *, row: bytes | None = None, rows: list[bytes] | None = None, colour: bool = False
) -> bytes:
    """A real, complete PNG of ``width`` x ``height`` (gray, or RGB with ``colour``) whose rows repeat ``row``
    (default: white), or cycle through ``rows``. Compressed a few MB at a time, so a 49 MP image costs a few MB
    of memory to build and ~50 kB."""
    channels = 3 if colour else 1
    period = rows if rows is not None else [b"\xff" * (width * channels) if row is None else row]
    if any(len(r) != width * channels for r in period):
        raise ValueError("rows must hold width x channels bytes")
    if height % len(period):
        raise ValueError("the height must be a multiple of the number of rows")
    compressor = zlib.compressobj(9)
    line = b"".join(b"\x00" + r for r in period)  # filter type 0 on every row
    repeats = height // len(period)
    parts = []
    batch = max(1, (1 << 22) // len(line))  # ~4 MB of raw rows per call
    done = 0
    while done < repeats:
        n = min(batch, repeats - done)
        parts.append(compressor.compress(line * n))
        done += n
    parts.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2 if colour else 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def png_header_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` RGB pixels, with a tiny body."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 4096, 9))
        + _chunk(b"IEND", b"")
    )


def png_strip(width: int, height: int) -> bytes:
    """An extreme shape: a ``width`` x ``height`` PNG with some ink in it (so a detector finds "text").

    A one-row strip alternates ink and paper every 7 pixels; a tall strip cycles through 13 rows: 10 of ink, a
    gap, a one-row fragment, a gap: a vertical code of tens of thousands of "characters", each with a broken
    piece to merge back."""
    if height == 1:
        return png(width, 1, row=bytes(255 if (x // 7) % 2 else 0 for x in range(width)))
    ink, paper = bytes(width), b"\xff" * width
    period = [ink] * 10 + [paper, ink, paper]
    return png(width, height - height % len(period), rows=period)


# --- other accepted formats ----------------------------------------------------------------------


def jpeg_header_bomb(width: int = 65_000, height: int = 65_000) -> bytes:
    """A baseline JPEG's markers (SOI, DQT, SOF0, DHT, SOS) claiming ``width`` x ``height``, a few bytes of scan, EOI."""
    dqt = b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" + bytes([1] * 64)
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    dht = b"\xff\xc4" + struct.pack(">H", 20) + b"\x00" + bytes([1] + [0] * 15) + b"\x00"
    sos = b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00" + b"\x00\x3f\x00"
    return b"\xff\xd8" + dqt + sof + dht + sos + b"\x00" * 64 + b"\xff\xd9"


def bmp_header_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A BMP (BITMAPINFOHEADER, 24 bits) claiming ``width`` x ``height``, RLE-free, with 64 bytes of pixels."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    body = b"\x00" * 64
    header = b"BM" + struct.pack("<IHHI", 14 + len(info) + len(body), 0, 0, 14 + len(info))
    return header + info + body


def tiff_header_bomb(width: int = 60_000, height: int = 60_000, *, big_endian: bool = False) -> bytes:
    """A classic TIFF whose first directory claims ``width`` x ``height`` 8-bit gray pixels in one deflate strip."""
    order = ">" if big_endian else "<"
    strip = zlib.compress(b"\x00" * 65536, 9)
    entries = [
        (256, 4, 1, width),  # ImageWidth, LONG
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 8),  # Compression: deflate
        (262, 3, 1, 1),  # Photometric: black is zero
        (273, 4, 1, 0),  # StripOffsets (patched below)
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, len(strip)),  # StripByteCounts
    ]
    ifd_offset = 8
    data_offset = ifd_offset + 2 + 12 * len(entries) + 4
    ifd = struct.pack(order + "H", len(entries))
    for tag, kind, count, value in entries:
        if tag == 273:
            value = data_offset
        packed = struct.pack(order + "H", value) + b"\x00\x00" if kind == 3 else struct.pack(order + "I", value)
        ifd += struct.pack(order + "HHI", tag, kind, count) + packed
    ifd += b"\x00\x00\x00\x00"
    head = (b"MM\x00*" if big_endian else b"II*\x00") + struct.pack(order + "I", ifd_offset)
    return head + ifd + strip


def webp_header_bomb(width: int = 16_000, height: int = 16_000, *, kind: str = "VP8X") -> bytes:
    """A WebP whose first chunk claims ``width`` x ``height`` (kind VP8X: an extended canvas; VP8L: lossless)."""
    if kind == "VP8X":
        payload = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        chunk = b"VP8X" + struct.pack("<I", len(payload)) + payload
    elif kind == "VP8L":
        bits = (width - 1) | ((height - 1) << 14)
        payload = b"\x2f" + struct.pack("<I", bits) + b"\x00" * 32
        chunk = b"VP8L" + struct.pack("<I", len(payload)) + payload
    else:
        raise ValueError(kind)
    body = b"WEBP" + chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


def pnm_header_bomb(width: int = 60_000, height: int = 60_000, *, magic: bytes = b"P5") -> bytes:
    """A PGM (P5) or PPM (P6) claiming ``width`` x ``height``, with a comment in its header and a few pixel bytes."""
    return magic + b"\n# made by the hostile corpus\n" + f"{width} {height}\n255\n".encode() + b"\x00" * 64


# --- refused formats -----------------------------------------------------------------------------


def hdr_bomb(width: int = 18_000, height: int = 18_000) -> bytes:
    """Radiance HDR with run-length scanlines: a few kB that a Radiance decoder expands to float32 pixels."""
    head = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n" + f"-Y {height} +X {width}\n".encode()
    # One "new RLE" scanline: 2 2 hi lo, then for each of 4 components runs of 127 equal bytes.
    runs = bytearray()
    for _ in range(4):
        left = width
        while left > 0:
            n = min(127, left)
            runs += bytes([128 + n, 128])
            left -= n
    line = bytes([2, 2, width >> 8 & 0xFF, width & 0xFF]) + bytes(runs)
    return head + line * 4


REFUSED_FORMATS: dict[str, bytes] = {
    "hdr": b"",  # filled in below (hdr_bomb)
    "pfm": b"PF\n20000 20000\n-1.0\n" + b"\x00" * 64,
    "gif": b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00\x00\x00" + b"\x2c" + b"\x00" * 16 + b"\x3b",
    "pam": b"P7\nWIDTH 30000\nHEIGHT 30000\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n" + b"\x00" * 64,
    "sunras": struct.pack(">8I", 0x59A66A95, 30000, 30000, 24, 0, 2, 0, 0) + b"\x80\xff\x00" * 32,
    "jp2": b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00" * 64,
    "exr": b"\x76\x2f\x31\x01" + b"\x02\x00\x00\x00" + b"\x00" * 64,
}


@functools.lru_cache(maxsize=1)
def refused_formats() -> dict[str, bytes]:
    """Images in formats the reader does not accept (some of them bombs), by name."""
    return {**REFUSED_FORMATS, "hdr": hdr_bomb()}


ACCEPTED_BOMBS = (
    "png",
    "jpeg",
    "bmp",
    "bmp-top-down",
    "tiff-le",
    "tiff-be",
    "webp-vp8x",
    "webp-vp8l",
    "pgm",
    "ppm",
    "png-real-60mp",
)


@functools.lru_cache(maxsize=1)
def accepted_format_bombs() -> dict[str, bytes]:
    """Header bombs in every accepted format, by name."""
    bombs = {
        "png": png_header_bomb(),
        "jpeg": jpeg_header_bomb(),
        "bmp": bmp_header_bomb(),
        "bmp-top-down": bmp_header_bomb(50_000, -50_000),
        "tiff-le": tiff_header_bomb(),
        "tiff-be": tiff_header_bomb(big_endian=True),
        "webp-vp8x": webp_header_bomb(kind="VP8X"),
        "webp-vp8l": webp_header_bomb(kind="VP8L"),
        "pgm": pnm_header_bomb(magic=b"P5"),
        "ppm": pnm_header_bomb(magic=b"P6"),
        "png-real-60mp": png(7_800, 7_800),  # complete and valid: 60.8 MP of white, 60 kB
    }
    assert tuple(bombs) == ACCEPTED_BOMBS
    return bombs


# --- hostile request parts -----------------------------------------------------------------------


def yaml_laughs(levels: int = 9, width: int = 9) -> str:
    """YAML with aliases: ``width`` ** ``levels`` strings from a few hundred bytes (a "billion laughs")."""
    lines = ["l0: &l0 [" + ", ".join(['"lol"'] * width) + "]"]
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * width) + "]")
    lines.append(f"steps: *l{levels - 1}")
    return "\n".join(lines)


NESTED_FORMATS = {
    "nested exact repeats": "((([A-Z]{64}){64}){64})",  # 23 characters, 262,144 copies
    "nested optional repeats": "([A-Z]{0,64}){0,64}",  # every state reaches every other by epsilon
    "deep groups": "(" * 90 + "A" + ")" * 90,
}


def json_many_keys(keys: int = 1_000_000) -> bytes:
    """A JSON read request with ``keys`` unknown keys beside the image field (12 MB for a million)."""
    parts = ['{"image": "aGVsbG8="']
    parts += [f', "k{i}": 0' for i in range(keys)]
    return ("".join(parts) + "}").encode()


def json_deep(depth: int = 100_000) -> bytes:
    """A JSON body nested ``depth`` arrays deep inside the options."""
    return b'{"image": "aGVsbG8=", "options": ' + b"[" * depth + b"]" * depth + b"}"


def json_many_values(count: int = 2_000_000) -> bytes:
    """A JSON body whose options hold ``count`` empty objects (each one a Python dict once parsed)."""
    return b'{"image": "aGVsbG8=", "options": {"formats": [' + b",".join([b"{}"] * count) + b"]}}"


def options_many_keys(keys: int = 60_000) -> str:
    """An ``options`` text field (multipart) with ``keys`` unknown keys."""
    return json.dumps({f"k{i}": i for i in range(keys)})


def slow_bytes(data: bytes, step: int = 1) -> Iterator[bytes]:
    """``data`` in pieces of ``step`` bytes (for a slow client)."""
    for i in range(0, len(data), step):
        yield data[i : i + step]


# --- tampered models -----------------------------------------------------------------------------


def tampered_model(model: Path, out_dir: Path, *, offset: int | None = None) -> Path:
    """A copy of an exported model (``.onnx`` and its sidecar) with one byte of the ``.onnx`` flipped."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / model.name
    shutil.copyfile(model, target)
    sidecar = model.with_suffix(".json")
    shutil.copyfile(sidecar, out_dir / sidecar.name)
    data = bytearray(target.read_bytes())
    index = len(data) // 2 if offset is None else offset
    data[index] ^= 0xFF
    target.write_bytes(bytes(data))
    return target


# --- as a script ---------------------------------------------------------------------------------


def write_corpus(out_dir: Path) -> list[Path]:
    """Write the image part of the corpus to ``out_dir``; the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    items = {
        **{f"bomb-{name}": data for name, data in accepted_format_bombs().items()},
        **{f"refused-{name}": data for name, data in refused_formats().items()},
        "strip-wide-1x1000000.png": png_strip(1_000_000, 1),
        "strip-wide-20000x1.png": png_strip(20_000, 1),
        "strip-tall-2x400000.png": png_strip(2, 400_000),
    }
    for name, data in items.items():
        path = out_dir / name
        path.write_bytes(data)
        written.append(path)
    (out_dir / "json-many-keys.json").write_bytes(json_many_keys())
    (out_dir / "json-deep.json").write_bytes(json_deep())
    (out_dir / "yaml-laughs.yaml").write_text(yaml_laughs())
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/hostile_corpus.py OUT_DIR")
    for path in write_corpus(Path(sys.argv[1])):
        print(path, path.stat().st_size)
