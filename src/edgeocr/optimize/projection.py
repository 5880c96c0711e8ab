"""A **projection** (not a measurement) of recogniser and detector latency on Jetson Nano and Orin Nano.

No Jetson was at hand. What is measured here is the work: :func:`graph_cost` runs an ONNX model once on
the CPU with every intermediate tensor exposed and counts, from the real shapes,

* FLOPs (2 per multiply-accumulate) of Conv, ConvTranspose, MatMul, Gemm, LSTM and GRU (elementwise ops,
  pooling and softmax are not counted: they are bandwidth, not compute);
* memory traffic: the weights once, plus every intermediate tensor written once and read once (no
  fusion assumed, so an upper bound for TensorRT, which fuses conv + activation);
* sequential steps: the time steps of each recurrent layer, which a GPU must run one after another.

:func:`project` turns that into a latency with a roofline and a launch term::

    t = max(FLOPs / (peak * compute_efficiency), bytes / (bandwidth * bandwidth_efficiency))
        + (nodes + 3 * recurrent steps) * launch_overhead

The device figures are NVIDIA's published ones (see :data:`DEVICES` and docs/jetson.md); the
efficiencies and launch overheads are stated assumptions, not measurements. Target: under 100 ms per
image (detector on a 640 x 480 frame plus the recogniser on its lines).

    edgeocr study jetson-projection --out build/optimize/jetson-projection.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

TARGET_MS_PER_IMAGE = 100.0
LINES_PER_IMAGE = 4  # a typical label: lot, dates, a code line
LINE_WIDTH = 160  # px at 32 px height: the median synthetic test line
FRAME = (480, 640)  # detector input (H, W): a 4:3 camera frame, long side 640 (DetectorConfig.max_side)
BYTES = {"fp32": 4, "fp16": 2, "int8": 1}


@dataclass(frozen=True)
class Device:
    """Published peak figures of one device, and the stated efficiency assumptions."""

    name: str
    peak_tflops: dict[str, float]  # by precision
    bandwidth_gb_s: float
    compute_efficiency: dict[str, float]  # share of peak a small batch-1 CNN/RNN reaches, by precision (assumption)
    bandwidth_efficiency: float  # share of peak bandwidth reached (assumption)
    launch_overhead_us: float  # per kernel (assumption)
    jetpack: str
    source: str


DEVICES = {
    "jetson-nano": Device(
        name="Jetson Nano 4GB (128-core Maxwell, 921 MHz)",
        # 128 cores x 2 FLOP (FMA) x 2 (half2) x 0.9216 GHz = 472 GFLOPS fp16; fp32 half that. Maxwell (sm_53)
        # has no int8 dot-product instructions and TensorRT offers no int8 there: no int8 row.
        peak_tflops={"fp32": 0.236, "fp16": 0.472},
        bandwidth_gb_s=25.6,
        compute_efficiency={"fp32": 0.30, "fp16": 0.30},
        bandwidth_efficiency=0.6,
        launch_overhead_us=10.0,
        jetpack="JetPack 4.6.x (L4T 32.7, CUDA 10.2, TensorRT 8.2)",
        source="NVIDIA Jetson Nano module data sheet: 472 GFLOPS, 64-bit LPDDR4 25.6 GB/s",
    ),
    "jetson-orin-nano-8gb": Device(
        name="Jetson Orin Nano 8GB (1024-core Ampere, 32 Tensor Cores, 625 MHz)",
        # CUDA cores: 1024 x 2 x 0.625 GHz = 1.28 TFLOPS fp32. Tensor Cores: 40 TOPS sparse int8 (data sheet)
        # = 20 dense int8 = 10 dense fp16.
        peak_tflops={"fp32": 1.28, "fp16": 10.0, "int8": 20.0},
        # CUDA cores (fp32) reach a larger share of their peak than Tensor Cores do on layers this small.
        bandwidth_gb_s=68.0,
        compute_efficiency={"fp32": 0.30, "fp16": 0.10, "int8": 0.10},
        bandwidth_efficiency=0.6,
        launch_overhead_us=5.0,
        jetpack="JetPack 6.x (L4T 36, CUDA 12.2/12.6, TensorRT 8.6 in 6.0, TensorRT 10.3 in 6.1/6.2)",
        source="NVIDIA Jetson Orin Nano series data sheet: 1024 CUDA cores, 32 Tensor Cores, 625 MHz, "
        "40 TOPS (sparse int8), 128-bit LPDDR5 68 GB/s; 'Super' mode (JetPack 6.1+): 1020 MHz, 67 TOPS, "
        "102 GB/s",
    ),
}


def _shapes(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor of ``model`` on ``feeds`` (one ONNX Runtime run, all outputs exposed)."""
    import onnxruntime as ort

    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    known = {o.name for o in exposed.graph.output}
    for node in exposed.graph.node:
        for name in node.output:
            if name and name not in known:
                exposed.graph.output.append(onnx.ValueInfoProto(name=name))
                known.add(name)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor
    session = ort.InferenceSession(exposed.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, feeds)
    shapes = {name: tuple(np.shape(v)) for name, v in zip(names, values)}
    shapes.update({name: value.shape for name, value in feeds.items()})
    return shapes


def graph_cost(model_path: Path, input_shape: tuple[int, ...]) -> dict:
    """FLOPs, weight and activation bytes (float32), kernel count and recurrent steps of one run on ``input_shape``."""
    model = onnx.load(str(model_path))
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    input_name = model.graph.input[0].name
    shapes = _shapes(model, {input_name: np.zeros(input_shape, np.float32)})
    shapes.update({name: w.shape for name, w in weights.items()})
    flops = 0
    steps = 0
    for node in model.graph.node:
        out = shapes.get(node.output[0], ())
        if node.op_type == "Conv":
            w = shapes[node.input[1]]  # [Cout, Cin/groups, kh, kw]
            flops += 2 * int(np.prod(out)) * int(np.prod(w[1:]))
        elif node.op_type == "ConvTranspose":
            w = shapes[node.input[1]]  # [Cin, Cout/groups, kh, kw]
            flops += 2 * int(np.prod(shapes[node.input[0]])) * int(np.prod(w[1:]))
        elif node.op_type in ("MatMul", "Gemm"):
            a = shapes[node.input[0]]
            k = (
                a[-1]
                if not (node.op_type == "Gemm" and any(at.name == "transA" and at.i for at in node.attribute))
                else a[0]
            )
            flops += 2 * int(np.prod(out)) * int(k)
        elif node.op_type in ("LSTM", "GRU"):
            x, w, r = (shapes[n] for n in node.input[:3])  # X [T, N, I], W [dirs, gates*H, I], R [dirs, gates*H, H]
            time_steps, batch = x[0], x[1]
            flops += 2 * time_steps * batch * w[0] * w[1] * (w[2] + r[2])
            steps += time_steps * w[0]  # directions may overlap on a GPU; counted one after the other (conservative)
    weight_bytes = 4 * sum(int(np.prod(w.shape)) for w in weights.values())
    activation_bytes = (
        2
        * 4
        * sum(
            int(np.prod(shapes.get(o, ())))
            for n in model.graph.node
            for o in n.output
            if o in shapes and o not in weights
        )
    )
    kernels = sum(
        1
        for n in model.graph.node
        if n.op_type not in ("Constant", "Shape", "Gather", "Unsqueeze", "Concat", "ConstantOfShape", "Slice")
    )
    return {
        "input_shape": list(input_shape),
        "gflops": flops / 1e9,
        "weight_mb_fp32": weight_bytes / 1e6,
        "activation_mb_fp32": activation_bytes / 1e6,
        "kernels": kernels,
        "recurrent_steps": steps,
    }


def project(cost: dict, device: Device, precision: str) -> dict:
    """Projected latency (ms) of one run of ``cost`` on ``device`` in ``precision``: roofline plus launches."""
    scale = BYTES[precision] / 4  # tensors and weights shrink with the precision
    traffic = (cost["weight_mb_fp32"] + cost["activation_mb_fp32"]) * 1e6 * scale
    effective = device.peak_tflops[precision] * 1e12 * device.compute_efficiency[precision]
    compute_ms = 1e3 * cost["gflops"] * 1e9 / effective
    memory_ms = 1e3 * traffic / (device.bandwidth_gb_s * 1e9 * device.bandwidth_efficiency)
    launches = cost["kernels"] + 3 * cost["recurrent_steps"]  # a GEMM and gate kernels per recurrent step
    launch_ms = launches * device.launch_overhead_us / 1e3
    return {
        "compute_ms": round(compute_ms, 3),
        "memory_ms": round(memory_ms, 3),
        "launch_ms": round(launch_ms, 3),
        "latency_ms": round(max(compute_ms, memory_ms) + launch_ms, 3),
        "bound": "compute" if compute_ms >= memory_ms else "memory",
    }


def _detector_onnx(folder: Path) -> Path:
    """db_s exported with fresh weights (the work does not depend on the weight values)."""
    from edgeocr.models.detector import build_detector, default_detector_config
    from edgeocr.models.detector_export import export_detector_onnx

    cfg = default_detector_config("db_s")
    return export_detector_onnx(build_detector(cfg).eval(), cfg, folder / "db_s.onnx")


def projection(recognizer: Path) -> dict:
    """Costs of the recogniser (one line, and a batch of the lines of one image) and of db_s, projected."""
    with tempfile.TemporaryDirectory(prefix="edgeocr-projection-") as tmp:
        costs = {
            "recognizer_line": graph_cost(recognizer, (1, 1, 32, LINE_WIDTH)),
            "recognizer_image": graph_cost(recognizer, (LINES_PER_IMAGE, 1, 32, LINE_WIDTH)),
            "recognizer_max_width": graph_cost(recognizer, (1, 1, 32, 512)),
            "detector_db_s": graph_cost(_detector_onnx(Path(tmp)), (1, 3, *FRAME)),
        }
    devices = {}
    for key, device in DEVICES.items():
        rows = {}
        for precision in device.peak_tflops:
            parts = {name: project(cost, device, precision) for name, cost in costs.items()}
            per_image = parts["detector_db_s"]["latency_ms"] + parts["recognizer_image"]["latency_ms"]
            rows[precision] = {
                **parts,
                "per_image_ms": round(per_image, 2),
                "meets_target": per_image < TARGET_MS_PER_IMAGE,
            }
        devices[key] = {"device": asdict(device), "projected": rows}
    return {
        "kind": "projection, not a measurement",
        "model": str(recognizer),
        "target_ms_per_image": TARGET_MS_PER_IMAGE,
        "assumptions": {
            "lines_per_image": LINES_PER_IMAGE,
            "line_width_px": LINE_WIDTH,
            "frame_hw": FRAME,
            "formula": "max(FLOPs/(peak*compute_eff), bytes/(bw*bw_eff)) + (kernels + 3*recurrent "
            "steps) * launch_overhead; activations counted unfused (upper bound)",
        },
        "costs": costs,
        "devices": devices,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Project Jetson latency from measured FLOPs and memory traffic.")
    parser.add_argument("--model", default="default", help="recogniser: shipped name or .onnx")
    parser.add_argument("--out", type=Path, help="write the projection here (JSON)")
    args = parser.parse_args(argv)
    from edgeocr.core.atomic import atomic_write_bytes
    from edgeocr.core.errors import EdgeOCRError
    from edgeocr.runtime.models import resolve_model

    try:
        result = projection(resolve_model(args.model))
    except EdgeOCRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, cost in result["costs"].items():
        print(
            f"{name:22s} input {cost['input_shape']}: {cost['gflops']:.3f} GFLOPs, weights {cost['weight_mb_fp32']:.2f}"
            f" MB, activations {cost['activation_mb_fp32']:.2f} MB, {cost['kernels']} kernels, "
            f"{cost['recurrent_steps']} recurrent steps"
        )
    print(
        f"PROJECTION (not measured): ms per image = db_s on {FRAME[1]}x{FRAME[0]} + {LINES_PER_IMAGE} lines of "
        f"{LINE_WIDTH} px; target < {TARGET_MS_PER_IMAGE:.0f} ms"
    )
    for entry in result["devices"].values():
        for precision, row in entry["projected"].items():
            print(
                f"  {entry['device']['name'][:40]:40s} {precision}: detector {row['detector_db_s']['latency_ms']:7.2f} ms"
                f" + recogniser {row['recognizer_image']['latency_ms']:6.2f} ms = {row['per_image_ms']:7.2f} ms "
                f"({'meets' if row['meets_target'] else 'misses'} the target)"
            )
    if args.out:
        atomic_write_bytes(args.out, (json.dumps(result, indent=1) + "\n").encode())
    return 0
