"""``edgeocr read``: files, folders, globs and videos in; a table, JSON, CSV and drawn images out."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeocr.cli import main
from edgeocr.core.recognizer_config import RecognizerConfig

CFG = RecognizerConfig(arch="crnn_tiny", max_width=256)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> str:
    import torch

    from edgeocr.models import build_from_config, export_onnx

    torch.manual_seed(0)
    model = build_from_config(CFG).eval()
    with torch.no_grad():
        model.head.weight.mul_(20.0)  # sharpened so that reads are not all blank
    return str(export_onnx(model, CFG, tmp_path_factory.mktemp("model") / "tiny.onnx"))


def crop(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((32, 120), 220, np.uint8)
    for x in range(6, 110, 10):
        img[6:26, x : x + 5] = rng.integers(0, 80)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)


@pytest.fixture()
def inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    cv2.imwrite(str(folder / "a.png"), crop(1))
    cv2.imwrite(str(folder / "sub" / "b.jpg"), crop(2))
    writer = cv2.VideoWriter(str(folder / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (120, 32))
    for i in range(4):
        writer.write(crop(10 + i))
    writer.release()
    return folder


def test_reads_folders_globs_and_videos_into_json_csv_and_drawings(
    model_path: str, inputs: Path, tmp_path: Path
) -> None:
    out_json, out_csv, drawn = tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "drawn"
    code = main(
        [
            "read",
            str(inputs),
            str(inputs / "*.png"),
            "--model",
            model_path,
            "--threads",
            "1",
            "--every",
            "2",
            "--json",
            str(out_json),
            "--csv",
            str(out_csv),
            "--draw",
            str(drawn),
            "--quiet",
        ]
    )
    assert code == 0
    results = json.loads(out_json.read_text())["results"]
    sources = [r["source"] for r in results]
    # folder (recursive, sorted): a.png, clip.avi frames 0 and 2, sub/b.jpg; then the glob: a.png again
    assert sources == [
        str(inputs / "a.png"),
        f"{inputs / 'clip.avi'}#frame=0",
        f"{inputs / 'clip.avi'}#frame=2",
        str(inputs / "sub" / "b.jpg"),
        str(inputs / "a.png"),
    ]
    for result in results:
        (line,) = result["lines"]  # whole mode: one line per image
        assert len(line["poly"]) == 4 and 0.0 <= line["confidence"] <= 1.0
    assert results[0]["lines"] == results[-1]["lines"]  # same file, same read
    rows = list(csv.reader(out_csv.open()))
    assert rows[0][:3] == ["source", "line", "text"] and len(rows) == 1 + len(results)
    assert len(list(drawn.glob("*.jpg"))) == 4  # a.png drawn twice under one name


def test_a_bad_image_is_reported_and_the_others_are_still_read(
    model_path: str, inputs: Path, tmp_path: Path, capsys
) -> None:
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out_json = tmp_path / "r.json"
    assert (
        main(
            [
                "read",
                str(inputs / "a.png"),
                str(inputs / "broken.png"),
                "--model",
                model_path,
                "--json",
                str(out_json),
                "--quiet",
            ]
        )
        == 1
    )
    results = json.loads(out_json.read_text())["results"]
    assert results[0]["lines"] and results[0]["error"] is None
    assert "broken.png" in results[1]["error"] and results[1]["lines"] == []
    assert "1 input(s) could not be read" in capsys.readouterr().err


def test_a_missing_path_fails_before_any_reading(model_path: str, inputs: Path, tmp_path: Path, capsys) -> None:
    out_json = tmp_path / "r.json"
    assert (
        main(
            [
                "read",
                str(inputs / "a.png"),
                str(inputs / "nope.png"),
                "--model",
                model_path,
                "--json",
                str(out_json),
                "--quiet",
            ]
        )
        == 2
    )
    assert "nope.png: no such file" in capsys.readouterr().err and not out_json.exists()


def test_formats_and_table_output(model_path: str, inputs: Path, capsys) -> None:
    assert (
        main(
            [
                "read",
                str(inputs / "a.png"),
                "--model",
                model_path,
                "--format",
                "[A-Z0-9]{1,12}",
                "--min-confidence",
                "0",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "a.png" in out and ("[A-Z0-9]{1,12}" in out or "raw:" in out)


def test_engine_and_device_choose_what_runs_the_model_and_refuse_what_cannot_run(
    model_path: str, inputs: Path, tmp_path: Path, capsys
) -> None:
    image = str(sorted(inputs.rglob("*.png"))[0])
    outputs = {}
    for engine in ("onnxruntime", "openvino"):
        out = tmp_path / f"{engine}.json"
        assert main(["read", image, "--model", model_path, "--engine", engine, "--json", str(out), "-q"]) == 0
        outputs[engine] = [
            line["text"] for result in json.loads(out.read_text())["results"] for line in result["lines"]
        ]
    assert outputs["openvino"] == outputs["onnxruntime"] and outputs["onnxruntime"]
    capsys.readouterr()
    assert main(["read", image, "--model", model_path, "--engine", "tensorrt"]) == 2
    assert "engine 'tensorrt' runs on an NVIDIA GPU" in capsys.readouterr().err
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():  # refused, never run on the CPU instead
        assert main(["read", image, "--model", model_path, "--device", "cuda"]) == 2
        assert "refusing rather than running on the CPU" in capsys.readouterr().err


# --- runs that finish: every failure of one input is its error row --------------------------------


def _read_json(paths: list[str], model_path: str, out_json: Path, *extra: str) -> tuple[int, list[dict]]:
    code = main(["read", *paths, "--model", model_path, "--threads", "1", "--json", str(out_json), "-q", *extra])
    return code, json.loads(out_json.read_text())["results"] if out_json.exists() else []


@pytest.mark.parametrize(
    "failure",
    [
        cv2.error("OpenCV(4.x) resize.cpp:4155: error: (-215:Assertion failed) !ssize.empty() in function 'resize'"),
        MemoryError(),
        ValueError("could not broadcast input array from shape (3,) into shape (2,)"),
    ],
    ids=["cv2.error", "MemoryError", "ValueError"],
)
def test_any_error_of_one_image_is_its_error_row_and_the_others_are_read(
    model_path: str, inputs: Path, tmp_path: Path, capsys, monkeypatch, failure: Exception
) -> None:
    from edgeocr.runtime.reader import Reader

    odd = tmp_path / "odd.png"
    cv2.imwrite(str(odd), cv2.resize(crop(3), (121, 32)))  # the one image the reader fails on
    read_batch = Reader.read_batch

    def failing_batch(self, images, **options):
        if any(getattr(image, "shape", (0, 0))[1] == 121 for image in images):
            raise failure
        return read_batch(self, images, **options)

    monkeypatch.setattr(Reader, "read_batch", failing_batch)
    code, results = _read_json(
        [str(inputs / "a.png"), str(odd), str(inputs / "sub" / "b.jpg")], model_path, tmp_path / "r.json"
    )
    assert code == 1
    assert [Path(r["source"]).name for r in results] == ["a.png", "odd.png", "b.jpg"]
    assert results[0]["lines"] and results[2]["lines"] and results[0]["error"] is None is results[2]["error"]
    kind = "cv2.error" if isinstance(failure, cv2.error) else type(failure).__name__
    assert results[1]["lines"] == [] and results[1]["error"].startswith(kind)
    if str(failure):
        assert str(failure).splitlines()[-1] in results[1]["error"]
    assert "1 input(s) could not be read" in capsys.readouterr().err


def test_ctrl_c_is_never_an_error_row(model_path: str, inputs: Path) -> None:
    from edgeocr.cli import _read_each

    class Interrupting:
        def read_batch(self, images):
            raise KeyboardInterrupt

        def read(self, image):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _read_each(Interrupting(), [crop(1)])


@pytest.mark.timeout(60)  # a FIFO that was opened would block the run forever
def test_fifos_devices_symlink_loops_and_oversized_files_are_refused_unread(
    model_path: str, inputs: Path, tmp_path: Path, capsys
) -> None:
    folder = tmp_path / "odd"
    folder.mkdir()
    cv2.imwrite(str(folder / "good.png"), crop(4))
    os.mkfifo(folder / "pipe.png")
    (folder / "loop.png").symlink_to(folder / "loop.png")
    (folder / "gone.jpg").symlink_to(folder / "nowhere.jpg")
    big = folder / "big.bmp"
    cv2.imwrite(str(big), np.full((400, 400, 3), 200, np.uint8))  # 480 KB: over a cap of 0.25 MiB
    code, results = _read_json([str(folder), "/dev/zero"], model_path, tmp_path / "r.json", "--max-image-mb", "0.25")
    assert code == 1
    errors = {Path(r["source"]).name: r["error"] for r in results}
    assert errors["good.png"] is None and next(r for r in results if r["source"].endswith("good.png"))["lines"]
    assert "big.bmp" in errors["big.bmp"] and "480054 bytes, over the limit of 262144 bytes" in errors["big.bmp"]
    assert "FIFO" in errors["pipe.png"] and "symlink loop" in errors["loop.png"]
    assert "broken symlink" in errors["gone.jpg"] and "character device" in errors["zero"]
    assert "5 input(s) could not be read" in capsys.readouterr().err
    # the cap is a setting: at 1 MiB the bitmap is read
    code, results = _read_json([str(big)], model_path, tmp_path / "r2.json", "--max-image-mb", "1")
    assert code == 0 and results[0]["error"] is None


@pytest.mark.timeout(60)
def test_file_checks_refuse_before_opening_and_cap_what_is_read(tmp_path: Path) -> None:
    from edgeocr.core.errors import ImageError
    from edgeocr.core.files import DEFAULT_MAX_FILE_BYTES, file_problem, read_file_bytes
    from edgeocr.runtime.sources import expand_inputs

    assert DEFAULT_MAX_FILE_BYTES == 256 * 1024 * 1024
    data = tmp_path / "a.png"
    data.write_bytes(b"x" * 1000)
    assert read_file_bytes(data) == b"x" * 1000 and file_problem(data) is None
    with pytest.raises(ImageError, match="over the limit of 999 bytes"):
        read_file_bytes(data, max_bytes=999)
    os.mkfifo(tmp_path / "p.png")
    with pytest.raises(ImageError, match="FIFO"):
        read_file_bytes(tmp_path / "p.png")
    with pytest.raises(ImageError, match="a directory"):
        read_file_bytes(tmp_path)
    # without keep_refused (the ray executor) a refused file fails the expansion, naming it, before any read
    with pytest.raises(ImageError, match=r"p\.png: a FIFO"):
        expand_inputs([str(tmp_path)])
    items = expand_inputs([str(tmp_path)], keep_refused=True)
    assert [(i.path.name, i.problem is None) for i in items] == [("a.png", True), ("p.png", False)]
