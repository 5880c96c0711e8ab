"""Execution providers, strictly: a model asked to run on CUDA or TensorRT runs there or is refused.

ONNX Runtime quietly drops a provider it lacks (or whose libraries fail to load) and carries on on
the CPU; a user who asked for a GPU then measures, or ships, CPU figures without knowing. With
``EngineConfig.strict`` (the default) every session is checked: a provider this ONNX Runtime build
does not offer is refused before loading (:func:`require_providers`), and one that was dropped while
loading afterwards (:func:`check_session_providers`). The CPU provider may always be listed last, as
the fallback for the operators another provider does not implement.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeocr.core.errors import EdgeOCRError

#: Short device names accepted wherever providers are named (``--device cuda``, ``parse_providers``).
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}


class EngineUnavailable(EdgeOCRError):
    """An engine or execution provider that was asked for is not installed or has no device here."""


def parse_providers(names: Sequence[str] | str) -> tuple[str, ...]:
    """``cpu,cuda`` or full provider names as ONNX Runtime provider names, CPU last as the fallback for
    unsupported ops; refused when this ONNX Runtime build lacks one."""
    import onnxruntime as ort

    items = names.split(",") if isinstance(names, str) else list(names)
    wanted = [PROVIDER_ALIASES.get(n.strip().lower(), n.strip()) for n in items if n.strip()]
    return require_providers(
        tuple(dict.fromkeys([*wanted, "CPUExecutionProvider"])) if wanted else ("CPUExecutionProvider",),
        ort.get_available_providers(),
    )


def require_providers(providers: Sequence[str], available: Sequence[str]) -> tuple[str, ...]:
    """``providers`` when ONNX Runtime has every one of them; else a loud :class:`EngineUnavailable`."""
    missing = [p for p in providers if p not in available]
    if missing:
        import onnxruntime as ort

        hint = {
            "CUDAExecutionProvider": "it needs onnxruntime-gpu, a CUDA toolkit and an NVIDIA GPU",
            "TensorrtExecutionProvider": "it needs onnxruntime-gpu built with TensorRT, and TensorRT",
        }
        reasons = "; ".join(f"{p}: {hint.get(p, 'not in this build')}" for p in missing)
        raise EngineUnavailable(
            f"ONNX Runtime {ort.__version__} here offers {', '.join(available)}, not "
            f"{', '.join(missing)} ({reasons}); refusing rather than running on the CPU"
        )
    return tuple(providers)


def check_session_providers(session: Any, providers: Sequence[str], model: Path) -> None:
    """ONNX Runtime drops a provider whose libraries fail to load and carries on on the CPU: refuse that."""
    dropped = [p for p in providers if p not in session.get_providers()]
    if dropped:
        raise EngineUnavailable(
            f"{model}: ONNX Runtime could not start {', '.join(dropped)} (libraries or "
            "device missing) and would have run on the CPU instead; refusing"
        )
