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

* accuracy: every crop once, one at a time, scored by :func:`edgeocr.measure.evaluate.evaluate_samples`
  (so the figures and the JSON layout are those of ``edgeocr eval``), with latency p50/p95/p99 of the
  timed calls (after the warm-up);
* throughput: images/s over the whole set for each batch size, for engines that really batch
  (ours, the PP-OCR recognisers); the others at batch 1 only (e2e: batch 1, from the timed reads);
* resources: peak RSS and mean CPU % of the process over the engine's reads (:mod:`edgeocr.measure.resources`).
  Engines run one after another in this process, so the peak RSS includes what earlier engines left
  (imported libraries); ``rss_added_mb`` is the peak minus the RSS just before this engine loaded.

A peer that is not installed is recorded as ``"status": "not installed"`` with the reason, and left
out of the tables' figures, never scored as zero. Engines are deterministic on CPU, so two runs give
the same accuracy; latencies vary with the machine's load (``environment.load_average`` says how busy).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from edgeocr.bench.e2e import IOU_THRESHOLD, AnnotatedImage, evaluate_scenes, load_scene_images, read_annotated_images
from edgeocr.bench.peers import (
    DEVICES,
    RAPIDOCR_DETECTOR,
    RecognitionEngine,
    SceneEngine,
    make_engines,
    make_scene_engines,
)
from edgeocr.core.errors import EdgeOCRError, OutputError
from edgeocr.measure.evaluate import WARMUP_IMAGES
from edgeocr.measure.timing import (
    DEFAULT_WARMUP,
    check_run,
    measure_engine,
    measure_rec,
    parse_batches,
    run_engines,
    with_environment,
)

MODES = ("rec", "e2e")


def split_names(values: Sequence[str] | str | None) -> list[str]:
    """Names given repeated or comma-separated (``--peers easyocr,tesseract``)."""
    if values is None:
        return []
    values = [values] if isinstance(values, str) else values
    return [name.strip() for value in values for name in str(value).split(",") if name.strip()]


def _bench_scene_engine(
    engine: SceneEngine, annotated: list[AnnotatedImage], images: list[np.ndarray], warmup: int
) -> dict:
    def throughput(timed_ms: list[float]) -> dict:
        # Whole images are read one at a time: images/s over the timed reads of the evaluation itself.
        total = sum(timed_ms) / 1000
        return {"throughput_ips": {"1": round(len(timed_ms) / total, 3) if total > 0 else None}}

    return measure_engine(
        engine,
        lambda image: engine.read_scene(image),
        images,
        warmup,
        lambda read: evaluate_scenes(read, annotated, images),
        throughput,
    )


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


def _write(result: dict, out_dir: Path | None) -> dict:
    if out_dir is not None:
        from edgeocr.bench.report import write_report

        result["outputs"] = {k: str(v) for k, v in write_report(result, out_dir).items()}
    return result


def run_rec_benchmark(
    data_dir: Path | str,
    engines: Sequence[RecognitionEngine],
    batches: Sequence[int] = (1,),
    threads: int | None = None,
    warmup: int = DEFAULT_WARMUP,
    out_dir: Path | str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Benchmark ``engines`` on the crops of ``data_dir`` (:func:`edgeocr.measure.timing.measure_rec`); write
    the reports into ``out_dir`` when given (checked and created before any engine loads)."""
    prepared: list[Path | None] = []
    result = measure_rec(
        data_dir,
        engines,
        batches,
        threads=threads,
        warmup=warmup,
        progress=progress,
        before_engines=lambda: prepared.append(_prepare_output(out_dir)),
    )
    return _write(result, prepared[0] if prepared else None)


def run_e2e_benchmark(
    data_dir: Path | str,
    engines: Sequence[SceneEngine],
    threads: int | None = None,
    warmup: int = DEFAULT_WARMUP,
    out_dir: Path | str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Benchmark whole-image ``engines`` on the annotated images of ``data_dir`` (see :mod:`edgeocr.bench.e2e`).

    One image at a time, batch 1; ``n`` counts the labelled lines scored, ``images`` the images,
    ``categories`` the labelled lines per category."""
    data_dir = Path(data_dir)
    check_run(engines, warmup)
    annotated = read_annotated_images(data_dir)  # DataError annotations.jsonl:LINE
    images = load_scene_images(annotated)
    out_dir = _prepare_output(out_dir)
    categories: dict[str, int] = {}
    category_images: dict[str, int] = {}
    for item in annotated:
        category_images[item.category] = category_images.get(item.category, 0) + 1
        categories[item.category] = categories.get(item.category, 0) + sum(not t.ignore for t in item.lines)
    records = run_engines(
        engines,
        "images",
        len(annotated),
        lambda engine: _bench_scene_engine(engine, annotated, images, warmup),
        progress,
    )
    result = {
        "mode": "e2e",
        "data": str(data_dir),
        "n": sum(categories.values()),
        "images": len(annotated),
        "categories": dict(sorted(categories.items())),
        "category_images": dict(sorted(category_images.items())),
        "iou": IOU_THRESHOLD,
        "threads": threads,
        "batches": [1],
        "warmup": max(warmup, WARMUP_IMAGES),
    }
    return _write(with_environment(result, records), out_dir)


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
            raise EdgeOCRError(
                f"--device cuda: CUDA is not available here (ONNX Runtime {ort.__version__} offers "
                f"{', '.join(providers)}; it needs onnxruntime-gpu and an NVIDIA GPU); "
                "use --device cpu"
            )
    return tuple(dict.fromkeys(names))


def bench_command(
    data: Path | str,
    mode: str,
    models: Sequence[str] | str | None,
    peers: Sequence[str] | str | None,
    threads: int,
    batch: str | Sequence[int],
    out: Path | str | None,
    *,
    detector: str = RAPIDOCR_DETECTOR,
    device: str | Sequence[str] = "cpu",
    progress: Callable[[str], None] | None = None,
) -> dict:
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
    engines = make_engines(
        split_names(models), split_names(peers), threads, max_batch_size=max(batches), devices=devices
    )
    return run_rec_benchmark(data, engines, batches, threads=threads, out_dir=out, progress=progress)
