"""Read text lines with an exported ONNX recogniser (numpy, OpenCV and ONNX Runtime; no torch).

:class:`OnnxRecognizer` loads ``model.onnx`` with its sidecar ``model.json``, checks that they
belong together (the sidecar's settings against its ``settings_sha256``, the SHA-256 of the very
bytes it loads, charset fingerprint, input/output names) and checks the settings against the
graph: the class count against the charset, the input height, and, on one blank line run through
the network, the frames per input width against ``frame_stride``. It refuses the pair with a
:class:`ModelError` naming the file otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from edgeocr.core.ctc import DecodedLine, beam_decode, greedy_decode, softmax
from edgeocr.core.errors import ModelError
from edgeocr.core.lineimage import pad_and_normalise, padded_width, to_line_strip
from edgeocr.core.recognizer_config import RecognizerConfig
from edgeocr.core.sidecar import ModelSidecar, load_sidecar, sha256_hex, sidecar_path
from edgeocr.runtime.providers import check_session_providers, require_providers

#: What can run a recogniser: see ``EngineConfig.backend``.
BACKENDS = ("onnxruntime", "openvino", "tensorrt")


@dataclass(frozen=True)
class EngineConfig:
    """How ONNX Runtime runs a model. Immutable, so one instance can be shared across threads.

    ``intra_op_threads``: threads per operator, 0 lets ONNX Runtime choose (all physical cores).
    ``inter_op_threads``: threads across independent operators, 0 lets ONNX Runtime choose.
    ``providers``: execution providers in order of preference.
    ``max_batch_size``: lines sent to the network at once; larger batches are split.
    ``decoder`` / ``beam_width``: override the sidecar's decoder choice when not None.
    ``backend``: what runs the network: 'onnxruntime' (the ``.onnx`` file with ``providers``),
    'openvino' (an OpenVINO IR ``.xml`` written by ``edgeocr optimize --engine openvino``, or an
    ``.onnx`` compiled by OpenVINO) or 'tensorrt' (an engine built from the ``.onnx`` and cached);
    see :func:`edgeocr.runtime.engines.open_recognizer`.
    ``strict``: refuse, loudly, a provider or backend that is missing or that ONNX Runtime dropped
    while loading, instead of running on the CPU (:mod:`edgeocr.runtime.providers`).
    ``spin_wait``: idle intra-op threads spin, waiting for work (ONNX Runtime's ``allow_spinning``).
    Spinning saves the wake-up on back-to-back calls to one session; where two sessions take turns
    on few cores (a reader's detector and recogniser) the idle one's spinning threads take the
    cores the busy one needs, so readers with a detector turn it off in both (on 2 cores a
    640x480 frame went from 32.9 to 16.3 ms at p50).
    """

    intra_op_threads: int = 0
    inter_op_threads: int = 1
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    max_batch_size: int = 16
    decoder: Literal["greedy", "beam"] | None = None
    beam_width: int | None = None
    spin_wait: bool = True
    backend: Literal["onnxruntime", "openvino", "tensorrt"] = "onnxruntime"
    strict: bool = True

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.intra_op_threads < 0 or self.inter_op_threads < 0:
            raise ValueError("thread counts must be >= 0 (0 lets ONNX Runtime choose)")
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {self.max_batch_size}")
        if not self.providers:
            raise ValueError("at least one execution provider is needed")
        if self.beam_width is not None and self.beam_width < 1:
            raise ValueError(f"beam_width must be at least 1, got {self.beam_width}")


def session_options(engine: EngineConfig) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = engine.intra_op_threads
    options.inter_op_num_threads = engine.inter_op_threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not engine.spin_wait:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def open_verified_session(
    model_path: Path, expected_sha256: str, input_name: str, output_name: str, engine: EngineConfig
) -> ort.InferenceSession:
    """An ONNX Runtime session on ``model_path`` after checking it against its sidecar's figures.

    The bytes are hashed and then loaded from memory, so the file cannot change between check and
    use. The file name is not checked: renaming the pair is fine. Raises :class:`ModelError`
    naming the file when it is missing, modified, unloadable, or has other inputs or outputs.
    """
    try:
        data = model_path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"model file {model_path} does not exist") from None
    except OSError as exc:
        raise ModelError(f"cannot read model file {model_path}: {exc}") from exc
    if sha256_hex(data) != expected_sha256:
        raise ModelError(
            f"model file {model_path} does not match the checksum in {sidecar_path(model_path)}: it was modified "
            "or replaced after export; re-export the model"
        )
    if engine.strict:
        require_providers(engine.providers, ort.get_available_providers())
    try:
        session = ort.InferenceSession(data, sess_options=session_options(engine), providers=list(engine.providers))
    except Exception as exc:  # onnxruntime raises several unrelated exception types
        raise ModelError(f"ONNX Runtime cannot load {model_path}: {exc}") from exc
    if engine.strict:
        check_session_providers(session, engine.providers, model_path)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [i.name for i in inputs] != [input_name]:
        raise ModelError(f"{model_path} has inputs {[i.name for i in inputs]}, the sidecar expects {input_name!r}")
    if output_name not in [o.name for o in outputs]:
        raise ModelError(f"{model_path} has no output named {output_name!r}")
    return session


class OnnxRecognizer:
    """A verified ONNX line recogniser. ``recognize`` is safe to call from several threads."""

    def __init__(self, model_path: Path | str, engine: EngineConfig | None = None) -> None:
        self.model_path = Path(model_path)
        self.engine = engine or EngineConfig()
        self.sidecar: ModelSidecar = load_sidecar(sidecar_path(self.model_path))
        self._charset = self.sidecar.config.charset_obj
        self._session = open_verified_session(
            self.model_path, self.sidecar.onnx_sha256, self.sidecar.input_name, self.sidecar.output_name, self.engine
        )
        self._check_signature()

    @property
    def config(self) -> RecognizerConfig:
        """The recogniser configuration from the sidecar."""
        return self.sidecar.config

    @property
    def providers(self) -> list[str]:
        """The execution providers the session actually runs on (ONNX Runtime may drop some)."""
        get_providers = getattr(self._session, "get_providers", None)  # other engines' sessions may lack it
        return list(get_providers()) if get_providers is not None else list(self.engine.providers)

    def _check_signature(self) -> None:
        """The sidecar's settings against the graph: classes, input height and frames per width.

        The shapes are checked where the session states them (ONNX Runtime), then one blank line of
        the sidecar's geometry is run through the network on every engine: its output must have
        ``width // frame_stride`` frames of one class per charset character plus the blank."""
        cfg = self.config
        width = cfg.min_width
        get_inputs = getattr(self._session, "get_inputs", None)  # other engines' sessions may lack it
        if get_inputs is not None:
            output = next(o for o in self._session.get_outputs() if o.name == self.sidecar.output_name)
            classes = output.shape[-1] if output.shape else None
            if isinstance(classes, int) and classes != cfg.num_classes:
                raise ModelError(f"{self.model_path} outputs {classes} classes but its charset needs {cfg.num_classes}")
            shape = list(get_inputs()[0].shape or [])
            if len(shape) == 4 and isinstance(shape[2], int) and shape[2] != cfg.input_height:
                raise ModelError(
                    f"{self.model_path} reads lines {shape[2]} px high but its sidecar's config.input_height is "
                    f"{cfg.input_height}"
                )
            if len(shape) == 4 and isinstance(shape[3], int):
                width = shape[3]  # a graph of one static width (width_policy 'stretch')
        probe = np.zeros((1, 1, cfg.input_height, width), np.float32)
        try:
            (result,) = self._session.run([self.sidecar.output_name], {self.sidecar.input_name: probe})
        except Exception as exc:  # every engine raises its own types
            raise ModelError(
                f"{self.model_path} cannot read a line of its sidecar's geometry ({cfg.input_height}x{width} px): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        frames = cfg.frames_for_width(width)
        if result.ndim != 3 or result.shape[1] != frames or result.shape[2] != cfg.num_classes:
            raise ModelError(
                f"{self.model_path} gives {list(result.shape)} for a line {width} px wide, but its sidecar "
                f"(frame_stride {cfg.frame_stride}, {len(cfg.charset)} characters) expects [1, {frames}, "
                f"{cfg.num_classes}]"
            )

    def recognize_probs(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per-frame class probabilities of each line: float64 ``[T_i, C]``, padding frames cut.

        Lines (gray ``[H, W]`` or BGR ``[H, W, 3]`` uint8) are batched only with lines of the
        same padded width. The bidirectional sequence model reads padding too, so padding a line
        to a wider neighbour would make its read depend on the batch it shares.
        """
        cfg = self.config
        strips = [to_line_strip(img, cfg) for img in images]
        by_width: dict[int, list[int]] = {}
        for index, strip in enumerate(strips):
            by_width.setdefault(padded_width(strip.shape[1], cfg), []).append(index)
        results: list[np.ndarray] = [np.empty((0, cfg.num_classes))] * len(strips)
        step = self.engine.max_batch_size
        for width, indices in sorted(by_width.items()):
            frames = cfg.frames_for_width(width)
            for start in range(0, len(indices), step):
                members = indices[start : start + step]
                batch = np.stack([pad_and_normalise(strips[i], cfg, width) for i in members])
                (output,) = self._session.run([self.sidecar.output_name], {self.sidecar.input_name: batch})
                probs = output.astype(np.float64) if self.sidecar.output_kind == "probs" else softmax(output, axis=-1)
                for row, index in enumerate(members):
                    results[index] = probs[row, :frames]
        return results

    def decode(self, probs: np.ndarray) -> DecodedLine:
        """Decode one line's probabilities with the engine's (else the sidecar's) decoder."""
        if (self.engine.decoder or self.config.decoder) == "beam":
            return beam_decode(probs, self._charset, beam_width=self.engine.beam_width or self.config.beam_width)
        return greedy_decode(probs, self._charset)

    def recognize(self, images: Sequence[np.ndarray]) -> list[DecodedLine]:
        """Read one text line per cropped image (gray ``[H, W]`` or BGR ``[H, W, 3]`` uint8)."""
        return [self.decode(p) for p in self.recognize_probs(images)]
