"""Torch-free runtime: line preprocessing, the verified ONNX recogniser, and import isolation."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeocr.core.charset import Charset
from edgeocr.core.ctc import DecodedLine, greedy_decode, softmax
from edgeocr.core.errors import EdgeOCRError, ImageError, ModelError
from edgeocr.core.lineimage import (
    character_rows,
    is_vertical,
    pad_and_normalise,
    padded_width,
    prepare_line,
    to_line_strip,
    vertical_to_horizontal,
)
from edgeocr.core.recognizer_config import RecognizerConfig
from edgeocr.core.sidecar import bound_json, settings_sha256
from edgeocr.runtime import EngineConfig, OnnxRecognizer

SRC = Path(__file__).resolve().parents[1] / "src"
CFG = RecognizerConfig(arch="crnn_tiny", max_width=256)


def line_image(width: int, height: int = 24, seed: int = 0, channels: int = 0) -> np.ndarray:
    """A light background with dark blobs, uint8 gray or BGR."""
    rng = np.random.default_rng(seed)
    img = np.full((height, width), 220, dtype=np.uint8)
    for x in range(2, width - 6, 9):
        img[4 : height - 4, x : x + 5] = rng.integers(0, 80)
    return np.dstack([img] * channels) if channels else img


# --- preprocessing -------------------------------------------------------------------------------


def stacked_code(blocks: list[tuple[int, int, int]], width: int = 60, height: int | None = None) -> np.ndarray:
    """A light vertical crop with a dark block (character stand-in) per ``(top, bottom, value)``."""
    height = height or blocks[-1][1] + 12
    img = np.full((height, width), 230, np.uint8)
    for top, bottom, value in blocks:
        img[top:bottom, 20:40] = value
    return img


def test_vertical_code_is_cut_between_characters_not_at_a_fixed_pitch() -> None:
    # Characters 28 px tall at a 40 px pitch in a crop 60 px wide: cutting every 60 px (the old
    # rule, one cell per crop width) would cut through characters.
    blocks = [(10 + 40 * i, 38 + 40 * i, 20 * i) for i in range(5)]
    tall = stacked_code(blocks)
    assert is_vertical(tall)
    assert character_rows(tall) == [(top, bottom) for top, bottom, _ in blocks]
    strip = vertical_to_horizontal(tall)
    # Each cell is trimmed to its character plus a margin of 15 % of its height (4 px) a side.
    # Cuts at the middle of each gap (0, 44, 84, 124, 164, 210): the tallest cell (46 rows) sets the height.
    assert strip.shape == (46, 5 * 28)
    assert [int(strip[:, 28 * i + 14 - 2 : 28 * i + 14 + 2].min()) for i in range(5)] == [0, 20, 40, 60, 80]
    # Colour crops give the same layout with 3 channels.
    assert vertical_to_horizontal(np.dstack([tall] * 3)).shape == (*strip.shape, 3)


def test_vertical_segmentation_mends_broken_and_touching_characters() -> None:
    broken = [(10, 20, 0), (22, 38, 0)]  # one character broken by faint print: one cell
    touching = [(90, 146, 40)]  # two characters with no gap between them: split in two
    blocks = [*broken, (50, 78, 20), *touching, (170, 198, 60)]
    rows = character_rows(stacked_code(blocks))
    assert rows == [(10, 38), (50, 78), (90, 118), (118, 146), (170, 198)]
    # A speck is dropped; a panel edge running the whole height is background, not a character.
    framed = stacked_code([(10, 38, 0), (50, 78, 20), (92, 94, 0), (110, 138, 40)])
    framed[:, :3] = 0
    assert character_rows(framed) == [(10, 38), (50, 78), (110, 138)]


def test_vertical_crop_without_gaps_falls_back_to_cells_of_the_crop_width() -> None:
    cell = 30
    no_gaps = np.tile(np.array([[0, 255]], np.uint8), (3 * cell, cell // 2))  # ink in every row
    assert character_rows(no_gaps) is None
    strip = vertical_to_horizontal(no_gaps)
    assert strip.shape == (cell, 3 * cell)
    # 94 rows: cells of 31, 31 and 32 rows, centred on the tallest.
    assert vertical_to_horizontal(np.concatenate([no_gaps, no_gaps[:4]])).shape == (32, 3 * cell)


def test_prepare_line_keeps_aspect_and_pads_to_multiple_of_8() -> None:
    tensor = prepare_line(line_image(100, height=20), CFG)
    assert tensor.dtype == np.float32
    assert tensor.shape == (1, 32, 160)  # 100 * 32 / 20
    tensor = prepare_line(line_image(101, height=20), CFG)
    assert tensor.shape == (1, 32, 168)  # 162 rounded up to a multiple of 8
    assert np.allclose(tensor[0, :, -4:], (220 / 255 - CFG.mean) / CFG.std)  # background padding


def test_prepare_line_squashes_only_over_max_width_and_pads_to_min_width() -> None:
    assert prepare_line(line_image(2000, height=32), CFG).shape == (1, 32, CFG.max_width)
    assert prepare_line(line_image(24, height=32), CFG).shape == (
        1,
        32,
        CFG.min_width,
    )  # 1.33 < vertical_ratio
    stretched = CFG.model_copy(update={"width_policy": "stretch"})
    assert prepare_line(line_image(40, height=32), stretched).shape == (1, 32, CFG.max_width)


def test_prepare_line_reads_vertical_crops_as_lines() -> None:
    tall = np.full((90, 30), 200, np.uint8)
    assert prepare_line(tall, CFG).shape == (1, 32, 96)  # 3 cells of 30x30 -> 32 x 96
    upright = CFG.model_copy(update={"vertical": False})
    assert prepare_line(tall, upright).shape == (1, 32, CFG.min_width)


def test_prepare_line_accepts_gray_and_bgr_and_refuses_other_images() -> None:
    gray = line_image(64)
    np.testing.assert_allclose(prepare_line(gray, CFG), prepare_line(line_image(64, channels=3), CFG), atol=1e-6)
    np.testing.assert_allclose(prepare_line(gray, CFG), prepare_line(gray[:, :, None], CFG))
    for bad in (gray.astype(np.float32), np.zeros((4, 4, 2), np.uint8), np.zeros((0, 5), np.uint8)):
        with pytest.raises(ImageError):
            prepare_line(bad, CFG)


# --- the recogniser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, object]:
    """A crnn_tiny exported to ONNX, with a sharpened head so that argmax ties cannot occur."""
    import torch  # the training side makes the model; make test installs it, so no skip

    from edgeocr.models import build_from_config, export_onnx

    torch.manual_seed(0)
    model = build_from_config(CFG).eval()
    with torch.no_grad():
        model.head.weight.mul_(20.0)
    path = export_onnx(model, CFG, tmp_path_factory.mktemp("model") / "crnn_tiny.onnx")
    return path, model


def copy_model(path: Path, target_dir: Path) -> Path:
    target = target_dir / path.name
    shutil.copy(path, target)
    shutil.copy(path.with_suffix(".json"), target.with_suffix(".json"))
    return target


def test_recognize_matches_the_pytorch_model(exported) -> None:
    import torch

    path, model = exported
    recognizer = OnnxRecognizer(path, EngineConfig(intra_op_threads=1))
    images = [line_image(120, seed=1), line_image(60, seed=2, channels=3)]
    lines = recognizer.recognize(images)
    assert len(lines) == 2
    for image, line in zip(images, lines, strict=True):
        # One image at a time, so no batch padding is involved on either side.
        (single,) = recognizer.recognize([image])
        with torch.no_grad():
            probs = torch.softmax(model(torch.from_numpy(prepare_line(image, CFG)[None])), -1)[0].numpy()
        expected = greedy_decode(probs, CFG.charset)
        assert single.text == expected.text
        np.testing.assert_allclose(single.char_confidences, expected.char_confidences, atol=1e-4)
        assert isinstance(line, DecodedLine)
        assert 0.0 <= line.confidence <= 1.0
        assert all(0.0 <= c <= 1.0 for c in line.char_confidences)
        assert len(line.path) == CFG.frames_for_width(padded_width(round(image.shape[1] * 32 / 24), CFG))


def test_recognize_keeps_input_order_across_batches(exported) -> None:
    path, _ = exported
    images = [line_image(w, seed=i) for i, w in enumerate((200, 40, 120, 40, 80))]
    one_by_one = OnnxRecognizer(path, EngineConfig(max_batch_size=1))
    expected = [one_by_one.recognize([img])[0] for img in images]
    assert one_by_one.recognize(images) == expected
    batched = OnnxRecognizer(path, EngineConfig(max_batch_size=4))
    assert batched.recognize([]) == []


class CountingSession:
    """Wraps an ONNX Runtime session and records the batch size of every run."""

    def __init__(self, session, input_name: str) -> None:
        self.session, self.input_name, self.batch_sizes = session, input_name, []

    def run(self, names, feed):
        self.batch_sizes.append(len(feed[self.input_name]))
        return self.session.run(names, feed)


def test_batches_of_mixed_widths_read_exactly_like_one_line_at_a_time(exported) -> None:
    path, _ = exported
    widths = (200, 40, 120, 40, 80, 200, 40, 44, 200, 40)
    images = [line_image(w, seed=i) for i, w in enumerate(widths)]
    one_by_one = OnnxRecognizer(path, EngineConfig(max_batch_size=1))
    expected = [one_by_one.recognize_probs([img])[0] for img in images]

    # The check has teeth: the sequence model reads padding, so the narrow line padded to its
    # wide neighbour's width gets other probabilities than the same line read alone.
    cfg, name = one_by_one.config, one_by_one.sidecar.input_name
    wide = padded_width(to_line_strip(images[0], cfg).shape[1], cfg)
    narrow_padded_wide = pad_and_normalise(to_line_strip(images[1], cfg), cfg, wide)
    (padded,) = one_by_one._session.run(None, {name: narrow_padded_wide[None]})
    padded_probs = padded[0] if one_by_one.sidecar.output_kind == "probs" else softmax(padded[0], axis=-1)
    assert not np.allclose(padded_probs[: len(expected[1])], expected[1], atol=1e-3)

    batched = OnnxRecognizer(path, EngineConfig(max_batch_size=3))
    batched._session = counter = CountingSession(batched._session, name)
    for probs, want in zip(batched.recognize_probs(images), expected, strict=True):
        np.testing.assert_allclose(probs, want, rtol=0, atol=1e-6)
    # Still batched for real: four lines of one width go as 3 + 1, three of another as 3.
    assert sorted(counter.batch_sizes) == [1, 1, 1, 1, 3, 3]


def test_engine_decoder_override(exported) -> None:
    path, _ = exported
    (line,) = OnnxRecognizer(path, EngineConfig(decoder="beam", beam_width=4)).recognize([line_image(64)])
    assert line.sequence_probability is not None and 0.0 <= line.sequence_probability <= 1.0


def test_engine_config_is_immutable_and_validated() -> None:
    engine = EngineConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        engine.intra_op_threads = 4  # type: ignore[misc]
    for bad in ({"intra_op_threads": -1}, {"max_batch_size": 0}, {"providers": ()}, {"beam_width": 0}):
        with pytest.raises(ValueError):
            EngineConfig(**bad)


def test_refuses_a_model_modified_after_export(exported, tmp_path) -> None:
    path = copy_model(exported[0], tmp_path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum") as excinfo:
        OnnxRecognizer(path)
    assert str(path) in str(excinfo.value)
    assert isinstance(excinfo.value, EdgeOCRError)


def test_refuses_a_missing_sidecar(exported, tmp_path) -> None:
    path = copy_model(exported[0], tmp_path)
    path.with_suffix(".json").unlink()
    with pytest.raises(ModelError, match="missing") as excinfo:
        OnnxRecognizer(path)
    assert str(path.with_suffix(".json")) in str(excinfo.value)


def test_refuses_a_missing_model_file(exported, tmp_path) -> None:
    path = copy_model(exported[0], tmp_path)
    path.unlink()
    with pytest.raises(ModelError, match="does not exist"):
        OnnxRecognizer(path)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda text: text[: len(text) // 2],  # truncated JSON
        lambda text: "[]",
        lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "onnx_sha256"}),
        lambda text: json.dumps({**json.loads(text), "onnx_sha256": "not-a-hash"}),
        lambda text: json.dumps({**json.loads(text), "charset_fingerprint": "0000000000000000"}),
        lambda text: json.dumps({**json.loads(text), "config": {**json.loads(text)["config"], "input_height": 33}}),
        lambda text: json.dumps({**json.loads(text), "format_version": 99}),
    ],
    ids=[
        "truncated",
        "not-an-object",
        "no-checksum",
        "bad-checksum",
        "wrong-charset",
        "bad-config",
        "future-format",
    ],
)
def test_refuses_a_malformed_sidecar(exported, tmp_path, corrupt) -> None:
    path = copy_model(exported[0], tmp_path)
    sidecar = path.with_suffix(".json")
    sidecar.write_text(corrupt(sidecar.read_text()))
    with pytest.raises(ModelError) as excinfo:
        OnnxRecognizer(path)
    assert str(sidecar) in str(excinfo.value)


def test_refuses_a_sidecar_whose_charset_does_not_fit_the_network(exported, tmp_path) -> None:
    path = copy_model(exported[0], tmp_path)
    sidecar = path.with_suffix(".json")
    data = json.loads(sidecar.read_text())
    data["config"]["charset"] = "0123456789"
    data["charset_fingerprint"] = Charset("0123456789").fingerprint
    sidecar.write_text(bound_json(data))  # bound again: the graph check alone must catch it
    with pytest.raises(ModelError, match="classes") as excinfo:
        OnnxRecognizer(path)
    assert str(path) in str(excinfo.value)


# --- a model is its files: the sidecar's settings are bound to the model ------------------------------


def _edit_config(**changes):
    def edit(data: dict) -> None:
        data["config"].update(changes)

    return edit


def _reorder_charset(data: dict) -> None:
    charset = data["config"]["charset"]
    reordered = charset[1] + charset[0] + charset[2:]  # '1' read as '0' and back: every read looks valid
    data["config"]["charset"] = reordered
    data["charset_fingerprint"] = Charset(reordered).fingerprint  # a careful editor keeps the sidecar valid


SETTING_EDITS = {
    "frame_stride": _edit_config(frame_stride=8),
    "reordered_charset": _reorder_charset,
    "normalisation_mean": _edit_config(mean=0.4),
    "normalisation_std": _edit_config(std=0.25),
    "input_height": _edit_config(input_height=48),
    "width_policy": _edit_config(width_policy="stretch"),
    "decoder": _edit_config(decoder="beam"),
    "vertical": _edit_config(vertical=False),
    "output_kind": lambda data: data.update(output_kind="logits"),
}


@pytest.mark.parametrize("edit", list(SETTING_EDITS.values()), ids=list(SETTING_EDITS))
def test_a_sidecar_edited_after_export_is_refused(exported, tmp_path, edit) -> None:
    from edgeocr.runtime.engines import OpenVinoRecognizer, TensorRtRecognizer

    path = copy_model(exported[0], tmp_path)
    sidecar = path.with_suffix(".json")
    data = json.loads(sidecar.read_text())
    edit(data)
    sidecar.write_text(json.dumps(data, indent=2))
    for recognizer in (OnnxRecognizer, OpenVinoRecognizer, TensorRtRecognizer):  # refused before any engine
        with pytest.raises(ModelError, match="settings were edited after export") as excinfo:
            recognizer(path)
        message = str(excinfo.value)
        assert str(sidecar) in message and "config block" in message and "--rebind" in message


def test_an_untouched_model_loads_and_its_sidecar_is_bound(exported, tmp_path) -> None:
    path = copy_model(exported[0], tmp_path)
    data = json.loads(path.with_suffix(".json").read_text())
    assert data["format_version"] == 2 and data["settings_sha256"] == settings_sha256(data)
    # reformatting the JSON (indentation, key order) is not an edit: the checksum is over canonical JSON
    path.with_suffix(".json").write_text(json.dumps(dict(reversed(list(data.items())))))
    assert len(OnnxRecognizer(path, EngineConfig(intra_op_threads=1)).recognize([line_image(50)])) == 1


def test_an_old_sidecar_is_refused_until_rebound_and_rebinding_checks_the_model_bytes(exported, tmp_path) -> None:
    from edgeocr.cli import main
    from edgeocr.core.rebind import rebind_model

    path = copy_model(exported[0], tmp_path)
    sidecar = path.with_suffix(".json")
    bound = sidecar.read_text()
    old = {k: v for k, v in json.loads(bound).items() if k != "settings_sha256"}
    sidecar.write_text(json.dumps({**old, "format_version": 1}, indent=2))  # as edgeocr 0.1.0 wrote it
    with pytest.raises(ModelError, match="does not bind its settings") as excinfo:
        OnnxRecognizer(path)
    assert str(sidecar) in str(excinfo.value) and f"edgeocr export --rebind {path}" in str(excinfo.value)
    assert main(["export", "--rebind", str(path)]) == 0
    assert sidecar.read_text() == bound  # the same sidecar an export writes today
    assert rebind_model(path) == (sidecar, False)  # already bound: nothing written
    OnnxRecognizer(path)

    path.write_bytes(path.read_bytes() + b"\0")  # other model bytes are never bound to the sidecar
    with pytest.raises(ModelError, match="does not match the checksum"):
        rebind_model(path)
    assert main(["export", "--rebind", str(path)]) == 2
    assert main(["export", "--rebind", str(path), "--weights", str(path)]) == 2  # --rebind works alone


def test_a_deliberately_rebound_frame_stride_is_still_refused_by_the_graph(exported, tmp_path) -> None:
    from edgeocr.core.rebind import rebind_model

    path = copy_model(exported[0], tmp_path)
    sidecar = path.with_suffix(".json")
    data = json.loads(sidecar.read_text())
    data["config"]["frame_stride"] = 8
    sidecar.write_text(json.dumps(data))
    rebind_model(path)
    with pytest.raises(ModelError, match="frame_stride 8") as excinfo:
        OnnxRecognizer(path)
    assert str(path) in str(excinfo.value)


def test_a_renamed_model_pair_still_loads(exported, tmp_path) -> None:
    source = exported[0]
    target = tmp_path / "renamed.onnx"
    shutil.copy(source, target)
    shutil.copy(source.with_suffix(".json"), target.with_suffix(".json"))
    assert len(OnnxRecognizer(target).recognize([line_image(50)])) == 1


# --- torch stays out of inference ----------------------------------------------------------------

_BLOCK_TORCH = """
import sys
sys.modules["torch"] = None  # any "import torch" now raises ImportError
import edgeocr.core.ctc, edgeocr.core.lineimage, edgeocr.core.sidecar
import edgeocr.runtime.recognizer
from edgeocr.runtime import EngineConfig, OnnxRecognizer
assert not any(name.startswith("edgeocr.models") for name in sys.modules), "runtime imported edgeocr.models"
if len(sys.argv) > 1:
    import numpy as np
    recognizer = OnnxRecognizer(sys.argv[1], EngineConfig(intra_op_threads=1))
    lines = recognizer.recognize([np.full((24, 80), 200, np.uint8)])
    assert len(lines) == 1
print("ok")
"""


def _run_without_torch(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-c", _BLOCK_TORCH, *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_runtime_and_ctc_import_without_torch() -> None:
    result = _run_without_torch()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_runtime_recognizes_without_torch(exported) -> None:
    result = _run_without_torch(str(exported[0]))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
