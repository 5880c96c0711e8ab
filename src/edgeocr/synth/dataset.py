"""Write synthetic datasets: line crops with ``labels.tsv``, scenes with ``annotations.jsonl``, or LMDB.

Samples are generated in worker processes and written in index order. Sample ``i`` depends only on
``(seed, i)``, so the same seed gives the same dataset byte for byte whatever the worker count.
The dataset is written under a temporary name and renamed when complete (see core.atomic).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing as mp
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from edgeocr import __version__
from edgeocr.core.atomic import atomic_output_dir, atomic_write_bytes, describe_os_error
from edgeocr.core.charset import DEFAULT_CHARSET
from edgeocr.core.errors import EdgeOCRError, Interrupted, OutputError
from edgeocr.core.lmdb_layout import NUM_SAMPLES_KEY, image_key, label_key, meta_key
from edgeocr.synth.fonts import discover_fonts
from edgeocr.synth.ink import warm_glyph_cache
from edgeocr.synth.lines import LineSynthConfig, LineSynthesizer
from edgeocr.synth.preview import line_sheet, scene_sheet
from edgeocr.synth.processes import FOURTEEN_SEGMENT_CHARS
from edgeocr.synth.scenes import SceneSynthesizer
from edgeocr.synth.templates import default_catalogue_path, load_catalogue

PREVIEW_SAMPLES = {"lines": 60, "scenes": 6}


@dataclass(frozen=True)
class SynthJob:
    """One ``edgeocr synth`` run."""

    kind: Literal["lines", "scenes"]
    count: int
    seed: int
    out: Path
    workers: int = 1
    format: Literal["folder", "lmdb"] = "folder"
    preview: Path | None = None
    template_files: tuple[str, ...] = ()
    include_default_templates: bool = True
    font_dirs: tuple[str, ...] = ()
    overwrite: bool = False

    def validate(self) -> None:
        if self.kind not in ("lines", "scenes"):
            raise EdgeOCRError(f"unknown dataset kind {self.kind!r}: use lines or scenes")
        if self.count < 1:
            raise EdgeOCRError(f"--count must be at least 1, got {self.count}")
        if self.workers < 1:
            raise EdgeOCRError(f"--workers must be at least 1, got {self.workers}")
        if self.format not in ("folder", "lmdb"):
            raise EdgeOCRError(f"unknown --format {self.format!r}: use folder or lmdb")


@dataclass
class SynthResult:
    out: Path
    count: int
    seconds: float
    preview: Path | None = None
    per_category: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("inf")


# --- worker side --------------------------------------------------------------------------------

_generator: LineSynthesizer | SceneSynthesizer | None = None
_job: SynthJob | None = None
_target: Path | None = None


def _build_generator(job: SynthJob) -> LineSynthesizer | SceneSynthesizer:
    catalogue = load_catalogue(list(job.template_files), include_default=job.include_default_templates)
    fonts = discover_fonts(list(job.font_dirs))
    fonts.require("text")
    cls = LineSynthesizer if job.kind == "lines" else SceneSynthesizer
    return cls(catalogue, fonts, job.seed)


def _set_up(job: SynthJob, target: Path) -> None:
    global _generator, _job, _target
    _generator = _build_generator(job)
    _job, _target = job, target


def _init_worker(job: SynthJob, target: Path) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # forked from a parent that turns SIGTERM into an exception
    _set_up(job, target)


def _encode(image: np.ndarray, kind: str) -> bytes:
    ok, buf = (
        cv2.imencode(".png", image) if kind == "lines" else cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    )
    if not ok:
        raise EdgeOCRError("image encoding failed")
    return buf.tobytes()


def _make_chunk(bounds: tuple[int, int]) -> list[dict]:
    """Generate samples [start, stop); write their files (folder format) or return their bytes."""
    assert _generator is not None and _job is not None and _target is not None
    records = []
    for i in range(*bounds):
        sample = _generator.sample(i)
        data = _encode(sample.image, _job.kind)
        if _job.kind == "lines":
            rel = f"{sample.category}/{i:08d}.png"
            record = {
                "index": i,
                "file": rel,
                "text": sample.text,
                "meta": {
                    "template": sample.template,
                    "category": sample.category,
                    "process": sample.process,
                    "surface": sample.surface,
                    "vertical": sample.vertical,
                },
            }
        else:
            rel = f"images/{i:08d}.jpg"
            h, w = sample.image.shape[:2]
            record = {
                "index": i,
                "file": rel,
                "annotation": {
                    "file": rel,
                    "width": w,
                    "height": h,
                    "exhaustive": True,
                    "lines": [vars(line) for line in sample.lines],
                },
            }
        if _job.format == "folder":
            path = _target / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        else:
            record["bytes"] = data
        records.append(record)
    return records


# --- parent side --------------------------------------------------------------------------------


def _chunks(count: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, count)) for s in range(0, count, size)]


def _records(job: SynthJob, target: Path) -> Iterator[dict]:
    chunk = 16 if job.kind == "scenes" else 64
    bounds = _chunks(job.count, chunk)
    if job.workers == 1:
        _set_up(job, target)
        for b in bounds:
            yield from _make_chunk(b)
        return
    ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    # One OpenCV thread per worker process (they would fight over the cores otherwise). Set in the
    # parent before forking: calling setNumThreads in a child whose parent already used OpenCV's
    # thread pool can deadlock.
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    # Not multiprocessing.Pool: its terminate() stops reading results before it stops the workers, so a
    # worker caught mid-way through sending a chunk holds the queue's lock forever and an interrupted run
    # can hang. The executor keeps draining results while it shuts down; an interruption
    # waits at most for the chunks in progress (a few seconds) and cancels the rest.
    pool = ProcessPoolExecutor(job.workers, mp_context=ctx, initializer=_init_worker, initargs=(job, target))
    try:
        ahead = iter(bounds)
        pending = deque(pool.submit(_make_chunk, b) for b in itertools.islice(ahead, 2 * job.workers))
        while pending:
            records = pending.popleft().result()
            following = next(ahead, None)
            if following is not None:
                pending.append(pool.submit(_make_chunk, following))
            yield from records
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        cv2.setNumThreads(threads)


def _raise_on_sigterm(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt(f"signal {signum}")


def _file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def synthesize(job: SynthJob, progress: bool = True) -> SynthResult:
    """Generate a dataset; on any failure or interruption nothing appears under ``job.out``."""
    job.validate()
    # Fail on templates and fonts before creating anything.
    catalogue = load_catalogue(list(job.template_files), include_default=job.include_default_templates)
    fonts = discover_fonts(list(job.font_dirs))
    fonts.require("text")
    if job.kind == "lines" and job.count >= 2000:
        # Forked workers inherit this cache, so glyphs are rendered once per run, not per worker.
        cfg = LineSynthConfig()
        warm_glyph_cache(list(fonts.text + fonts.dot), DEFAULT_CHARSET, cfg.cap_height, stroke=False)
        warm_glyph_cache(list(fonts.bold), DEFAULT_CHARSET, cfg.cap_height, stroke=True)
        warm_glyph_cache(
            list(fonts.seven_segment + fonts.fourteen_segment),
            "".join(sorted(FOURTEEN_SEGMENT_CHARS)),
            cfg.cap_height,
            stroke=False,
        )

    previous_sigterm = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    start = time.perf_counter()
    preview_images: list[tuple[np.ndarray, object]] = []
    per_category: dict[str, int] = {}
    try:
        with atomic_output_dir(job.out, overwrite=job.overwrite) as tmp:
            writer = _FolderWriter(tmp, job) if job.format == "folder" else _LmdbWriter(tmp, job)
            try:
                with _progress(progress, job) as advance:
                    for record in _records(job, tmp):
                        writer.add(record)
                        key = record.get("meta", {}).get("category", "scene")
                        per_category[key] = per_category.get(key, 0) + 1
                        if len(preview_images) < PREVIEW_SAMPLES[job.kind] and job.preview is not None:
                            preview_images.append(_preview_item(job, tmp, record))
                        advance()
                writer.finish()
            finally:
                writer.close()
            manifest = {
                "kind": job.kind,
                "count": job.count,
                "seed": job.seed,
                "format": job.format,
                "edgeocr_version": __version__,
                # Names, not absolute paths: the manifest must not depend on where the code lives.
                "templates": {name: _file_digest(p) for name, p in _template_paths(job)},
                "fonts": hashlib.sha256("\n".join(sorted(Path(f).name for f in fonts.text)).encode()).hexdigest(),
                "templates_in_use": len(catalogue.templates),
                "per_category": dict(sorted(per_category.items())),
            }
            (tmp / "dataset.json").write_text(json.dumps(manifest, indent=2) + "\n")
    except OSError as exc:
        raise OutputError(describe_os_error(exc, job.out)) from exc
    except KeyboardInterrupt as exc:
        raise Interrupted(f"stopped before {job.count} samples were written; {job.out} was not created") from exc
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
    seconds = time.perf_counter() - start
    result = SynthResult(out=job.out, count=job.count, seconds=seconds, per_category=per_category)
    if job.preview is not None:
        sheet = line_sheet(preview_images) if job.kind == "lines" else scene_sheet(preview_images)
        ok, buf = cv2.imencode(".png", sheet)
        atomic_write_bytes(job.preview, buf.tobytes())
        result.preview = job.preview
    return result


def _template_paths(job: SynthJob) -> list[tuple[str, Path]]:
    builtin = [("edgeocr:codes.yaml", default_catalogue_path())] if job.include_default_templates else []
    return builtin + [(Path(p).name, Path(p)) for p in job.template_files]


def _preview_item(job: SynthJob, tmp: Path, record: dict):
    data = record["bytes"] if "bytes" in record else (tmp / record["file"]).read_bytes()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return image, (record["text"] if job.kind == "lines" else record["annotation"]["lines"])


class _progress:
    """A rich progress bar on stderr (or nothing), used as ``with _progress(...) as advance``."""

    def __init__(self, enabled: bool, job: SynthJob) -> None:
        self.enabled = enabled
        self.job = job

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn(f"synth {self.job.kind}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self.bar.start()
        task = self.bar.add_task("", total=self.job.count)
        return lambda: self.bar.advance(task)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.bar.stop()


class _FolderWriter:
    """``labels.tsv`` + ``meta.jsonl`` (lines) or ``annotations.jsonl`` (scenes); images are written by workers."""

    def __init__(self, root: Path, job: SynthJob) -> None:
        self.kind = job.kind
        if job.kind == "lines":
            self.labels = open(root / "labels.tsv", "w", encoding="utf-8", newline="\n")
            self.meta = open(root / "meta.jsonl", "w", encoding="utf-8", newline="\n")
        else:
            self.labels = open(root / "annotations.jsonl", "w", encoding="utf-8", newline="\n")
            self.meta = None

    def add(self, record: dict) -> None:
        if self.kind == "lines":
            self.labels.write(f"{record['file']}\t{record['text']}\n")
            self.meta.write(json.dumps({"file": record["file"], **record["meta"]}) + "\n")
        else:
            self.labels.write(json.dumps(record["annotation"]) + "\n")

    def finish(self) -> None:
        for fh in (self.labels, self.meta):
            if fh is not None:
                fh.flush()
                os.fsync(fh.fileno())

    def close(self) -> None:
        for fh in (self.labels, self.meta):
            if fh is not None:
                fh.close()


class _LmdbWriter:
    """LMDB with ``image-%09d`` / ``label-%09d`` / ``num-samples`` keys, 1-based."""

    def __init__(self, root: Path, job: SynthJob) -> None:
        try:
            import lmdb
        except ImportError as exc:  # pragma: no cover - lmdb is in the synth extra
            raise EdgeOCRError("--format lmdb needs the lmdb package: pip install 'edgeocr[synth]'") from exc
        self.lmdb_error = lmdb.Error
        self.root = root
        per_sample = 400_000 if job.kind == "scenes" else 40_000
        self.env = lmdb.open(
            str(root), map_size=max(1 << 28, job.count * per_sample), subdir=True, meminit=True, map_async=False
        )  # meminit: no stray bytes in free space
        self.kind = job.kind
        self.txn = self.env.begin(write=True)
        self.n = 0

    def add(self, record: dict) -> None:
        try:
            self._add(record)
        except self.lmdb_error as exc:  # full disk and friends surface as lmdb.Error, not OSError
            raise OutputError(f"cannot write {self.root}: LMDB: {exc}") from exc

    def _add(self, record: dict) -> None:
        self.n += 1
        self.txn.put(image_key(self.n), record["bytes"])
        if self.kind == "lines":
            self.txn.put(label_key(self.n), record["text"].encode("utf-8"))
            self.txn.put(meta_key(self.n), json.dumps({"file": record["file"], **record["meta"]}).encode())
        else:
            self.txn.put(label_key(self.n), json.dumps(record["annotation"]).encode("utf-8"))
        if self.n % 1000 == 0:
            self.txn.commit()
            self.txn = self.env.begin(write=True)

    def finish(self) -> None:
        try:
            self.txn.put(NUM_SAMPLES_KEY, str(self.n).encode())
            self.txn.commit()
            self.txn = None
            self.env.sync(True)
        except self.lmdb_error as exc:
            raise OutputError(f"cannot write {self.root}: LMDB: {exc}") from exc

    def close(self) -> None:
        if self.txn is not None:
            self.txn.abort()
            self.txn = None
        self.env.close()
        # lock.mdb holds process ids, not data; readers recreate it. Without it the dataset is
        # byte-for-byte reproducible.
        (self.root / "lock.mdb").unlink(missing_ok=True)
