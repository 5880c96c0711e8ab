"""The HTTP service: reads equal the Reader's, batch equals single, health, metrics, OpenAPI, every class of
bad request answered with a 4xx JSON error while the service keeps serving, time limit, server faults."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from edgeocr.core.sidecar import load_sidecar, sidecar_path
from edgeocr.runtime.models import resolve_model
from edgeocr.runtime.reader import DetectedLine, Reader, ReaderConfig, Region
from edgeocr.runtime.recognizer import EngineConfig
from edgeocr.serve.app import create_app, create_app_from_env
from edgeocr.serve.settings import SETTINGS_ENV, ServeSettings

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
LINES = REPO / "samples" / "lines"
SCENE = REPO / "samples" / "scenes" / "images" / "00000001.jpg"
LINE_SAMPLES = [LINES / "lot" / "00000000.png", LINES / "container" / "00000001.png", LINES / "date" / "00000004.png"]
ENGINE = EngineConfig(intra_op_threads=1)
LOT_FORMAT = "P[0-9]{6} {MM}/{YY}"
MAX_BODY = 2 * 2**20
MAX_PIXELS = 4_000_000
BATCH_MAX = 4
SETTINGS = ServeSettings(
    mode="whole",  # not the default 'auto' (tests/test_auto_mode.py): these tests compare with whole-image reads
    detector="rapidocr",
    engine_threads=1,
    max_body_bytes=MAX_BODY,
    max_pixels=MAX_PIXELS,
    batch_max_images=BATCH_MAX,
    formats=("iso6346", LOT_FORMAT),
)


@pytest.fixture(scope="module")
def client():
    """Whole-image mode by default; requests may turn PP-OCR's detector on."""
    with TestClient(create_app(SETTINGS)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def reader() -> Reader:
    return Reader(ReaderConfig(engine=ENGINE, mode="whole", formats=SETTINGS.formats))


@pytest.fixture(scope="module")
def detector_reader(client) -> Reader:
    detector = client.app.state.pool.detector  # the same PP-OCR detector, so the reference is exact
    return Reader(ReaderConfig(engine=ENGINE, mode="detector", formats=SETTINGS.formats), detector=detector)


def upload(path: Path, field: str = "image") -> tuple[str, tuple[str, bytes, str]]:
    return field, (path.name, path.read_bytes(), "image/png")


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def dicts(reads) -> list[dict]:
    return [line.to_dict() for line in reads]


def good_read_works(client: TestClient) -> None:
    response = client.post("/v1/read", files=[upload(LINE_SAMPLES[0])])
    assert response.status_code == 200, response.text
    assert response.json()["lines"][0]["text"] == "P502781 05/28"


# --- reads ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", LINE_SAMPLES, ids=lambda p: p.parent.name)
def test_multipart_and_base64_reads_equal_the_reader(client, reader, path) -> None:
    expected = dicts(reader.read(path))
    image = cv2.imread(str(path))
    for response in (
        client.post("/v1/read", files=[upload(path)]),
        client.post("/v1/read", json={"image": b64(path)}),
        client.post("/v1/read", json={"image": "data:image/png;base64," + b64(path)}),
    ):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["lines"] == expected  # text, raw_text, confidences, poly, format, valid: all of it
        assert (body["height"], body["width"]) == image.shape[:2]
        assert body["model"] == "default" and body["mode"] == "whole"
        assert set(body["timing_ms"]) == {"queue", "decode", "read", "total"}
        assert body["timing_ms"]["total"] >= body["timing_ms"]["read"] > 0


def test_detector_on_and_off(client, reader, detector_reader) -> None:
    on = client.post("/v1/read", files=[upload(SCENE)], data={"options": json.dumps({"detector": True})})
    assert on.status_code == 200, on.text
    assert on.json()["mode"] == "detector"
    expected = dicts(detector_reader.read(SCENE))
    assert len(expected) >= 2 and on.json()["lines"] == expected
    assert all(line["detection_score"] is not None for line in on.json()["lines"])
    off = client.post("/v1/read", json={"image": b64(SCENE), "options": {"detector": False}})
    assert off.status_code == 200 and off.json()["mode"] == "whole"
    assert off.json()["lines"] == dicts(reader.read(SCENE))  # the whole 800x600 frame as one line
    large = SCENE.parent / "00000000.jpg"  # over 64 KiB of JSON: parsed in a worker thread
    response = client.post("/v1/read", json={"image": b64(large), "options": {"detector": False}})
    assert len(response.request.content) > 64 * 1024 and response.json()["lines"] == dicts(reader.read(large))


def test_batch_equals_single_reads(client, reader) -> None:
    paths = [*LINE_SAMPLES, LINE_SAMPLES[0]]
    singles = [client.post("/v1/read", files=[upload(p)]).json() for p in paths]
    batched = reader.read_batch(paths)  # all lines in shared recogniser batches, padded to the widest
    multipart = client.post("/v1/read/batch", files=[upload(p, "images") for p in paths])
    as_json = client.post("/v1/read/batch", json={"images": [b64(p) for p in paths]})
    for response in (multipart, as_json):
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert [r["lines"] for r in results] == [dicts(lines) for lines in batched]
        assert [(r["width"], r["height"]) for r in results] == [(s["width"], s["height"]) for s in singles]
        # Padding in a shared batch moves confidences a little, never the reads.
        for result, single in zip(results, singles):
            (line,), (alone,) = result["lines"], single["lines"]
            assert (line["text"], line["raw_text"], line["poly"]) == (alone["text"], alone["raw_text"], alone["poly"])
            assert line["confidence"] == pytest.approx(alone["confidence"], abs=0.02)
    # Images of one width share a batch without padding: exactly the single reads.
    same = client.post("/v1/read/batch", json={"images": [b64(LINE_SAMPLES[0])] * 3}).json()["results"]
    assert [r["lines"] for r in same] == [singles[0]["lines"]] * 3


def test_formats_per_request(client) -> None:
    lot = LINE_SAMPLES[0]
    free = client.post("/v1/read", json={"image": b64(lot), "options": {"formats": []}}).json()["lines"][0]
    assert free["format"] is None and free["text"] == free["raw_text"]
    configured = client.post("/v1/read", json={"image": b64(lot), "options": {"formats": [LOT_FORMAT]}})
    assert configured.json()["lines"][0]["format"] == LOT_FORMAT
    # Formats the service was not started with: compiled for this request, read by a reader for them.
    new = "P[0-9]{6} [0-9]{2}/[0-9]{2}"
    response = client.post("/v1/read", json={"image": b64(lot), "options": {"formats": [new]}})
    expected = Reader(ReaderConfig(engine=ENGINE, mode="whole", formats=(new,))).read(lot)
    assert response.status_code == 200 and response.json()["lines"] == dicts(expected)
    assert response.json()["lines"][0]["format"] == new
    # ...and the shared readers were not changed by it.
    assert client.post("/v1/read", files=[upload(lot)]).json()["lines"][0]["format"] == LOT_FORMAT


def test_regions_of_interest(client) -> None:
    rect, quad = (546, 273, 122, 38), ((524, 136), (672, 160), (666, 196), (520, 171))
    # A pixel rectangle is read exactly as the Reader's own ROI mode reads it.
    alone = client.post(
        "/v1/read",
        json={"image": b64(SCENE), "options": {"regions": [{"name": "time", "rect": list(rect)}], "formats": []}},
    )
    assert alone.status_code == 200, alone.text
    roi = Reader(ReaderConfig(engine=ENGINE, mode="roi", regions=(Region(name="time", rect=rect),)))
    assert alone.json()["mode"] == "regions" and alone.json()["lines"] == dicts(roi.read(SCENE))
    assert alone.json()["lines"][0]["text"] == "21:19"
    # Several regions, a quad among them, come back in request order, each with its polygon.
    regions = [{"name": "time", "rect": list(rect)}, {"name": "code", "quad": [list(p) for p in quad]}]
    both = client.post("/v1/read", json={"image": b64(SCENE), "options": {"regions": regions, "formats": []}})
    lines = both.json()["lines"]
    assert [line["region"] for line in lines] == ["time", "code"] and lines[0]["text"] == "21:19"
    assert lines[1]["poly"] == [list(map(float, p)) for p in quad] and lines[1]["raw_text"]
    # The same rectangle in relative units, with an expected format of its own.
    relative = [rect[0] / 800, rect[1] / 600, rect[2] / 800, rect[3] / 600]
    options = {
        "regions": [{"name": "time", "rect": relative, "units": "relative", "format": "{HH}:{mm}"}],
        "formats": ["{HH}:{mm}"],
    }
    timed = client.post("/v1/read", json={"image": b64(SCENE), "options": options}).json()["lines"]
    assert timed[0]["poly"] == lines[0]["poly"] and timed[0]["format"] == "{HH}:{mm}" and timed[0]["valid"]


def test_a_region_request_reads_what_the_readers_roi_mode_reads(client) -> None:
    # One region path (Reader.read_regions): a quad, a fractional rectangle and a relative one give the
    # service the very lines, polygons and confidences of a Reader configured with those regions.
    regions = [
        {"name": "code", "quad": [[524, 136], [672, 160], [666, 196], [520, 171]]},
        {"name": "time", "rect": [545.6, 272.7, 122.5, 38.4]},
        {"name": "half", "rect": [0.1, 0.2, 0.5, 0.1], "units": "relative"},
    ]
    served = client.post("/v1/read", json={"image": b64(SCENE), "options": {"regions": regions, "formats": []}})
    assert served.status_code == 200, served.text
    roi = Reader(ReaderConfig(engine=ENGINE, mode="roi", regions=tuple(Region(**r) for r in regions)))
    assert served.json()["lines"] == dicts(roi.read(SCENE))
    assert [line["region"] for line in served.json()["lines"]] == ["code", "time", "half"]


def test_concurrent_requests_all_read_the_same(client) -> None:
    app = client.app
    data = LINE_SAMPLES[1].read_bytes()

    async def fire() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await asyncio.gather(*(http.post("/v1/read", files={"image": ("c.png", data)}) for _ in range(12)))

    responses = asyncio.run(fire())
    assert {r.status_code for r in responses} == {200}
    assert len({json.dumps(r.json()["lines"]) for r in responses}) == 1


# --- health, metrics, docs, page ----------------------------------------------------------------


def test_health(client) -> None:
    first = client.get("/health").json()
    assert first["status"] == "ok" and first["model"] == "default"
    assert first["model_sha256"] == load_sidecar(sidecar_path(resolve_model("default"))).onnx_sha256
    assert first["detector"] == "rapidocr" and first["formats"] == list(SETTINGS.formats)
    assert first["limits"]["max_body_bytes"] == MAX_BODY
    time.sleep(0.01)
    assert client.get("/health").json()["uptime_s"] > first["uptime_s"]


def metric(client: TestClient, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_metrics_count_requests_lines_and_errors(client) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    ok = dict(name="edgeocr_http_requests_total", endpoint="/v1/read", method="POST", status="200")
    bad = dict(ok, status="415")
    before = (
        metric(client, **ok),
        metric(client, **bad),
        metric(client, "edgeocr_lines_read_total"),
        metric(client, "edgeocr_http_request_duration_seconds_count", endpoint="/v1/read"),
    )
    lines = len(client.post("/v1/read", files=[upload(SCENE)], data={"options": '{"detector": true}'}).json()["lines"])
    client.post("/v1/read", content=b"x", headers={"content-type": "text/plain"})
    after = (
        metric(client, **ok),
        metric(client, **bad),
        metric(client, "edgeocr_lines_read_total"),
        metric(client, "edgeocr_http_request_duration_seconds_count", endpoint="/v1/read"),
    )
    assert after == (before[0] + 1, before[1] + 1, before[2] + lines, before[3] + 2)
    assert metric(client, "edgeocr_read_requests_in_flight") == 0
    # Metrics are per app: a second app starts from zero.
    assert metric(TestClient(create_app(ServeSettings(engine_threads=1))), **ok) == 0


def test_openapi_documents_the_routes_and_both_encodings(client) -> None:
    schema = client.get("/openapi.json").json()
    assert {"/v1/read", "/v1/read/batch", "/health", "/metrics"} <= set(schema["paths"])
    for path in ("/v1/read", "/v1/read/batch"):
        content = schema["paths"][path]["post"]["requestBody"]["content"]
        assert set(content) == {"multipart/form-data", "application/json"}
        assert {"200", "400", "413", "415", "422", "504"} <= set(schema["paths"][path]["post"]["responses"])
    assert "ReadRequestOptions" in schema["components"]["schemas"]
    assert "Region" in schema["components"]["schemas"]
    assert client.get("/docs").status_code == 200


def test_web_page_is_served_and_self_contained(client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert 'id="canvas"' in html and 'id="file"' in html and "getUserMedia" in html
    assert "http://" not in html and "https://" not in html  # no CDN, nothing fetched from elsewhere


# --- bad requests --------------------------------------------------------------------------------


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (a decompression bomb's calling card)."""
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + len(ihdr).to_bytes(4, "big") + chunk + zlib.crc32(chunk).to_bytes(4, "big")


def big_png() -> bytes:
    ok, data = cv2.imencode(".png", np.zeros((2100, 2000), np.uint8))  # 4.2 MP, compresses to a few kB
    return data.tobytes()


def chunks(total: int):
    for _ in range(total // 65536 + 1):
        yield b"\0" * 65536


LOT_B64 = base64.b64encode(LINE_SAMPLES[0].read_bytes()).decode()
GARBAGE = b"this is not an image \x00\x01\x02" * 10
SCENE_B64 = base64.b64encode(SCENE.read_bytes()).decode()

BAD_REQUESTS = {
    "garbage bytes (multipart)": (dict(files={"image": ("x.png", GARBAGE, "image/png")}), 400, "bad_image"),
    "garbage bytes (base64)": (dict(json={"image": base64.b64encode(GARBAGE).decode()}), 400, "bad_image"),
    "empty upload": (dict(files={"image": ("x.png", b"", "image/png")}), 400, "bad_image"),
    "truncated PNG": (
        dict(files={"image": ("x.png", LINE_SAMPLES[0].read_bytes()[:200], "image/png")}),
        400,
        "bad_image",
    ),
    "invalid base64": (dict(json={"image": "%%% not base64 %%%"}), 400, "bad_base64"),
    "malformed JSON": (dict(content=b'{"image": ', headers={"content-type": "application/json"}), 400, "bad_json"),
    "bomb header": (
        dict(files={"image": ("bomb.png", png_header(100_000, 100_000), "image/png")}),
        413,
        "image_too_large",
    ),
    "too many pixels": (dict(files={"image": ("big.png", big_png(), "image/png")}), 413, "image_too_large"),
    "body too large": (dict(files={"image": ("x.png", b"\0" * (MAX_BODY + 1), "image/png")}), 413, "payload_too_large"),
    "streamed body too large": (
        dict(content=chunks(MAX_BODY), headers={"content-type": "application/json"}),
        413,
        "payload_too_large",
    ),
    "wrong content type": (
        dict(content=LINE_SAMPLES[0].read_bytes(), headers={"content-type": "image/png"}),
        415,
        "unsupported_media_type",
    ),
    "no content type": (dict(content=b"abc"), 415, "unsupported_media_type"),
    "missing image field (multipart)": (
        dict(data={"options": "{}"}, files={"other": ("x", b"x")}),
        422,
        "invalid_request",
    ),
    "only options (multipart)": (dict(files={"options": (None, "{}")}), 422, "missing_field"),
    "missing image field (JSON)": (dict(json={"options": {}}), 422, "missing_field"),
    "image as text field": (dict(files={"image": (None, "abc")}), 422, "invalid_request"),
    "JSON not an object": (dict(json=["abc"]), 422, "invalid_request"),
    "options not JSON": (dict(files={"image": ("x.png", b"x")}, data={"options": "{detector"}), 422, "invalid_options"),
    "unknown option": (dict(json={"image": LOT_B64, "options": {"colour": "red"}}), 422, "invalid_options"),
    "unknown option (multipart)": (
        dict(files={"image": ("x.png", b"x")}, data={"options": '{"colour": 1}'}),
        422,
        "invalid_options",
    ),
    "unknown top-level field": (dict(json={"image": LOT_B64, "colour": "red"}), 422, "invalid_request"),
    "confidence out of range": (
        dict(json={"image": LOT_B64, "options": {"min_confidence": 2}}),
        422,
        "invalid_options",
    ),
    "bad format spec": (dict(json={"image": LOT_B64, "options": {"formats": ["LOT [A-Z"]}}), 422, "invalid_options"),
    "detector with regions": (
        dict(json={"image": LOT_B64, "options": {"detector": True, "regions": [{"rect": [0, 0, 10, 10]}]}}),
        422,
        "invalid_options",
    ),
    "region outside the image": (
        dict(json={"image": LOT_B64, "options": {"regions": [{"rect": [150, 0, 100, 30]}]}}),
        422,
        "invalid_options",
    ),
    "region with a format not in play": (
        dict(json={"image": LOT_B64, "options": {"regions": [{"rect": [0, 0, 10, 10], "format": "gtin13"}]}}),
        422,
        "invalid_options",
    ),
    "region without geometry": (
        dict(json={"image": LOT_B64, "options": {"regions": [{"name": "a"}]}}),
        422,
        "invalid_options",
    ),
    "region with a missing corner": (
        dict(json={"image": LOT_B64, "options": {"regions": [{"quad": [[0, 0], [5, 0], [5, 5]]}]}}),
        422,
        "invalid_options",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_requests_get_a_json_4xx_and_the_service_keeps_serving(client, case) -> None:
    kwargs, status, code = BAD_REQUESTS[case]
    response = client.post("/v1/read", **kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    good_read_works(client)


def test_bad_batches_and_routes(client) -> None:
    too_many = [("images", ("x.png", LINE_SAMPLES[0].read_bytes(), "image/png"))] * (BATCH_MAX + 1)
    cases = [
        (client.post("/v1/read/batch", files=too_many), 413, "too_many_images"),
        (client.post("/v1/read/batch", json={"images": [LOT_B64] * (BATCH_MAX + 1)}), 413, "too_many_images"),
        (client.post("/v1/read/batch", json={"images": []}), 422, "invalid_request"),
        (
            client.post("/v1/read/batch", json={"images": [LOT_B64, base64.b64encode(GARBAGE).decode()]}),
            400,
            "bad_image",
        ),
        (client.post("/v1/read/batch", files=[upload(LINE_SAMPLES[0])]), 422, "invalid_request"),  # field 'image'
        (client.get("/v1/read"), 405, "method_not_allowed"),
        (client.get("/nowhere"), 404, "not_found"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code
    good_read_works(client)
    assert "images[1]" in cases[3][0].json()["error"]["message"]  # the bad image is named


def test_detector_request_without_a_detector_is_refused() -> None:
    with TestClient(create_app(ServeSettings(mode="whole", engine_threads=1))) as plain:  # auto has a detector
        response = plain.post("/v1/read", json={"image": LOT_B64, "options": {"detector": True}})
        assert response.status_code == 422 and "no detector" in response.json()["error"]["message"]
        assert plain.get("/health").json()["detector"] is None
        good_read_works(plain)


# --- time limit and faults ----------------------------------------------------------------------


class SlowDetector:
    """Finds one line, slowly, and can be told to fail."""

    def __init__(self, seconds: float, fail: bool = False) -> None:
        self.seconds, self.fail = seconds, fail
        self.calls = 0
        self.lock = threading.Lock()

    def detect(self, image: np.ndarray) -> list[DetectedLine]:
        with self.lock:
            self.calls += 1
        if self.fail:
            raise RuntimeError("detector crashed")
        time.sleep(self.seconds)
        height, width = image.shape[:2]
        return [DetectedLine(np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32), 0.9)]


def test_slow_requests_get_504_and_the_service_keeps_serving() -> None:
    settings = ServeSettings(mode="detector", engine_threads=1, request_timeout_s=0.4, max_concurrent_inferences=2)
    slow = SlowDetector(1.2)
    with TestClient(create_app(settings, detector=slow)) as service:
        started = time.perf_counter()
        response = service.post("/v1/read", json={"image": SCENE_B64})
        assert response.status_code == 504 and response.json()["error"]["code"] == "timeout"
        assert time.perf_counter() - started < 1.0  # answered at the limit, not when the work ended
        fast = service.post("/v1/read", json={"image": LOT_B64, "options": {"detector": False}})
        assert fast.status_code == 200 and fast.json()["lines"][0]["text"] == "P502781 05/28"
        assert metric(service, "edgeocr_http_requests_total", endpoint="/v1/read", status="504") == 1


def test_a_server_fault_is_a_500_json_and_the_service_keeps_serving() -> None:
    settings = ServeSettings(mode="detector", engine_threads=1)
    with TestClient(create_app(settings, detector=SlowDetector(0, fail=True))) as service:
        response = service.post("/v1/read", json={"image": LOT_B64})
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "internal_error"
        assert "detector crashed" in response.json()["error"]["message"]
        good = service.post("/v1/read", json={"image": LOT_B64, "options": {"detector": False}})
        assert good.status_code == 200


# --- settings, workers, CLI, no torch -----------------------------------------------------------


def test_settings_validation_and_worker_factory(monkeypatch) -> None:
    with pytest.raises(ValueError):
        ServeSettings(engine_threads=-1)
    with pytest.raises(ValueError):
        ServeSettings(mode="roi")
    with pytest.raises(ValueError):
        ServeSettings(formats=("iso6346", "iso6346"))
    settings = ServeSettings(engine_threads=1, batch_max_images=3, formats=("iso6346",))
    monkeypatch.setenv(SETTINGS_ENV, settings.model_dump_json())
    worker_app = create_app_from_env()
    assert worker_app.state.settings == settings
    health = TestClient(worker_app).get("/health").json()
    assert health["limits"]["batch_max_images"] == 3 and health["formats"] == ["iso6346"]


def test_cli_serve_refuses_bad_settings(cli) -> None:
    result = cli("serve", "--threads", "-1")
    assert result.returncode == 2 and "invalid serve settings" in result.stderr and "Traceback" not in result.stderr
    result = cli("serve", "--model", "no-such-model")
    assert result.returncode == 2 and "no model named" in result.stderr


_NO_TORCH = """
import sys
sys.modules["torch"] = None
from fastapi.testclient import TestClient
from edgeocr.serve import ServeSettings, create_app
client = TestClient(create_app(ServeSettings(engine_threads=1)))
with open(sys.argv[1], "rb") as f:
    response = client.post("/v1/read", files={"image": ("x.png", f.read())})
assert response.status_code == 200, response.text
assert not any(name.startswith(("edgeocr.models", "edgeocr.train")) for name in sys.modules)
print(response.json()["lines"][0]["text"])
"""


def test_the_service_runs_without_torch() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", _NO_TORCH, str(LINE_SAMPLES[0])], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "P502781 05/28"


def test_the_load_benchmark_runs_end_to_end(tmp_path) -> None:
    """A seconds-long run of the load script (the figures themselves come from the real 60 s / 10 min runs)."""
    from edgeocr.bench.load import main

    out = tmp_path / "load.json"
    code = main(
        [
            "--clients",
            "3",
            "--duration",
            "1.5",
            "--warmup",
            "0.2",
            "--threads",
            "1",
            "--rss-every",
            "0.3",
            "--baseline-s",
            "0.5",
            "--out",
            str(out),
        ]
    )
    result = json.loads(out.read_text())
    assert code == 0 and result["errors"] == 0 and result["ok"] == result["requests"] > 0
    assert result["expected_text"] == "P502781 05/28"
    assert result["server_metrics_ok_requests"] >= result["ok"]  # the server counted at least what we did
    assert result["latency_ms"]["p50"] <= result["latency_ms"]["p99"] <= result["latency_ms"]["max"]
    assert len(result["rss"]["samples"]) >= 3 and result["rss"]["baseline_at_s"] >= 0.5
