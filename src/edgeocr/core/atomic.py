"""Outputs that are either complete or absent: write under a temporary name, then rename.

A dataset directory that exists under its final name is always complete. An interrupted or failed
run leaves at most a ``.NAME.partial-*`` sibling, which the next run removes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edgeocr.core.errors import OutputError


def describe_os_error(exc: OSError, path: Path | str) -> str:
    """A one-line, actionable description of a write failure."""
    reason = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EFBIG: "the file size limit was reached",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EROFS: "the file system is read-only",
        errno.ENOTDIR: "a parent of the path is not a directory",
    }.get(exc.errno or -1, exc.strerror or str(exc))
    return f"cannot write {path}: {reason}"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _partial_prefix(final: Path) -> str:
    return f".{final.name}.partial-"


@contextlib.contextmanager
def atomic_output_dir(final: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside ``final``; on success rename it to ``final``.

    On any exception (including KeyboardInterrupt) the temporary directory is removed and the
    exception propagates; ``final`` is never left half-written.
    """
    final = Path(final).absolute()
    if final.exists() and not overwrite:
        if not final.is_dir() or any(final.iterdir()):
            raise OutputError(f"{final} already exists; pass --overwrite to replace it")
    parent = final.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for stale in parent.glob(_partial_prefix(final) + "*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=_partial_prefix(final), dir=parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the dataset should not be
    except OSError as exc:
        raise OutputError(describe_os_error(exc, final)) from exc
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final) if final.is_dir() else final.unlink()
        os.replace(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(describe_os_error(exc, final)) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a single file atomically (temporary file in the same directory, then rename)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it private; a normal file should not be
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise OutputError(describe_os_error(exc, path)) from exc
