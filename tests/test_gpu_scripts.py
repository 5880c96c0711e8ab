"""The device calls' scripts (scripts/gpu/, issue 22), run here on the CPU as far as a CPU allows.

Each call script completes with ``--device cpu --smoke`` and writes what the call returns (call 1: the
table as JSON and Markdown; call 2: the float16 weights, the exported model and the report), every row
labelled with this machine's CPU and nothing claiming a GPU; ``--device cuda`` without a CUDA device
stops loudly (exit 2) before measuring anything. The two smoke runs start together (each is mostly
one busy thread), once for the module.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts" / "gpu"
MIB = 2**20
RECOGNISERS = ("default", "accurate", "fast", "fast-int8")
SMOKE_DATA = ["--lines", "samples/lines", "--realdev", "samples/lines"]


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OUT"}  # OUT would redirect the default output folder
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def _start(script: str, *args: str | Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(SCRIPTS / script), *map(str, args)],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    """Both smoke runs: {'call1' | 'call2': (returncode, stdout, stderr, out folder)}."""
    root = tmp_path_factory.mktemp("gpu-smoke")
    out1, out2 = root / "call1", root / "call2"
    runs = {
        "call1": (
            _start(
                "call1_table.py",
                "--device",
                "cpu",
                "--smoke",
                "--threads",
                "1",
                "--out",
                out1,
                *SMOKE_DATA,
                "--scenes",
                "samples/scenes",
            ),
            out1,
        ),
        "call2": (
            _start(
                "call2_train_burst.py",
                "--device",
                "cpu",
                "--smoke",
                "--threads",
                "1",
                "--out",
                out2,
                *SMOKE_DATA,
                "--val",
                "samples/lines",
            ),
            out2,
        ),
    }
    results = {}
    for name, (process, out) in runs.items():
        try:
            stdout, stderr = process.communicate(timeout=280)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            pytest.fail(f"{name} --smoke did not finish in 280 s:\n{stdout[-3000:]}\n{stderr[-3000:]}")
        results[name] = (process.returncode, stdout, stderr, out)
    return results


def _ok(smoke: dict, name: str) -> Path:
    code, stdout, stderr, out = smoke[name]
    assert code == 0, f"{name} --smoke exited {code}:\n{stdout[-3000:]}\n{stderr[-4000:]}"
    assert "Traceback" not in stderr, stderr[-4000:]
    return out


def _positive(value: object, what: str) -> None:
    assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, f"{what}: {value!r}"


def _fraction(value: object, what: str) -> None:
    assert isinstance(value, (int, float)) and 0 <= value <= 1, f"{what}: {value!r}"


# --- call 1 ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_call1_smoke_writes_a_cpu_table_with_every_row(smoke):
    out = _ok(smoke, "call1")
    assert sorted(p.name for p in out.iterdir()) == ["table.json", "table.md"]
    table = json.loads((out / "table.json").read_text())
    assert table["format"] == "edgeocr-gpu-table-1"
    assert table["device"] == "cpu" and table["smoke"] is True and table["batches"] == [1, 2]
    machine = table["machine"]
    assert machine["gpu"] is None and machine["gpu_label"] is None
    assert machine["cpu_label"].startswith("CPU ") and machine["hostname"] in machine["cpu_label"]
    rows = {(r["component"], r["model"], r["variant"]): r for r in table["rows"]}
    expected_ok = [("recogniser", m, "onnxruntime CPU") for m in RECOGNISERS]
    expected_ok += [
        ("recogniser", m, v)
        for m in ("default", "accurate", "fast")
        for v in ("torch eager fp32", "torch eager bf16 (CPU autocast)")
    ]
    expected_ok += [
        ("detector", "fast", v) for v in ("onnxruntime CPU", "torch eager fp32", "torch eager bf16 (CPU autocast)")
    ]
    for key in expected_ok:
        assert key in rows, f"no row {key}; rows: {sorted(rows)}"
        assert rows[key]["status"] == "ok", f"{key}: {rows[key].get('status')} {rows[key].get('reason')}"
    for variant in ("torch eager fp32", "torch eager bf16 (CPU autocast)"):  # an int8 graph has no torch weights
        row = rows[("recogniser", "fast-int8", variant)]
        assert row["status"] == "n/a" and "no torch weights" in row["reason"]
    compiled = [r for r in table["rows"] if r["variant"].startswith("torch.compile")]
    assert len(compiled) == 5 and all(r["status"] == "skipped" and "--smoke" in r["reason"] for r in compiled)
    assert {r["status"] for r in table["rows"]} <= {"ok", "n/a", "skipped"}

    for row in table["rows"]:
        assert row["machine"] == "cpu" and row["where"] == machine["cpu_label"], row
        assert "cuda" not in row["variant"].lower() and "gpu" not in row["variant"].lower()
        if row["status"] != "ok":
            continue
        what = f"{row['model']} {row['variant']}"
        _positive(row["latency_ms_p50"], f"{what} p50")
        _positive(row["latency_ms_p95"], f"{what} p95")
        assert row["latency_ms_p95"] >= row["latency_ms_p50"]
        for size in ("1", "2"):
            _positive(row["throughput"][size], f"{what} throughput b{size}")
        resources = row["resources"]
        _positive(resources["cpu_percent_mean"], f"{what} CPU %")
        _positive(resources["rss_peak_mb"], f"{what} RSS")
        assert resources["gpu"] is None or not resources["gpu"].get("samples"), f"{what}: GPU samples on a CPU run"
        assert resources["torch_cuda_peak_mib"] is None
        if row["component"] == "recogniser":
            assert set(row["accuracy"]) == {"synthetic", "lines"}
            for name, scores in row["accuracy"].items():
                assert scores["n"] == 2
                for key in ("char_accuracy", "exact_match", "char_accuracy_relaxed", "exact_match_relaxed"):
                    _fraction(scores[key], f"{what} {name} {key}")
            for size in ("1", "2"):
                _positive(row["throughput_one_width"][size], f"{what} one-width b{size}")
        else:
            scores = row["detection"]["scenes"]
            assert scores["images"] == 1
            for key in ("precision", "recall", "hmean"):
                _fraction(scores[key], f"{what} {key}")
            for size in ("1", "2"):
                _positive(row["throughput_network"][size], f"{what} network b{size}")
    # torch reads with the weights ONNX Runtime runs: the same figures on these lines
    for model in ("default", "accurate", "fast"):
        ort = rows[("recogniser", model, "onnxruntime CPU")]["accuracy"]["synthetic"]
        eager = rows[("recogniser", model, "torch eager fp32")]["accuracy"]["synthetic"]
        assert abs(ort["char_accuracy"] - eager["char_accuracy"]) < 1e-6, (model, ort, eager)
    ort = rows[("detector", "fast", "onnxruntime CPU")]["detection"]["scenes"]
    eager = rows[("detector", "fast", "torch eager fp32")]["detection"]["scenes"]
    assert (ort["tp"], ort["fp"], ort["fn"]) == (eager["tp"], eager["fp"], eager["fn"])

    markdown = (out / "table.md").read_text()
    assert markdown.startswith("# CPU against GPU")
    assert "smoke run: tiny counts, not a measurement" in markdown
    assert machine["cpu_label"] in markdown
    table_rows = [line for line in markdown.splitlines() if line.startswith("| default ") or line.startswith("| fast")]
    assert len(table_rows) >= 10
    for line in table_rows:
        where = line.split("|")[3].strip()
        assert where.startswith("CPU ") and "GPU" not in where, line


# --- call 2 ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_call2_smoke_trains_two_steps_and_returns_the_weights_and_report(smoke):
    from edgeocr.models.weights import load_weights
    from edgeocr.runtime.recognizer import OnnxRecognizer

    out = _ok(smoke, "call2")
    files = {p.name: p.stat().st_size for p in out.iterdir()}
    assert set(files) == {"report.json", "report.md", "burst-weights.pt", "model.onnx", "model.json", "train-log.txt"}
    assert len(files) <= 8 and all(size < 16 * MIB for size in files.values()), files  # what a call can return
    report = json.loads((out / "report.json").read_text())
    assert report["format"] == "edgeocr-gpu-burst-1" and report["status"] == "done", report.get("errors")
    assert report["device"] == "cpu" and report["smoke"] is True and report["errors"] == []
    assert report["machine"]["gpu"] is None and report["machine"]["gpu_label"] is None
    training = report["training"]
    assert training["probe_steps"] == 1 and training["planned_steps"] == 2 and training["steps"] == 2
    assert training["probe"]["returncode"] == 0 and training["resumed"]["returncode"] == 0
    assert not training["probe"]["interrupted"] and not training["resumed"]["interrupted"]
    assert training["device"]["type"] == "cpu" and training["precision"] == "32-true"
    steps = [c["step"] for c in training["copies"]]  # a copy at each new last.ckpt the copier saw
    assert steps[0] == 1 and steps[-1] == 2 and steps == sorted(steps), steps
    _positive(training["wall_s"], "training wall time")
    _positive(training["steps_per_s"], "steps/s")
    # the accurate checkpoint (weights + AdamW state) is over what a call returns: float16 weights come back
    assert report["checkpoint_bytes"] > 16 * MIB > report["weights_bytes"] == files["burst-weights.pt"]
    assert report["train_settings"]["init"].endswith("accurate.onnx")
    assert report["train_settings"]["accelerator"] == "cpu" and report["train_settings"]["freeze_stages"] == 3
    for phase in ("before", "after"):
        assert set(report[phase]) == {"synthetic", "realdev/lines"}
        for name, scores in report[phase].items():
            assert scores["n"] == 10
            for key in ("char_accuracy", "char_accuracy_relaxed", "exact_match", "exact_match_relaxed"):
                value = scores[key]
                assert math.isfinite(value) and 0 <= value <= 100, (phase, name, key, value)
    cfg, state = load_weights(out / "burst-weights.pt")  # what `edgeocr export --weights` and --init read
    assert cfg.arch == "ppocrv6_small" and state
    reader = OnnxRecognizer(out / "model.onnx")
    assert reader.config.arch == "ppocrv6_small"
    assert "Smoke run" in (out / "report.md").read_text()
    assert "GPU " not in (out / "report.md").read_text().split("\n")[0]


# --- no CUDA: loud, never the CPU instead ----------------------------------------------------------------


@pytest.mark.parametrize("script", ["call1_table.py", "call2_train_burst.py"])
def test_device_cuda_without_a_gpu_stops_before_measuring(script, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / script), "--device", "cuda", "--out", str(out), *SMOKE_DATA],
        cwd=REPO,
        env=_env(CUDA_VISIBLE_DEVICES=""),  # no CUDA device here, even on a machine that has one
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no CUDA device" in result.stderr and "nothing was measured" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() or not any(out.iterdir()), "a refused --device cuda run wrote output"


# --- the pieces ----------------------------------------------------------------------------------------


def _gpulib():
    sys.path.insert(0, str(SCRIPTS))
    try:
        import gpulib
    finally:
        sys.path.remove(str(SCRIPTS))
    return gpulib


def test_detector_graph_replayed_in_torch_matches_onnxruntime():
    import numpy as np

    from edgeocr.core.detection import prepare_image, stack_inputs
    from edgeocr.core.images import read_image
    from edgeocr.runtime.detector import OnnxDetector
    from edgeocr.runtime.models import resolve_detector
    from edgeocr.runtime.recognizer import EngineConfig

    gpulib = _gpulib()
    model = resolve_detector("fast")
    engine = EngineConfig(intra_op_threads=1)
    onnx = OnnxDetector(model, engine)
    replay = gpulib.torch_detector(model, engine, "cpu", "fp32")
    image = read_image(REPO / "samples" / "scenes" / "images" / "00000000.jpg")
    batch = stack_inputs([prepare_image(image, onnx.config)])
    assert np.abs(onnx.probability_maps(batch) - replay.probability_maps(batch)).max() < 1e-4


def test_fp16_is_refused_on_the_cpu():
    from edgeocr.runtime.providers import EngineUnavailable

    gpulib = _gpulib()
    with pytest.raises(EngineUnavailable, match="CUDA only"):
        gpulib.check_precision("cpu", "fp16")


def test_prepare_slims_rapidocr_and_keeps_its_record_true(tmp_path, monkeypatch):
    sys.path.insert(0, str(SCRIPTS))
    try:
        import prepare
    finally:
        sys.path.remove(str(SCRIPTS))
    wheel = tmp_path / "core" / "rapidocr-3.10.0-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("rapidocr/__init__.py", "x = 1\n")
        z.writestr("rapidocr/models/big.onnx", os.urandom(prepare.SLIM_OVER_BYTES + 1))
        z.writestr(
            "rapidocr-3.10.0.dist-info/RECORD",
            "rapidocr/__init__.py,sha256=a,6\nrapidocr/models/big.onnx,sha256=b,9\nrapidocr-3.10.0.dist-info/RECORD,,\n",
        )
    monkeypatch.setattr(prepare, "WHEELS", tmp_path)
    prepare.slim_rapidocr()
    with zipfile.ZipFile(io.BytesIO(wheel.read_bytes())) as z:
        assert sorted(z.namelist()) == ["rapidocr-3.10.0.dist-info/RECORD", "rapidocr/__init__.py"]
        assert "big.onnx" not in z.read("rapidocr-3.10.0.dist-info/RECORD").decode()


def test_prepare_adds_up_each_call_against_the_limit_and_the_readme_names_what_travels():
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "prepare.py"), "--sizes-only"],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode in (0, 1), result.stderr
    assert "call1:" in result.stdout and "call2:" in result.stdout and "MiB of 64" in result.stdout
    readme = (SCRIPTS / "README.md").read_text()
    sys.path.insert(0, str(SCRIPTS))
    try:
        import prepare
    finally:
        sys.path.remove(str(SCRIPTS))
    for paths in prepare.CALLS.values():
        for path in paths:
            assert f'"{path}"' in readme, f"README's carry lists do not name {path}"
    for line in readme.splitlines():
        if line.startswith("command:"):
            assert len(line.split(":", 1)[1].strip()) < 2000


def test_the_device_shell_scripts_parse():
    for name in ("device_setup.sh", "call1.sh", "call2.sh"):
        result = subprocess.run(["bash", "-n", str(SCRIPTS / name)], capture_output=True, text=True)
        assert result.returncode == 0, f"{name}: {result.stderr}"
