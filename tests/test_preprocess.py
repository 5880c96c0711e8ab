"""Preprocessing operations and pipelines (core, OpenCV) and their torch twins (parity)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from edgeocr.core.errors import EdgeOCRError, ImageError
from edgeocr.core.preprocess import (
    PRESETS,
    AdaptiveThreshold,
    Clahe,
    Deskew,
    EqualizeHist,
    GaussianBlur,
    Gray,
    MedianBlur,
    Morphology,
    Normalize,
    OtsuThreshold,
    Pipeline,
    PipelineError,
    Polarity,
    ResizePad,
    parse_pipeline,
    preset,
)

try:
    import torch

    CUDA = torch.cuda.is_available()
except ImportError:
    CUDA = False

SRC = Path(__file__).resolve().parents[1] / "src"
INK, PAPER = 40, 205


def text_crop(text: str = "LOT 240117 A", scale: float = 1.0, margin: int = 12, seed: int = 0) -> np.ndarray:
    """Dark printed text on a light, slightly noisy surface: uint8 gray."""
    (width, height), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
    img = np.full((height + base + 2 * margin, width + 2 * margin), PAPER, np.uint8)
    cv2.putText(img, text, (margin, margin + height), cv2.FONT_HERSHEY_SIMPLEX, scale, INK, 2, cv2.LINE_AA)
    noise = np.random.default_rng(seed).normal(0, 4, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def rotate_expanded(img: np.ndarray, angle: float) -> np.ndarray:
    """``img`` turned counter-clockwise by ``angle`` degrees on a canvas that holds all of it."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    new_w = int(np.ceil(h * abs(m[0, 1]) + w * abs(m[0, 0])))
    new_h = int(np.ceil(h * abs(m[0, 0]) + w * abs(m[0, 1])))
    m[:, 2] += ((new_w - w) / 2, (new_h - h) / 2)
    return cv2.warpAffine(img, m, (new_w, new_h), borderValue=(PAPER, PAPER, PAPER))


def colour(gray: np.ndarray) -> np.ndarray:
    """A BGR image whose channels differ (not just the gray replicated)."""
    return np.dstack([gray, np.roll(gray, 2, axis=1), (gray // 2 + 60).astype(np.uint8)])


# --- single operations -----------------------------------------------------------------------------


def test_gray_accepts_gray_bgr_bgra_and_single_channel() -> None:
    gray = text_crop()
    assert Gray().apply(gray) is gray
    assert Gray().apply(gray[:, :, None]).shape == gray.shape
    bgr = colour(gray)
    np.testing.assert_array_equal(Gray().apply(bgr), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    bgra = np.dstack([bgr, np.full(gray.shape, 255, np.uint8)])
    np.testing.assert_array_equal(Gray().apply(bgra), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))


def test_single_channel_ops_return_gray_and_filters_keep_channels() -> None:
    bgr = colour(text_crop())
    for op in (Clahe(), EqualizeHist(), OtsuThreshold(), AdaptiveThreshold()):
        assert op.apply(bgr).shape == bgr.shape[:2], op.op
    for op in (GaussianBlur(), MedianBlur(), Morphology(), Polarity(), Deskew()):
        out = op.apply(bgr)
        assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8, op.op


def test_otsu_output_is_binary_with_text_dark() -> None:
    crop = text_crop()
    out = OtsuThreshold().apply(crop)
    assert set(np.unique(out).tolist()) == {0, 255}
    assert np.all(out[crop < 80] == 0) and np.all(out[crop > 180] == 255)
    np.testing.assert_array_equal(OtsuThreshold(invert=True).apply(crop), 255 - out)


def test_adaptive_threshold_reads_text_under_a_shadow() -> None:
    crop = text_crop().astype(np.float64)
    shade = np.linspace(1.0, 0.3, crop.shape[1])[None]  # the right side in deep shadow
    shaded = (crop * shade).astype(np.uint8)
    ink = text_crop() < 80
    right = np.zeros_like(ink)
    right[:, crop.shape[1] * 3 // 4 :] = True
    for method in ("mean", "gaussian"):
        out = AdaptiveThreshold(method=method, block=31, c=8).apply(shaded)
        assert set(np.unique(out).tolist()) == {0, 255}
        assert np.mean(out[ink & right] == 0) > 0.9, method  # strokes in the shadow stay ink
        assert np.mean(out[~ink & right] == 255) > 0.9, method  # and the shadowed paper stays paper
    # The global threshold loses the shadowed paper: it turns black.
    assert np.mean(OtsuThreshold().apply(shaded)[~ink & right] == 0) > 0.5


def test_polarity_inverts_light_on_dark_and_reports_it() -> None:
    crop = text_crop()
    negative = 255 - crop
    op = Polarity()
    assert op.is_light_on_dark(negative) and not op.is_light_on_dark(crop)
    out, report = op.apply_and_report(negative)
    np.testing.assert_array_equal(out, crop)
    assert report == {"input": "light_on_dark", "inverted": True}
    out, report = op.apply_and_report(crop)
    np.testing.assert_array_equal(out, crop)
    assert report == {"input": "dark_on_light", "inverted": False}
    bgr = colour(negative)
    np.testing.assert_array_equal(op.apply(bgr), 255 - bgr)
    np.testing.assert_array_equal(Polarity(target="light_on_dark").apply(crop), negative)


@pytest.mark.parametrize("angle", [7.0, -7.0, 3.0])
def test_deskew_corrects_a_rotated_line_to_within_one_degree(angle: float) -> None:
    tilted = rotate_expanded(text_crop(), angle)
    op = Deskew()
    assert abs(op.estimate_angle(tilted) - angle) < 1.0
    straight, report = op.apply_and_report(tilted)
    assert report["rotated"] and abs(report["angle"] - angle) < 1.0
    assert abs(op.estimate_angle(straight)) < 1.0
    # The rotated line is wider than tall again and the expanded canvas was padded with paper.
    assert straight.shape[1] > tilted.shape[1] and abs(int(straight[0, 0]) - PAPER) < 15


def test_deskew_keeps_colour_respects_limits_and_leaves_level_lines() -> None:
    crop = text_crop()
    out, report = Deskew().apply_and_report(crop)
    assert not report["rotated"] and out is crop
    bgr_out = Deskew().apply(colour(rotate_expanded(crop, 7.0)))
    assert bgr_out.ndim == 3 and bgr_out.shape[2] == 3
    assert abs(Deskew(max_angle=4).estimate_angle(rotate_expanded(crop, 12.0))) <= 4.0
    assert Deskew().estimate_angle(np.full((30, 100), 200, np.uint8)) == 0.0  # no ink, no tilt


def test_resize_with_padding_keeps_aspect_and_target_size() -> None:
    crop = np.full((50, 200), 190, np.uint8)
    crop[10:40, 20:180] = 30
    out = ResizePad(width=100, height=32).apply(crop)
    assert out.shape == (32, 100)
    # Scale 0.5 (the width limits): content 25 x 100, centred with 3 rows of padding on top.
    assert np.all(out[:3] == 190) and np.all(out[28:] == 190)
    ink_rows = np.nonzero((out < 110).any(axis=1))[0]
    ink_cols = np.nonzero((out < 110).any(axis=0))[0]
    assert ink_rows[0] == 3 + 5 and ink_rows[-1] == 3 + 19 and ink_cols[0] == 10 and ink_cols[-1] == 89
    start = ResizePad(width=100, height=40, align="start", pad=0).apply(crop)
    assert start.shape == (40, 100) and np.all(start[25:] == 0) and start[0, 0] == 190
    small = ResizePad(width=100, height=100, upscale=False).apply(crop[:20, :40])
    assert small.shape == (100, 100) and (small == 30).sum() == (crop[:20, :40] == 30).sum()
    bgr = ResizePad(width=64, height=64).apply(colour(crop))
    assert bgr.shape == (64, 64, 3)
    tall = ResizePad(width=64, height=64).apply(np.zeros((128, 16), np.uint8))
    assert tall.shape == (64, 64) and ResizePad(width=64, height=64).geometry(128, 16) == (64, 8, 0, 28)


def test_blurs_keep_shape_and_median_removes_speckle() -> None:
    crop = text_crop()
    speckled = crop.copy()
    speckled[::7, ::11] = 255
    speckled[3::7, 5::11] = 0
    cleaned = MedianBlur(ksize=3).apply(speckled)
    assert cleaned.shape == crop.shape
    assert np.mean(np.abs(cleaned.astype(int) - MedianBlur(ksize=3).apply(crop))) < 3
    blurred = GaussianBlur(ksize=5, sigma=1.5).apply(speckled)
    assert blurred.shape == crop.shape and blurred.dtype == np.uint8
    assert np.abs(np.diff(blurred.astype(int), axis=1)).mean() < np.abs(np.diff(speckled.astype(int), axis=1)).mean()


def test_contrast_ops_stretch_a_faint_print() -> None:
    faint = (text_crop().astype(np.float64) * 0.15 + 100).astype(np.uint8)  # values within about 30 levels
    for op in (Clahe(clip=3.0, tile=4), EqualizeHist()):
        out = op.apply(faint)
        assert np.percentile(out, 99) - np.percentile(out, 1) > 2 * (np.percentile(faint, 99) - np.percentile(faint, 1))


def test_morphology_close_joins_dark_dots() -> None:
    dots = np.full((9, 40), 220, np.uint8)
    dots[3:6, 2:38:4] = 30  # a dot-matrix row: 2 x 3 px dots with 2 px gaps
    dots[3:6, 3:38:4] = 30
    assert (dots[4, 2:36] > 128).sum() == 16
    joined = Morphology(mode="close", ksize=3).apply(dots)
    assert np.all(joined[4, 2:36] == 30)  # dark foreground: the gaps are filled
    light = Morphology(mode="close", ksize=3, foreground="light").apply(dots)
    assert np.all(light > 128)  # OpenCV's sense closes the paper instead: the small dark dots vanish
    grown = Morphology(mode="dilate", ksize=3).apply(dots)
    assert (grown < 128).sum() > (dots < 128).sum()
    assert Morphology(ksize=3, ksize_y=5, shape="ellipse").kernel().shape == (5, 3)


def test_normalize_to_float32_per_channel() -> None:
    gray = np.array([[0, 255]], np.uint8)
    np.testing.assert_allclose(Normalize().apply(gray), [[-1.0, 1.0]])
    assert Normalize().apply(gray).dtype == np.float32
    bgr = np.zeros((2, 2, 3), np.uint8)
    out = Normalize(mean=(0.0, 0.5, 1.0), std=(1.0, 0.5, 0.25)).apply(bgr)
    np.testing.assert_allclose(out[0, 0], [0.0, -1.0, -4.0])
    with pytest.raises(ImageError, match="mean has 3 values"):
        Normalize(mean=(0.0, 0.5, 1.0), std=1.0).apply(gray)


def test_bad_images_raise_image_errors_naming_the_op() -> None:
    with pytest.raises(ImageError, match="median: expected a uint8"):
        MedianBlur().apply(np.zeros((8, 8), np.float32))
    with pytest.raises(ImageError, match="otsu: expected a gray"):
        OtsuThreshold().apply(np.zeros((8, 8, 2), np.uint8))
    with pytest.raises(ImageError, match="empty"):
        Gray().apply(np.zeros((0, 8), np.uint8))


# --- validation --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: MedianBlur(ksize=4), "ksize"),
        (lambda: GaussianBlur(ksize=6), "ksize"),
        (lambda: AdaptiveThreshold(block=10), "block"),
        (lambda: Clahe(clip=0), "clip"),
        (lambda: Morphology(mode="thicken"), "mode"),
        (lambda: ResizePad(width=10, height=10, pad=300), "pad"),
        (lambda: Normalize(std=0), "std"),
        (lambda: Deskew(max_angle=60), "max_angle"),
        (lambda: MedianBlur(size=3), "size"),
    ],
)
def test_invalid_parameters_name_the_field(build, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        build()


def test_ops_are_frozen() -> None:
    with pytest.raises(ValidationError):
        MedianBlur().ksize = 5


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("gray|median:ksize=4", r"step 2 .*median: ksize: ksize must be odd, got 4"),
        ("gray|sharpen", r"unknown operation 'sharpen'.*presets: none, dotmatrix"),
        ("normalize|otsu", r"normalize \(step 1\) must be the last step"),
        ("gray||otsu", r"empty step"),
        ("clahe:clip", r"'clip' is not key=value"),
        ("median:size=3", r"size: Extra inputs are not permitted"),
        ("resize:width=32", r"height: Field required"),
        ([{"ksize": 3}], r"unknown operation None"),
        ("- op: median\n  ksize: 4\n", r"step 1 .*ksize must be odd"),
    ],
)
def test_bad_specs_raise_pipeline_errors(spec, message: str) -> None:
    with pytest.raises(PipelineError, match=message) as caught:
        parse_pipeline(spec)
    assert isinstance(caught.value, EdgeOCRError) and isinstance(caught.value, ValueError)


# --- pipelines and presets ---------------------------------------------------------------------------


def test_pipeline_string_parsing_and_round_trip() -> None:
    pipe = parse_pipeline("gray|clahe:clip=3.5,tile=4|otsu:invert=true")
    assert [type(op) for op in pipe.ops] == [Gray, Clahe, OtsuThreshold]
    assert pipe.ops[1] == Clahe(clip=3.5, tile=4) and pipe.ops[2].invert is True
    assert parse_pipeline(pipe.spec()) == pipe
    norm = parse_pipeline("resize:width=128,height=32,align=start|normalize:mean=0.4/0.5/0.6,std=0.2/0.2/0.2")
    assert norm.ops[1].mean == (0.4, 0.5, 0.6) and parse_pipeline(norm.spec()) == norm
    assert parse_pipeline("") == parse_pipeline("none") == Pipeline()
    assert parse_pipeline(pipe) is pipe


def test_pipeline_from_dicts_yaml_and_files(tmp_path: Path) -> None:
    expected = Pipeline(ops=(Gray(), MedianBlur(ksize=5), OtsuThreshold()))
    assert parse_pipeline([{"op": "gray"}, {"op": "median", "ksize": 5}, "otsu"]) == expected
    assert parse_pipeline({"ops": ["gray", "median:ksize=5", {"op": "otsu"}]}) == expected
    assert parse_pipeline("- gray\n- op: median\n  ksize: 5\n- otsu\n") == expected
    path = tmp_path / "pre.yaml"
    path.write_text("ops:\n  - op: gray\n  - {op: median, ksize: 5}\n  - otsu\n")
    assert parse_pipeline(path) == expected
    path.write_text("- op: median\n  ksize: 4\n")
    with pytest.raises(PipelineError, match="pre.yaml: step 1"):
        parse_pipeline(path)
    assert Pipeline.model_validate(expected.model_dump()) == expected  # stores as plain data


def test_presets_exist_expand_in_specs_and_run_on_gray_and_bgr() -> None:
    assert {"none", "dotmatrix", "low_contrast", "binarize", "uneven_light"} <= set(PRESETS)
    assert preset("binarize") is PRESETS["binarize"]
    assert parse_pipeline("binarize|resize:width=64,height=16").ops[:-1] == preset("binarize").ops
    with pytest.raises(PipelineError, match="unknown preprocessing preset 'fancy'; presets: none"):
        preset("fancy")
    crop = text_crop()
    for name, pipe in PRESETS.items():
        for image in (crop, colour(crop), 255 - crop):
            out = pipe.apply(image)
            assert out.dtype == np.uint8 and out.shape[:2] == crop.shape, name
            if name in ("binarize", "uneven_light"):
                assert set(np.unique(out).tolist()) <= {0, 255}
                assert np.mean(out[crop > 180] == 255) > 0.95, name  # paper white whatever the polarity
    assert preset("none").apply(crop) is crop


def test_trace_reports_each_step_and_its_decisions() -> None:
    negative = 255 - rotate_expanded(text_crop(), 7.0)
    out, steps = parse_pipeline("gray|polarity|deskew|otsu").trace(negative)
    assert [s["step"] for s in steps] == ["gray", "polarity", "deskew", "otsu"]
    assert steps[1]["inverted"] is True and abs(steps[2]["angle"] - 7.0) < 1.0
    assert steps[-1]["shape"] == out.shape


def test_core_preprocess_imports_without_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import edgeocr.core.preprocess as p\n"
        "print(p.preset('binarize').spec())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(SRC)}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "gray|polarity|otsu"


# --- torch parity ---------------------------------------------------------------------------------------

# Ops whose torch version must give exactly OpenCV's pixels.
EXACT_SPECS = [
    "gray",
    "invert",
    "median",
    "median:ksize=5",
    "median:ksize=9",
    "median:ksize=11",
    "equalize",
    "otsu",
    "otsu:invert=true",
    "adaptive",
    "adaptive:block=11,c=2.5,invert=true",
    "adaptive:block=15,c=-3",
    "morph",
    "morph:mode=open,ksize=4,shape=ellipse",
    "morph:mode=dilate,ksize=5,ksize_y=2,iterations=2",
    "morph:mode=erode,ksize=5,shape=cross,foreground=light,iterations=3",
    "polarity",
    # Through OpenCV (fallbacks): identical by construction, checked for the plumbing.
    "clahe",
    "deskew",
    "adaptive:method=gaussian",
    "binarize",
    "uneven_light",
    "dotmatrix",
    "low_contrast",
]
# The Gaussian blur reproduces OpenCV's uint8 fixed-point path and is exact with OpenCV 5.0; a
# future OpenCV may round differently, so one gray level is allowed on at most 0.5 % of the pixels
# (a plain float32 blur rounded once differs on about 3 %, which this still catches).
GAUSSIAN_SPECS = ["gaussian", "gaussian:ksize=5,sigma=1.3", "gaussian:ksize=9", "gaussian:ksize=15,sigma=4"]
# Resize: when enlarging, OpenCV's INTER_LINEAR on uint8 uses 11-bit fixed-point weights with
# intermediate truncation while torch interpolates in float32 and rounds once: up to one gray
# level apart (about 6 % of pixels). Shrinking (area) agrees to float rounding. Padding is exact.
RESIZE_SPECS = [
    "resize:width=100,height=32",
    "resize:width=320,height=320",
    "resize:width=333,height=90",
    "resize:width=64,height=64,align=start,pad=0",
]

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="torch.cuda.is_available() is False"))]


def parity_images() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    crop = text_crop(seed=1)
    shaded = (crop * np.linspace(1.0, 0.5, crop.shape[1])[None]).astype(np.uint8)
    two_level = np.where(rng.random((40, 90)) < 0.3, 60, 190).astype(np.uint8)
    return [
        crop,
        255 - crop,
        shaded,
        colour(crop),
        two_level,
        rng.integers(0, 256, (37, 53), dtype=np.uint8),
        np.full((20, 30), 128, np.uint8),
    ]


def mismatches(specs: list[str], device: str, max_diff: float, max_fraction: float) -> list[str]:
    from edgeocr.optimize.gpu_preprocess import to_torch_pipeline

    problems = []
    for spec in specs:
        pipe = parse_pipeline(spec)
        on_torch = to_torch_pipeline(pipe, device)
        for index, image in enumerate(parity_images()):
            expected = pipe.apply(image)
            got = on_torch.numpy(image)
            if got.shape != expected.shape or got.dtype != expected.dtype:
                problems.append(f"{spec} image {index}: {got.shape} {got.dtype} != {expected.shape} {expected.dtype}")
                continue
            diff = np.abs(got.astype(np.float64) - expected.astype(np.float64))
            if diff.max() > max_diff or np.mean(diff > 0) > max_fraction:
                share = np.mean(diff > 0)
                problems.append(f"{spec} image {index}: max diff {diff.max()}, {share:.2%} of pixels differ")
    return problems


@pytest.mark.parametrize("device", DEVICES)
def test_torch_ops_match_opencv_exactly(device: str) -> None:
    pytest.importorskip("torch")
    assert mismatches(EXACT_SPECS, device, max_diff=0, max_fraction=0) == []


@pytest.mark.parametrize("device", DEVICES)
def test_torch_gaussian_matches_opencv_fixed_point(device: str) -> None:
    pytest.importorskip("torch")
    assert mismatches(GAUSSIAN_SPECS, device, max_diff=1, max_fraction=0.005) == []


@pytest.mark.parametrize("device", DEVICES)
def test_torch_resize_matches_opencv_within_one_level(device: str) -> None:
    pytest.importorskip("torch")
    assert mismatches(RESIZE_SPECS, device, max_diff=1, max_fraction=0.15) == []


@pytest.mark.parametrize("device", DEVICES)
def test_torch_normalize_matches_to_float_rounding(device: str) -> None:
    pytest.importorskip("torch")
    specs = ["normalize", "gray|normalize:mean=0.3,std=0.2"]
    assert mismatches(specs, device, max_diff=1e-6, max_fraction=1.0) == []


def test_torch_pipeline_reports_fallbacks_and_takes_tensors() -> None:
    torch = pytest.importorskip("torch")
    from edgeocr.optimize.gpu_preprocess import NATIVE_OPS, to_torch_pipeline

    spec = "gray|clahe|deskew:max_angle=10|adaptive:method=gaussian|otsu"
    pipe = to_torch_pipeline(spec, "cpu")
    assert pipe.fallbacks == ["clahe", "deskew:max_angle=10.0", "adaptive:method=gaussian"]
    assert {"gray", "median", "otsu", "morph", "resize", "normalize"} <= NATIVE_OPS
    crop = text_crop()
    out = pipe(torch.from_numpy(crop))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.uint8
    np.testing.assert_array_equal(out.numpy(), parse_pipeline(spec).apply(crop))
    with pytest.raises(ImageError, match="median: expected a uint8"):
        to_torch_pipeline("median", "cpu")(torch.zeros(4, 4))
