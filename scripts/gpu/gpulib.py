"""What the two device calls share (see scripts/gpu/README.md).

* :func:`bootstrap`: makes ``edgeocr`` importable from the repository's ``src`` when it is not installed
  (the lent machine has none of our packages; the call runs in a copy of the repository).
* :func:`require_device`: ``--device cuda`` without a CUDA device stops the script loudly (exit 2);
  nothing is ever measured on the CPU in its place.
* :func:`machine_info`: which machine gave a figure: host name, CPU model and cores, GPU name.
* :class:`GpuSampler`: GPU utilisation and memory while a block runs, from NVML (``pynvml``, which
  ``nvidia-ml-py`` provides) or, without it, ``nvidia-smi --query-gpu`` sampled in a thread.
* torch engines over the shipped models, fed and decoded by the runtime's own code:
  :class:`TorchLineRecognizer` (a :class:`~edgeocr.optimize.engines.TorchRecognizer` whose weights come
  from the ``.pt`` beside a crnn model or from the ONNX of an imported architecture, which keeps its
  parameters under their ``state_dict`` names, and which runs fp16 and bf16 on CUDA) and
  :class:`TorchDetector` (the shipped detector's ONNX graph replayed in torch, :func:`onnx_graph_module`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CARRY = HERE / "carry"  # git-ignored: what prepare.py puts there travels with `carry`


class DeviceError(RuntimeError):
    """The device asked for is not here: the script stops (exit 2) and measures nothing."""


def bootstrap() -> None:
    """Import edgeocr from this checkout's ``src`` when it is not installed (as on the lent machine)."""
    if importlib.util.find_spec("edgeocr") is None:
        sys.path.insert(0, str(REPO / "src"))


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file: a call cut off mid-write leaves the old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False) + "\n")


def default_out(name: str) -> Path:
    """``$OUT`` on the lent machine (what is written there comes back), else ``build/gpu/NAME``."""
    out = os.environ.get("OUT")
    return Path(out) if out else REPO / "build" / "gpu" / name


# --- the device ----------------------------------------------------------------------------------


def require_device(device: str) -> dict:
    """What runs ``device`` ('cpu' or 'cuda'); for 'cuda' without a CUDA device a :class:`DeviceError`."""
    if device == "cpu":
        return {"device": "cpu"}
    if device != "cuda":
        raise DeviceError(f"--device must be cpu or cuda, got {device!r}")
    try:
        import torch
    except ImportError as exc:
        raise DeviceError(f"--device cuda: no CUDA device here: torch is not installed ({exc})") from exc
    if not torch.cuda.is_available():
        raise DeviceError(
            f"--device cuda: no CUDA device here (torch {torch.__version__}, built for CUDA "
            f"{torch.version.cuda}, reports torch.cuda.is_available() False); nothing was measured and "
            "nothing runs on the CPU in its place. Run it on the lent GPU machine (scripts/gpu/README.md) "
            "or ask for --device cpu"
        )
    props = torch.cuda.get_device_properties(0)
    return {
        "device": "cuda",
        "gpu": torch.cuda.get_device_name(0),
        "gpu_memory_mib": round(props.total_memory / 2**20),
        "capability": f"{props.major}.{props.minor}",
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "bf16": bool(torch.cuda.is_bf16_supported()),
    }


def machine_info(device_info: dict) -> dict:
    """The machine a run measured on, with a one-line label for the tables."""
    from edgeocr.measure.resources import cpu_info

    cpu = cpu_info()
    host = socket.gethostname() or platform.node()
    gpu = device_info.get("gpu")
    cpu_label = f"{cpu['model']}, {cpu['usable_cores']} cores"
    return {
        "hostname": host,
        "cpu_model": cpu["model"],
        "usable_cores": cpu["usable_cores"],
        "logical_cores": cpu["logical_cores"],
        "gpu": gpu,
        "cpu_label": f"CPU {cpu_label} (host {host})",
        "gpu_label": f"GPU {gpu} (host {host}, {cpu_label})" if gpu else None,
    }


# --- GPU sampling --------------------------------------------------------------------------------


class GpuSampler:
    """GPU 0's utilisation (%) and memory used (MiB, the whole device) while the block runs.

    NVML through ``pynvml`` when it loads, else ``nvidia-smi --query-gpu=utilization.gpu,memory.used``
    every ``interval_ms`` in a thread; ``result`` says which, or why there is no figure."""

    def __init__(self, enabled: bool = True, interval_ms: int = 100) -> None:
        self.enabled = enabled
        self.interval_ms = interval_ms
        self.samples: list[tuple[float, float]] = []
        self.source: str | None = None
        self.reason: str | None = None if enabled else "not a GPU run"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen | None = None
        self.result: dict = {}

    def __enter__(self) -> GpuSampler:
        if not self.enabled:
            return self
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self.source = "nvml"
            self._thread = threading.Thread(target=self._nvml_loop, args=(pynvml, handle), daemon=True)
        except Exception as exc:  # not installed, no driver, no device
            smi = shutil.which("nvidia-smi")
            if smi is None:
                self.reason = f"no NVML ({type(exc).__name__}: {exc}) and no nvidia-smi"
                return self
            self.source = "nvidia-smi"
            self._process = subprocess.Popen(
                [
                    smi,
                    "--query-gpu=utilization.gpu,memory.used",
                    "--format=csv,noheader,nounits",
                    f"-lms={self.interval_ms}",
                    "-i",
                    "0",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            self._thread = threading.Thread(target=self._smi_loop, daemon=True)
        self._thread.start()
        return self

    def _nvml_loop(self, pynvml: Any, handle: Any) -> None:
        while not self._stop.is_set():
            try:
                util = pynvml.nvmlDeviceGetUtilizationRates(handle)
                memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
                self.samples.append((float(util.gpu), memory.used / 2**20))
            except Exception as exc:  # a driver hiccup ends the sampling, not the run
                self.reason = f"NVML stopped answering: {exc}"
                return
            self._stop.wait(self.interval_ms / 1000)

    def _smi_loop(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            parts = [p.strip() for p in line.split(",")]
            try:
                self.samples.append((float(parts[0]), float(parts[1])))
            except (ValueError, IndexError):
                continue

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.samples:
            utils = [u for u, _ in self.samples]
            self.result = {
                "source": self.source,
                "samples": len(self.samples),
                "util_percent_mean": round(sum(utils) / len(utils), 1),
                "util_percent_max": round(max(utils), 1),
                "memory_used_mib_peak": round(max(m for _, m in self.samples), 1),
            }
        else:
            self.result = {"source": self.source, "samples": 0, "reason": self.reason or "no sample taken"}


# --- torch engines ---------------------------------------------------------------------------------


def _torch_dtype(precision: str) -> Any:
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def check_precision(device: str, precision: str) -> None:
    """fp32 anywhere, bf16 anywhere (CPU: autocast), fp16 on CUDA only (CPU fp16 kernels are not a deployment)."""
    from edgeocr.runtime.providers import EngineUnavailable

    if precision not in ("fp32", "fp16", "bf16"):
        raise ValueError(f"precision must be fp32, fp16 or bf16, got {precision!r}")
    if precision == "fp16" and device != "cuda":
        raise EngineUnavailable("fp16 runs on CUDA only here (CPU torch has no fast fp16 kernels)")


class TorchSession:
    """``run`` (an ONNX Runtime session's interface) over a torch module on ``device``.

    CUDA: the weights and the input are cast to fp16 / bf16. CPU: bf16 is autocast, as
    :class:`edgeocr.optimize.engines.TorchRecognizer` does. ``compile_mode``: a ``torch.compile`` mode
    ('reduce-overhead' adds CUDA graphs) with automatic dynamic shapes, so that the many line widths
    compile a few graphs rather than one per width. ``softmax``: the recogniser's ONNX ends in a
    softmax that the torch network leaves out; the detector's graph ends in its sigmoid."""

    def __init__(
        self, network: Any, device: str, precision: str, compile_mode: str | None, softmax: bool = True
    ) -> None:
        import torch

        check_precision(device, precision)
        self._torch = torch
        self.device, self.precision, self.compile_mode, self.softmax = device, precision, compile_mode, softmax
        network = network.eval().to(device)
        self._cast = _torch_dtype(precision) if device == "cuda" and precision != "fp32" else None
        if self._cast is not None:
            network = network.to(self._cast)
        self._autocast = device == "cpu" and precision == "bf16"
        self._graphs = compile_mode is not None and "reduce-overhead" in compile_mode and device == "cuda"
        self.network = torch.compile(network, mode=compile_mode) if compile_mode else network

    def run(self, output_names: Sequence[str], feeds: dict) -> list:
        torch = self._torch
        (batch,) = feeds.values()
        x = torch.from_numpy(batch).to(self.device)
        if self._cast is not None:
            x = x.to(self._cast)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=self._autocast)
        with torch.inference_mode(), autocast:
            if self._graphs:
                torch.compiler.cudagraph_mark_step_begin()
            out = self.network(x).float()
            if self.softmax:
                out = torch.softmax(out, dim=-1)
            return [out.cpu().numpy()]


def torch_network(model_path: Path) -> Any:
    """The trainable network of a shipped recogniser: from the ``.pt`` beside a crnn model (float16 weights,
    widened to float32), or from the ONNX itself for an imported architecture
    (:func:`edgeocr.models.pretrained.load_exported`, the graph's own float32 weights)."""
    from edgeocr.core.sidecar import load_sidecar, sidecar_path
    from edgeocr.models.factory import build_from_config, is_imported
    from edgeocr.models.pretrained import load_exported
    from edgeocr.models.weights import load_weights, weights_path
    from edgeocr.runtime.providers import EngineUnavailable

    sidecar = load_sidecar(sidecar_path(model_path))
    if sidecar.optimization is not None:
        raise EngineUnavailable(
            f"n/a: {model_path.name} is an optimised graph ({', '.join(sidecar.optimization.steps)} of "
            f"{sidecar.optimization.source}); there are no torch weights for it"
        )
    if is_imported(sidecar.config.arch):
        network, _ = load_exported(model_path)
        return network
    weights = weights_path(model_path)
    if not weights.is_file():
        raise EngineUnavailable(f"n/a: no torch weights {weights} beside {model_path} (a wheel install has none)")
    cfg, state = load_weights(weights)
    network = build_from_config(cfg)
    network.load_state_dict(state)
    return network


def _torch_recognizer_class() -> type:
    from edgeocr.optimize.engines import TorchRecognizer

    class TorchLineRecognizer(TorchRecognizer):
        """TorchRecognizer with the weights of every shipped float model and fp16/bf16 on CUDA."""

        def _open_session(self) -> TorchSession:
            import torch

            network = torch_network(self.model_path)
            if self.engine.intra_op_threads:
                torch.set_num_threads(self.engine.intra_op_threads)
            return TorchSession(network, self.device, self.precision, self.compile_mode)

    return TorchLineRecognizer


def torch_line_recognizer(
    model_path: Path, engine: Any, device: str, precision: str, compile_mode: str | None = None
) -> Any:
    """A recogniser reading through torch with the runtime's preprocessing and decoding."""
    check_precision(device, precision)
    return _torch_recognizer_class()(model_path, engine, device=device, precision=precision, compile_mode=compile_mode)


def onnx_graph_module(onnx_bytes: bytes) -> Any:
    """The detector's ONNX graph as a torch module: its own initialisers as buffers, its nodes in order.

    The shipped detector's ONNX has its batch norms folded into the convolutions, so its weights do not
    load into :class:`edgeocr.models.detector.DBNet` and no ``.pt`` ships with it; replaying the graph
    in torch gives torch (eager, fp16/bf16, ``torch.compile``) the very weights ONNX Runtime runs.
    Supports the operators that graph uses (Conv, ConvTranspose, Relu, Add, Resize nearest with integer
    scales, Concat, BatchNormalization, Sigmoid, Constant); any other is refused by name."""
    import numpy as np
    import onnx
    import torch
    from onnx import helper, numpy_helper
    from torch import nn
    from torch.nn import functional as F

    from edgeocr.runtime.providers import EngineUnavailable

    model = onnx.load_model_from_string(onnx_bytes)
    graph = model.graph
    supported = {"Conv", "ConvTranspose", "Relu", "Add", "Resize", "Concat", "BatchNormalization", "Sigmoid"}

    class Graph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.names: dict[str, str] = {}
            for index, tensor in enumerate(graph.initializer):
                key = f"t{index}"
                self.register_buffer(key, torch.from_numpy(np.array(numpy_helper.to_array(tensor))))
                self.names[tensor.name] = key
            self.constants: dict[str, list[float]] = {}
            self.nodes: list[tuple[str, list[str], list[str], dict]] = []
            for node in graph.node:
                attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
                attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
                if node.op_type == "Constant":
                    self.constants[node.output[0]] = numpy_helper.to_array(attrs["value"]).tolist()
                    continue
                if node.op_type not in supported:
                    raise EngineUnavailable(f"the ONNX-to-torch replay does not support {node.op_type} ({node.name})")
                if node.op_type == "Resize" and (
                    attrs.get("mode") != "nearest" or attrs.get("coordinate_transformation_mode") != "asymmetric"
                ):
                    raise EngineUnavailable(f"Resize {node.name}: only nearest/asymmetric is replayed, got {attrs}")
                self.nodes.append((node.op_type, list(node.input), list(node.output), attrs))
            self.input_name = graph.input[0].name
            self.output_name = graph.output[0].name

        def _get(self, env: dict, name: str) -> Any:
            if name in env:
                return env[name]
            if name in self.constants:  # read where used (Resize scales)
                return None
            return getattr(self, self.names[name])

        def forward(self, x: Any) -> Any:
            env = {self.input_name: x}
            for op, inputs, outputs, attrs in self.nodes:
                args = [self._get(env, name) if name else None for name in inputs]
                if op == "Conv":
                    y = _conv(F.conv2d, args, attrs)
                elif op == "ConvTranspose":
                    pads = attrs.get("pads", [0, 0, 0, 0])
                    if pads[0] != pads[2] or pads[1] != pads[3]:
                        raise EngineUnavailable(f"ConvTranspose with uneven pads {pads} is not replayed")
                    y = F.conv_transpose2d(
                        args[0],
                        args[1],
                        args[2] if len(args) > 2 else None,
                        stride=tuple(attrs.get("strides", [1, 1])),
                        padding=(pads[0], pads[1]),
                        output_padding=tuple(attrs.get("output_padding", [0, 0])),
                        groups=attrs.get("group", 1),
                        dilation=tuple(attrs.get("dilations", [1, 1])),
                    )
                elif op == "Relu":
                    y = F.relu(args[0])
                elif op == "Sigmoid":
                    y = torch.sigmoid(args[0])
                elif op == "Add":
                    y = args[0] + args[1]
                elif op == "Concat":
                    y = torch.cat(args, dim=attrs["axis"])
                elif op == "BatchNormalization":
                    y = F.batch_norm(
                        args[0], args[3], args[4], args[1], args[2], training=False, eps=attrs.get("epsilon", 1e-5)
                    )
                else:  # Resize: (X, roi, scales)
                    scales = self.constants[inputs[2]]
                    if scales[:2] != [1.0, 1.0] or any(s != int(s) for s in scales[2:]):
                        raise EngineUnavailable(f"Resize with scales {scales} is not replayed")
                    y = F.interpolate(args[0], scale_factor=(scales[2], scales[3]), mode="nearest")
                env[outputs[0]] = y
            return env[self.output_name]

    def _conv(fn: Any, args: list, attrs: dict) -> Any:
        pads = attrs.get("pads", [0, 0, 0, 0])
        x = args[0]
        if pads[0] != pads[2] or pads[1] != pads[3]:
            x = F.pad(x, (pads[1], pads[3], pads[0], pads[2]))
            padding = (0, 0)
        else:
            padding = (pads[0], pads[1])
        return fn(
            x,
            args[1],
            args[2] if len(args) > 2 else None,
            stride=tuple(attrs.get("strides", [1, 1])),
            padding=padding,
            dilation=tuple(attrs.get("dilations", [1, 1])),
            groups=attrs.get("group", 1),
        )

    return Graph()


def torch_detector(model_path: Path, engine: Any, device: str, precision: str, compile_mode: str | None = None) -> Any:
    """An :class:`~edgeocr.runtime.detector.OnnxDetector` whose network runs in torch (same pre/post-processing)."""
    from edgeocr.core.detector_config import load_detector_sidecar
    from edgeocr.core.errors import ModelError
    from edgeocr.core.sidecar import sha256_hex, sidecar_path
    from edgeocr.runtime.detector import OnnxDetector
    from edgeocr.runtime.recognizer import EngineConfig

    check_precision(device, precision)

    class TorchDetector(OnnxDetector):
        def __init__(self) -> None:  # OnnxDetector's checks, then a torch session instead of ONNX Runtime's
            self.model_path = Path(model_path)
            self.engine = engine or EngineConfig()
            self.sidecar = load_detector_sidecar(sidecar_path(self.model_path))
            self._config = self.sidecar.config
            data = self.model_path.read_bytes()
            if sha256_hex(data) != self.sidecar.onnx_sha256:
                raise ModelError(f"{self.model_path} does not match the checksum in its sidecar")
            if device == "cpu" and self.engine.intra_op_threads:
                import torch

                torch.set_num_threads(self.engine.intra_op_threads)
            self._session = TorchSession(onnx_graph_module(data), device, precision, compile_mode, softmax=False)

    return TorchDetector()


def torch_versions() -> dict:
    """torch, CUDA and TensorRT versions where installed (None where not)."""
    out: dict[str, Any] = {}
    for name in ("torch", "onnxruntime", "onnx", "tensorrt", "pynvml", "numpy", "cv2", "lightning"):
        try:
            module = __import__(name)
            out[name] = getattr(module, "__version__", "installed")
        except Exception as exc:  # a broken install is reported, not fatal
            out[name] = None if isinstance(exc, ImportError) else f"broken: {exc}"
    try:
        import onnxruntime

        out["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except Exception:
        out["onnxruntime_providers"] = []
    return out


class Deadline:
    """Seconds left of ``budget_s`` since construction."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return self.budget_s - self.elapsed()
