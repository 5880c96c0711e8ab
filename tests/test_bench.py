"""The benchmark harness: its JSON agrees with ``edgeocr eval``, the reports and plots are written,
bad input fails before any engine loads, a missing peer is reported as such, and each real peer
(when installed) reads clean crops."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeocr.bench import peers as peers_module
from edgeocr.bench.harness import bench_command, run_rec_benchmark
from edgeocr.bench.peers import PEERS, EdgeOcrEngine, EngineNotInstalled, _import, _parse_tsv, make_engines, one_line
from edgeocr.bench.report import pareto_front
from edgeocr.core.errors import DataError, EdgeOCRError, ModelError
from edgeocr.measure.evaluate import evaluate_rec
from edgeocr.measure.metrics import accuracy
from edgeocr.measure.resources import ResourceSampler, environment
from edgeocr.measure.timing import measure_throughput, parse_batches

SCORE_KEYS = ("n", "char_accuracy", "exact_match", "char_accuracy_relaxed", "exact_match_relaxed")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """An exported, untrained crnn_tiny: it reads nonsense, deterministically."""
    torch = pytest.importorskip("torch")
    from edgeocr.core.recognizer_config import RecognizerConfig
    from edgeocr.models import build_from_config, export_onnx

    torch.manual_seed(0)
    cfg = RecognizerConfig(arch="crnn_tiny", max_width=256)
    return export_onnx(build_from_config(cfg).eval(), cfg, tmp_path_factory.mktemp("m") / "tiny.onnx")


@pytest.fixture(scope="module")
def crops(tmp_path_factory) -> Path:
    """Ten synthetic line crops in category folders, with labels.tsv."""
    pytest.importorskip("albumentations")
    from edgeocr.synth.dataset import SynthJob, synthesize

    out = tmp_path_factory.mktemp("crops") / "lines"
    synthesize(SynthJob(kind="lines", count=10, seed=3, out=out, workers=1), progress=False)
    return out


class SpyEngine:
    """An engine that reads a fixed text and counts its loads, to prove nothing ran."""

    batches = False
    threads = 1
    version = "spy 1"
    model_size_bytes = 1000
    loads = 0

    def __init__(self, name: str = "spy", text: str = "LOT 1", **_) -> None:
        self.name, self.text = name, text

    def load(self) -> None:
        type(self).loads += 1

    def read(self, image):
        return self.text, 0.5

    def read_batch(self, images):
        return [self.read(i) for i in images]


class MissingPeer(SpyEngine):
    """A peer whose package is not there."""

    def load(self) -> None:
        _import("edgeocr_no_such_peer_package", "no-such-peer")


def clean_crops() -> list[tuple[np.ndarray, str]]:
    """Black text on white, large and sharp: every peer should read these."""
    out = []
    for text in ("LOT 4821", "EXP 2027", "AB 1234"):
        image = np.full((64, 320, 3), 255, np.uint8)
        cv2.putText(image, text, (12, 46), cv2.FONT_HERSHEY_SIMPLEX, 1.4, (0, 0, 0), 3, cv2.LINE_AA)
        out.append((image, text))
    return out


# --- the harness on our model ------------------------------------------------------------------


def test_results_agree_with_eval_and_reports_are_written(tiny_model, crops, tmp_path):
    engine = EdgeOcrEngine(tiny_model, threads=1, max_batch_size=4)
    out = tmp_path / "report"
    result = run_rec_benchmark(crops, [engine], batches=(1, 4), threads=1, out_dir=out)

    assert result["n"] == 10 and result["batches"] == [1, 4] and result["threads"] == 1
    assert sum(result["categories"].values()) == 10
    (record,) = result["engines"]
    assert record["status"] == "ok" and record["name"] == "edgeocr:tiny" and record["threads"] == 1
    for key in (
        *SCORE_KEYS,
        "latency_ms_p50",
        "latency_ms_p95",
        "latency_ms_p99",
        "per_category",
        "predictions",
        "throughput_ips",
        "resources",
        "load_s",
        "model_size_bytes",
        "version",
    ):
        assert key in record, key
    assert record["model_size_bytes"] == tiny_model.stat().st_size
    assert record["latency_ms_p50"] <= record["latency_ms_p95"] <= record["latency_ms_p99"]
    assert set(record["throughput_ips"]) == {"1", "4"} and all(v > 0 for v in record["throughput_ips"].values())
    assert record["resources"]["rss_peak_mb"] > 0 and record["resources"]["cpu_percent_mean"] >= 0
    assert set(record["per_category"]) == set(result["categories"])

    # The same figures as `edgeocr eval` with the same model, and recomputable from the predictions.
    from edgeocr.runtime.recognizer import EngineConfig, OnnxRecognizer

    recognizer = OnnxRecognizer(tiny_model, EngineConfig(intra_op_threads=1))

    def read(image):
        line = recognizer.recognize([image])[0]
        return line.text, line.confidence

    reference = evaluate_rec(read, crops)
    for key in SCORE_KEYS:
        assert record[key] == reference[key], key
    assert [p["prediction"] for p in record["predictions"]] == [p["prediction"] for p in reference["predictions"]]
    for category, scores in reference["per_category"].items():
        assert record["per_category"][category]["char_accuracy"] == scores["char_accuracy"]
    preds = record["predictions"]
    assert accuracy([p["label"] for p in preds], [p["prediction"] for p in preds])["char_accuracy"] == pytest.approx(
        record["char_accuracy"], abs=1e-6
    )

    # The reports: JSON as returned, markdown tables, self-contained HTML, PNG plots.
    saved = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert saved["engines"][0]["char_accuracy"] == record["char_accuracy"]
    assert saved["environment"]["cpu"]["logical_cores"] >= 1
    md = (out / "results.md").read_text(encoding="utf-8")
    assert "| engine | version |" in md and "edgeocr:tiny strict / relaxed / exact(relaxed)" in md
    assert all(f"| {c} | {n} |" in md for c, n in result["categories"].items()) and "| ALL | 10 |" in md
    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert plots == ["accuracy_vs_latency.png", "per_category.png", "size_vs_accuracy.png", "throughput_vs_batch.png"]
    assert all((out / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 4 and "<table>" in page


def test_two_runs_give_identical_accuracy(tiny_model, crops):
    runs = [run_rec_benchmark(crops, [EdgeOcrEngine(tiny_model, threads=1)], batches=(1,), threads=1) for _ in range(2)]
    first, second = (r["engines"][0] for r in runs)
    for key in SCORE_KEYS:
        assert first[key] == second[key]
    assert first["predictions"] == second["predictions"]
    assert first["per_category"].keys() == second["per_category"].keys()


# --- bad input fails before any work -----------------------------------------------------------


def test_unknown_peer_fails_before_anything_loads(crops, tmp_path, monkeypatch):
    monkeypatch.setitem(PEERS, "spy", SpyEngine)
    SpyEngine.loads = 0
    with pytest.raises(ModelError, match=r"unknown peer 'nope': known peers are easyocr, ppocrv4, ppocrv6, tesseract"):
        bench_command(crops, "rec", [], ["spy", "nope"], 1, "1", tmp_path / "out")
    assert SpyEngine.loads == 0 and not (tmp_path / "out").exists()
    with pytest.raises(ModelError, match="no model named 'no-such-model'"):
        make_engines(["no-such-model"], [], threads=1)
    with pytest.raises(ModelError, match="does not exist"):
        make_engines([str(tmp_path / "missing.onnx")], [], threads=1)
    with pytest.raises(EdgeOCRError, match="--mode nope is not available"):
        bench_command(crops, "nope", [], ["spy"], 1, "1", None)
    with pytest.raises(EdgeOCRError, match="threads must be at least 1"):
        make_engines([], ["spy"], threads=0)


def test_bad_data_fails_with_file_and_line_before_anything_loads(tmp_path):
    SpyEngine.loads = 0
    with pytest.raises(DataError, match="labels.tsv: no such file"):
        run_rec_benchmark(tmp_path, [SpyEngine()])
    data = tmp_path / "d"
    (data / "lot").mkdir(parents=True)
    cv2.imwrite(str(data / "lot" / "a.png"), np.full((20, 60, 3), 200, np.uint8))
    (data / "labels.tsv").write_text("lot/a.png\tLOT 1\nlot/missing.png\tLOT 2\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"labels.tsv:2: image lot/missing.png does not exist"):
        run_rec_benchmark(data, [SpyEngine()])
    with pytest.raises(EdgeOCRError, match="nothing to benchmark"):
        run_rec_benchmark(tmp_path, [])
    assert SpyEngine.loads == 0


class _CountingEngine:
    """Records every batch it is given, from whichever thread."""

    batches = True

    def __init__(self) -> None:
        import threading

        self.seen: list[int] = []
        self.threads: set[int] = set()
        self._lock = threading.Lock()

    def read_batch(self, images):
        import threading
        import time

        time.sleep(0.002)  # long enough for a second worker to pick up a batch meanwhile
        with self._lock:
            self.seen += [int(image[0, 0]) for image in images]
            self.threads.add(threading.get_ident())
        return ["x"] * len(images)


@pytest.mark.parametrize("workers", [1, 2])
def test_throughput_reads_every_line_once_per_batch_size_with_any_number_of_workers(workers):
    images = [np.full((4, 4), i, np.uint8) for i in range(10)]
    engine = _CountingEngine()
    rates = measure_throughput(engine, images, (1, 4), workers=workers)
    assert set(rates) == {"1", "4"} and all(rate > 0 for rate in rates.values())
    # per batch size: one warm-up batch, then every image once
    assert sorted(engine.seen) == sorted([0] + list(range(10)) + [0, 1, 2, 3] + list(range(10)))
    assert (len(engine.threads) > 1) == (workers > 1)
    with pytest.raises(ValueError, match="workers"):
        measure_throughput(engine, images, (1,), workers=0)


def test_batch_sizes_are_parsed_and_checked():
    assert parse_batches("64,1, 8") == (1, 8, 64) and parse_batches([4, 4]) == (4,) and parse_batches(2) == (2,)
    for bad in ("0", "1,x", ""):
        with pytest.raises(EdgeOCRError, match="--batch"):
            parse_batches(bad)


def test_a_peer_that_is_not_installed_is_reported_not_scored(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    cv2.imwrite(str(data / "a.png"), np.full((20, 60, 3), 200, np.uint8))
    (data / "labels.tsv").write_text("a.png\tLOT 1\n", encoding="utf-8")
    result = run_rec_benchmark(data, [SpyEngine("spy"), MissingPeer("ghost")], batches=(1, 8), out_dir=tmp_path / "o")
    ok, missing = result["engines"]
    assert ok["status"] == "ok" and ok["char_accuracy"] == 1.0 and ok["throughput_ips"]["8"] is None
    assert missing == {"name": "ghost", "device": "cpu", "status": "not installed", "reason": missing["reason"]}
    assert "cannot import edgeocr_no_such_peer_package" in missing["reason"] and "char_accuracy" not in missing
    md = (tmp_path / "o" / "results.md").read_text(encoding="utf-8")
    assert "ghost: not installed" in md and "ghost strict" not in md


# --- pieces --------------------------------------------------------------------------------------


def test_peer_text_normalisation_and_tesseract_tsv():
    assert one_line("  SEGU   137157\u30007 ") == "SEGU 137157 7"
    tsv = (
        "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n"
        "1\t1\t0\t0\t0\t0\t0\t0\t100\t20\t-1\t\n"
        "5\t1\t1\t1\t1\t1\t0\t0\t40\t20\t90\tLOT\n"
        "5\t1\t1\t1\t1\t2\t50\t0\t40\t20\t70\t123\n"
    )
    text, confidence = _parse_tsv(tsv)
    assert text == "LOT 123" and confidence == pytest.approx(0.8)
    assert _parse_tsv(tsv.splitlines()[0]) == ("", 0.0)


def test_pareto_front_keeps_engines_nothing_beats():
    points = [("slow-good", 50.0, 95.0), ("fast-bad", 5.0, 40.0), ("mid-worse", 20.0, 30.0), ("mid", 20.0, 80.0)]
    assert pareto_front(points) == ["fast-bad", "mid", "slow-good"]


def test_resource_sampler_and_environment():
    with ResourceSampler(interval_s=0.01) as sampler:
        block = np.ones((512, 512)) @ np.ones((512, 512))
    assert block[0, 0] == 512
    result = sampler.result
    assert result["rss_peak_mb"] >= result["rss_before_mb"] > 0 and result["wall_s"] >= 0
    assert result["gpu"]["available"] in (True, False) and ("reason" in result["gpu"] or result["gpu"]["available"])
    env = environment({"spy": "spy 1"})
    assert {"date", "cpu", "libraries", "engines", "git", "gpu"} <= set(env)
    assert "avx2" in env["cpu"]["flags"] and "numpy" in env["libraries"] and env["engines"] == {"spy": "spy 1"}


# --- the real peers (make test installs them: a missing one fails) -------------------------------


@pytest.mark.parametrize("peer", sorted(PEERS))
def test_installed_peer_reads_clean_crops(peer):
    engine = PEERS[peer](threads=1)
    try:
        engine.load()
    except EngineNotInstalled as exc:
        pytest.fail(f"{peer} is not installed ({exc}): make test installs every peer (make peers)")
    assert engine.model_size_bytes > 0 and "?" not in engine.version.split("(")[0]
    samples = clean_crops()
    reads = engine.read_batch([image for image, _ in samples])
    assert len(reads) == 3
    assert all(isinstance(text, str) and 0.0 <= confidence <= 1.0 for text, confidence in reads)
    assert engine.read(samples[0][0])[0] == reads[0][0]
    scores = accuracy([label for _, label in samples], [text for text, _ in reads])
    assert scores["char_accuracy_relaxed"] > 0.5, reads  # clean, large print: every peer reads most of it


def test_peers_module_reports_missing_binaries(monkeypatch):
    monkeypatch.setattr(peers_module.shutil, "which", lambda name: None)
    with pytest.raises(EngineNotInstalled, match="no tesseract binary"):
        peers_module.TesseractEngine().load()


# --- whole-image pipelines (--mode e2e) and the reader speed script ----------------------------


def clean_scene() -> tuple[np.ndarray, list]:
    """Two large, sharp black lines on white: every full pipeline should find and read them."""
    from edgeocr.bench.e2e import TruthLine

    image = np.full((220, 480, 3), 255, np.uint8)
    truths = []
    for text, y in (("LOT 4821", 80), ("EXP 2027", 170)):
        cv2.putText(image, text, (30, y), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (0, 0, 0), 4, cv2.LINE_AA)
        (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 1.6, 4)
        poly = np.array([[28, y - h - 4], [32 + w, y - h - 4], [32 + w, y + base], [28, y + base]], np.float32)
        truths.append(TruthLine(text=text, poly=poly, ignore=False, vertical=False))
    return image, truths


@pytest.mark.parametrize("peer", sorted(peers_module.SCENE_PEERS))
def test_installed_pipeline_finds_and_reads_a_clean_scene(peer, tmp_path):
    from edgeocr.bench.e2e import AnnotatedImage, score_image

    engine = peers_module.SCENE_PEERS[peer](threads=1)
    try:
        engine.load()
    except EngineNotInstalled as exc:
        pytest.fail(f"{peer} is not installed ({exc}): make test installs every peer (make peers)")
    assert engine.model_size_bytes > 0 and engine.batches is False
    image, truths = clean_scene()
    reads = engine.read_scene(image)
    item = AnnotatedImage(
        path=tmp_path / "x.png",
        file="x.png",
        line=1,
        annotations=tmp_path / "a.jsonl",
        category="",
        exhaustive=True,
        width=480,
        height=220,
        lines=tuple(truths),
    )
    score = score_image(item, reads)
    assert score.counts.tp >= 1, [(r.text, r.poly.tolist()) for r in reads]
    texts = [score.reads[i].text if i is not None else "" for i in score.matched]
    assert accuracy([t.text for t in truths], texts)["char_accuracy_relaxed"] > 0.5, texts


def test_our_pipeline_reads_whole_images_with_the_pp_ocr_detector(tiny_model):
    import rapidocr_onnxruntime  # noqa: F401 -- make test installs it; its absence must fail, not skip

    from edgeocr.bench.peers import EdgeOcrPipeline

    engine = EdgeOcrPipeline(tiny_model, threads=1)
    assert engine.name == "edgeocr:tiny+ppocrv4-det"
    engine.load()
    image, _ = clean_scene()
    reads = engine.read_scene(image)
    assert len(reads) == 2 and all(
        r.poly.shape == (4, 2) for r in reads
    )  # the tiny model reads nonsense; boxes are real
    assert engine.model_size_bytes > tiny_model.stat().st_size and "PP-OCRv4 det" in engine.version


def test_reader_speed_script_measures_and_reports(tiny_model, tmp_path, capsys):
    from edgeocr.bench import reader_speed

    frames, crops, lines = reader_speed.make_frames(3, seed=0)
    assert all(f.shape == (480, 640, 3) for f in frames) and all(1 <= n <= 3 for n in lines)
    assert len(crops) == sum(lines)
    out = tmp_path / "speed.json"
    assert (
        reader_speed.main(["--frames", "2", "--repeats", "1", "--warmup", "1", "--peers", "", "--out", str(out)]) == 0
    )
    result = json.loads(out.read_text())
    assert result["settings"]["detectors"] == ["fast", "default"] and result["settings"]["models"] == ["default"]
    for ours in result["ours_frames"]:  # our fast detector, then the default (PP-OCRv6's, imported)
        assert ours["status"] == "ok" and ours["frame"]["n"] == 2 and ours["model"] == "default"
        assert set(ours["breakdown"]) >= {"detector", "recogniser"}
    assert result["ours_frames"][0]["name"] == "edgeocr:default+fast-det"
    targets = result["targets"]["default"]
    assert targets["frame"].startswith(("met", "NOT met")) and targets["judged_on"] == "edgeocr:default+fast-det"
    assert result["ours_crops"][0]["crop"]["n"] >= 2
    md = out.with_suffix(".md").read_text()
    assert "frame p50 <= 15.0 ms" in md and "line crop p50 <= 1.5 ms" in md
    assert "Where the frame time of edgeocr:default+fast-det goes" in md
    reference = result["machine_reference"]
    assert 0 < reference["start_ms"] < 1000 and 0 < reference["end_ms"] < 1000
    assert f"{reference['start_ms']:.3f} ms at the start" in md

    # Several recognisers side by side: each with every detector, each on the crops, each judged.
    assert (
        reader_speed.main(
            [
                "--frames",
                "1",
                "--repeats",
                "1",
                "--warmup",
                "0",
                "--peers",
                "",
                "--detectors",
                "default",
                "--models",
                f"default,{tiny_model}",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert (
        [r["model"] for r in result["ours_frames"]]
        == [r["model"] for r in result["ours_crops"]]
        == ["default", str(tiny_model)]
    )
    assert set(result["targets"]) == {"default", str(tiny_model)}
    assert out.with_suffix(".md").read_text().count("(same recogniser)") == 0  # one row per model here
    assert reader_speed.main(["--peers", "nope", "--frames", "1", "--out", str(tmp_path / "x.json")]) == 2


def test_core_layouts_measures_every_model_in_both_layouts(tiny_model, crops, tmp_path, capsys):
    from edgeocr.bench import core_layouts

    assert core_layouts.layouts(1) == {"1x1": (1, 1)}
    assert set(core_layouts.layouts(2).values()) == {(2, 1), (1, 2)}
    out = tmp_path / "layouts.json"
    core_layouts.main(
        [
            "--models",
            str(tiny_model),
            str(tiny_model),
            "--data",
            str(crops),
            "--cores",
            "2",
            "--batch",
            "4",
            "--lines",
            "10",
            "--rounds",
            "2",
            "--out",
            str(out),
        ]
    )
    result = json.loads(out.read_text())
    assert result["lines"] == 10 and result["rounds"] == 2
    (entry,) = result["models"].values()  # the same model twice is one entry
    assert set(entry["layouts"]) == set(core_layouts.layouts(2))
    assert all(len(v["rounds"]) == 2 and v["lines_per_s"] > 0 for v in entry["layouts"].values())
    assert entry["best_lines_per_s"] == max(v["lines_per_s"] for v in entry["layouts"].values())
    assert entry["best_vs_first_model"] == 1.0
    assert "best layout" in capsys.readouterr().out
