"""The default 'auto' mode: a crop-shaped image is read whole, any other goes through the detector; the rule on
its boundaries and on the samples, the Reader (single, batch, defaults), ``edgeocr read`` and the service."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeocr.cli import main
from edgeocr.core.errors import EdgeOCRError
from edgeocr.core.layout import (
    MAX_CROP_SHORT_SIDE,
    MAX_ELONGATED_CROP_SHORT_SIDE,
    MIN_CROP_ASPECT,
    looks_like_line_crop,
)
from edgeocr.runtime.reader import DetectedLine, Reader, ReaderConfig

ROOT = Path(__file__).resolve().parents[1]
LINES = sorted(p for p in (ROOT / "samples" / "lines").rglob("*") if p.suffix in {".png", ".jpg"})
SCENES = sorted((ROOT / "samples" / "scenes" / "images").glob("*.jpg"))
LINE = ROOT / "samples" / "lines" / "container" / "00000001.png"
SCENE = ROOT / "samples" / "scenes" / "images" / "00000001.jpg"


class StubDetector:
    """Two fixed boxes in the upper left of any image; counts its calls and the image sizes it saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []
        self._lock = threading.Lock()

    def detect(self, image: np.ndarray) -> list[DetectedLine]:
        with self._lock:
            self.seen.append(image.shape[:2])
        boxes = ([[20, 20], [300, 20], [300, 70], [20, 70]], [[20, 100], [260, 100], [260, 140], [20, 140]])
        return [DetectedLine(poly=np.array(box, np.float32), score=0.9 - 0.1 * i) for i, box in enumerate(boxes)]


@pytest.fixture(scope="module")
def whole() -> Reader:
    return Reader(model="default", mode="whole", threads=1)


# --- the rule ---------------------------------------------------------------------------------------


def test_the_rule_on_its_boundaries() -> None:
    assert (MAX_CROP_SHORT_SIDE, MIN_CROP_ASPECT, MAX_ELONGATED_CROP_SHORT_SIDE) == (128, 2.5, 480)
    # Small: a crop at any aspect, square included; one pixel more and a square is a photo.
    assert looks_like_line_crop(128, 128) and looks_like_line_crop(12, 15)
    assert not looks_like_line_crop(129, 129)
    # Elongated: from aspect 2.5 exactly, up to a short side of 480 exactly.
    assert looks_like_line_crop(200, 500) and not looks_like_line_crop(200, 499)
    assert looks_like_line_crop(480, 1200) and not looks_like_line_crop(481, 1203)
    assert not looks_like_line_crop(481, 5000)  # a banner-shaped photo
    # Vertical crops count like horizontal ones: short and long side, not height and width.
    for height, width in ((128, 128), (200, 500), (480, 1200), (481, 1203), (200, 499), (40, 2000)):
        assert looks_like_line_crop(width, height) == looks_like_line_crop(height, width)
    # Photos.
    assert not looks_like_line_crop(600, 800) and not looks_like_line_crop(3000, 4000)
    with pytest.raises(ValueError, match="positive"):
        looks_like_line_crop(0, 10)


def test_every_sample_crop_is_crop_shaped_and_every_sample_scene_is_not() -> None:
    assert len(LINES) >= 10 and len(SCENES) >= 3
    for path in LINES:
        height, width = cv2.imread(str(path)).shape[:2]
        assert looks_like_line_crop(height, width), path
    for path in SCENES:
        height, width = cv2.imread(str(path)).shape[:2]
        assert not looks_like_line_crop(height, width), path


# --- the Reader ---------------------------------------------------------------------------------------


def test_auto_reads_a_crop_whole_and_sends_a_photo_to_the_detector(whole) -> None:
    stub = StubDetector()
    auto = Reader(model="default", mode="auto", detector=stub, threads=1)
    assert auto.config.mode == "auto" and auto.detector is stub

    crop = auto.read(LINE)
    assert stub.seen == []  # a crop never reaches the detector
    assert crop.mode == "whole" and crop == whole.read(LINE) and crop[0].detection_score is None
    assert crop.to_dict()["mode"] == "whole"

    photo = auto.read(SCENE)
    assert stub.seen == [(600, 800)]
    assert photo.mode == "detector" and photo.to_dict()["mode"] == "detector"
    assert [line.detection_score for line in photo] == pytest.approx([0.9, 0.8])
    assert photo == Reader(model="default", mode="detector", detector=StubDetector(), threads=1).read(SCENE)

    # A vertical crop (the container line turned upright) is a crop too.
    upright = np.ascontiguousarray(np.rot90(cv2.imread(str(LINE))))
    assert upright.shape[0] > upright.shape[1]
    assert auto.read(upright).mode == "whole" and len(stub.seen) == 1


def test_a_mixed_batch_reads_as_each_image_alone() -> None:
    stub = StubDetector()
    auto = Reader(model="default", mode="auto", detector=stub, threads=1)
    images = [LINES[0], SCENES[0], LINES[3], SCENES[1], cv2.imread(str(LINES[5]))]
    batch = auto.read_batch(images)
    assert [r.mode for r in batch] == ["whole", "detector", "whole", "detector", "whole"]
    assert len(stub.seen) == 2  # the two scenes only
    alone = [auto.read(image) for image in images]
    assert batch == alone and [r.mode for r in alone] == [r.mode for r in batch]
    assert [r.texts for r in batch] == [r.texts for r in alone]


def test_defaults_and_the_explicit_modes() -> None:
    assert ReaderConfig().mode == "auto"
    stub = StubDetector()
    assert Reader(model="default", detector=None).config.mode == "whole"  # as before 'auto' existed
    assert Reader(model="default", detector=stub).config.mode == "detector"
    assert Reader(ReaderConfig(mode="whole")).detector is None
    assert Reader(ReaderConfig(), detector=stub).detector is stub
    with pytest.raises(EdgeOCRError, match="mode 'auto' needs a detector"):
        Reader(ReaderConfig(), detector=None)
    with pytest.raises(ValueError, match="ignore"):
        Reader(mode="whole", detector=stub)
    with pytest.raises(TypeError, match="not both"):
        Reader(ReaderConfig(), mode="whole")
    # Every mode records itself; roi as 'roi'.
    assert Reader(model="default", mode="whole", threads=1).read(SCENE).mode == "whole"
    assert Reader(model="default", mode="detector", detector=stub, threads=1).read(LINE).mode == "detector"
    roi = ReaderConfig(mode="roi", regions=({"rect": (0, 0, 100, 40)},))
    assert Reader(roi).read(SCENE).mode == "roi"


def test_the_front_door_default_is_auto_with_the_shipped_detector() -> None:
    reader = Reader(threads=1)
    assert reader.config.mode == "auto" and type(reader.detector).__name__ == "OnnxDetector"
    assert reader.read(LINE).mode == "whole"
    photo = reader.read(SCENE)
    assert photo.mode == "detector" and all(line.detection_score is not None for line in photo)


# --- edgeocr read ---------------------------------------------------------------------------------------


def test_cli_read_detects_a_scene_and_reads_a_crop_whole_by_default(capsys) -> None:
    assert main(["read", str(LINE), str(SCENE), "--threads", "1", "--json", "-", "-q"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["mode"] == "auto"
    crop, photo = document["results"]
    assert (crop["source"], crop["mode"]) == (str(LINE), "whole") and crop["lines"][0]["detection_score"] is None
    assert (photo["source"], photo["mode"]) == (str(SCENE), "detector") and photo["lines"]
    assert all(line["detection_score"] is not None for line in photo["lines"])


def test_cli_read_mode_whole_still_reads_the_scene_as_one_line(capsys) -> None:
    assert main(["read", str(SCENE), "--mode", "whole", "--threads", "1", "--json", "-", "-q"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["mode"] == "whole" and document["results"][0]["mode"] == "whole"
    assert len(document["results"][0]["lines"]) == 1


def test_cli_uses_the_named_detector_else_the_shipped_default(monkeypatch, capsys) -> None:
    import edgeocr.runtime.build as build

    asked: list[str | None] = []

    def fake_build(spec, engine):
        asked.append(spec)
        return StubDetector()

    monkeypatch.setattr(build, "build_line_detector", fake_build)
    for extra, spec in (([], "default"), (["--detector", "rapidocr"], "rapidocr"), (["--mode", "detector"], "default")):
        assert main(["read", str(SCENE), "--threads", "1", "--json", "-", "-q", *extra]) == 0
        result = json.loads(capsys.readouterr().out)["results"][0]
        assert asked[-1] == spec and result["mode"] == "detector"
        assert [line["detection_score"] for line in result["lines"]] == pytest.approx([0.9, 0.8])
    assert len(asked) == 3


# --- edgeocr serve ---------------------------------------------------------------------------------------


def test_the_service_reads_in_auto_mode_by_default() -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from edgeocr.serve.app import create_app
    from edgeocr.serve.settings import ServeSettings

    settings = ServeSettings(engine_threads=1)
    assert settings.mode == "auto" and settings.has_detector and settings.detector_spec == "default"
    assert ServeSettings(mode="detector").detector_spec == "default"  # no PP-OCR package needed to read
    stub = StubDetector()
    whole = Reader(model="default", mode="whole", threads=1)
    files = {name: (path.name, path.read_bytes(), "image/png") for name, path in (("line", LINE), ("scene", SCENE))}
    with TestClient(create_app(settings, detector=stub)) as client:
        health = client.get("/health").json()
        assert health["mode"] == "auto" and health["detector"] == "StubDetector"  # the object passed in
        crop = client.post("/v1/read", files={"image": files["line"]}).json()
        assert crop["mode"] == "whole" and stub.seen == []
        assert [line["text"] for line in crop["lines"]] == whole.read(LINE).texts
        photo = client.post("/v1/read", files={"image": files["scene"]}).json()
        assert photo["mode"] == "detector" and stub.seen == [(600, 800)]
        assert [line["detection_score"] for line in photo["lines"]] == pytest.approx([0.9, 0.8])
        batch = client.post("/v1/read/batch", files=[("images", files["line"]), ("images", files["scene"])]).json()
        assert batch["mode"] == "auto" and [r["mode"] for r in batch["results"]] == ["whole", "detector"]
        assert batch["results"] == [
            {k: v for k, v in r.items() if k not in ("model", "timing_ms")} for r in (crop, photo)
        ]
        off = client.post("/v1/read", files={"image": files["scene"]}, data={"options": '{"detector": false}'})
        assert off.json()["mode"] == "whole" and len(off.json()["lines"]) == 1
        regions = '{"regions": [{"rect": [0, 0, 100, 40]}]}'
        assert client.post("/v1/read", files={"image": files["scene"]}, data={"options": regions}).json()["mode"] == (
            "regions"
        )


def test_health_names_the_shipped_detector_the_service_reads_with() -> None:
    from fastapi.testclient import TestClient

    from edgeocr.serve.app import create_app
    from edgeocr.serve.settings import ServeSettings

    with TestClient(create_app(ServeSettings(engine_threads=1))) as client:
        assert client.get("/health").json()["detector"] == "default"
