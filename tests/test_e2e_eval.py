"""Whole-image evaluation (``edgeocr eval --mode e2e``, ``edgeocr bench --mode e2e``): exact scores on
hand-made annotations, bad input refused before any work, and the command on the bundled scenes."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeocr.bench.e2e import (
    SceneRead,
    evaluate_scenes,
    join_vertical_pieces,
    load_scene_images,
    read_annotated_images,
)
from edgeocr.bench.harness import bench_command, parse_devices, run_e2e_benchmark
from edgeocr.bench.peers import SCENE_PEERS, DeviceNotSupported, EngineNotInstalled, TesseractPipeline, _tsv_lines
from edgeocr.core.errors import DataError, EdgeOCRError, ModelError
from edgeocr.measure.metrics import accuracy

REPO = Path(__file__).resolve().parents[1]


def box(x: float, y: float, w: float, h: float) -> list[list[float]]:
    return [[x, y], [x + w, y], [x + w, y + h], [x, y + h]]


def write_scenes(root: Path, images: list[dict]) -> Path:
    """A scene folder: one 200x100 image per record, filled with its index (so a fake reader can tell them
    apart), and annotations.jsonl with the given records (``file`` and size added)."""
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, record in enumerate(images):
        file = record.pop("file", f"cat{index % 2}/img{index}.png")
        (root / file).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / file), np.full((100, 200, 3), index, np.uint8))
        lines.append(json.dumps({"file": file, "width": 200, "height": 100, **record}))
    (root / "annotations.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def fake_reader(reads_per_image: list[list[SceneRead]]):
    """Reads image k (filled with k) as ``reads_per_image[k]``; counts its calls."""
    calls = []

    def read(image: np.ndarray) -> list[SceneRead]:
        calls.append(int(image[0, 0, 0]))
        return reads_per_image[int(image[0, 0, 0])]

    read.calls = calls
    return read


LOT = {"text": "LOT 123", "poly": box(10, 10, 100, 20)}
EXP = {"text": "EXP 2027", "poly": box(10, 50, 100, 20)}


def test_perfect_reads_score_one_everywhere(tmp_path):
    data = write_scenes(tmp_path / "s", [{"lines": [LOT, EXP]}, {"lines": [LOT]}])
    images = read_annotated_images(data)
    read = fake_reader(
        [
            [SceneRead("LOT 123", LOT["poly"], 0.9), SceneRead("EXP 2027", EXP["poly"], 0.8)],
            [SceneRead("LOT 123", LOT["poly"], 0.9)],
        ]
    )
    result = evaluate_scenes(read, images)
    assert (result["precision"], result["recall"], result["hmean"]) == (1.0, 1.0, 1.0)
    assert (result["tp"], result["fp"], result["fn"], result["images"], result["n"]) == (3, 0, 0, 2, 3)
    assert result["char_accuracy"] == result["exact_match"] == result["exact_match_relaxed"] == 1.0
    assert set(result["per_category"]) == {"cat0", "cat1"} and result["per_category"]["cat0"]["n"] == 2
    assert result["per_orientation"] == {
        "horizontal": {
            "n": 3,
            "char_accuracy": 1.0,
            "exact_match": 1.0,
            "char_accuracy_relaxed": 1.0,
            "exact_match_relaxed": 1.0,
            "recall": 1.0,
        }
    }
    assert read.calls == [0, 1, 0, 1]  # two warm-up reads (all the images there are), then one timed read each
    assert result["latency_ms_p50"] is not None and len(result["per_image"]) == 2
    first = result["per_image"][0]
    assert first["reads"][1] == {"text": "EXP 2027", "poly": EXP["poly"], "confidence": 0.8, "line": 1}
    assert result["predictions"][0] == {
        "file": "cat0/img0.png",
        "label": "LOT 123",
        "prediction": "LOT 123",
        "confidence": 0.9,
        "iou": 1.0,
        "vertical": False,
        "category": "cat0",
    }


def test_a_missed_line_lowers_recall_and_reads_as_empty(tmp_path):
    data = write_scenes(tmp_path / "s", [{"lines": [LOT, EXP]}])
    result = evaluate_scenes(fake_reader([[SceneRead("LOT 12", LOT["poly"], 0.9)]]), read_annotated_images(data))
    assert (result["tp"], result["fp"], result["fn"]) == (1, 0, 1)
    assert (result["precision"], result["recall"]) == (1.0, 0.5) and result["hmean"] == pytest.approx(2 / 3, abs=1e-6)
    # 'LOT 12' vs 'LOT 123': 1 edit; the missed 'EXP 2027' read as '': 8 edits; 15 characters in all.
    assert result["char_accuracy"] == pytest.approx(1 - 9 / 15, abs=1e-6) and result["exact_match"] == 0.0
    assert [p["prediction"] for p in result["predictions"]] == ["LOT 12", ""]
    assert result["predictions"][1]["iou"] is None and result["predictions"][1]["confidence"] == 0.0


def test_false_positives_count_only_on_exhaustive_images(tmp_path):
    stray = SceneRead("NOISE", box(120, 60, 60, 30), 0.7)
    reads = [SceneRead("LOT 123", LOT["poly"], 0.9), stray]
    exhaustive = evaluate_scenes(
        fake_reader([reads]), read_annotated_images(write_scenes(tmp_path / "a", [{"lines": [LOT]}]))
    )
    partial = evaluate_scenes(
        fake_reader([reads]),
        read_annotated_images(write_scenes(tmp_path / "b", [{"exhaustive": False, "lines": [LOT]}])),
    )
    assert (exhaustive["tp"], exhaustive["fp"], exhaustive["precision"]) == (1, 1, 0.5)
    assert (partial["tp"], partial["fp"], partial["precision"], partial["hmean"]) == (1, 0, 1.0, 1.0)
    assert exhaustive["char_accuracy"] == partial["char_accuracy"] == 1.0  # reading is scored on labels only


def test_ignored_lines_count_neither_way_and_are_not_scored(tmp_path):
    ignored = {"text": "###", "poly": box(10, 50, 100, 20), "ignore": True}
    unlabelled = {"poly": box(120, 10, 60, 20), "ignore": True}  # no text needed on an ignored line
    data = write_scenes(tmp_path / "s", [{"lines": [LOT, ignored, unlabelled]}])
    reads = [
        SceneRead("LOT 123", LOT["poly"], 0.9),
        SceneRead("blurred", ignored["poly"], 0.4),
        SceneRead("inside", box(125, 12, 40, 15), 0.4),
    ]  # matches nothing, lies inside an ignored line
    result = evaluate_scenes(fake_reader([reads]), read_annotated_images(data))
    assert (result["tp"], result["fp"], result["fn"], result["n"]) == (1, 0, 0, 1)
    assert [p["label"] for p in result["predictions"]] == ["LOT 123"]
    missed = evaluate_scenes(fake_reader([[]]), read_annotated_images(data))
    assert (missed["tp"], missed["fp"], missed["fn"], missed["precision"], missed["recall"]) == (0, 0, 1, 1.0, 0.0)


def test_the_pieces_of_a_vertical_line_are_joined_top_to_bottom(tmp_path):
    column = {"text": "ABC", "poly": box(80, 5, 20, 90), "vertical": True}
    pieces = [
        SceneRead("B", box(80, 35, 20, 28), 0.8),
        SceneRead("A", box(80, 5, 20, 28), 0.9),
        SceneRead("C", box(80, 66, 20, 28), 0.7),
    ]
    data = write_scenes(tmp_path / "s", [{"lines": [column]}])
    result = evaluate_scenes(fake_reader([pieces]), read_annotated_images(data))
    assert (result["tp"], result["fp"], result["fn"]) == (1, 0, 0)
    assert result["predictions"][0]["prediction"] == "ABC" and result["predictions"][0]["confidence"] == 0.7
    assert result["per_orientation"]["vertical"]["char_accuracy"] == 1.0
    # Horizontal lines get no such allowance: the same pieces stay three reads, none of them matching.
    (truth,) = read_annotated_images(write_scenes(tmp_path / "h", [{"lines": [{**column, "vertical": False}]}]))[
        0
    ].lines
    assert len(join_vertical_pieces([truth], pieces)) == 3


def test_bad_annotations_name_file_and_line_before_any_read(tmp_path):
    data = write_scenes(tmp_path / "s", [{"lines": [LOT]}, {"lines": [EXP]}])
    path = data / "annotations.jsonl"
    good = path.read_text(encoding="utf-8").splitlines()
    cases = {
        "not valid JSON": good[0] + "\n{oops\n",
        r"image .*missing.png does not exist": good[0] + "\n" + json.dumps({"file": "missing.png", "lines": []}) + "\n",
        r"lines\[0\] has no 'text'": json.dumps({"file": "cat0/img0.png", "lines": [{"poly": LOT["poly"]}]}) + "\n",
        r"lines\[0\]: poly needs at least 3": json.dumps(
            {"file": "cat0/img0.png", "lines": [{"text": "A", "poly": [1, 2, 3, 4]}]}
        )
        + "\n",
        r"lines\[0\]: poly encloses no area": json.dumps(
            {"file": "cat0/img0.png", "lines": [{"text": "A", "poly": [[0, 0], [5, 5], [9, 9]]}]}
        )
        + "\n",
    }
    for message, text in cases.items():
        path.write_text(text, encoding="utf-8")
        line = 2 if text.startswith(good[0]) else 1
        with pytest.raises(DataError, match=rf"annotations.jsonl:{line}: {message}"):
            read_annotated_images(data)
    path.write_text(good[0].replace('"width": 200', '"width": 300') + "\n", encoding="utf-8")
    with pytest.raises(
        DataError, match=r"annotations.jsonl:1: cat0/img0.png is 200x100 but the annotation says 300x100"
    ):
        load_scene_images(read_annotated_images(data))
    (data / "cat0" / "img0.png").write_bytes(b"not an image")
    path.write_text(good[0] + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="annotations.jsonl:1: "):
        load_scene_images(read_annotated_images(data))
    path.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="no usable scene"):
        read_annotated_images(data)
    with pytest.raises(DataError, match="no such file"):
        read_annotated_images(tmp_path / "nowhere")


class SpyScenes:
    """A whole-image engine that reads every labelled line of the bundled scenes perfectly (from the file)."""

    batches = False
    threads = 1
    device = "cpu"
    version = "spy 1"
    model_size_bytes = 1000
    loads = 0

    def __init__(self, truth: dict[int, list[SceneRead]] | None = None, name: str = "spy", **_) -> None:
        self.name, self.truth = name, truth or {}

    def load(self) -> None:
        type(self).loads += 1

    def read_scene(self, image):
        return self.truth.get(int(image.sum()), [])


def test_e2e_benchmark_writes_detection_figures_and_reports(tmp_path):
    data = REPO / "samples" / "scenes"
    images = read_annotated_images(data)
    arrays = load_scene_images(images)
    truth = {
        int(a.sum()): [SceneRead(t.text, t.poly, 1.0) for t in item.lines if not t.ignore]
        for item, a in zip(images, arrays)
    }
    result = run_e2e_benchmark(data, [SpyScenes(truth), SpyScenes(name="blind")], threads=1, out_dir=tmp_path / "o")
    perfect, blind = result["engines"]
    assert result["mode"] == "e2e" and result["images"] == len(images) and result["batches"] == [1]
    assert result["n"] == sum(result["categories"].values()) == sum(len(i.lines) for i in images)
    assert (perfect["precision"], perfect["recall"], perfect["char_accuracy"]) == (1.0, 1.0, 1.0)
    assert (blind["recall"], blind["char_accuracy"], blind["fp"]) == (0.0, 0.0, 0)
    assert perfect["latency_ms_p50"] <= perfect["latency_ms_p99"] and perfect["throughput_ips"]["1"] > 0
    md = (tmp_path / "o" / "results.md").read_text(encoding="utf-8")
    assert "# End-to-end benchmark" in md and "det P / R / H %" in md and "100.0 / 100.0 / 100.0" in md
    assert "## Per orientation" in md
    plots = sorted(p.name for p in (tmp_path / "o" / "plots").iterdir())
    assert plots == ["accuracy_vs_latency.png", "per_category.png", "size_vs_accuracy.png"]
    assert (tmp_path / "o" / "report.html").read_text(encoding="utf-8").count("data:image/png;base64,") == 3


def test_bench_e2e_refuses_bad_requests_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setitem(SCENE_PEERS, "spy", SpyScenes)
    data = REPO / "samples" / "scenes"
    SpyScenes.loads = 0
    with pytest.raises(ModelError, match="unknown peer 'nope'"):
        bench_command(data, "e2e", [], ["spy", "nope"], 1, "1", tmp_path / "o")
    with pytest.raises(EdgeOCRError, match="--batch applies to --mode rec only"):
        bench_command(data, "e2e", [], ["spy"], 1, "1,8", tmp_path / "o")
    with pytest.raises(ModelError, match="--detector .*nothing.onnx"):
        bench_command(data, "e2e", ["default"], [], 1, "1", tmp_path / "o", detector=str(tmp_path / "nothing.onnx"))
    with pytest.raises(DataError, match="annotations.jsonl: no such file"):
        bench_command(tmp_path, "e2e", [], ["spy"], 1, "1", tmp_path / "o")
    with pytest.raises(EdgeOCRError, match="--device takes cpu and/or cuda"):
        bench_command(data, "e2e", [], ["spy"], 1, "1", tmp_path / "o", device="gpu")
    assert SpyScenes.loads == 0 and not (tmp_path / "o").exists()


def test_devices_are_parsed_and_a_missing_gpu_is_refused():
    import onnxruntime as ort

    assert parse_devices("cpu") == ("cpu",) and parse_devices("cpu, cpu") == ("cpu",)
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert parse_devices("cpu,cuda") == ("cpu", "cuda")
    else:
        with pytest.raises(EdgeOCRError, match="--device cuda: CUDA is not available here"):
            parse_devices("cpu,cuda")
    with pytest.raises(DeviceNotSupported, match="CPU only"):
        TesseractPipeline(device="cuda").load()
    assert issubclass(DeviceNotSupported, EngineNotInstalled)


def test_tesseract_lines_are_its_words_grouped_by_line_number():
    header = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n"
    tsv = header + (
        "5\t1\t1\t1\t1\t1\t10\t5\t40\t20\t90\tLOT\n"
        "5\t1\t1\t1\t1\t2\t60\t8\t40\t20\t70\t123\n"
        "5\t1\t1\t1\t2\t1\t10\t40\t50\t18\t50\tEXP\n"
        "5\t1\t1\t1\t2\t2\t70\t40\t5\t18\t-1\t \n"
    )
    first, second = _tsv_lines(tsv)
    assert first.text == "LOT 123" and first.confidence == pytest.approx(0.8)
    assert first.poly.tolist() == box(10, 5, 90, 23)
    assert second.text == "EXP" and second.poly.tolist() == box(10, 40, 50, 18)


def test_eval_e2e_cli_on_the_bundled_scenes(cli, tmp_path):
    import rapidocr_onnxruntime  # noqa: F401 -- make test installs it; its absence must fail, not skip

    out = tmp_path / "e2e.json"
    done = cli(
        "eval",
        "--mode",
        "e2e",
        "--data",
        str(REPO / "samples" / "scenes"),
        "--detector",
        "rapidocr",
        "--threads",
        "2",
        "--json",
        str(out),
        "--quiet",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["mode"] == "e2e" and result["detector"] == "rapidocr" and result["images"] == 3
    assert 0 < result["recall"] <= 1 and 0 < result["precision"] <= 1 and result["tp"] > 0
    # The figures are those of the predictions (missed lines read empty), as in --mode rec.
    scores = accuracy([p["label"] for p in result["predictions"]], [p["prediction"] for p in result["predictions"]])
    assert result["char_accuracy"] == pytest.approx(scores["char_accuracy"], abs=1e-6)
    assert result["n"] == len(result["predictions"]) == result["tp"] + result["fn"]
    assert all(len(r["poly"]) >= 4 for image in result["per_image"] for r in image["reads"])


def test_eval_e2e_cli_bad_input_is_one_line(cli, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    done = cli("eval", "--mode", "e2e", "--data", str(empty))
    assert done.returncode == 2 and "annotations.jsonl: no such file" in done.stderr and "Traceback" not in done.stderr
    done = cli(
        "eval", "--mode", "e2e", "--data", str(REPO / "samples" / "scenes"), "--detector", str(tmp_path / "det.onnx")
    )
    assert done.returncode == 2 and "--detector" in done.stderr and "Traceback" not in done.stderr
