"""The records of ``edgeocr read``: one layout for ``--json``, ``--jsonl``, ``--csv`` and the
``--out FILE.parquet|FILE.jsonl`` rows of both engines.

One record per line read; an image that cannot be read gets one record with its ``error`` (and no
line); an image read without any line (no detection) gets one record with ``line`` null and an
empty text, so that every input is accounted for. Fields, in order (:data:`READ_FIELDS`):

* ``source``: the input as given (a local path, ``PATH#frame=N`` for a video frame, or a URI
  without its scheme as Ray lists it);
* ``line``: index of the line in the image (null: error or no line);
* ``text``, ``confidence``, ``format``, ``valid``, ``raw_text``, ``region``, ``detection_score``,
  ``model`` (the recogniser that gave the read: the fallback's name for lines a cascade re-read),
  ``char_confidences``: as in :class:`~edgeocr.runtime.reader.LineRead` (null when there is no line);
* ``poly``: the line's four corners ``[[x, y], ...]`` (top-left, top-right, bottom-right,
  bottom-left of the text), null when there is no line;
* ``error``: why the image could not be read, else null.

Where the records go:

* JSON Lines (``--jsonl``, ``--out FILE.jsonl``) and Parquet (``--out FILE.parquet``): one record
  a row, arrays as arrays; ``--out`` rows add ``worker``: ``host:pid:id`` of the reader that read it
  (``id`` is drawn when that reader was built, so the distinct values count the model loads).
* CSV (``--csv``): one record a row with the header :func:`csv_header`; arrays cannot be cells, so
  ``poly`` becomes eight numeric columns ``x1, y1, ..., x4, y4`` and ``char_confidences`` one cell
  of space-separated numbers; null is an empty cell, booleans are ``true``/``false``.
* JSON (``--json``): ``{"model", "mode", "results": [{"source", "error", "lines": [record, ...]}]}``,
  the same records grouped per input; an input without lines has ``lines: []`` (where the other
  outputs hold its one record with ``line`` null).

Files are written whole under a temporary name and renamed (:func:`edgeocr.core.atomic.atomic_write_bytes`).
"""

from __future__ import annotations

import io
import json
import os
import socket
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

from edgeocr.core.atomic import atomic_write_bytes
from edgeocr.core.errors import EdgeOCRError, OutputError
from edgeocr.core.failures import describe_failure
from edgeocr.core.images import ImageSource
from edgeocr.runtime.reader import LineRead, Reader

READ_FIELDS = (
    "source",
    "line",
    "text",
    "confidence",
    "format",
    "valid",
    "raw_text",
    "region",
    "detection_score",
    "model",
    "char_confidences",
    "poly",
    "error",
)
RESULT_COLUMNS = (*READ_FIELDS, "worker")
POLY_COLUMNS = ("x1", "y1", "x2", "y2", "x3", "y3", "x4", "y4")
OUTPUT_SUFFIXES = (".parquet", ".jsonl")


def check_output_path(out: Path) -> None:
    """Refuse an output whose suffix names no supported format, before any reading starts."""
    if Path(out).suffix.lower() not in OUTPUT_SUFFIXES:
        raise OutputError(f"{out}: the output must end in .parquet or .jsonl")


def new_worker_id() -> str:
    """``host:pid:id``, a fresh ``id`` per call: call it once per reader built."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def read_or_errors(reader: Reader, sources: Sequence[ImageSource]) -> list[list[LineRead] | EdgeOCRError]:
    """The reads of each source, batched; when the batch fails, each source alone, so that one bad
    image costs only its own reads (its entry is then the error). Any exception counts as that image's
    failure (an OpenCV error, MemoryError...: recorded by type and message); Ctrl-C is not one."""
    try:
        return list(reader.read_batch(sources))
    except Exception:
        results: list[list[LineRead] | EdgeOCRError] = []
        for source in sources:
            try:
                results.append(reader.read(source))
            except Exception as exc:
                results.append(exc if isinstance(exc, EdgeOCRError) else EdgeOCRError(describe_failure(exc)))
        return results


def read_records(source: str, reads: Iterable[LineRead] | Exception) -> list[dict[str, object]]:
    """The records of one image (see the module documentation), fields in :data:`READ_FIELDS` order."""
    empty: dict[str, object] = {
        "source": source,
        "line": None,
        "text": "",
        "confidence": None,
        "format": None,
        "valid": False,
        "raw_text": "",
        "region": None,
        "detection_score": None,
        "model": None,
        "char_confidences": None,
        "poly": None,
        "error": None,
    }
    if isinstance(reads, Exception):
        return [{**empty, "error": str(reads)}]
    records = [
        {
            **empty,
            "line": index,
            "text": read.text,
            "confidence": float(read.confidence),
            "format": read.format,
            "valid": bool(read.valid),
            "raw_text": read.raw_text,
            "region": read.region,
            "detection_score": None if read.detection_score is None else float(read.detection_score),
            "model": read.model,
            "char_confidences": [float(c) for c in read.char_confidences],
            "poly": [[float(x), float(y)] for x, y in read.poly],
        }
        for index, read in enumerate(reads)
    ]
    return records or [empty]


def result_rows(source: str, reads: Iterable[LineRead] | Exception, worker: str) -> list[dict[str, object]]:
    """The ``--out`` rows of one image: its records with the ``worker`` that read them."""
    return [{**record, "worker": worker} for record in read_records(source, reads)]


def csv_header() -> list[str]:
    """The CSV columns: :data:`READ_FIELDS` with ``poly`` spread over :data:`POLY_COLUMNS`."""
    header: list[str] = []
    for name in READ_FIELDS:
        header += POLY_COLUMNS if name == "poly" else [name]
    return header


def csv_row(record: dict[str, object]) -> list[str]:
    """One record as CSV cells under :func:`csv_header` (null: empty cell; floats as Python writes them)."""

    def cell(value: object) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    cells: list[str] = []
    for name in READ_FIELDS:
        value = record[name]
        if name == "poly":
            cells += [""] * len(POLY_COLUMNS) if value is None else [cell(v) for point in value for v in point]
        elif name == "char_confidences":
            cells.append("" if value is None else " ".join(cell(v) for v in value))
        else:
            cells.append(cell(value))
    return cells


def result_schema():
    """The Arrow schema of the rows (pyarrow is imported here, not at module import)."""
    import pyarrow as pa

    string, nullable = pa.string(), True
    return pa.schema(
        [
            pa.field("source", string, nullable=False),
            pa.field("line", pa.int32(), nullable),
            pa.field("text", string, nullable=False),
            pa.field("confidence", pa.float64(), nullable),
            pa.field("format", string, nullable),
            pa.field("valid", pa.bool_(), nullable=False),
            pa.field("raw_text", string, nullable=False),
            pa.field("region", string, nullable),
            pa.field("detection_score", pa.float64(), nullable),
            pa.field("model", string, nullable),
            pa.field("char_confidences", pa.list_(pa.float64()), nullable),
            pa.field("poly", pa.list_(pa.list_(pa.float64())), nullable),
            pa.field("error", string, nullable),
            pa.field("worker", string, nullable=False),
        ]
    )


def write_results(rows: Sequence[dict[str, object]], out: Path) -> None:
    """Write ``rows`` to ``out`` as Parquet or JSON Lines (by its suffix), atomically."""
    out = Path(out)
    check_output_path(out)
    if out.suffix.lower() == ".jsonl":
        data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
    else:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise EdgeOCRError(f"Parquet output needs the 'scale' extra: pip install 'edgeocr[scale]' ({exc})") from exc
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(list(rows), schema=result_schema()), buffer)
        data = buffer.getvalue()
    atomic_write_bytes(out, data)
