"""Hostile inputs (issue 21): every case of ``tests/hostile_corpus.py`` ends with a clear 4xx or a clear error
within seconds, its peak memory stays under 1 GB above the process's idle size, and the service then answers
``/health`` and a good read.

* The service runs as ``edgeocr serve`` in a subprocess, with its default mode (auto, the shipped detector) and
  limits (50 MP per image, 20 MB per
  body, 16 images per batch) and short time limits for slow clients; its peak resident memory is measured per
  case from ``/proc/PID/status`` (VmHWM), reset before each case through ``/proc/PID/clear_refs``.
* The library cases (decoding, the detectors, formats, a tampered model) run in one Python subprocess that
  measures itself the same way, case by case.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from edgeocr.bench.load import ServerProcess

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostile_corpus as corpus  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
GOOD = REPO / "samples" / "lines" / "lot" / "00000000.png"
GOOD_TEXT = "P502781 05/28"
PEAK_LIMIT_MB = 1024  # above the idle size, per case
SLOW_CLIENT_S = 1.5  # the test server's header and body time limits


# --- peak memory of a process ---------------------------------------------------------------------


def _status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {key} in /proc/{pid}/status")


class PeakMeter:
    """Peak resident memory of a process over a case, above its size at the start (MB).

    Linux resets a process's peak (VmHWM) when "5" is written to its clear_refs; where that is refused,
    the resident size is sampled every 2 ms instead (a spike shorter than that could be missed)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._sampled = 0
        self._sampler: threading.Thread | None = None
        self._running = False

    def __enter__(self) -> PeakMeter:
        self.base_kb = _status_kb(self.pid, "VmRSS")
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as refs:
                refs.write("5")
        except OSError:
            self._running = True
            process = psutil.Process(self.pid)

            def sample() -> None:
                while self._running:
                    self._sampled = max(self._sampled, process.memory_info().rss // 1024)
                    time.sleep(0.002)

            self._sampler = threading.Thread(target=sample, daemon=True)
            self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sampler is not None:
            self._running = False
            self._sampler.join()
            peak_kb = self._sampled
        else:
            peak_kb = _status_kb(self.pid, "VmHWM")
        self.peak_mb = max(0, peak_kb - self.base_kb) / 1024


# --- the service -----------------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    pid: int
    port: int


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    # The default mode, auto, with the shipped detector: photo-shaped images are detected, crops read whole.
    # (PP-OCR's detector on the extreme shapes is the library cases'; on a 49-MP photo it peaks near 1 GB alone.)
    args = ["--threads", "1", "--max-concurrent", "2", "--timeout-s", "30"]
    args += ["--body-timeout-s", str(SLOW_CLIENT_S), "--header-timeout-s", str(SLOW_CLIENT_S)]
    with ServerProcess(args, log) as process:
        process.wait_ready(httpx)  # EdgeOCRError with the log's tail when it exits or does not answer
        server = Server(process.url, process.process.pid, process.port)
        assert_still_serving(server)  # warm: the first read builds what it caches
        yield server


def assert_still_serving(server: Server) -> None:
    health = httpx.get(server.url + "/health", timeout=5)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    good = httpx.post(
        server.url + "/v1/read", files={"image": ("good.png", GOOD.read_bytes(), "image/png")}, timeout=30
    )
    assert good.status_code == 200, good.text
    assert good.json()["lines"][0]["text"] == GOOD_TEXT


# --- hostile requests ------------------------------------------------------------------------------

_built: dict[str, bytes] = {}


def png_49mp() -> bytes:
    """Complete and valid, 7000 x 7000 = 49 MP of white: 48 kB on the wire (built once)."""
    if "49mp" not in _built:
        _built["49mp"] = corpus.png(7_000, 7_000)
    return _built["49mp"]


def _upload(data: bytes, name: str = "x.png", options: dict | None = None) -> dict:
    request: dict = {"files": {"image": (name, data, "application/octet-stream")}}
    if options is not None:
        request["data"] = {"options": json.dumps(options)}
    return request


def _json(body: bytes) -> dict:
    return {"content": body, "headers": {"content-type": "application/json"}}


# name -> (path, request keywords (built when the case runs), expected status, expected code, seconds allowed)
REQUESTS: dict[str, tuple[str, Callable[[], dict], int, str, float]] = {
    **{
        f"{name} bomb": (
            "/v1/read",
            lambda name=name: _upload(corpus.accepted_format_bombs()[name]),
            413,
            "image_too_large",
            5,
        )
        for name in corpus.ACCEPTED_BOMBS
    },
    **{
        f"{name} (a refused format)": (
            "/v1/read",
            lambda name=name: _upload(corpus.refused_formats()[name]),
            400,
            "bad_image",
            5,
        )
        for name in corpus.REFUSED_FORMATS
    },
    "YAML aliases in regions[].preprocess": (
        "/v1/read",
        lambda: {
            "json": {
                "image": "aGVsbG8=",
                "options": {"regions": [{"rect": [0, 0, 4, 4], "preprocess": corpus.yaml_laughs()}]},
            }
        },
        422,
        "invalid_options",
        2,
    ),
    **{
        f"format with {name}": (
            "/v1/read",
            lambda spec=spec: {"json": {"image": "aGVsbG8=", "options": {"formats": [spec]}}},
            422,
            "invalid_options",
            2,
        )
        for name, spec in corpus.NESTED_FORMATS.items()
    },
    "12 MB of JSON with a million keys": (
        "/v1/read",
        lambda: _json(corpus.json_many_keys()),
        413,
        "json_too_complex",
        5,
    ),
    "JSON nested 100,000 deep": ("/v1/read", lambda: _json(corpus.json_deep()), 413, "json_too_complex", 5),
    "JSON nested 5,000 deep (few separators)": (
        "/v1/read",
        lambda: _json(corpus.json_deep(5_000)),
        413,
        "json_too_complex",
        5,
    ),
    "JSON with two million empty objects": (
        "/v1/read",
        lambda: _json(corpus.json_many_values()),
        413,
        "json_too_complex",
        5,
    ),
    "multipart options with 60,000 keys": (
        "/v1/read",
        lambda: {
            "files": {"image": ("x.png", GOOD.read_bytes(), "image/png")},
            "data": {"options": corpus.options_many_keys()},
        },
        413,
        "json_too_complex",
        5,
    ),
    "a batch of 17 images": (
        "/v1/read/batch",
        lambda: {"files": [("images", ("x.png", GOOD.read_bytes(), "image/png"))] * 17},
        413,
        "too_many_images",
        5,
    ),
    "a batch of 16 images of 49 MP (770 kB)": (
        "/v1/read/batch",
        lambda: {"files": [("images", ("big.png", png_49mp(), "image/png"))] * 16},
        413,
        "too_many_pixels",
        5,
    ),
    "a file name of 4,000 characters (never echoed in full)": (
        "/v1/read",
        lambda: _upload(b"not an image", "n" * 4_000 + ".png"),
        400,
        "bad_image",
        5,
    ),
    "a body over the limit, streamed without Content-Length": (
        "/v1/read",
        lambda: {
            "content": corpus.slow_bytes(b"{" * (21 * 2**20), 2**20),
            "headers": {"content-type": "application/json"},
        },
        413,
        "payload_too_large",
        10,
    ),
}

# Within every limit: answered, with bounded memory and time.
WITHIN_LIMITS: dict[str, tuple[str, Callable[[], dict], float]] = {
    "two images of 49 MP (the request's pixel budget), detected in auto mode": (
        "/v1/read/batch",
        lambda: {"files": [("images", ("big.png", png_49mp(), "image/png"))] * 2},
        30,
    ),
    "a 110-byte PNG of 20,000 x 1 through the detector": (
        "/v1/read",
        lambda: _upload(corpus.png_strip(20_000, 1), "strip.png", {"detector": True}),
        20,
    ),
    "a 1,000,000 x 3 PNG (a tall strip) through the detector": (
        "/v1/read",
        lambda: _upload(corpus.png_strip(3, 1_000_000), "tall.png", {"detector": True}),
        20,
    ),
    "a 1,000,000 x 3 PNG read whole (a vertical line)": (
        "/v1/read",
        lambda: _upload(corpus.png_strip(3, 1_000_000)),
        20,
    ),
}


@pytest.mark.parametrize("case", list(REQUESTS))
def test_hostile_requests_get_a_clear_4xx_quickly_and_cheaply(server, case) -> None:
    path, build, status, code, seconds = REQUESTS[case]
    request = build()
    with PeakMeter(server.pid) as meter:
        started = time.perf_counter()
        response = httpx.post(server.url + path, timeout=60, **request)
        elapsed = time.perf_counter() - started
    assert response.status_code == status, response.text[:500]
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert len(error["message"]) <= 600  # never the request's data echoed at length
    assert elapsed < seconds, f"{case}: {elapsed:.1f} s"
    assert meter.peak_mb < PEAK_LIMIT_MB, f"{case}: {meter.peak_mb:.0f} MB above idle"
    print(f"\n{case}: {status} {code} in {elapsed:.2f} s, peak +{meter.peak_mb:.0f} MB: {error['message'][:160]}")
    assert_still_serving(server)


@pytest.mark.parametrize("case", list(WITHIN_LIMITS))
def test_extreme_but_allowed_requests_are_read_within_budget(server, case) -> None:
    path, build, seconds = WITHIN_LIMITS[case]
    request = build()
    with PeakMeter(server.pid) as meter:
        started = time.perf_counter()
        response = httpx.post(server.url + path, timeout=60, **request)
        elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text[:500]
    assert elapsed < seconds, f"{case}: {elapsed:.1f} s"
    assert meter.peak_mb < PEAK_LIMIT_MB, f"{case}: {meter.peak_mb:.0f} MB above idle"
    print(f"\n{case}: 200 in {elapsed:.2f} s, peak +{meter.peak_mb:.0f} MB")
    assert_still_serving(server)


def _raw(server: Server, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(data)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _read_until(sock: socket.socket, marker: bytes) -> bytes:
    """What the server sends until ``marker`` (the end of a JSON error body) or the end of the connection."""
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_slow_headers_are_cut_off(server) -> None:
    """A client sending a header line every half second (each one resets uvicorn's keep-alive timer)."""
    with PeakMeter(server.pid) as meter:
        started = time.perf_counter()
        sock = _raw(server, b"GET /health HTTP/1.1\r\nHost: x\r\n")
        closed = None
        for _ in range(20):
            time.sleep(0.25)
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except OSError:
                closed = time.perf_counter() - started
                break
        if closed is None:
            sock.settimeout(5)
            assert _read_all(sock) == b"", "the connection was not closed"
            closed = time.perf_counter() - started
        sock.close()
    assert closed < SLOW_CLIENT_S + 1.5, f"closed after {closed:.1f} s"
    assert meter.peak_mb < PEAK_LIMIT_MB
    assert_still_serving(server)


def test_a_slow_body_gets_408(server) -> None:
    with PeakMeter(server.pid) as meter:
        started = time.perf_counter()
        sock = _raw(
            server,
            b"POST /v1/read HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{",
        )
        answer = _read_until(sock, b"}}")
        elapsed = time.perf_counter() - started
        sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"body_timeout"' in answer
    assert elapsed < SLOW_CLIENT_S + 1.5
    assert meter.peak_mb < PEAK_LIMIT_MB
    assert_still_serving(server)


def test_oversized_headers_are_refused(server) -> None:
    for headers in (
        b"X-Big: " + b"a" * 100_000 + b"\r\n",  # one header line of 100 kB, sent at once
        b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 100) for i in range(2_000)),  # 2,000 headers
    ):
        with PeakMeter(server.pid) as meter:
            sock = _raw(server, b"GET /health HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
            sock.settimeout(10)
            answer = _read_all(sock)
            sock.close()
        status = answer.split(b" ", 2)[1] if answer else b""
        assert status in (b"400", b"431"), answer[:200]
        assert meter.peak_mb < PEAK_LIMIT_MB
    assert_still_serving(server)


def test_a_declared_oversized_body_is_refused_before_it_is_sent(server) -> None:
    started = time.perf_counter()
    sock = _raw(
        server,
        b"POST /v1/read HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2000000000\r\n\r\n",
    )
    answer = _read_until(sock, b"}}")
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"payload_too_large"' in answer
    assert time.perf_counter() - started < 2
    assert_still_serving(server)


# --- cancellation: work that times out stops -------------------------------------------------------


def test_a_timed_out_read_is_cancelled_not_abandoned() -> None:
    """A batch whose read outlives the time limit gets 504 at the limit, and its thread stops at the next image:
    the detector is not called for the rest of the batch."""
    import numpy as np
    from fastapi.testclient import TestClient

    from edgeocr.runtime.reader import DetectedLine
    from edgeocr.serve.app import create_app
    from edgeocr.serve.settings import ServeSettings

    class SlowDetector:
        def __init__(self) -> None:
            self.calls = 0

        def detect(self, image: np.ndarray) -> list[DetectedLine]:
            self.calls += 1
            time.sleep(0.4)
            h, w = image.shape[:2]
            return [DetectedLine(np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32), 0.9)]

    slow = SlowDetector()
    settings = ServeSettings(mode="detector", engine_threads=1, request_timeout_s=0.6, batch_max_images=8)
    with TestClient(create_app(settings, detector=slow)) as service:
        started = time.perf_counter()
        files = [("images", ("x.png", GOOD.read_bytes(), "image/png"))] * 8
        response = service.post("/v1/read/batch", files=files)
        assert response.status_code == 504 and response.json()["error"]["code"] == "timeout"
        assert time.perf_counter() - started < 1.5
        time.sleep(1.0)  # uncancelled, the batch would go on detecting for 2 more seconds
        assert slow.calls <= 3, f"the detector ran {slow.calls} times: the work went on after the time limit"
        metrics = service.get("/metrics").text
        assert "edgeocr_reads_cancelled_total 1.0" in metrics
        good = service.post(
            "/v1/read",
            files={"image": ("g.png", GOOD.read_bytes(), "image/png")},
            data={"options": '{"detector": false}'},
        )
        assert good.status_code == 200 and good.json()["lines"][0]["text"] == GOOD_TEXT


# --- the allow-list reads real files of every accepted format ---------------------------------------


def _pil_encodings(image) -> dict[str, bytes]:
    import io

    from PIL import Image

    rgb = Image.fromarray(image[:, :, ::-1].copy())
    encodings = {}
    for name, fmt, mode, options in (
        ("BMP v3", "BMP", "RGB", {}),
        ("BMP with alpha", "BMP", "RGBA", {}),
        ("TIFF deflate", "TIFF", "RGB", {"compression": "tiff_deflate"}),
        ("TIFF gray", "TIFF", "L", {}),
        ("BigTIFF", "TIFF", "RGB", {"big_tiff": True}),
        ("WebP lossless with alpha (VP8L)", "WEBP", "RGBA", {"lossless": True}),
        ("WebP lossy (VP8)", "WEBP", "RGB", {"quality": 80}),
        ("WebP lossy with alpha (VP8X)", "WEBP", "RGBA", {"quality": 80}),
        ("PPM", "PPM", "RGB", {}),
        ("PBM", "PPM", "1", {}),
        ("progressive JPEG", "JPEG", "RGB", {"progressive": True}),
        ("palette PNG", "PNG", "P", {}),
    ):
        buffer = io.BytesIO()
        rgb.convert(mode).save(buffer, fmt, **options)
        encodings[name] = buffer.getvalue()
    return encodings


def test_every_accepted_format_is_sized_from_its_header_and_decodes() -> None:
    import cv2
    import numpy as np

    from edgeocr.core.images import ACCEPTED_FORMATS, encoded_size, load_image

    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), np.uint8)
    encodings = {
        ext: cv2.imencode(ext, image)[1].tobytes() for ext in (".png", ".jpg", ".bmp", ".tiff", ".webp", ".ppm")
    }
    encodings.update({ext: cv2.imencode(ext, image[:, :, 0])[1].tobytes() for ext in (".pgm", ".pbm")})
    encodings.update(_pil_encodings(image))
    encodings["ASCII PBM with a comment"] = b"P1\n# two rows\n53 37\n" + b"0 1 " * (53 * 37 // 2) + b"0\n"
    seen = set()
    for name, data in encodings.items():
        kind, width, height = encoded_size(data, name)
        assert (width, height) == (53, 37), name
        assert load_image(data).shape == (37, 53, 3), name
        seen.add(kind)
    assert seen == set(ACCEPTED_FORMATS)


# --- library cases, in a subprocess that measures itself -----------------------------------------

_LIBRARY_CASES = r"""
import json, os, sys, time, traceback
sys.path.insert(0, sys.argv[1])
import hostile_corpus as corpus

import edgeocr  # sets OpenCV's pixel limit before cv2 is imported
import cv2
import numpy as np
from edgeocr import Reader
from edgeocr.core.errors import EdgeOCRError
from edgeocr.core.formats import compile_format
from edgeocr.core.images import load_image
from edgeocr.runtime.models import resolve_model

def status_kb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])

def case(name, work):
    base = status_kb("VmRSS")
    open("/proc/self/clear_refs", "w").write("5")
    started = time.perf_counter()
    try:
        outcome, message = "ok", str(work())
    except EdgeOCRError as exc:
        outcome, message = type(exc).__name__, str(exc)
    except BaseException as exc:
        outcome, message = "unexpected " + type(exc).__name__, traceback.format_exc()
    print(json.dumps({"case": name, "outcome": outcome, "message": message[:600],
                      "seconds": time.perf_counter() - started,
                      "peak_mb": (status_kb("VmHWM") - base) / 1024}), flush=True)

whole = Reader(detector=None, threads=1)
shipped = Reader(detector="default", threads=1)
ppocr = Reader(detector="rapidocr", threads=1)
auto = Reader(threads=1)  # the default mode: crops whole, photos detected
whole.read(str(sys.argv[2])); shipped.read(str(sys.argv[2])); ppocr.read(str(sys.argv[2])); auto.read(str(sys.argv[2]))

for name, data in corpus.accepted_format_bombs().items():
    case(f"load_image: {name} bomb", lambda data=data: load_image(data).shape)
for name, data in corpus.refused_formats().items():
    case(f"load_image: {name}", lambda data=data: load_image(data).shape)
bmp = corpus.bmp_header_bomb(20_000, 20_000)  # 400 MP, over OpenCV's own limit of 2^28 set before its import
case("OpenCV's own limit (cv2.imdecode, no edgeocr guard)",
     lambda: cv2.imdecode(np.frombuffer(bmp, np.uint8), cv2.IMREAD_COLOR))
case("load_image, guard off (max_pixels=None): the OpenCV limit stands", lambda: load_image(bmp, max_pixels=None).shape)
strip = corpus.png_strip(20_000, 1)
tall = corpus.png_strip(3, 1_000_000)
case("110-byte strip, PP-OCR detector", lambda: len(ppocr.read(strip)))
case("tall strip, PP-OCR detector", lambda: len(ppocr.read(tall)))
case("110-byte strip, shipped detector", lambda: len(shipped.read(strip)))
case("tall strip, shipped detector", lambda: len(shipped.read(tall)))
case("tall strip, read whole", lambda: len(whole.read(tall)))
case("110-byte strip, auto", lambda: auto.read(strip).mode)
case("tall strip, auto", lambda: auto.read(tall).mode)
case("accepted-format bomb, auto", lambda: auto.read(next(iter(corpus.accepted_format_bombs().values()))))
for name, spec in corpus.NESTED_FORMATS.items():
    case(f"compile_format: {name}", lambda spec=spec: compile_format(spec))
case("Reader with a nested-repeat format", lambda: Reader(detector=None, formats=[corpus.NESTED_FORMATS["nested exact repeats"]]))
tmp = sys.argv[3]
model = resolve_model("default")
flipped = corpus.tampered_model(model, __import__("pathlib").Path(tmp) / "flipped")
case("tampered model (one byte flipped)", lambda: Reader(model=flipped, detector=None, threads=1))
cut = corpus.tampered_model(model, __import__("pathlib").Path(tmp) / "cut")
cut.write_bytes(model.read_bytes()[: model.stat().st_size // 3])
case("tampered model (truncated)", lambda: Reader(model=cut, detector=None, threads=1))
"""

# case -> (expected outcome, a word of the message, seconds allowed)
LIBRARY_EXPECTED: dict[str, tuple[str, str, float]] = {
    **{f"load_image: {name} bomb": ("ImageError", "megapixels", 1) for name in corpus.ACCEPTED_BOMBS},
    **{f"load_image: {name}": ("ImageError", "not accepted", 1) for name in corpus.REFUSED_FORMATS},
    "OpenCV's own limit (cv2.imdecode, no edgeocr guard)": ("unexpected error", "CV_IO_MAX_IMAGE_PIXELS", 1),
    "load_image, guard off (max_pixels=None): the OpenCV limit stands": ("ImageError", "cannot decode", 1),
    "110-byte strip, PP-OCR detector": ("ok", "", 15),
    "tall strip, PP-OCR detector": ("ok", "", 15),
    "110-byte strip, shipped detector": ("ok", "", 10),
    "tall strip, shipped detector": ("ok", "", 10),
    "tall strip, read whole": ("ok", "", 15),
    "110-byte strip, auto": ("ok", "whole", 15),  # a 1-px short side: crop-shaped, never detected
    "tall strip, auto": ("ok", "whole", 15),
    "accepted-format bomb, auto": ("ImageError", "megapixels", 1),
    **{f"compile_format: {name}": ("FormatError", "", 1) for name in corpus.NESTED_FORMATS},
    "Reader with a nested-repeat format": ("FormatError", "automaton states", 2),
    "tampered model (one byte flipped)": ("ModelError", "", 10),
    "tampered model (truncated)": ("ModelError", "", 10),
}


@pytest.fixture(scope="module")
def library_results(tmp_path_factory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("hostile-library")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    env.pop("OPENCV_IO_MAX_IMAGE_PIXELS", None)
    result = subprocess.run(
        [sys.executable, "-c", _LIBRARY_CASES, str(Path(__file__).parent), str(GOOD), str(tmp)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = {}
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            results[record["case"]] = record
    return results


@pytest.mark.parametrize("case", list(LIBRARY_EXPECTED))
def test_library_cases_end_in_a_clear_error_or_a_bounded_read(library_results, case) -> None:
    assert case in library_results, f"{case} did not run: {sorted(library_results)}"
    record = library_results[case]
    outcome, word, seconds = LIBRARY_EXPECTED[case]
    if outcome == "unexpected error":  # OpenCV's own assertion: not ours, but refused before allocating
        assert record["outcome"].startswith("unexpected"), record
    else:
        assert record["outcome"] == outcome, record
    assert word in record["message"], record
    assert record["seconds"] < seconds, record
    assert record["peak_mb"] < PEAK_LIMIT_MB, record
    print(f"\n{case}: {record['outcome']} in {record['seconds']:.2f} s, peak +{record['peak_mb']:.0f} MB")
