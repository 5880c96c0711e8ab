"""The Reader: input kinds, ROI/whole/detector modes, real batching, thread safety, per-call options."""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from edgeocr.core.charset import Charset
from edgeocr.core.crops import crop_line
from edgeocr.core.errors import EdgeOCRError, ImageError
from edgeocr.core.recognizer_config import RecognizerConfig
from edgeocr.runtime.reader import (
    DetectedLine,
    FormatMatch,
    LineDetector,
    Reader,
    ReaderConfig,
    ReadOptions,
    Region,
)
from edgeocr.runtime.recognizer import EngineConfig, OnnxRecognizer

SRC = Path(__file__).resolve().parents[1] / "src"
CFG = RecognizerConfig(arch="crnn_tiny", max_width=256)
ENGINE = EngineConfig(intra_op_threads=1, inter_op_threads=1)
WIDTH, HEIGHT = 320, 120


@pytest.fixture(scope="module")
def model_path(sharpened_tiny_model) -> str:
    return sharpened_tiny_model


def scene(seed: int = 0) -> np.ndarray:
    """A BGR image (equal channels) with two rows of dark blobs, values spanning 0..255."""
    rng = np.random.default_rng(seed)
    img = np.full((HEIGHT, WIDTH), 225, np.uint8)
    for top in (20, 70):
        for x in range(16, WIDTH - 24, 11):
            img[top : top + 24, x : x + 6 + int(rng.integers(0, 3))] = rng.integers(0, 90)
    img[0, 0], img[-1, -1] = 0, 255
    img = cv2.GaussianBlur(img, (3, 3), 0)
    img[0, 0], img[-1, -1] = 0, 255
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)


def roi_config(model: str, **kwargs) -> ReaderConfig:
    regions = (
        Region(name="top", rect=(10, 16, 300, 32)),
        Region(name="bottom", rect=(10, 66, 300, 32)),
    )
    return ReaderConfig(model=model, engine=kwargs.pop("engine", ENGINE), mode="roi", regions=regions, **kwargs)


class FakeDetector:
    """Fixed boxes of different widths (one tilted, one poking out of the image)."""

    def __init__(self, polys: list[list[list[float]]] | None = None) -> None:
        default = [
            [[10, 16], [300, 16], [300, 48], [10, 48]],
            [[12, 70], [150, 64], [152, 94], [14, 100]],
            [[200, 60], [340, 60], [340, 100], [200, 100]],
        ]
        self.polys = default if polys is None else polys

    def detect(self, image: np.ndarray) -> list[DetectedLine]:
        return [DetectedLine(poly=np.array(p, np.float32), score=0.5 + 0.1 * i) for i, p in enumerate(self.polys)]


# --- inputs --------------------------------------------------------------------------------------


def test_every_input_kind_reads_like_the_bgr_array(model_path, tmp_path) -> None:
    reader = Reader(roi_config(model_path, min_confidence=0.0))
    colour = scene()
    gray = colour[:, :, 0]
    expected = reader.read(colour)
    assert [line.region for line in expected] == ["top", "bottom"]
    ok, png = cv2.imencode(".png", colour)
    path = tmp_path / "scene.png"
    path.write_bytes(png.tobytes())
    sources = {
        "path": path,
        "str": str(path),
        "bytes": png.tobytes(),
        "bytearray": bytearray(png.tobytes()),
        "memoryview": memoryview(png.tobytes()),
        "gray": gray,
        "gray1": gray[:, :, None],
        "bgra": np.dstack([colour, np.full(gray.shape, 255, np.uint8)]),
        "uint16": colour.astype(np.uint16) * 257,
        "float": colour / 255.0,
    }
    try:
        from PIL import Image
    except ImportError:
        pass
    else:
        rgb = Image.fromarray(colour[:, :, ::-1].copy())
        sources.update(
            pil_rgb=rgb,
            pil_l=Image.fromarray(gray),
            pil_rgba=rgb.convert("RGBA"),
            pil_cmyk=rgb.convert("CMYK"),
            pil_i16=Image.fromarray(gray.astype(np.uint16) * 257),
        )
    for kind, source in sources.items():
        assert reader.read(source) == expected, kind


def test_bool_images_read_like_their_0_255_array(model_path) -> None:
    reader = Reader(ReaderConfig(model=model_path, engine=ENGINE))
    mask = scene()[:, :, 0] < 128
    assert reader.read(mask) == reader.read(np.where(mask, 255, 0).astype(np.uint8))


def test_bad_inputs_raise_image_error_naming_the_source(model_path, tmp_path) -> None:
    reader = Reader(ReaderConfig(model=model_path, engine=ENGINE))
    missing = tmp_path / "nope.png"
    for source, name in (
        (missing, str(missing)),
        (b"not an image", "<bytes: 12 bytes>"),
        (np.zeros((4, 4, 2), np.uint8), "<array uint8 [4, 4, 2]>"),
        (np.zeros((0, 4), np.uint8), "<array uint8 [0, 4]>"),
    ):
        with pytest.raises(ImageError, match=name.replace("[", r"\[")):
            reader.read(source)
    with pytest.raises(ImageError, match="megapixels"):
        Reader(ReaderConfig(model=model_path, engine=ENGINE, max_pixels=1000)).read(scene())


def test_exif_orientation_is_applied_before_regions(model_path) -> None:
    image_module = pytest.importorskip("PIL.Image", reason="PIL writes the EXIF tag of the test image")
    reader = Reader(roi_config(model_path))
    upright = scene()
    stored = np.rot90(upright)  # what a camera turned on its side would store
    pil = image_module.fromarray(stored[:, :, ::-1].copy())
    exif = pil.getexif()
    exif[0x0112] = 6  # "turn 90 degrees clockwise to display"
    buffer = io.BytesIO()
    pil.save(buffer, "PNG", exif=exif)
    assert reader.read(buffer.getvalue()) == reader.read(upright)


# --- modes ---------------------------------------------------------------------------------------


def test_roi_in_pixels_and_relative_coordinates_agree(model_path) -> None:
    img = scene(3)
    pixels = Reader(roi_config(model_path))
    relative = Reader(
        ReaderConfig(
            model=model_path,
            engine=ENGINE,
            mode="roi",
            regions=(
                Region(name="top", rect=(10 / WIDTH, 16 / HEIGHT, 300 / WIDTH, 32 / HEIGHT), units="relative"),
                Region(name="bottom", rect=(10 / WIDTH, 66 / HEIGHT, 300 / WIDTH, 32 / HEIGHT), units="relative"),
            ),
        )
    )
    by_pixels = pixels.read(img, options=ReadOptions(return_crops=True))
    by_fraction = relative.read(img, options=ReadOptions(return_crops=True))
    assert [r.text for r in by_pixels] == [r.text for r in by_fraction]
    for a, b in zip(by_pixels, by_fraction, strict=True):
        np.testing.assert_allclose(a.poly, b.poly, atol=1e-9)
        np.testing.assert_array_equal(a.crop, b.crop)
    assert by_pixels[0].poly == ((10.0, 16.0), (310.0, 16.0), (310.0, 48.0), (10.0, 48.0))
    np.testing.assert_array_equal(by_pixels[0].crop, img[16:48, 10:310])
    assert by_pixels[0].detection_score is None and by_pixels[0].format is None
    # The same relative regions follow an image of another size.
    small = cv2.resize(img, (WIDTH // 2, HEIGHT // 2), interpolation=cv2.INTER_AREA)
    lines = relative.read(small)
    assert lines[1].poly == ((5.0, 33.0), (155.0, 33.0), (155.0, 49.0), (5.0, 49.0))


def test_roi_quads_are_warped_upright(model_path) -> None:
    img = scene(4)
    turned = np.ascontiguousarray(np.rot90(img))  # text running bottom to top
    quad = ((16, 310), (16, 10), (48, 10), (48, 310))  # reading order of the turned top line
    reader = Reader(ReaderConfig(model=model_path, engine=ENGINE, mode="roi", regions=(Region(quad=quad),)))
    (line,) = reader.read(turned, options=ReadOptions(return_crops=True))
    np.testing.assert_array_equal(line.crop, img[16:48, 10:310])
    assert line.raw_text == Reader(roi_config(model_path)).read(img)[0].raw_text


def test_roi_outside_the_image_is_an_image_error(model_path) -> None:
    reader = Reader(
        ReaderConfig(
            model=model_path, engine=ENGINE, mode="roi", regions=(Region(name="far", rect=(300, 10, 100, 30)),)
        )
    )
    with pytest.raises(ImageError, match="far"):
        reader.read(scene())


def test_region_and_config_validation(model_path) -> None:
    for bad in (
        {},  # neither rect nor quad
        {"rect": (0, 0, 10, 10), "quad": ((0, 0), (1, 0), (1, 1), (0, 1))},
        {"rect": (0, 0, 0, 10)},
        {"rect": (-1, 0, 5, 10)},
        {"rect": (0.5, 0.5, 0.6, 0.2), "units": "relative"},
        {"quad": ((0, 0), (0, 10), (10, 10), (10, 0))},  # counter-clockwise: would mirror the text
        {"quad": ((0, 0), (5, 0), (10, 0), (3, 0))},  # no area
    ):
        with pytest.raises(ValidationError):
            Region(**bad)
    rect = Region(rect=(0, 0, 10, 10))
    for bad in (
        {"mode": "roi"},
        {"mode": "whole", "regions": (rect,)},
        {"mode": "roi", "regions": (rect.model_copy(update={"name": "a"}), rect.model_copy(update={"name": "a"}))},
        {"mode": "roi", "regions": (Region(rect=(0, 0, 5, 5), format="lot"),)},  # format not configured
        {"formats": ("lot", "lot")},
        {"min_confidence": 1.5},
        {"engine": {"max_batch_size": 0}},
    ):
        with pytest.raises(ValidationError):
            ReaderConfig(model=model_path, **bad)
    with pytest.raises(EdgeOCRError, match="needs a detector"):
        Reader(ReaderConfig(model=model_path, mode="detector"), detector=None)
    # without the keyword, a detecting mode gets the shipped detector
    assert Reader(ReaderConfig(model=model_path, mode="detector")).detector is not None
    with pytest.raises(ValueError, match="ignore"):
        Reader(ReaderConfig(model=model_path, mode="whole"), detector=FakeDetector())
    with pytest.raises(TypeError, match="detect"):
        Reader(ReaderConfig(model=model_path, mode="detector"), detector=object())  # type: ignore[arg-type]
    with pytest.raises(EdgeOCRError, match="position"):  # formats compile when the reader is built
        Reader(ReaderConfig(model=model_path, formats=("EXP {MM/{YYYY}",)))
    assert ReaderConfig(model=Path(model_path)).model == model_path  # paths are accepted


def test_whole_mode_reads_the_image_as_one_line(model_path) -> None:
    img = scene(5)[10:50]
    reader = Reader(ReaderConfig(model=model_path, engine=ENGINE, min_confidence=0.0))
    (line,) = reader.read(img, options=ReadOptions(return_crops=True))
    assert line.poly == ((0.0, 0.0), (320.0, 0.0), (320.0, 40.0), (0.0, 40.0))
    np.testing.assert_array_equal(line.crop, img)
    (direct,) = OnnxRecognizer(model_path, ENGINE).recognize([img])
    assert (line.text, line.confidence, line.char_confidences) == (
        direct.text,
        direct.confidence,
        direct.char_confidences,
    )
    assert line.raw_text == line.text and line.region is None
    assert line.valid == bool(line.text)


def test_sessions_that_take_turns_do_not_spin(model_path) -> None:
    # A reader with a detector runs two sessions in turn; idle spinning threads of one would take
    # the cores of the other (EngineConfig.spin_wait). A reader with one session keeps spinning.
    from edgeocr.runtime.build import build_line_detector
    from edgeocr.runtime.recognizer import session_options

    key = "session.intra_op.allow_spinning"
    assert session_options(EngineConfig(spin_wait=False)).get_session_config_entry(key) == "0"
    with pytest.raises(RuntimeError, match="does not have configuration"):  # unset: ONNX Runtime spins
        session_options(EngineConfig()).get_session_config_entry(key)
    with_detector = Reader(ReaderConfig(model=model_path, engine=ENGINE, mode="detector"), detector=FakeDetector())
    assert with_detector.recognizer.engine.spin_wait is False
    assert Reader(ReaderConfig(model=model_path, engine=ENGINE, mode="whole")).recognizer.engine.spin_wait is True
    assert build_line_detector("default", ENGINE).engine.spin_wait is False
    assert ENGINE.spin_wait is True  # the caller's engine is left as it was


def test_a_detector_through_the_protocol(model_path) -> None:
    detector = FakeDetector()
    assert isinstance(detector, LineDetector)
    reader = Reader(ReaderConfig(model=model_path, engine=ENGINE, mode="detector"), detector=detector)
    img = scene(6)
    lines = reader.read(img, options=ReadOptions(return_crops=True))
    assert [line.detection_score for line in lines] == pytest.approx([0.5, 0.6, 0.7])
    np.testing.assert_array_equal(lines[0].crop, img[16:48, 10:300])
    assert lines[1].crop.shape == (30, 138, 3)  # tilted quad: its longest edges
    assert lines[2].poly[1] == (320.0, 60.0)  # clipped to the image
    assert reader.detector is detector
    assert Reader(ReaderConfig(model=model_path, mode="detector"), detector=FakeDetector([])).read(img) == []


def test_detected_line_validates_its_polygon() -> None:
    line = DetectedLine(poly=[[0, 0], [4, 0], [4, 2], [0, 2]], score=np.float32(0.25))
    assert line.poly.dtype == np.float32 and isinstance(line.score, float)
    with pytest.raises(ValueError):
        DetectedLine(poly=np.zeros((3, 2)), score=1.0)
    with pytest.raises(ValueError):
        DetectedLine(poly=np.full((4, 2), np.nan), score=1.0)


def test_crop_quad_turns_rotated_lines_exactly() -> None:
    rng = np.random.default_rng(0)
    line = rng.integers(0, 256, (20, 60), dtype=np.uint8)
    np.testing.assert_array_equal(crop_line(np.rot90(line), np.array([[0, 60], [0, 0], [20, 0], [20, 60]])), line)
    np.testing.assert_array_equal(crop_line(np.rot90(line, 2), np.array([[60, 20], [0, 20], [0, 0], [60, 0]])), line)
    assert crop_line(line, np.array([[5.5, 2], [30.5, 2], [30.5, 12], [5.5, 12]])).shape == (10, 25)


# --- batching, threads, options ------------------------------------------------------------------


def test_read_batch_equals_reading_one_by_one(model_path) -> None:
    images = [scene(seed) for seed in range(4)]
    # Equal-width ROIs: batching across images pads nothing, so readings are identical.
    reader = Reader(roi_config(model_path, engine=EngineConfig(intra_op_threads=1, max_batch_size=3)))
    assert reader.read_batch(images) == [reader.read(img) for img in images]
    # Lines of different widths, one per batch: the gathering and splitting are exact.
    detected = Reader(
        ReaderConfig(model=model_path, engine=EngineConfig(intra_op_threads=1, max_batch_size=1), mode="detector"),
        detector=FakeDetector(),
    )
    assert detected.read_batch(images) == [detected.read(img) for img in images]
    assert reader.read_batch([]) == []
    with pytest.raises(TypeError, match="sequence"):
        reader.read_batch(images[0])  # type: ignore[arg-type]


def test_read_batch_recognises_all_crops_of_all_images_together(model_path, monkeypatch) -> None:
    calls: list[int] = []
    original = OnnxRecognizer.recognize

    def spy(self, crops):
        calls.append(len(crops))
        return original(self, crops)

    monkeypatch.setattr(OnnxRecognizer, "recognize", spy)
    reader = Reader(ReaderConfig(model=model_path, engine=ENGINE, mode="detector"), detector=FakeDetector())
    results = reader.read_batch([scene(seed) for seed in range(5)])
    assert calls == [15]  # 5 images x 3 lines in one call (batched inside by width)
    assert [len(lines) for lines in results] == [3] * 5


def test_concurrent_reads_match_sequential_reads(model_path) -> None:
    reader = Reader(ReaderConfig(model=model_path, engine=ENGINE, mode="detector"), detector=FakeDetector())
    images = [scene(seed) for seed in range(16)]
    sequential = [reader.read(img) for img in images]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(reader.read, images))
        batched = list(pool.map(lambda pair: reader.read_batch(pair), [images[i : i + 2] for i in range(0, 16, 2)]))
    assert concurrent == sequential
    assert [line for pair in batched for line in pair] == sequential


def test_per_call_options_never_change_the_reader(model_path) -> None:
    config = roi_config(model_path, min_confidence=0.0)
    snapshot = config.model_dump()
    reader = Reader(config)
    img = scene(7)
    before = reader.read(img)
    assert all(line.crop is None for line in before)
    options = ReadOptions(min_confidence=1.0, regions=("bottom",), return_crops=True)
    only_bottom = reader.read(img, options=options)
    assert [line.region for line in only_bottom] == ["bottom"]
    assert only_bottom[0].crop is not None and not only_bottom[0].valid
    assert reader.read(img) == before
    assert reader.config is config and config.model_dump() == snapshot
    with pytest.raises(AttributeError, match="immutable"):
        reader._config = roi_config(model_path)  # type: ignore[misc]
    with pytest.raises(ValidationError):
        options.min_confidence = 0.5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        before[0].text = "X"  # type: ignore[misc]
    with pytest.raises(ValueError, match="nowhere"):
        reader.read(img, options=ReadOptions(regions=("nowhere",)))
    with pytest.raises(ValueError, match="formats"):
        reader.read(img, options=ReadOptions(formats=("lot",)))


def test_min_confidence_decides_validity(model_path) -> None:
    img = scene(8)
    lenient = Reader(roi_config(model_path, min_confidence=0.0)).read(img)
    strict = Reader(roi_config(model_path, min_confidence=1.0)).read(img)
    assert [line.text for line in lenient] == [line.text for line in strict]
    assert [line.valid for line in lenient] == [bool(line.text) for line in lenient]
    assert not any(line.valid for line in strict if line.confidence < 1.0)
    assert all(0.0 <= line.confidence <= 1.0 for line in lenient)
    assert lenient[0].to_dict()["poly"] == [[10.0, 16.0], [310.0, 16.0], [310.0, 48.0], [10.0, 48.0]]


# --- formats through the protocol ----------------------------------------------------------------


class UpperMatcher:
    """A stand-in for edgeocr.core.formats: reports the first allowed format, text upper-cased."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[int, int], tuple[str, ...]]] = []

    def match(self, probs: np.ndarray, charset: Charset, allowed) -> FormatMatch:
        from edgeocr.core.ctc import greedy_decode

        self.calls.append((probs.shape, tuple(allowed)))
        line = greedy_decode(probs, charset)
        return FormatMatch(line.text.upper() + "!", 0.99, (0.99,) * (len(line.text) + 1), allowed[0], valid=True)


def test_a_format_matcher_gets_probabilities_and_the_formats_in_play(model_path) -> None:
    regions = (
        Region(name="top", rect=(10, 16, 300, 32), format="date"),
        Region(name="bottom", rect=(10, 66, 140, 32)),
    )
    config = ReaderConfig(model=model_path, engine=ENGINE, mode="roi", regions=regions, formats=("lot", "date"))
    matcher = UpperMatcher()
    reader = Reader(config, format_matcher=matcher)
    free = Reader(
        config.model_copy(
            update={"formats": (), "regions": (regions[0].model_copy(update={"format": None}), regions[1])}
        )
    )
    img = scene(9)
    expected_free = free.read(img)
    lines = reader.read(img)
    assert [line.raw_text for line in lines] == [line.text for line in expected_free]
    assert [line.text for line in lines] == [line.raw_text.upper() + "!" for line in lines]
    assert [line.format for line in lines] == ["date", "lot"]
    assert all(line.valid for line in lines)
    assert [allowed for _, allowed in matcher.calls] == [("date",), ("lot", "date")]
    assert matcher.calls[0][0][1] == CFG.num_classes
    # A call restricted to 'lot' reads the 'date' region freely; () turns formats off.
    matcher.calls.clear()
    restricted = reader.read(img, options=ReadOptions(formats=("lot",)))
    assert restricted[0].format is None and restricted[0].text == restricted[0].raw_text
    assert restricted[1].format == "lot" and matcher.calls[0][1] == ("lot",)
    assert reader.read(img, options=ReadOptions(formats=())) == expected_free
    with pytest.raises(ValueError, match="formats"):
        Reader(config.model_copy(update={"formats": (), "regions": regions[1:]}), format_matcher=matcher)


def test_declared_formats_constrain_the_read(model_path) -> None:
    """With core.formats compiled by the reader, every valid read fits its format, and the free
    read is still reported as raw_text."""
    import re

    regions = (Region(name="top", rect=(10, 16, 300, 32)), Region(name="bottom", rect=(10, 66, 140, 32)))
    config = ReaderConfig(
        model=model_path,
        engine=ENGINE,
        mode="roi",
        regions=regions,
        formats=("[A-Z0-9]{2,6}", "iso6346"),
        min_confidence=0.0,
    )
    reader = Reader(config)
    free = Reader(config.model_copy(update={"formats": ()}))
    for seed in (9, 10, 11):
        img = scene(seed)
        for line, raw in zip(reader.read(img), free.read(img), strict=True):
            assert line.raw_text == raw.text
            if line.format == "[A-Z0-9]{2,6}":
                assert re.fullmatch(r"[A-Z0-9]{2,6}", line.text)
            elif line.format == "iso6346":
                from edgeocr.core.checkdigits import iso6346_check_digit

                assert line.text[-1] == str(iso6346_check_digit(line.text.replace(" ", "")[:10]))
            else:
                assert not line.valid and line.text == ""
    with pytest.raises(EdgeOCRError, match="position"):
        Reader(config.model_copy(update={"formats": ("LOT [A-Z",)}))


# --- the RapidOCR detector adapter ---------------------------------------------------------------


def printed_scene() -> np.ndarray:
    img = np.full((240, 480, 3), 235, np.uint8)
    cv2.putText(img, "LOT 2024-07A", (30, 80), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (20, 20, 20), 3, cv2.LINE_AA)
    cv2.putText(img, "EXP 12/2026", (30, 170), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (20, 20, 20), 3, cv2.LINE_AA)
    return img


@pytest.fixture(scope="module")
def rapidocr_detector():
    import rapidocr_onnxruntime  # noqa: F401 -- make test installs it; its absence must fail, not skip

    from edgeocr.runtime.rapidocr_detector import RapidOCRDetector, RapidOCRDetectorConfig

    return RapidOCRDetector(RapidOCRDetectorConfig(intra_op_threads=1, inter_op_threads=1))


def test_rapidocr_detector_finds_printed_lines(rapidocr_detector) -> None:
    img = printed_scene()
    lines = rapidocr_detector.detect(img)
    assert len(lines) >= 1
    assert isinstance(rapidocr_detector, LineDetector)
    for line in lines:
        assert line.poly.shape == (4, 2) and line.poly.dtype == np.float32
        assert 0.0 <= line.score <= 1.0
        assert (line.poly >= 0).all() and (line.poly[:, 0] <= 480).all() and (line.poly[:, 1] <= 240).all()
    tops = [float(line.poly[:, 1].min()) for line in lines]
    assert tops == sorted(tops)  # reading order
    first = lines[0].poly
    assert 40 <= first[:, 1].min() and first[:, 1].max() <= 95 and first[:, 0].min() <= 40  # "LOT ..." line
    assert rapidocr_detector.detect(np.full((60, 60), 200, np.uint8)) == []


def test_rapidocr_detector_finds_what_rapidocr_itself_finds_without_spinning(rapidocr_detector) -> None:
    # The adapter runs PP-OCR's model in a session of its own (threads from its config, idle threads
    # asleep): the same boxes as RapidOCR's own pipeline, whose session would spin-wait.
    from rapidocr_onnxruntime import RapidOCR

    img = printed_scene()
    theirs, _ = RapidOCR().text_det(img)
    ours = rapidocr_detector.detect(img)
    assert len(theirs) >= 2 and len(ours) == len(theirs)

    def corners(box):  # corner order differs on purpose (see the tilted-box test): compare as sets
        return sorted(map(tuple, np.round(np.asarray(box, np.float64), 2)))

    assert sorted(corners(line.poly) for line in ours) == sorted(corners(box) for box in theirs)
    options = rapidocr_detector._session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.intra_op_num_threads == 1


def test_rapidocr_detector_downscales_large_gray_images_and_maps_boxes_back(rapidocr_detector) -> None:
    from edgeocr.runtime.rapidocr_detector import RapidOCRDetector, RapidOCRDetectorConfig

    small = RapidOCRDetector(
        RapidOCRDetectorConfig(max_side_len=400, limit_type="max", limit_side_len=416, intra_op_threads=1)
    )
    big = cv2.resize(printed_scene()[:, :, 0], (960, 480), interpolation=cv2.INTER_CUBIC)  # gray, 2x
    lines = small.detect(big)  # detected at 400 x 200
    assert len(lines) >= 1
    first = lines[0].poly
    assert first[:, 0].max() > 400 and 80 <= first[:, 1].min() and first[:, 1].max() <= 190  # big image's pixels


def test_rapidocr_detector_keeps_a_tilted_vertical_box_tall(rapidocr_detector, monkeypatch) -> None:
    # A stacked (vertical) code tilted 4 degrees, as PP-OCR's post-processing returns it. PP-OCR's own
    # corner order starts at the leftmost corner, which makes the long side the "top": the crop would
    # come out sideways. Ours starts at the flattest left-to-right edge.
    tilted = np.array([[922, 888], [970, 171], [1016, 174], [968, 891]], np.float32)
    monkeypatch.setattr(rapidocr_detector._detector, "postprocess_op", lambda prediction, size: ([tilted], [0.9]))
    (line,) = rapidocr_detector.detect(np.full((1080, 1920, 3), 200, np.uint8))
    np.testing.assert_array_equal(line.poly, tilted[[1, 2, 3, 0]])
    width, height = np.linalg.norm(line.poly[1] - line.poly[0]), np.linalg.norm(line.poly[3] - line.poly[0])
    assert height > 10 * width


def test_reader_with_the_rapidocr_detector(rapidocr_detector, model_path) -> None:
    reader = Reader(ReaderConfig(model=model_path, engine=ENGINE, mode="detector"), detector=rapidocr_detector)
    lines = reader.read(printed_scene())
    assert len(lines) >= 1 and all(line.detection_score is not None for line in lines)


def test_rapidocr_missing_names_the_extra(monkeypatch) -> None:
    from edgeocr.runtime import rapidocr_detector

    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)
    with pytest.raises(EdgeOCRError, match=r"edgeocr\[ppocr-detector\].*--no-deps rapidocr-onnxruntime"):
        rapidocr_detector.RapidOCRDetector()


# --- inference stays torch-free ------------------------------------------------------------------

_BLOCK_TORCH = """
import sys
sys.modules["torch"] = None
import numpy as np
from edgeocr.runtime.reader import Reader, ReaderConfig
import edgeocr.runtime.rapidocr_detector
assert not any(name.startswith("edgeocr.models") for name in sys.modules)
reader = Reader(ReaderConfig(model=sys.argv[1]))
assert len(reader.read(np.full((24, 80), 200, np.uint8))) == 1
print("ok")
"""


def test_reader_runs_without_torch(model_path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", _BLOCK_TORCH, model_path], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
