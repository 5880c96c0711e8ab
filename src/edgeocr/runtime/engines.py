"""The engines a recogniser can run on, each behind the session interface of the ONNX recogniser.

:class:`~edgeocr.runtime.recognizer.OnnxRecognizer` does the preprocessing (batches of lines of one padded
width) and the CTC decoding; it calls only ``session.run([output], {input: batch})``. Each engine here
supplies such a session, so every engine is fed and decoded by the same code, and what ``edgeocr
optimize`` writes is read by ``--model`` like any model (:func:`open_recognizer` picks the engine):

* ONNX Runtime: CPU, CUDA and TensorRT execution providers (``EngineConfig.providers``), strict by
  default: a missing or dropped provider is refused, never replaced by the CPU
  (:mod:`edgeocr.runtime.providers`).
* OpenVINO (CPU): an IR ``model.xml`` / ``model.bin`` whose sidecar ``model.json`` holds the SHA-256 of the
  ``.xml`` bytes followed by the ``.bin`` bytes (:func:`openvino_sha256`); :class:`OpenVinoRecognizer`
  checks it before loading from memory, as the ONNX runtime does. The sidecar's optimisation note may set
  ``inference_precision`` ('bf16' on CPUs with AVX512-BF16/AMX), applied when compiling. An ``.onnx``
  file can be compiled by OpenVINO directly too.
* TensorRT (Jetson, NVIDIA GPUs): :func:`build_tensorrt_engine` builds a serialised engine from the ONNX
  with fp16/int8 and one optimisation profile over batch and width, cached under a key of the ONNX
  SHA-256, precision, profile, TensorRT version and GPU name. Without TensorRT or a CUDA GPU it raises
  :class:`EngineUnavailable`; it never falls back to the CPU. Written for the TensorRT >= 8.5 tensor API
  (JetPack 5.1+ / 6); see docs/jetson.md for JetPack 4.6 (TensorRT 8.2: ``trtexec``).

OpenVINO and TensorRT are optional: imported only when asked for, with a message naming what to install.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeocr.core.atomic import atomic_write_bytes
from edgeocr.core.errors import ModelError
from edgeocr.core.sidecar import ModelSidecar, load_sidecar, sha256_hex, sidecar_path
from edgeocr.runtime.providers import EngineUnavailable
from edgeocr.runtime.recognizer import BACKENDS, EngineConfig, OnnxRecognizer


class EngineRecognizer(OnnxRecognizer):
    """:class:`OnnxRecognizer`'s preprocessing and decoding over another engine's session.

    Subclasses set their own attributes, then call this ``__init__``, which loads the sidecar (its settings
    checked against their ``settings_sha256``), calls :meth:`_open_session` (which should check the model
    bytes with :meth:`_verified_bytes`) and checks the settings against the graph, as the ONNX recogniser
    does."""

    def __init__(self, model_path: Path | str, engine: EngineConfig | None = None) -> None:  # noqa: D107
        self.model_path = Path(model_path)
        self.engine = engine or EngineConfig()
        self.sidecar = load_sidecar(sidecar_path(self.model_path))
        self._charset = self.sidecar.config.charset_obj
        self._session = self._open_session()
        self._check_signature()

    def _open_session(self) -> Any:
        raise NotImplementedError

    def _verified_bytes(self, *paths: Path) -> list[bytes]:
        """The bytes of ``paths``, after checking their concatenation against the sidecar's checksum."""
        try:
            parts = [path.read_bytes() for path in paths]
        except OSError as exc:
            raise ModelError(f"cannot read the model {self.model_path}: {exc}") from exc
        if sha256_hex(b"".join(parts)) != self.sidecar.onnx_sha256:
            raise ModelError(
                f"{self.model_path} does not match the checksum in {sidecar_path(self.model_path)}: it "
                "was modified or replaced after it was written; re-run edgeocr optimize"
            )
        return parts


# --- OpenVINO ----------------------------------------------------------------------------------


def require(module: str, what: str, install: str) -> Any:
    """Import ``module`` or raise :class:`EngineUnavailable` saying what needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except Exception as exc:  # a broken install raises more than ImportError
        raise EngineUnavailable(
            f"{what} needs {module}, which is not installed or does not load here "
            f"({type(exc).__name__}: {exc}); {install}"
        ) from exc


def require_openvino() -> Any:
    return require("openvino", "--engine openvino", "pip install openvino (or 'edgeocr[optimize]')")


def openvino_sha256(xml: Path) -> str:
    """SHA-256 of the ``.xml`` bytes followed by the ``.bin`` bytes: the figure an OpenVINO sidecar holds."""
    return sha256_hex(xml.read_bytes() + xml.with_suffix(".bin").read_bytes())


class _OpenVinoSession:
    """``run`` of an ONNX Runtime session over an OpenVINO compiled model (one infer request per call)."""

    def __init__(self, compiled: Any, output_name: str) -> None:
        self._compiled = compiled
        self._output = compiled.output(output_name)

    def run(self, output_names: Sequence[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        (batch,) = feeds.values()
        result = self._compiled.create_infer_request().infer({0: batch})
        return [np.asarray(result[self._output])]


class OpenVinoRecognizer(EngineRecognizer):
    """An OpenVINO IR recogniser (``model.xml`` + ``.bin`` + sidecar), read exactly as the ONNX one.

    ``precision``: 'f32', 'bf16' or 'f16' inference precision on the CPU; default the sidecar's
    optimisation note, else float32, asked for explicitly (OpenVINO itself would pick bf16 on AMX CPUs)."""

    def __init__(
        self, model_path: Path | str, engine: EngineConfig | None = None, precision: str | None = None
    ) -> None:  # noqa: D107
        self._asked_precision = precision
        super().__init__(model_path, engine)

    def _open_session(self) -> _OpenVinoSession:
        ov = require_openvino()
        if self.model_path.suffix != ".xml":  # an ONNX file, compiled by OpenVINO
            (onnx_bytes,) = self._verified_bytes(self.model_path)
            return self._compile(ov, lambda core: core.read_model(model=onnx_bytes, weights=b""))
        xml, weights = self._verified_bytes(self.model_path, self.model_path.with_suffix(".bin"))
        return self._compile(
            ov,
            lambda core: core.read_model(
                model=xml.decode("utf-8"), weights=ov.Tensor(np.frombuffer(weights, np.uint8))
            ),
        )

    def _compile(self, ov: Any, read: Callable[[Any], Any]) -> _OpenVinoSession:
        note = self.sidecar.optimization.details if self.sidecar.optimization else {}
        self.precision = self._asked_precision or note.get("inference_precision") or "f32"
        config = {"INFERENCE_PRECISION_HINT": self.precision, "PERFORMANCE_HINT": "LATENCY"}
        if self.engine.intra_op_threads:
            config["INFERENCE_NUM_THREADS"] = self.engine.intra_op_threads
        try:
            core = ov.Core()
            compiled = core.compile_model(read(core), "CPU", config)
        except Exception as exc:
            raise ModelError(f"OpenVINO cannot load {self.model_path}: {exc}") from exc
        return _OpenVinoSession(compiled, self.sidecar.output_name)


# --- TensorRT ----------------------------------------------------------------------------------


def require_tensorrt() -> tuple[Any, str]:
    """TensorRT and the name of a CUDA GPU, or a loud :class:`EngineUnavailable` (never a CPU fallback)."""
    trt = require(
        "tensorrt",
        "--engine tensorrt",
        "on a Jetson it comes with JetPack (python3-libnvinfer); elsewhere pip install tensorrt "
        "with an NVIDIA driver; there is no CPU fallback for this engine",
    )
    torch = require("torch", "--engine tensorrt (its device buffers)", "install the CUDA build of torch")
    if not torch.cuda.is_available():
        raise EngineUnavailable(
            "--engine tensorrt: no CUDA GPU here; TensorRT engines are built on the device "
            "that runs them (a Jetson or an NVIDIA GPU)"
        )
    return trt, torch.cuda.get_device_name(0)


def tensorrt_cache_key(onnx_sha256: str, precision: str, profile: dict, trt_version: str, gpu: str) -> str:
    text = f"{onnx_sha256}|{precision}|{sorted(profile.items())}|{trt_version}|{gpu}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def width_profile(sidecar: ModelSidecar, max_batch: int = 64) -> dict[str, tuple[int, int, int, int]]:
    """min / opt / max input shapes: batch 1..max_batch (opt 8), width min..max (opt 160 px, a typical code)."""
    cfg = sidecar.config
    opt_width = min(cfg.max_width, max(cfg.min_width, 160 // cfg.width_multiple * cfg.width_multiple))
    return {
        "min": (1, 1, cfg.input_height, cfg.min_width),
        "opt": (min(8, max_batch), 1, cfg.input_height, opt_width),
        "max": (max_batch, 1, cfg.input_height, cfg.max_width),
    }


def build_tensorrt_engine(onnx_path: Path, precision: str, cache_dir: Path, max_batch: int = 64) -> Path:
    """A serialised TensorRT engine for ``onnx_path`` ('fp32', 'fp16' or 'int8'), built once per key and cached.

    int8 expects a QDQ model (explicit quantisation: the scales come from the ONNX, calibrated by
    :mod:`edgeocr.optimize.quantize`); fp16 is allowed alongside so that unquantised layers (the LSTM) run in fp16."""
    trt, gpu = require_tensorrt()
    sidecar = load_sidecar(sidecar_path(onnx_path))
    profile = width_profile(sidecar, max_batch)
    key = tensorrt_cache_key(sidecar.onnx_sha256, precision, profile, trt.__version__, gpu)
    plan = cache_dir / f"{onnx_path.stem}-{key}.plan"
    if plan.is_file():
        return plan
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = (
        0 if int(trt.__version__.split(".")[0]) >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    )
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT {trt.__version__} cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    shapes = builder.create_optimization_profile()
    shapes.set_shape(sidecar.input_name, profile["min"], profile["opt"], profile["max"])
    config.add_optimization_profile(shapes)
    serialised = builder.build_serialized_network(network, config)
    if serialised is None:
        raise ModelError(f"TensorRT {trt.__version__} could not build an engine for {onnx_path} ({precision} on {gpu})")
    atomic_write_bytes(plan, bytes(serialised))
    return plan


class _TensorRtSession:
    """``run`` over a TensorRT engine, with torch CUDA tensors as the device buffers."""

    def __init__(self, plan: Path, input_name: str, output_name: str) -> None:
        trt, _ = require_tensorrt()
        import torch

        self._torch = torch
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = runtime.deserialize_cuda_engine(plan.read_bytes())
        if self._engine is None:
            raise ModelError(f"TensorRT cannot load {plan} (built by another TensorRT version or GPU?)")
        self._context = self._engine.create_execution_context()
        self._input, self._output = input_name, output_name
        self._stream = torch.cuda.Stream()

    def run(self, output_names: Sequence[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        torch = self._torch
        batch = torch.from_numpy(feeds[self._input]).cuda()
        self._context.set_input_shape(self._input, tuple(batch.shape))
        out = torch.empty(tuple(self._context.get_tensor_shape(self._output)), dtype=torch.float32, device="cuda")
        self._context.set_tensor_address(self._input, batch.data_ptr())
        self._context.set_tensor_address(self._output, out.data_ptr())
        if not self._context.execute_async_v3(self._stream.cuda_stream):
            raise ModelError("TensorRT execution failed")
        self._stream.synchronize()
        return [out.cpu().numpy()]


class TensorRtRecognizer(EngineRecognizer):
    """A recogniser running a TensorRT engine built (or taken from the cache) from a verified ONNX model."""

    def __init__(
        self,
        model_path: Path | str,
        engine: EngineConfig | None = None,
        precision: str = "fp16",
        cache_dir: Path | None = None,
    ) -> None:  # noqa: D107
        self.precision, self._cache_dir = precision, cache_dir or default_trt_cache()
        super().__init__(model_path, engine)

    def _open_session(self) -> _TensorRtSession:
        self._verified_bytes(self.model_path)
        plan = build_tensorrt_engine(
            self.model_path, self.precision, self._cache_dir, max_batch=max(self.engine.max_batch_size, 1)
        )
        return _TensorRtSession(plan, self.sidecar.input_name, self.sidecar.output_name)


def default_trt_cache() -> Path:
    return Path.home() / ".cache" / "edgeocr" / "tensorrt"


RecognizerFactory = Callable[[Path, EngineConfig], OnnxRecognizer]


def open_recognizer(model_path: Path | str, engine: EngineConfig | None = None) -> OnnxRecognizer:
    """The recogniser for ``model_path`` on ``engine.backend``: an ``.xml`` is an OpenVINO IR (OpenVINO
    whatever the backend says); an ``.onnx`` runs on ONNX Runtime, OpenVINO or TensorRT as asked."""
    engine = engine or EngineConfig()
    path = Path(model_path)
    if path.suffix == ".xml" or engine.backend == "openvino":
        return OpenVinoRecognizer(path, engine)
    if engine.backend == "tensorrt":
        return TensorRtRecognizer(path, engine)
    return OnnxRecognizer(path, engine)


#: Where a model can run: see :func:`engine_config`.
DEVICES = ("cpu", "cuda")


def engine_config(device: str = "cpu", engine: str = "onnxruntime", threads: int = 0, **fields: Any) -> EngineConfig:
    """The :class:`EngineConfig` of ``--device`` / ``--engine`` (and ``Reader(device=..., engine=...)``), strict.

    'cpu' + 'onnxruntime' is ONNX Runtime's CPU provider; 'cuda' + 'onnxruntime' its CUDA provider
    (CPU only for the operators CUDA lacks); 'openvino' runs on the CPU; 'tensorrt' needs 'cuda'.
    Nothing here falls back: a device or engine that is missing is refused when the model loads.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if engine not in BACKENDS:
        raise ValueError(f"engine must be one of {', '.join(BACKENDS)}, got {engine!r}")
    if engine == "tensorrt" and device != "cuda":
        raise ValueError("engine 'tensorrt' runs on an NVIDIA GPU: use device 'cuda'")
    if engine == "openvino" and device != "cpu":
        raise ValueError("engine 'openvino' runs on the CPU here: use device 'cpu'")
    providers = ("CUDAExecutionProvider", "CPUExecutionProvider") if device == "cuda" else ("CPUExecutionProvider",)
    return EngineConfig(intra_op_threads=threads, providers=providers, backend=engine, strict=True, **fields)
