"""Batch reading on Ray Data (``edgeocr read --executor ray``): many images, many cores, many machines.

The inputs become a Ray dataset: local files, folders and globs as a list of paths (each reader
opens its files itself, so on a cluster they must sit on storage every node mounts at the same
path), or URIs (``s3://``, ``gs://``, ``file://``...) read by Ray's ``read_binary_files``. The
dataset is mapped in batches by a pool of actors, each of which builds its
:class:`~edgeocr.runtime.reader.Reader` **once**, in its constructor, and reads every batch it is
given with ``read_batch``. Each actor gets ``cpus_per_actor`` CPUs and its ONNX Runtime as many
threads (the caller's reader factory is told).

The rows (:mod:`edgeocr.scale.results`) stream back to the driver, which sorts them into the input
order (URIs: by path) and writes one Parquet or JSON Lines file atomically. Without an address
a local Ray instance is started for the run and shut down after it; with one (``auto``, or
``ray://head:10001`` through Ray Client) the job runs on that cluster. An already initialised
Ray (a test, a notebook) is used as it is.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from edgeocr.core.errors import EdgeOCRError, ImageError
from edgeocr.runtime.reader import Reader, ReaderConfig
from edgeocr.runtime.sources import IMAGE_SUFFIXES, expand_inputs
from edgeocr.scale.results import (
    check_output_path,
    new_worker_id,
    read_or_errors,
    result_rows,
    result_schema,
    write_results,
)

_ORDER = "_order"  # input position of local files, dropped before writing


class RayReadConfig(BaseModel):
    """Where and how wide a Ray batch read runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str | None = Field(
        default=None,
        description="None: start a local Ray instance for this run; 'auto' or 'ray://head:10001': use that cluster.",
    )
    actors: int | None = Field(
        default=None, ge=1, description="Reader actors (one model load each); None: as many as the CPUs allow."
    )
    cpus_per_actor: int = Field(
        default=1, ge=1, description="CPUs reserved by each actor, also its ONNX Runtime thread count."
    )
    batch_size: int = Field(default=16, ge=1, description="Images an actor reads in one read_batch call.")
    local_cpus: int | None = Field(
        default=None, ge=1, description="CPUs of the local Ray instance (no address); None: all of this machine's."
    )
    progress: bool = Field(default=False, description="Show Ray Data's progress bars.")


@dataclass(frozen=True)
class RayReadSummary:
    """What a run did: ``images`` read (or failed: ``errors``), ``rows`` written to ``out``, wall
    ``seconds`` from dataset creation to the file written (actor start-up and model loads
    included), ``ray_start_seconds`` to start or join Ray before that (0 when it already ran),
    ``actors`` in the pool (each builds its reader, loading the model, once) and ``readers_used``
    (distinct readers that produced rows: at most one per actor, however many batches)."""

    images: int
    rows: int
    errors: int
    seconds: float
    ray_start_seconds: float
    actors: int
    readers_used: int
    out: Path

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def _portable(spec: str | None) -> str | None:
    """A local file given relative to this directory, made absolute: actors run elsewhere."""
    return str(Path(spec).absolute()) if spec is not None and Path(spec).exists() else spec


@dataclass(frozen=True)
class ReaderRecipe:
    """What an actor needs to build its reader: the frozen reader configuration and the detector
    spec (a shipped detector's name or an exported detector .onnx, or 'rapidocr' for PP-OCRv4's
    package; None: the shipped 'default', as build_line_detector reads it). Model and detector files
    named relative to the current directory are made absolute when the recipe is made."""

    config: ReaderConfig
    detector: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "config", self.config.model_copy(update={"model": _portable(self.config.model)}))
        object.__setattr__(self, "detector", _portable(self.detector))

    def __call__(self) -> Reader:
        from edgeocr.runtime.build import build_line_detector

        uses_detector = self.config.mode in ("auto", "detector")
        detector = build_line_detector(self.detector, self.config.engine) if uses_detector else None
        return Reader(self.config, detector=detector)


class _BatchReader:
    """The actor: one reader for its whole life, built from the driver's factory."""

    def __init__(self, reader_factory: Callable[[], Reader]) -> None:
        self._reader = reader_factory()
        self._worker = new_worker_id()

    def __call__(self, batch):
        import pyarrow as pa

        paths = batch.column("path").to_pylist()
        # URIs arrive as bytes read by Ray; local files are opened here (load_image guards both).
        sources = batch.column("bytes" if "bytes" in batch.column_names else "file").to_pylist()
        orders = batch.column(_ORDER).to_pylist() if _ORDER in batch.column_names else [None] * len(paths)
        rows = []
        for path, order, reads in zip(paths, orders, read_or_errors(self._reader, sources), strict=True):
            rows += [{**row, _ORDER: order} for row in result_rows(path, reads, self._worker)]
        schema = result_schema().append(pa.field(_ORDER, pa.int64()))
        return pa.Table.from_pylist(rows, schema=schema)


def _is_uri(text: str) -> bool:
    return "://" in text


def _plan(inputs: Sequence[str]) -> tuple[list[str], list[dict[str, object]]]:
    """(URIs, local rows): checked before Ray starts, so that a typo fails at once. Local rows carry
    the path as given, its absolute form (actors may run in another directory) and the input order."""
    uris = [text for text in inputs if _is_uri(text)]
    if uris:
        if len(uris) != len(inputs):
            raise EdgeOCRError("give either local paths or URIs (s3://, gs://, file://...), not both")
        return uris, []
    items = expand_inputs(inputs)
    videos = [str(item.path) for item in items if item.is_video]
    if videos:
        raise ImageError(f"{videos[0]}: the ray engine reads images; read videos with --engine local")
    return [], [{_ORDER: i, "path": str(item.path), "file": str(item.path.absolute())} for i, item in enumerate(items)]


def _dataset(uris: list[str], local_rows: list[dict[str, object]]):
    """The Ray dataset: the local rows, or the URIs' bytes (image suffixes only) with their paths."""
    import ray.data

    if local_rows:
        return ray.data.from_items(local_rows)
    extensions = sorted(suffix.lstrip(".") for suffix in IMAGE_SUFFIXES)
    try:
        # Reading is I/O: no CPU reserved, so the read tasks never wait for the actors' CPUs.
        return ray.data.read_binary_files(uris, include_paths=True, file_extensions=extensions, num_cpus=0)
    except (OSError, ValueError) as exc:
        raise ImageError(f"{', '.join(uris)}: cannot list these URIs ({type(exc).__name__}: {exc})") from exc


def _start_ray(config: RayReadConfig) -> bool:
    """Initialise Ray unless it already is; True when this call started it (and must shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if config.address is None:
            ray.init(address="local", num_cpus=config.local_cpus or os.cpu_count() or 1, **quiet)
        else:
            ray.init(address=config.address, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise EdgeOCRError(f"cannot start or reach Ray at {config.address or 'a local instance'}: {exc}") from exc
    return True


def ray_read(
    inputs: Sequence[str], reader_factory: Callable[[], Reader], out: Path, config: RayReadConfig | None = None
) -> RayReadSummary:
    """Read ``inputs`` on Ray and write their rows to ``out`` (``.parquet`` or ``.jsonl``).

    ``reader_factory`` is pickled to the actors and called once in each; it must build the reader
    with ``config.cpus_per_actor`` threads, from files every node can open.
    """
    import pyarrow as pa
    import ray
    import ray.data

    config = config or RayReadConfig()
    check_output_path(out)
    uris, local_rows = _plan(inputs)
    startup = time.perf_counter()
    started = _start_ray(config)
    startup = time.perf_counter() - startup
    try:
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = config.progress
        begin = time.perf_counter()
        dataset = _dataset(uris, local_rows)
        actors = config.actors or max(1, int(ray.cluster_resources().get("CPU", 1) // config.cpus_per_actor))
        if local_rows:  # idle actors would only cost a model load (the number of URIs is known once read)
            actors = min(actors, math.ceil(len(local_rows) / config.batch_size))
        mapped = dataset.map_batches(
            _BatchReader,
            fn_constructor_args=(reader_factory,),
            compute=ray.data.ActorPoolStrategy(size=actors),
            batch_size=config.batch_size,
            batch_format="pyarrow",
            num_cpus=config.cpus_per_actor,
        )
        try:
            tables = [batch for batch in mapped.iter_batches(batch_size=None, batch_format="pyarrow")]
        except ray.exceptions.RayError as exc:
            message = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise EdgeOCRError(f"the Ray job failed: {message}") from exc
        if not tables:
            raise ImageError(f"{', '.join(inputs)}: no images to read")
        table = pa.concat_tables(tables)
        local = table.column(_ORDER).null_count == 0
        table = table.sort_by([(_ORDER if local else "source", "ascending"), ("line", "ascending")])
        images = len(set(table.column(_ORDER if local else "source").to_pylist()))
        rows = table.select(list(result_schema().names)).to_pylist()
        write_results(rows, out)
        seconds = time.perf_counter() - begin
    finally:
        if started:
            ray.shutdown()
    return RayReadSummary(
        images=images,
        rows=len(rows),
        errors=sum(1 for row in rows if row["error"] is not None),
        seconds=seconds,
        ray_start_seconds=startup,
        actors=actors,
        readers_used=len({row["worker"] for row in rows}),
        out=Path(out),
    )
