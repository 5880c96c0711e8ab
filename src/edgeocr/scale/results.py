"""Result rows of batch reading (``edgeocr read --out FILE.parquet|FILE.jsonl``), for both engines.

One row per line read; an image that cannot be read gets one row with its ``error`` (and no
line); an image read without any line (no detection) gets one row with ``line`` null and an
empty text, so that every input is accounted for. Columns (see :data:`RESULT_COLUMNS`):

* ``path``: the input as given (a local path, or a URI without its scheme as Ray lists it);
* ``line``: index of the line in the image (null: error or no line);
* ``text``, ``raw_text``, ``confidence``, ``format``, ``valid``, ``region``: as in
  :class:`~edgeocr.runtime.reader.LineRead`;
* ``poly``: the line's four corners as a JSON string ``[[x, y], ...]``;
* ``error``: why the image could not be read, else null;
* ``worker``: ``host:pid:id`` of the reader that read it (``id`` is drawn when that reader was
  built, so the distinct values count the readers, i.e. the model loads).

Files are written whole under a temporary name and renamed (:func:`edgeocr.core.atomic.atomic_write_bytes`).
"""

from __future__ import annotations

import io
import json
import os
import socket
import uuid
from collections.abc import Sequence
from pathlib import Path

from edgeocr.core.atomic import atomic_write_bytes
from edgeocr.core.errors import EdgeOCRError, OutputError
from edgeocr.core.images import ImageSource
from edgeocr.runtime.reader import LineRead, Reader

RESULT_COLUMNS = ("path", "line", "text", "raw_text", "confidence", "format", "valid", "region", "poly", "error",
                  "worker")
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
    image costs only its own reads (its entry is then the error)."""
    try:
        return list(reader.read_batch(sources))
    except EdgeOCRError:
        results: list[list[LineRead] | EdgeOCRError] = []
        for source in sources:
            try:
                results.append(reader.read(source))
            except EdgeOCRError as exc:
                results.append(exc)
        return results


def result_rows(path: str, reads: list[LineRead] | Exception, worker: str) -> list[dict[str, object]]:
    """The rows of one image (see the module documentation)."""
    empty = {"path": path, "line": None, "text": "", "raw_text": "", "confidence": None, "format": None,
             "valid": False, "region": None, "poly": None, "error": None, "worker": worker}
    if isinstance(reads, Exception):
        return [{**empty, "error": str(reads)}]
    if not reads:
        return [empty]
    return [{**empty, "line": index, "text": read.text, "raw_text": read.raw_text, "confidence": read.confidence,
             "format": read.format, "valid": read.valid, "region": read.region,
             "poly": json.dumps([list(point) for point in read.poly])}
            for index, read in enumerate(reads)]


def result_schema():
    """The Arrow schema of the rows (pyarrow is imported here, not at module import)."""
    import pyarrow as pa

    string, nullable = pa.string(), True
    return pa.schema([
        pa.field("path", string, nullable=False),
        pa.field("line", pa.int32(), nullable),
        pa.field("text", string, nullable=False),
        pa.field("raw_text", string, nullable=False),
        pa.field("confidence", pa.float64(), nullable),
        pa.field("format", string, nullable),
        pa.field("valid", pa.bool_(), nullable=False),
        pa.field("region", string, nullable),
        pa.field("poly", string, nullable),
        pa.field("error", string, nullable),
        pa.field("worker", string, nullable=False),
    ])


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
