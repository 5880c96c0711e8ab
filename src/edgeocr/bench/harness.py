"""``edgeocr bench``: our recognisers / readers and the peers on the same data, side by side.

``--mode rec`` reads crops (``labels.tsv``), each given whole; ``--mode e2e`` reads whole images
(``annotations.jsonl``) with each engine's full pipeline, scored by :mod:`edgeocr.bench.e2e`
(the figures of ``edgeocr eval --mode e2e``: accuracy of every labelled line, missed ones read
empty, and detection precision / recall / hmean at IoU 0.5), one image at a time.

Everything the user can get wrong is checked before any engine is loaded: the data folder
(``labels.tsv`` / ``annotations.jsonl`` present, every file there and decodable: :class:`DataError`
naming ``file:line``), the engine names (unknown peer or model: :class:`ModelError` listing the
known ones), the devices (``cuda`` where ONNX Runtime has no CUDA provider is refused), the batch
sizes and the output folder. Then each engine in turn is loaded (timed), warmed up, and read:

* accuracy: every crop once, one at a time, scored by :func:`edgeocr.bench.evaluate.evaluate_samples`
  (so the figures and the JSON layout are those of ``edgeocr eval``), with latency p50/p95/p99 of the
  timed calls (after the warm-up);
* throughput: images/s over the whole set for each batch size, for engines that really batch
  (ours, the PP-OCR recognisers); the others at batch 1 only (e2e: batch 1, from the timed reads);
* resources: peak RSS and mean CPU % of the process over the engine's reads (:mod:`.resources`).
  Engines run one after another in this process, so the peak RSS includes what earlier engines left
  (imported libraries); ``rss_added_mb`` is the peak minus the RSS just before this engine loaded.

A peer that is not installed is recorded as ``"status": "not installed"`` with the reason, and left
out of the tables' figures, never scored as zero. Engines are deterministic on CPU, so two runs give
the same accuracy; latencies vary with the machine's load (``environment.load_average`` says how busy).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import psutil

from edgeocr.bench.e2e import IOU_THRESHOLD, AnnotatedImage, evaluate_scenes, load_scene_images, read_annotated_images
from edgeocr.bench.evaluate import WARMUP_IMAGES, evaluate_samples, load_images
from edgeocr.bench.peers import (
    DEVICES,
    RAPIDOCR_DETECTOR,
    DeviceNotSupported,
    EngineNotInstalled,
    RecognitionEngine,
    SceneEngine,
    make_engines,
    make_scene_engines,
)
from edgeocr.bench.resources import ResourceSampler, environment
from edgeocr.core.errors import EdgeOCRError, OutputError
from edgeocr.data.labels import read_labels

DEFAULT_WARMUP = 3
MODES = ("rec", "e2e")


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


def split_names(values: Sequence[str] | str | None) -> list[str]:
    """Names given repeated or comma-separated (``--peers easyocr,tesseract``)."""
    if values is None:
        return []
    values = [values] if isinstance(values, str) else values
    return [name.strip() for value in values for name in str(value).split(",") if name.strip()]


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def measure_throughput(engine: RecognitionEngine, images: list[np.ndarray],
                       batches: Sequence[int], workers: int = 1) -> dict[str, float | None]:
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


def _load(engine) -> tuple[dict, float]:
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
    record.update(status="ok", load_s=round(time.perf_counter() - start, 3), version=engine.version,
                  threads=engine.threads, batches=engine.batches, model_size_bytes=engine.model_size_bytes)
    return record, rss_before_load


def _measure(engine, read: Callable, images: list[np.ndarray], warmup: int,
             score: Callable[[Callable], dict], after: Callable[[list[float]], dict]) -> dict:
    """Load ``engine``, then score it with ``score(timed_read)`` inside a resource sampler.

    ``read`` is the engine's read method (one image in); ``score`` runs the evaluation (which warms
    up on its first WARMUP_IMAGES images, then times each call); ``after(timed_ms)`` adds figures
    measured after scoring (throughput), still inside the sampler."""
    record, rss_before_load = _load(engine)
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
    record.update(latency_ms_p50=_percentile(timed, 50), latency_ms_p95=_percentile(timed, 95),
                  latency_ms_p99=_percentile(timed, 99), **extra,
                  resources={**sampler.result, "rss_before_load_mb": round(rss_before_load / 2**20, 1),
                             "rss_added_mb": round(sampler.result["rss_peak_mb"] - rss_before_load / 2**20, 1)})
    return record


def _bench_engine(engine: RecognitionEngine, samples, images: list[np.ndarray], batches: Sequence[int],
                  warmup: int) -> dict:
    return _measure(engine, lambda image: engine.read(image), images, warmup,
                    lambda read: evaluate_samples(read, samples),
                    lambda _: {"throughput_ips": measure_throughput(engine, images, batches)})


def _bench_scene_engine(engine: SceneEngine, annotated: list[AnnotatedImage], images: list[np.ndarray],
                        warmup: int) -> dict:
    def throughput(timed_ms: list[float]) -> dict:
        # Whole images are read one at a time: images/s over the timed reads of the evaluation itself.
        total = sum(timed_ms) / 1000
        return {"throughput_ips": {"1": round(len(timed_ms) / total, 3) if total > 0 else None}}

    return _measure(engine, lambda image: engine.read_scene(image), images, warmup,
                    lambda read: evaluate_scenes(read, annotated, images), throughput)


def _prepare_output(out_dir: Path | str | None) -> Path | None:
    """Check the report's libraries and create ``out_dir`` before any engine loads."""
    if out_dir is None:
        return None
    from edgeocr.bench.report import check_report_dependencies

    check_report_dependencies()
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder {out_dir}: {exc.strerror or exc}") from exc
    return out_dir


def _run_engines(engines: Sequence, unit: str, count: int, bench: Callable[[object], dict],
                 progress: Callable[[str], None] | None) -> list[dict]:
    records = []
    for engine in engines:
        if progress:
            progress(f"{engine.name}: loading and reading {count} {unit}")
        records.append(bench(engine))
        if progress:
            r = records[-1]
            progress(f"{engine.name}: {r['status']}" + (f", char accuracy {100 * r['char_accuracy']:.1f}%, "
                                                         f"p50 {r['latency_ms_p50']:.2f} ms" if r["status"] == "ok"
                                                         else f" ({r.get('reason')})"))
    return records


def _finish(result: dict, records: list[dict], out_dir: Path | None) -> dict:
    result["environment"] = environment({r["name"]: r.get("version") or r["status"] for r in records})
    result["engines"] = records
    if out_dir is not None:
        from edgeocr.bench.report import write_report

        result["outputs"] = {k: str(v) for k, v in write_report(result, out_dir).items()}
    return result


def run_rec_benchmark(data_dir: Path | str, engines: Sequence[RecognitionEngine], batches: Sequence[int] = (1,),
                      threads: int | None = None, warmup: int = DEFAULT_WARMUP, out_dir: Path | str | None = None,
                      progress: Callable[[str], None] | None = None) -> dict:
    """Benchmark ``engines`` on the crops of ``data_dir``; write the reports into ``out_dir`` when given.

    Returns the results (what ``results.json`` holds): the run's settings, ``environment`` and one
    record per engine, in order."""
    data_dir = Path(data_dir)
    batches = parse_batches(list(batches))
    _check_run(engines, warmup)
    samples, _ = read_labels(data_dir, strict=True)  # DataError labels.tsv:LINE for a missing file
    images = load_images(samples)  # DataError labels.tsv:LINE for an undecodable one
    out_dir = _prepare_output(out_dir)
    categories: dict[str, int] = {}
    for sample in samples:
        categories[sample.category] = categories.get(sample.category, 0) + 1
    records = _run_engines(engines, "crops", len(samples),
                           lambda engine: _bench_engine(engine, samples, images, batches, warmup), progress)
    result = {"mode": "rec", "data": str(data_dir), "n": len(samples), "categories": dict(sorted(categories.items())),
              "threads": threads, "batches": list(batches), "warmup": max(warmup, WARMUP_IMAGES)}
    return _finish(result, records, out_dir)


def run_e2e_benchmark(data_dir: Path | str, engines: Sequence[SceneEngine], threads: int | None = None,
                      warmup: int = DEFAULT_WARMUP, out_dir: Path | str | None = None,
                      progress: Callable[[str], None] | None = None) -> dict:
    """Benchmark whole-image ``engines`` on the annotated images of ``data_dir`` (see :mod:`edgeocr.bench.e2e`).

    One image at a time, batch 1; ``n`` counts the labelled lines scored, ``images`` the images,
    ``categories`` the labelled lines per category."""
    data_dir = Path(data_dir)
    _check_run(engines, warmup)
    annotated = read_annotated_images(data_dir)  # DataError annotations.jsonl:LINE
    images = load_scene_images(annotated)
    out_dir = _prepare_output(out_dir)
    categories: dict[str, int] = {}
    category_images: dict[str, int] = {}
    for item in annotated:
        category_images[item.category] = category_images.get(item.category, 0) + 1
        categories[item.category] = categories.get(item.category, 0) + sum(not t.ignore for t in item.lines)
    records = _run_engines(engines, "images", len(annotated),
                           lambda engine: _bench_scene_engine(engine, annotated, images, warmup), progress)
    result = {"mode": "e2e", "data": str(data_dir), "n": sum(categories.values()), "images": len(annotated),
              "categories": dict(sorted(categories.items())), "category_images": dict(sorted(category_images.items())),
              "iou": IOU_THRESHOLD, "threads": threads, "batches": [1], "warmup": max(warmup, WARMUP_IMAGES)}
    return _finish(result, records, out_dir)


def _check_run(engines: Sequence, warmup: int) -> None:
    if warmup < 0:
        raise EdgeOCRError(f"warmup must be >= 0, got {warmup}")
    if not engines:
        raise EdgeOCRError("nothing to benchmark: name at least one model (--models) or peer (--peers)")


def parse_devices(device: str | Sequence[str]) -> tuple[str, ...]:
    """``"cpu,cuda"`` as ("cpu", "cuda"); a device that is not there is an error before any work.

    CUDA counts as present when ONNX Runtime offers its CUDA execution provider (onnxruntime-gpu
    on a machine with an NVIDIA driver); without it ``--device cuda`` is refused, not reported as
    a row of zeros."""
    names = split_names(device)
    unknown = [d for d in names if d not in DEVICES]
    if unknown or not names:
        raise EdgeOCRError(f"--device takes {' and/or '.join(DEVICES)} separated by commas, got {device!r}")
    if "cuda" in names:
        import onnxruntime as ort

        providers = ort.get_available_providers()
        if "CUDAExecutionProvider" not in providers:
            raise EdgeOCRError(f"--device cuda: CUDA is not available here (ONNX Runtime {ort.__version__} offers "
                               f"{', '.join(providers)}; it needs onnxruntime-gpu and an NVIDIA GPU); "
                               "use --device cpu")
    return tuple(dict.fromkeys(names))


def bench_command(data: Path | str, mode: str, models: Sequence[str] | str | None, peers: Sequence[str] | str | None,
                  threads: int, batch: str | Sequence[int], out: Path | str | None, *,
                  detector: str = RAPIDOCR_DETECTOR, device: str | Sequence[str] = "cpu",
                  progress: Callable[[str], None] | None = None) -> dict:
    """``edgeocr bench --data DIR --mode rec|e2e --models ... --peers ... --threads N --batch 1,8,64
    --device cpu,cuda --out DIR``.

    ``models``: shipped model names or ``.onnx`` paths; ``peers``: names from
    :data:`edgeocr.bench.peers.PEERS`; both repeated or comma-separated. ``detector`` (e2e): our
    reader's line detector, ``rapidocr`` or a detector ``.onnx``. Every argument is checked
    before any engine is loaded."""
    mode = getattr(mode, "value", mode)
    if mode not in MODES:
        raise EdgeOCRError(f"--mode {mode} is not available: bench supports {', '.join(MODES)}")
    batches = parse_batches(batch)
    devices = parse_devices(device)
    if mode == "e2e":
        if batches != (1,):
            raise EdgeOCRError("--mode e2e reads whole images one at a time: --batch applies to --mode rec only")
        engines = make_scene_engines(split_names(models), split_names(peers), threads, detector, devices)
        return run_e2e_benchmark(data, engines, threads=threads, out_dir=out, progress=progress)
    engines = make_engines(split_names(models), split_names(peers), threads, max_batch_size=max(batches),
                           devices=devices)
    return run_rec_benchmark(data, engines, batches, threads=threads, out_dir=out, progress=progress)
