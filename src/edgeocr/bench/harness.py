"""``edgeocr bench --mode rec``: our recognisers and the peers on the same crops, side by side.

Everything the user can get wrong is checked before any engine is loaded: the data folder
(``labels.tsv`` present, every file there and decodable: :class:`DataError` naming ``file:line``),
the engine names (unknown peer or model: :class:`ModelError` listing the known ones), the batch
sizes and the output folder. Then each engine in turn is loaded (timed), warmed up, and read:

* accuracy: every crop once, one at a time, scored by :func:`edgeocr.bench.evaluate.evaluate_samples`
  (so the figures and the JSON layout are those of ``edgeocr eval``), with latency p50/p95/p99 of the
  timed calls (after the warm-up);
* throughput: images/s over the whole set for each batch size, for engines that really batch
  (ours, the PP-OCR recognisers); the others at batch 1 only;
* resources: peak RSS and mean CPU % of the process over the engine's reads (:mod:`.resources`).
  Engines run one after another in this process, so the peak RSS includes what earlier engines left
  (imported libraries); ``rss_added_mb`` is the peak minus the RSS just before this engine loaded.

A peer that is not installed is recorded as ``"status": "not installed"`` with the reason, and left
out of the tables' figures, never scored as zero. Engines are deterministic on CPU, so two runs give
the same accuracy; latencies vary with the machine's load (``environment.load_average`` says how busy).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import psutil

from edgeocr.bench.evaluate import WARMUP_IMAGES, evaluate_samples, load_images
from edgeocr.bench.peers import EngineNotInstalled, RecognitionEngine, make_engines
from edgeocr.bench.resources import ResourceSampler, environment
from edgeocr.core.errors import EdgeOCRError, OutputError
from edgeocr.data.labels import read_labels

DEFAULT_WARMUP = 3
MODES = ("rec",)


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


def _split_names(values: Sequence[str] | str | None) -> list[str]:
    """Names given repeated or comma-separated (``--peers easyocr,tesseract``)."""
    if values is None:
        return []
    values = [values] if isinstance(values, str) else values
    return [name.strip() for value in values for name in str(value).split(",") if name.strip()]


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def _throughput(engine: RecognitionEngine, images: list[np.ndarray], batches: Sequence[int]) -> dict[str, float | None]:
    """Images per second over the whole set for each batch size (after one warm-up batch)."""
    rates: dict[str, float | None] = {}
    for size in batches:
        if size > 1 and not engine.batches:
            rates[str(size)] = None  # reads one crop at a time: a batch figure would repeat batch 1
            continue
        chunks = [images[i : i + size] for i in range(0, len(images), size)]
        engine.read_batch(chunks[0])
        start = time.perf_counter()
        for chunk in chunks:
            engine.read_batch(chunk)
        elapsed = time.perf_counter() - start
        rates[str(size)] = round(len(images) / elapsed, 2) if elapsed > 0 else None
    return rates


def _bench_engine(engine: RecognitionEngine, samples, images: list[np.ndarray], batches: Sequence[int],
                  warmup: int) -> dict:
    record: dict = {"name": engine.name}
    rss_before_load = psutil.Process().memory_info().rss
    start = time.perf_counter()
    try:
        engine.load()
    except EngineNotInstalled as exc:
        return {**record, "status": "not installed", "reason": str(exc)}
    record.update(status="ok", load_s=round(time.perf_counter() - start, 3), version=engine.version,
                  threads=engine.threads, batches=engine.batches, model_size_bytes=engine.model_size_bytes)

    call_ms: list[float] = []

    def timed_read(image: np.ndarray) -> tuple[str, float]:
        begin = time.perf_counter()
        out = engine.read(image)
        call_ms.append((time.perf_counter() - begin) * 1000)
        return out

    with ResourceSampler() as sampler:
        for image in images[: max(0, warmup - WARMUP_IMAGES)]:  # evaluate_samples warms up with WARMUP_IMAGES more
            engine.read(image)
        scored = evaluate_samples(timed_read, samples)
        timed = call_ms[min(WARMUP_IMAGES, len(images)) :]
        throughput = _throughput(engine, images, batches)
    record.update(scored)
    record.update(latency_ms_p50=_percentile(timed, 50), latency_ms_p95=_percentile(timed, 95),
                  latency_ms_p99=_percentile(timed, 99), throughput_ips=throughput,
                  resources={**sampler.result, "rss_before_load_mb": round(rss_before_load / 2**20, 1),
                             "rss_added_mb": round(sampler.result["rss_peak_mb"] - rss_before_load / 2**20, 1)})
    return record


def run_rec_benchmark(data_dir: Path | str, engines: Sequence[RecognitionEngine], batches: Sequence[int] = (1,),
                      threads: int | None = None, warmup: int = DEFAULT_WARMUP, out_dir: Path | str | None = None,
                      progress: Callable[[str], None] | None = None) -> dict:
    """Benchmark ``engines`` on the crops of ``data_dir``; write the reports into ``out_dir`` when given.

    Returns the results (what ``results.json`` holds): the run's settings, ``environment`` and one
    record per engine, in order."""
    data_dir = Path(data_dir)
    batches = parse_batches(list(batches))
    if warmup < 0:
        raise EdgeOCRError(f"warmup must be >= 0, got {warmup}")
    if not engines:
        raise EdgeOCRError("nothing to benchmark: name at least one model (--models) or peer (--peers)")
    samples, _ = read_labels(data_dir, strict=True)  # DataError labels.tsv:LINE for a missing file
    images = load_images(samples)  # DataError labels.tsv:LINE for an undecodable one
    if out_dir is not None:
        from edgeocr.bench.report import check_report_dependencies

        check_report_dependencies()
        out_dir = Path(out_dir)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the output folder {out_dir}: {exc.strerror or exc}") from exc

    categories: dict[str, int] = {}
    for sample in samples:
        categories[sample.category] = categories.get(sample.category, 0) + 1
    records = []
    for engine in engines:
        if progress:
            progress(f"{engine.name}: loading and reading {len(samples)} crops")
        records.append(_bench_engine(engine, samples, images, batches, warmup))
        if progress:
            r = records[-1]
            progress(f"{engine.name}: {r['status']}" + (f", char accuracy {100 * r['char_accuracy']:.1f}%, "
                                                         f"p50 {r['latency_ms_p50']:.2f} ms" if r["status"] == "ok"
                                                         else f" ({r.get('reason')})"))
    result = {
        "mode": "rec",
        "data": str(data_dir),
        "n": len(samples),
        "categories": dict(sorted(categories.items())),
        "threads": threads,
        "batches": list(batches),
        "warmup": max(warmup, WARMUP_IMAGES),
        "environment": environment({r["name"]: r.get("version") or r["status"] for r in records}),
        "engines": records,
    }
    if out_dir is not None:
        from edgeocr.bench.report import write_report

        result["outputs"] = {k: str(v) for k, v in write_report(result, out_dir).items()}
    return result


def bench_command(data: Path | str, mode: str, models: Sequence[str] | str | None, peers: Sequence[str] | str | None,
                  threads: int, batch: str | Sequence[int], out: Path | str | None,
                  *, progress: Callable[[str], None] | None = None) -> dict:
    """``edgeocr bench --data DIR --mode rec --models ... --peers ... --threads N --batch 1,8,64 --out DIR``.

    ``models``: shipped model names or ``.onnx`` paths; ``peers``: names from
    :data:`edgeocr.bench.peers.PEERS`; both repeated or comma-separated. Every argument is checked
    before any engine is loaded."""
    mode = getattr(mode, "value", mode)
    if mode not in MODES:
        raise EdgeOCRError(f"--mode {mode} is not available: bench supports {', '.join(MODES)} "
                           "(e2e needs the reader, detector + recogniser, which is not built yet)")
    batches = parse_batches(batch)
    engines = make_engines(_split_names(models), _split_names(peers), threads, max_batch_size=max(batches))
    return run_rec_benchmark(data, engines, batches, threads=threads, out_dir=out, progress=progress)
