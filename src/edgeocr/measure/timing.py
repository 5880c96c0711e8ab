"""Timing and scoring engines the same way everywhere: load (timed), warm up, read every crop once
(accuracy from :func:`edgeocr.measure.evaluate.evaluate_samples`, latency p50/p95/p99 of the timed
calls), throughput per batch size, and the process's resources over the reads.

Used by the benchmark (:mod:`edgeocr.bench.harness`, which adds the peers and the reports), by
``edgeocr optimize`` and by training's comparisons, so a figure means the same wherever it appears.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil

from edgeocr.core.errors import EdgeOCRError
from edgeocr.data.labels import read_labels
from edgeocr.measure.engines import DeviceNotSupported, EngineNotInstalled, RecognitionEngine
from edgeocr.measure.evaluate import WARMUP_IMAGES, evaluate_samples, load_images
from edgeocr.measure.resources import ResourceSampler, environment

DEFAULT_WARMUP = 3


def parse_batches(batch: str | int | Sequence[int | str]) -> tuple[int, ...]:
    """``"1,8,64"``, ``8`` or ``[1, 8]`` as sorted, distinct positive batch sizes."""
    items = batch.split(",") if isinstance(batch, str) else [batch] if isinstance(batch, int) else list(batch)
    sizes = set()
    for item in items:
        try:
            size = int(str(item).strip())
        except ValueError:
            raise EdgeOCRError(f"--batch takes positive integers separated by commas, got {batch!r}") from None
        if size < 1:
            raise EdgeOCRError(f"--batch sizes must be at least 1, got {size}")
        sizes.add(size)
    if not sizes:
        raise EdgeOCRError("--batch needs at least one batch size, e.g. 1,8,64")
    return tuple(sorted(sizes))


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def measure_throughput(
    engine: RecognitionEngine, images: list[np.ndarray], batches: Sequence[int], workers: int = 1
) -> dict[str, float | None]:
    """Images per second over the whole set for each batch size (after one warm-up batch).

    ``workers`` > 1: that many threads take the batches in turn from one shared engine, as a server
    with that many workers does (ONNX Runtime runs one session from several threads at once and
    releases the GIL while it computes); with 1 intra-op thread each, one worker per core."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    rates: dict[str, float | None] = {}
    for size in batches:
        if size > 1 and not engine.batches:
            rates[str(size)] = None  # reads one crop at a time: a batch figure would repeat batch 1
            continue
        chunks = [images[i : i + size] for i in range(0, len(images), size)]
        engine.read_batch(chunks[0])
        start = time.perf_counter()
        if workers == 1:
            for chunk in chunks:
                engine.read_batch(chunk)
        else:
            with ThreadPoolExecutor(workers) as pool:
                for _ in pool.map(engine.read_batch, chunks):
                    pass
        elapsed = time.perf_counter() - start
        rates[str(size)] = round(len(images) / elapsed, 2) if elapsed > 0 else None
    return rates


def load_engine(engine) -> tuple[dict, float]:
    """Load ``engine`` (timed): its record so far and the RSS in bytes just before loading."""
    record: dict = {"name": engine.name, "device": getattr(engine, "device", "cpu")}
    rss_before_load = psutil.Process().memory_info().rss
    start = time.perf_counter()
    try:
        engine.load()
    except DeviceNotSupported as exc:
        return {**record, "status": "not available", "reason": str(exc)}, rss_before_load
    except EngineNotInstalled as exc:
        return {**record, "status": "not installed", "reason": str(exc)}, rss_before_load
    record.update(
        status="ok",
        load_s=round(time.perf_counter() - start, 3),
        version=engine.version,
        threads=engine.threads,
        batches=engine.batches,
        model_size_bytes=engine.model_size_bytes,
    )
    return record, rss_before_load


def measure_engine(
    engine,
    read: Callable,
    images: list[np.ndarray],
    warmup: int,
    score: Callable[[Callable], dict],
    after: Callable[[list[float]], dict],
) -> dict:
    """Load ``engine``, then score it with ``score(timed_read)`` inside a resource sampler.

    ``read`` is the engine's read method (one image in); ``score`` runs the evaluation (which warms
    up on its first WARMUP_IMAGES images, then times each call); ``after(timed_ms)`` adds figures
    measured after scoring (throughput), still inside the sampler."""
    record, rss_before_load = load_engine(engine)
    if record["status"] != "ok":
        return record
    call_ms: list[float] = []

    def timed_read(image: np.ndarray):
        begin = time.perf_counter()
        out = read(image)
        call_ms.append((time.perf_counter() - begin) * 1000)
        return out

    with ResourceSampler() as sampler:
        for image in images[: max(0, warmup - WARMUP_IMAGES)]:  # the evaluation warms up with WARMUP_IMAGES more
            read(image)
        scored = score(timed_read)
        timed = call_ms[min(WARMUP_IMAGES, len(images)) :]
        extra = after(timed)
    record.update(scored)
    record.update(
        latency_ms_p50=percentile(timed, 50),
        latency_ms_p95=percentile(timed, 95),
        latency_ms_p99=percentile(timed, 99),
        **extra,
        resources={
            **sampler.result,
            "rss_before_load_mb": round(rss_before_load / 2**20, 1),
            "rss_added_mb": round(sampler.result["rss_peak_mb"] - rss_before_load / 2**20, 1),
        },
    )
    return record


def rec_record(
    engine: RecognitionEngine, samples, images: list[np.ndarray], batches: Sequence[int], warmup: int
) -> dict:
    return measure_engine(
        engine,
        lambda image: engine.read(image),
        images,
        warmup,
        lambda read: evaluate_samples(read, samples),
        lambda _: {"throughput_ips": measure_throughput(engine, images, batches)},
    )


def run_engines(
    engines: Sequence, unit: str, count: int, bench: Callable[[object], dict], progress: Callable[[str], None] | None
) -> list[dict]:
    records = []
    for engine in engines:
        if progress:
            progress(f"{engine.name}: loading and reading {count} {unit}")
        records.append(bench(engine))
        if progress:
            r = records[-1]
            progress(
                f"{engine.name}: {r['status']}"
                + (
                    f", char accuracy {100 * r['char_accuracy']:.1f}%, p50 {r['latency_ms_p50']:.2f} ms"
                    if r["status"] == "ok"
                    else f" ({r.get('reason')})"
                )
            )
    return records


def check_run(engines: Sequence, warmup: int) -> None:
    if warmup < 0:
        raise EdgeOCRError(f"warmup must be >= 0, got {warmup}")
    if not engines:
        raise EdgeOCRError("nothing to benchmark: name at least one model (--models) or peer (--peers)")


def measure_rec(
    data_dir: Path | str,
    engines: Sequence[RecognitionEngine],
    batches: Sequence[int] = (1,),
    threads: int | None = None,
    warmup: int = DEFAULT_WARMUP,
    progress: Callable[[str], None] | None = None,
    before_engines: Callable[[], None] | None = None,
) -> dict:
    """Measure ``engines`` on the crops of ``data_dir``: the run's settings, ``environment`` and one
    record per engine, in order (what the benchmark's ``results.json`` holds).

    ``before_engines`` runs after the data is checked and before any engine loads (the benchmark
    prepares its output folder there)."""
    data_dir = Path(data_dir)
    batches = parse_batches(list(batches))
    check_run(engines, warmup)
    samples, _ = read_labels(data_dir, strict=True)  # DataError labels.tsv:LINE for a missing file
    images = load_images(samples)  # DataError labels.tsv:LINE for an undecodable one
    if before_engines is not None:
        before_engines()
    categories: dict[str, int] = {}
    for sample in samples:
        categories[sample.category] = categories.get(sample.category, 0) + 1
    records = run_engines(
        engines, "crops", len(samples), lambda engine: rec_record(engine, samples, images, batches, warmup), progress
    )
    result = {
        "mode": "rec",
        "data": str(data_dir),
        "n": len(samples),
        "categories": dict(sorted(categories.items())),
        "threads": threads,
        "batches": list(batches),
        "warmup": max(warmup, WARMUP_IMAGES),
    }
    return with_environment(result, records)


def with_environment(result: dict, records: list[dict]) -> dict:
    """``result`` with the machine's ``environment`` (engine versions included) and the ``engines`` records."""
    result["environment"] = environment({r["name"]: r.get("version") or r["status"] for r in records})
    result["engines"] = records
    return result
