"""`edgeocr optimize`: int8 with its accuracy gate, the report card, engines (OpenVINO, fp16, the loud
TensorRT/CUDA errors), the composition with pruning and distillation, and bad input.

Models are an untrained crnn_tiny (reads nonsense, deterministically); data sets are a few synthetic lines.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

pytest.importorskip("torch")

from edgeocr.cli import main  # noqa: E402
from edgeocr.core.errors import DataError, EdgeOCRError, ModelError, OutputError  # noqa: E402
from edgeocr.core.images import read_image  # noqa: E402
from edgeocr.core.sidecar import load_sidecar, sha256_hex, sidecar_path  # noqa: E402
from edgeocr.data.labels import read_labels  # noqa: E402
from edgeocr.optimize import pipeline  # noqa: E402
from edgeocr.optimize.calibration import network_batches  # noqa: E402
from edgeocr.optimize.engines import convert_to_openvino, write_openvino_sidecar  # noqa: E402
from edgeocr.optimize.pipeline import optimize_command, settings_from_cli  # noqa: E402
from edgeocr.optimize.report import headline  # noqa: E402
from edgeocr.runtime.engines import OpenVinoRecognizer  # noqa: E402
from edgeocr.runtime.providers import EngineUnavailable, check_session_providers, require_providers  # noqa: E402
from edgeocr.runtime.reader import Reader, ReaderConfig  # noqa: E402
from edgeocr.runtime.recognizer import EngineConfig, OnnxRecognizer  # noqa: E402
from edgeocr.synth.dataset import SynthJob, synthesize  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, export_trainable) -> Path:
    return export_trainable("crnn_tiny", tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="module")
def lines(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lines") / "eval"
    synthesize(SynthJob(kind="lines", count=12, seed=5, out=out, workers=1), progress=False)
    return out


def _digests(model: Path) -> dict[str, str]:
    return {p.name: sha256_hex(p.read_bytes()) for p in model.parent.iterdir() if p.stem == model.stem}


def _settings(model: Path, out: Path, lines: Path, **extra) -> pipeline.OptimizeSettings:
    values = dict(model=str(model), out=out, int8=True, calib=str(lines), eval=(lines,), threads=1, max_drop_pt=100)
    return settings_from_cli(**{**values, **extra})


def test_int8_writes_a_model_the_reader_loads_and_a_report_card(
    tiny: Path, lines: Path, tmp_path: Path, monkeypatch
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = _digests(tiny)
    import edgeocr.optimize.pipeline as pipeline_module

    gated_on: list[list[str]] = []
    real_char_accuracy = pipeline_module.Run.char_accuracy

    def recording(run, model):
        scores = real_char_accuracy(run, model)
        gated_on.append(sorted(scores))
        return scores

    monkeypatch.setattr(pipeline_module.Run, "char_accuracy", recording)
    report_only = tmp_path / "kept" / "real"
    shutil.copytree(lines, report_only)
    card = optimize_command(_settings(tiny, tmp_path / "out", lines, report_data=(report_only,)))
    out = tmp_path / "out"
    # --report-data is measured for the card beside the source, and never seen by the int8 gate.
    assert gated_on and all(names == ["eval"] for names in gated_on)
    assert [(s["name"], s["gates"]) for s in card["eval_sets"]] == [("eval", True), ("real (report only)", False)]
    for model in ("baseline", "optimized"):
        assert card[model]["accuracy"]["real (report only)"]["n"] == 12
    assert not list(cwd.iterdir())  # nothing of the quantiser's lands in the working directory
    assert _digests(tiny) == before  # the source is never touched
    sidecar = load_sidecar(out / "model.json")
    assert sidecar.onnx_sha256 == sha256_hex((out / "model.onnx").read_bytes())
    assert sidecar.optimization.steps == ("int8",) and sidecar.optimization.source_sha256 == before["tiny.onnx"]
    ops = {n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node}
    assert "QLinearConv" in ops and "QLinearMatMul" in ops  # QOperator int8, the measured default for ONNX Runtime
    assert "Softmax" in ops and "QLinearSoftmax" not in ops  # probabilities stay float

    # The normal Reader reads with it, unchanged, and it agrees with the float model on most frames.
    image = read_image(read_labels(lines)[0][0].path)
    assert len(Reader(ReaderConfig(model=str(out / "model.onnx"))).read(image)) == 1
    batch = network_batches([image], sidecar.config)
    int8_probs = OnnxRecognizer(out / "model.onnx").recognize_probs([image])[0]
    float_probs = OnnxRecognizer(tiny).recognize_probs([image])[0]
    assert int8_probs.shape == float_probs.shape == (batch[0].shape[-1] // 4, sidecar.config.num_classes)
    assert np.abs(int8_probs - float_probs).mean() < 0.05

    saved = json.loads((out / "report.json").read_text())
    assert saved["status"] == "ok" and saved["headline"] == card["headline"]
    for key in ("speedup", "size_reduction", "accuracy_drop_pt"):
        assert isinstance(saved["headline"][key], float)
    for model in ("baseline", "optimized"):
        figures = saved[model]
        assert set(figures["throughput_ips"]) == {"1", "32", "64"} and len(figures["throughput_rounds"]) == 3
        assert figures["throughput_ips"]["64"] == np.median([r["64"] for r in figures["throughput_rounds"]])
        assert figures["latency_ms_p50"] > 0 and figures["latency_ms_p95"] >= figures["latency_ms_p50"]
        assert figures["accuracy"]["eval"]["n"] == 12
    assert saved["baseline"]["size_bytes"] == tiny.stat().st_size
    assert saved["optimized"]["size_bytes"] == (out / "model.onnx").stat().st_size
    assert saved["steps"][0]["name"] == "int8" and (out / "steps" / "01-int8" / "model.onnx").is_file()
    assert "| size on disk |" in (out / "report.md").read_text()
    assert card["headline"]["verdict"] in (out / "report.md").read_text()


def _unfinishable_shapes_model(path: Path) -> Path:
    """A graph ONNX Runtime's symbolic shape inference cannot finish: Add of [a, 32] and [b, 32] with a != b.
    Its 4 KiB weight is above onnx's 1 KiB external-data threshold, so the partial model ORT saves on
    failure comes with a ``<uuid>.data`` file, as the stray files once committed at the repo root did."""
    weight = onnx.numpy_helper.from_array(np.ones((32, 32), np.float32), "w")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Add", ["x", "y"], ["s"]), onnx.helper.make_node("MatMul", ["s", "w"], ["z"])],
        "unfinishable",
        [
            onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["a", 32]),
            onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["b", 32]),
        ],
        [onnx.helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, ["a", 32])],
        initializer=[weight],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), str(path))
    return path


def test_quantisation_prep_leaves_nothing_in_the_working_directory(tiny: Path, tmp_path: Path, monkeypatch) -> None:
    """quant_pre_process's symbolic shape inference saves sym_shape_infer_temp.onnx + <uuid>.data into the
    working directory when it fails (the accurate model's SVTR blocks do); preparation runs in a scratch one,
    and a graph symbolic inference cannot finish is prepared with ONNX's own shape inference instead."""
    from edgeocr.optimize.quantize import prepare_for_quantisation

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    bad = _unfinishable_shapes_model(tmp_path / "models" / "unfinishable.onnx")
    assert prepare_for_quantisation(bad, tmp_path / "out" / "bad.onnx").is_file()
    assert Path.cwd() == cwd.resolve()
    assert not list(cwd.iterdir()), f"left in the working directory: {sorted(p.name for p in cwd.iterdir())}"

    # Relative paths still mean the caller's working directory (they are resolved before the switch).
    shutil.copyfile(tiny, tmp_path / "models" / "tiny.onnx")
    prepared = prepare_for_quantisation(Path("../models/tiny.onnx"), Path("../out/prepared.onnx"))
    assert prepared == Path("../out/prepared.onnx") and (tmp_path / "out" / "prepared.onnx").is_file()
    assert Path.cwd() == cwd.resolve() and not list(cwd.iterdir())


def test_int8_settings_per_engine(tiny: Path, lines: Path, tmp_path: Path) -> None:
    ort_settings = pipeline.int8_settings(_settings(tiny, tmp_path, lines))
    assert (ort_settings.quant_format, ort_settings.activations, ort_settings.quantize_lstm) == (
        "qoperator",
        "uint8",
        True,
    )
    assert pipeline.int8_settings(_settings(tiny, tmp_path, lines, quant_format="qdq")).activations == "int8"
    assert ort_settings.calibration == "minmax"
    percentile = pipeline.int8_settings(_settings(tiny, tmp_path, lines, calib_method="percentile"))
    assert percentile.calibration == "percentile" and percentile.describe(set())["calibration_method"] == "percentile"
    with pytest.raises(EdgeOCRError, match="--calib-method"):
        _settings(tiny, tmp_path, lines, calib_method="median")
    trt = pipeline.int8_settings(_settings(tiny, tmp_path, lines, engine="tensorrt"))
    assert (trt.quant_format, trt.activations, trt.symmetric_activations, trt.quantize_lstm) == (
        "qdq",
        "int8",
        True,
        False,
    )
    with pytest.raises(EdgeOCRError, match="only QDQ"):
        pipeline.int8_settings(_settings(tiny, tmp_path, lines, engine="tensorrt", quant_format="qoperator"))


def test_int8_settings_describe_the_recurrent_layers_the_model_has() -> None:
    from edgeocr.optimize.quantize import Int8Settings

    onnxruntime_int8, tensorrt_int8 = Int8Settings(), Int8Settings(quantize_lstm=False)
    assert onnxruntime_int8.describe({"Conv", "LSTM"})["lstm"] == "int8 (dynamic)"
    assert tensorrt_int8.describe({"Conv", "LSTM"})["lstm"] == "float"
    gru = onnxruntime_int8.describe({"Conv", "GRU"})  # crnn_s: nothing claims an int8 LSTM it does not have
    assert "lstm" not in gru and gru["gru"].startswith("float")
    assert not {"lstm", "gru"} & set(onnxruntime_int8.describe({"Conv"}))


def test_headline_figures_and_checks() -> None:
    def figures(size: int, rate64: float, acc: float) -> dict:
        return {
            "size_bytes": size,
            "latency_ms_p50": 2.0,
            "throughput_ips": {"1": 10.0, "64": rate64},
            "accuracy": {
                "a": {"n": 5, "char_accuracy": acc, "exact_match": 0.5},
                "b": {"n": 5, "char_accuracy": 0.9, "exact_match": 0.5},
            },
        }

    h = headline(figures(4000, 100.0, 0.90), figures(1000, 250.0, 0.894), batch=64)
    assert h["speedup"] == 2.5 and h["size_reduction"] == 0.75 and h["size_ratio"] == 4.0
    assert h["accuracy_drop_pt"] == pytest.approx(0.6) and h["accuracy_drop_pt_per_set"]["b"] == 0.0
    assert h["pass"] == {"floor": True, "ours": False, "int8_default_gate": False}
    assert "ours (<= 0.5 pt): FAIL" in h["verdict"]


def test_the_gate_refuses_and_writes_only_the_report(tiny: Path, lines: Path, tmp_path: Path, capsys) -> None:
    before = _digests(tiny)
    out = tmp_path / "refused"
    code = main(
        [
            "optimize",
            str(tiny),
            "--int8",
            "--calib",
            str(lines),
            "--eval",
            str(lines),
            "--max-drop-pt",
            "-1",
            "--threads",
            "1",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 2
    assert "int8 costs" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md"]
    card = json.loads((out / "report.json").read_text())
    assert card["status"] == "refused" and card["steps"][-1]["status"] == "refused"
    attempts = card["steps"][-1]["gate"]
    assert (
        len(attempts) > 1 and len(attempts[-1]["kept_float"]) == len(attempts) - 1
    )  # layers kept in float, one per round
    assert [r["node"] for r in card["steps"][-1]["sensitivity"]][: len(attempts) - 1] == attempts[-1]["kept_float"]
    assert "Refused" in (out / "report.md").read_text()
    assert _digests(tiny) == before


def test_bad_input_gets_clear_errors_before_any_work(tiny: Path, lines: Path, tmp_path: Path, monkeypatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="holds no images"):
        optimize_command(_settings(tiny, tmp_path / "o1", lines, calib=str(empty)))
    lonely = tmp_path / "lonely" / "m.onnx"
    lonely.parent.mkdir()
    shutil.copy(tiny, lonely)
    with pytest.raises(ModelError, match="sidecar .* is missing"):
        optimize_command(_settings(lonely, tmp_path / "o2", lines))
    with pytest.raises(EdgeOCRError, match="strictly between 0 and 1"):
        optimize_command(_settings(tiny, tmp_path / "o3", lines, prune=1.5))
    with pytest.raises(EdgeOCRError, match="--quant-format"):
        _settings(tiny, tmp_path / "o4", lines, quant_format="int4")
    with pytest.raises(EdgeOCRError, match="architecture"):
        optimize_command(_settings(Path("crnn_s"), tmp_path / "o5", lines))
    with pytest.raises(EdgeOCRError, match="--bf16 .* --engine openvino"):
        optimize_command(_settings(tiny, tmp_path / "o6", lines, int8=False, bf16=True))
    with pytest.raises(EdgeOCRError, match="GPUs"):
        optimize_command(_settings(tiny, tmp_path / "o7", lines, int8=False, fp16=True))
    monkeypatch.setitem(__import__("sys").modules, "openvino", None)  # as if OpenVINO were not installed
    with pytest.raises(EngineUnavailable, match="needs openvino"):
        optimize_command(_settings(tiny, tmp_path / "o8", lines, engine="openvino"))
    with pytest.raises(EdgeOCRError, match="--input-height .* --distill-from"):
        optimize_command(_settings(tiny, tmp_path / "o9", lines, input_height=32))
    with pytest.raises(ModelError, match="pretrained source.*import-recognizer easyocr"):
        optimize_command(_settings(Path("easyocr"), tmp_path / "o10", lines))
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 11))


def test_out_never_replaces_the_source_model(tiny: Path, lines: Path, tmp_path: Path) -> None:
    before = _digests(tiny)
    for out in (tiny.parent, tiny.parent.parent):
        with pytest.raises(OutputError, match="would replace it"):
            optimize_command(_settings(tiny, out, lines, overwrite=True))
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="already exists"):
        optimize_command(_settings(tiny, taken, lines))
    assert _digests(tiny) == before and (taken / "keep.txt").read_text() == "mine"


def test_tensorrt_and_gpu_providers_fail_loudly(tiny: Path, lines: Path, tmp_path: Path, capsys) -> None:
    code = main(["optimize", str(tiny), "--engine", "tensorrt", "--fp16", "--out", str(tmp_path / "trt"), "--quiet"])
    assert code == 2 and "tensorrt" in capsys.readouterr().err and not (tmp_path / "trt").exists()
    code = main(["optimize", str(tiny), "--int8", "--providers", "cuda", "--out", str(tmp_path / "cuda")])
    err = capsys.readouterr().err
    assert code == 2 and "CUDAExecutionProvider" in err and "refusing" in err
    with pytest.raises(EngineUnavailable, match="TensorrtExecutionProvider"):
        require_providers(("TensorrtExecutionProvider", "CPUExecutionProvider"), ["CPUExecutionProvider"])

    class FellBack:  # what ONNX Runtime does when CUDA libraries fail to load: it quietly keeps only the CPU
        def get_providers(self):
            return ["CPUExecutionProvider"]

    with pytest.raises(EngineUnavailable, match="would have run on the CPU"):
        check_session_providers(FellBack(), ("CUDAExecutionProvider", "CPUExecutionProvider"), tiny)


def test_openvino_round_trip_matches_onnx_runtime(tiny: Path, lines: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    xml = convert_to_openvino(tiny, tmp_path / "ov" / "model.xml")
    write_openvino_sidecar(xml, load_sidecar(sidecar_path(tiny)), None)
    samples, _ = read_labels(lines)
    images = [read_image(s.path) for s in samples[:6]]
    engine = EngineConfig(intra_op_threads=1)
    expected = OnnxRecognizer(tiny, engine).recognize_probs(images)
    got = OpenVinoRecognizer(xml, engine).recognize_probs(images)
    for a, b in zip(expected, got):
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-4
    (tmp_path / "ov" / "model.bin").write_bytes(b"\0" + (tmp_path / "ov" / "model.bin").read_bytes()[1:])
    with pytest.raises(ModelError, match="checksum"):
        OpenVinoRecognizer(xml, engine)


def test_openvino_int8_through_the_command(tiny: Path, lines: Path, tmp_path: Path) -> None:
    pytest.importorskip("nncf")
    card = optimize_command(_settings(tiny, tmp_path / "ov8", lines, engine="openvino", bf16=True))
    out = tmp_path / "ov8"
    assert card["output"]["format"] == "openvino" and (out / "model.xml").is_file() and (out / "model.bin").is_file()
    note = load_sidecar(out / "model.json").optimization
    assert note.steps == ("openvino",) and note.details["inference_precision"] == "bf16"
    assert card["optimized"]["size_bytes"] == (out / "model.xml").stat().st_size + (out / "model.bin").stat().st_size
    assert OpenVinoRecognizer(out / "model.xml").precision == "bf16"
    # What optimize wrote is read by --model like any model: the folder, or its model.xml.
    images = [read_image(p) for p in sorted(lines.rglob("*.png"))[:4]]
    by_folder = Reader(model=out, detector=None).read_batch(images)
    assert type(Reader(model=out, detector=None).recognizer).__name__ == "OpenVinoRecognizer"
    by_file = Reader(model=out / "model.xml", detector=None).read_batch(images)
    assert [[(line.text, line.confidence) for line in r] for r in by_folder] == [
        [(line.text, line.confidence) for line in r] for r in by_file
    ]
    # The source .onnx on OpenVINO reads as it does on ONNX Runtime.
    assert [r.texts for r in Reader(model=tiny, detector=None, engine="openvino").read_batch(images)] == [
        r.texts for r in Reader(model=tiny, detector=None).read_batch(images)
    ]


def test_fp16_conversion_runs(tiny: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    from edgeocr.optimize.precision import to_fp16

    half = to_fp16(tiny, tmp_path / "half.onnx")
    model = onnx.load(str(half))
    assert {i.data_type for i in model.graph.initializer} >= {onnx.TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # float32 in and out
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED  # see precision.py
    x = np.random.default_rng(0).normal(size=(2, 1, 32, 64)).astype(np.float32)
    reference = ort.InferenceSession(str(tiny), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    got = ort.InferenceSession(str(half), options, providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    assert got.dtype == np.float32 and np.abs(got - reference).max() < 1e-2


def test_steps_compose_distill_prune_int8(tiny: Path, lines: Path, tmp_path: Path, monkeypatch) -> None:
    """Distillation and pruning are another module's: here stand-ins that copy the model record what the
    command hands them and check the order distil -> prune -> int8 and the card listing every step."""
    import edgeocr.optimize.distill as distill_module
    import edgeocr.optimize.pruning as pruning_module

    calls = []

    def fake(name: str):
        def run(source, *args, **kwargs):
            out_dir = args[-1] if name == "prune" else args[1]
            calls.append((name, str(source), kwargs))
            out_dir.mkdir(parents=True)
            model = tiny if name == "distill" else Path(source)
            for suffix in (".onnx", ".json", ".pt"):
                shutil.copy(model.with_suffix(suffix), out_dir / f"model{suffix}")
            return pruning_module.PruneResult(out_dir / "model.onnx", {"fake": name})

        return run

    monkeypatch.setattr(distill_module, "distill", fake("distill"))
    monkeypatch.setattr(pruning_module, "prune", fake("prune"))
    card = optimize_command(
        _settings(
            Path("crnn_s"),
            tmp_path / "all",
            lines,
            distill_from=str(tiny),
            prune=0.3,
            prune_method="structured",
            distill_steps=7,
            distill_weight=0.0,
            input_height=48,
        )
    )
    assert [c[0] for c in calls] == ["distill", "prune"]
    assert calls[0][1] == "crnn_s" and calls[0][2]["steps"] == 7
    assert calls[0][2]["kl_weight"] == 0.0 and calls[0][2]["input_height"] == 48
    assert calls[1][1].endswith("01-distill/model.onnx")
    assert [s["name"] for s in card["steps"]] == ["distill", "prune", "int8"]
    assert card["steps"][1]["stats"] == {"fake": "prune"} and card["source"]["path"] == str(tiny)  # teacher = baseline
    steps = tmp_path / "all" / "steps"
    assert sorted(p.name for p in steps.iterdir()) == ["01-distill", "02-prune", "03-int8"]
    assert load_sidecar(tmp_path / "all" / "model.json").optimization.steps == ("distill", "prune", "int8")


def test_projection_counts_the_flops_torch_computes(tiny: Path) -> None:
    """graph_cost's FLOPs on the ONNX graph equal a count from the torch modules' own shapes."""
    import torch

    from edgeocr.models.factory import build_recognizer
    from edgeocr.optimize.projection import DEVICES, graph_cost, project

    network, cfg = build_recognizer("crnn_tiny", max_width=256)
    expected = 0
    hooks = []

    def conv_hook(module, inputs, output):
        nonlocal expected
        expected += 2 * output.numel() * module.in_channels // module.groups * int(np.prod(module.kernel_size))

    def linear_hook(module, inputs, output):
        nonlocal expected
        expected += 2 * output.numel() * module.in_features

    for module in network.modules():
        if isinstance(module, torch.nn.Conv2d):
            hooks.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, torch.nn.Linear):
            hooks.append(module.register_forward_hook(linear_hook))
    with torch.no_grad():
        network.eval()(torch.zeros(2, 1, 32, 96))
    rnn = network.sequence  # bidirectional GRU: 3 gates, T = 96 / 4 frames, batch 2
    expected += 2 * (96 // 4) * 2 * 2 * 3 * rnn.hidden_size * (rnn.input_size + rnn.hidden_size)
    cost = graph_cost(tiny, (2, 1, 32, 96))
    assert cost["gflops"] * 1e9 == pytest.approx(expected, rel=1e-9)
    assert cost["recurrent_steps"] == 2 * 96 // 4
    nano = project(cost, DEVICES["jetson-nano"], "fp16")
    assert nano["latency_ms"] >= max(nano["compute_ms"], nano["memory_ms"]) > 0
    assert "int8" not in DEVICES["jetson-nano"].peak_tflops  # no int8 path on Maxwell


def test_gpu_script_refuses_without_cuda(tmp_path: Path, capsys) -> None:
    import torch

    from edgeocr.bench.gpu_recognizer import main as gpu_main

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device: the refusal path does not apply")
    assert gpu_main(["--out", str(tmp_path / "gpu.json")]) == 2
    assert "no CUDA device" in capsys.readouterr().err and not (tmp_path / "gpu.json").exists()


def test_quantisation_aware_fine_tuning_then_int8(tiny: Path, lines: Path, tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    import torch

    from edgeocr.models.factory import build_recognizer
    from edgeocr.optimize.qat import add_fake_quantisers, fold_batch_norms, remove_fake_quantisers

    network, _ = build_recognizer("crnn_tiny", max_width=256)
    network.eval()
    x = torch.randn(2, 1, 32, 64)
    with torch.no_grad():
        before = network(x)
        assert fold_batch_norms(network) == 7  # the crnn's seven conv + batch norm pairs
        assert torch.allclose(network(x), before, atol=1e-4)  # folding does not change the function
        hooks = add_fake_quantisers(network)
        network(x)  # the observers see a batch
        assert not torch.equal(network(x), before)  # the forward pass now sees int8 rounding
        remove_fake_quantisers(network, hooks)
        assert torch.allclose(network(x), before, atol=1e-4)

    card = optimize_command(_settings(tiny, tmp_path / "qat", lines, qat_steps=2))
    assert [s["name"] for s in card["steps"]] == ["qat", "int8"] and card["steps"][0]["stats"]["steps"] == 2
    assert load_sidecar(tmp_path / "qat" / "model.json").optimization.steps == ("qat", "int8")
    with pytest.raises(EdgeOCRError, match="add --int8"):
        optimize_command(_settings(tiny, tmp_path / "qat2", lines, int8=False, qat_steps=2, prune=0.5))


@pytest.mark.slow
def test_quantisation_aware_fine_tuning_takes_an_imported_model_without_a_pt(tmp_path: Path) -> None:
    """accurate ships no model.pt: its ONNX is its trainable weights, and QAT starts from it."""
    from edgeocr.optimize.qat import qat_finetune
    from edgeocr.runtime.models import resolve_model

    path, stats = qat_finetune(resolve_model("accurate"), tmp_path / "model.onnx", 1, batch_size=2)
    assert stats["steps"] == 1 and OnnxRecognizer(path).config.arch == "ppocrv6_small"
