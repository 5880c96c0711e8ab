"""The Python front door: ``from edgeocr import Reader``, its keywords, the ImageResult, and the README's example."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import edgeocr
from edgeocr import EdgeOCRError, EngineConfig, ImageResult, LineRead, Reader, ReaderConfig

ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT / "samples/scenes/images/00000002.jpg"
CONTAINER = ROOT / "samples/lines/container/00000001.png"


def _readme_python_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Python\n(.*?)^## ", text, flags=re.S | re.M)
    assert match, "README.md has no '## Python' section"
    return match.group(1)


def test_the_readme_example_runs_as_written_and_prints_what_the_readme_shows() -> None:
    section = _readme_python_section()
    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    shown = re.findall(r"```text\n(.*?)```", section, flags=re.S)
    assert len(code) >= 1 and len(code) == len(shown), "each python block is followed by its output"
    result = subprocess.run(
        [sys.executable, "-c", "\n".join(code)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "".join(shown)


def test_importing_the_package_stays_light_and_reader_comes_on_first_use() -> None:
    probe = (
        "import sys, edgeocr; heavy = [m for m in ('torch', 'onnxruntime', 'cv2') if m in sys.modules]; "
        "print(heavy); from edgeocr import Reader, ImageResult, LineRead, EngineConfig; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "False"]
    assert set(edgeocr.__all__) >= {"Reader", "ReaderConfig", "ReadOptions", "ImageResult", "LineRead", "EngineConfig"}
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        edgeocr.Nope  # noqa: B018


def test_reader_defaults_to_the_shipped_detector_and_default_recogniser() -> None:
    reader = Reader()
    assert reader.config.mode == "auto" and reader.config.model == "default"
    assert type(reader.detector).__name__ == "OnnxDetector"
    result = reader.read(SCENE)
    assert isinstance(result, ImageResult) and result.image_size == (800, 600) and result.mode == "detector"
    assert len(result) >= 3 and all(isinstance(line, LineRead) for line in result)
    assert set(result.timings_ms) == {"load", "locate", "recognize", "total"}
    assert result.timings_ms["total"] == pytest.approx(
        sum(result.timings_ms[k] for k in ("load", "locate", "recognize"))
    )


def test_keywords_build_a_crop_reader_with_formats() -> None:
    reader = Reader(model="default", detector=None, formats=["iso6346"], device="cpu", threads=1, min_confidence=0.3)
    config = reader.config
    assert (config.mode, config.formats, config.min_confidence, config.engine.intra_op_threads) == (
        "whole",
        ("iso6346",),
        0.3,
        1,
    )
    line = reader.read(CONTAINER)[0]
    assert line.format == "iso6346" and line.valid and line.text.replace(" ", "") == "HQTU7106595"


def test_result_is_a_sequence_of_lines_that_serialises_and_compares() -> None:
    reader = Reader(model="default", detector=None)
    image = np.asarray(__import__("cv2").imread(str(CONTAINER)))
    from_file, from_array = reader.read(CONTAINER), reader.read(image)
    assert from_file == from_array and from_file == list(from_array) and from_file.lines[0] is from_file[0]
    assert from_file.source == str(CONTAINER) and from_array.source.startswith("<array uint8")
    payload = json.loads(from_file.to_json())
    assert payload["image_size"] == {"width": 297, "height": 55}
    assert payload["lines"][0]["text"] == from_file[0].text and payload["lines"][0]["poly"][2] == [297.0, 55.0]
    assert from_file.texts == [from_file[0].text] and str(from_file).startswith("1 line(s) in ")
    batch = reader.read_batch([CONTAINER, image])
    assert batch == [from_file, from_array]


def test_draw_uses_the_file_or_the_image_given_and_refuses_the_wrong_one() -> None:
    reader = Reader(model="default", detector=None)
    result = reader.read(CONTAINER)
    drawn = result.draw()
    assert drawn.shape == (55, 297, 3) and drawn.dtype == np.uint8
    array_result = reader.read(np.full((40, 120), 255, np.uint8))
    with pytest.raises(ValueError, match="pass the image"):
        array_result.draw()
    with pytest.raises(ValueError, match="the result is for a 120x40 image"):
        array_result.draw(CONTAINER)
    assert array_result.draw(np.full((40, 120), 255, np.uint8)).shape == (40, 120, 3)


def test_a_config_and_keywords_together_are_refused() -> None:
    with pytest.raises(TypeError, match=r"either a ReaderConfig or the keywords \['model'\]"):
        Reader(ReaderConfig(), model="fast")
    with pytest.raises(TypeError, match="list of format names"):
        Reader(detector=None, formats="iso6346")
    with pytest.raises(ValueError, match="device must be one of cpu, cuda"):
        Reader(detector=None, device="tpu")  # type: ignore[arg-type]


def test_cuda_runs_on_cuda_or_is_refused_never_quietly_on_the_cpu() -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert Reader(detector=None, device="cuda").recognizer.providers[0] == "CUDAExecutionProvider"
    else:
        with pytest.raises(EdgeOCRError, match="not CUDAExecutionProvider"):
            Reader(detector=None, device="cuda")


def test_engines_are_chosen_by_name_and_refused_when_they_cannot_run_here() -> None:
    assert Reader(detector=None, engine="onnxruntime").recognizer.providers == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="engine 'tensorrt' runs on an NVIDIA GPU"):
        Reader(detector=None, engine="tensorrt")
    with pytest.raises(ValueError, match="engine must be one of onnxruntime, openvino, tensorrt"):
        Reader(detector=None, engine="tflite")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="pass it alone"):
        Reader(detector=None, engine=EngineConfig(), threads=2)
