"""Input files checked before they are read: regular files only, no symlink loops, a size cap.

A path handed to a reader may name a FIFO (reading it blocks until someone writes), a device
(``/dev/zero`` never ends), a directory, a symlink loop, or a file far larger than any image. Each is
refused here, with the reason, before a byte is read:

* :func:`file_problem` says why a path cannot be an input file (from ``stat``; nothing is opened);
* :func:`read_file_bytes` reads a file whole only after that check, opened non-blocking (a file
  swapped for a FIFO in between cannot block) and checked again on the open descriptor, and never
  reads more than ``max_bytes`` (a file that grows past the cap while it is read is refused too).

The cap, :data:`DEFAULT_MAX_FILE_BYTES` (256 MiB), is far above any camera frame or scan (a 50
megapixel image, the decoder's own pixel limit, is about 150 MB as an uncompressed BMP) and keeps one
file from taking the machine's memory before the pixel limit is even looked at.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from edgeocr.core.errors import EdgeOCRError, ImageError

#: Image files larger than this many bytes are refused before they are read (256 MiB).
DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MiB" if n >= 1024 * 1024 else f"{n} bytes"


def describe_mode(mode: int) -> str | None:
    """Why a file of this ``st_mode`` is not a regular file, or None when it is one."""
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return f"{kind}, not a regular file"


def file_problem(path: Path | str, max_bytes: int | None = DEFAULT_MAX_FILE_BYTES) -> str | None:
    """Why ``path`` cannot be read as an input file, or None when it can: missing, a broken symlink, a
    symlink loop, not a regular file (a FIFO, a device, a directory, a socket), or over ``max_bytes``
    (None: no cap). Only ``stat`` is called: nothing is opened."""
    path = Path(path)
    try:
        info = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symlink loop (too many levels of symbolic links)"
        if exc.errno == errno.ENOENT and os.path.lexists(path):
            return "a broken symlink (its target does not exist)"
        if exc.errno == errno.ENOENT:
            return "no such file"
        return f"cannot stat ({exc.strerror or exc})"
    return stat_problem(info, max_bytes)


def stat_problem(info: os.stat_result, max_bytes: int | None) -> str | None:
    """:func:`file_problem` for a ``stat`` result already taken."""
    kind = describe_mode(info.st_mode)
    if kind is not None:
        return kind
    if max_bytes is not None and info.st_size > max_bytes:
        return (
            f"file is {_size(info.st_size)}, over the limit of {_size(max_bytes)} for an image file "
            "(refused before reading; raise the limit if this is really one image)"
        )
    return None


def read_file_bytes(
    path: Path | str,
    max_bytes: int | None = DEFAULT_MAX_FILE_BYTES,
    error: type[EdgeOCRError] = ImageError,
    name: str | None = None,
) -> bytes:
    """The bytes of the regular file ``path``, at most ``max_bytes`` of them (None: no cap); else
    ``error`` naming the file (``name``, default the path) and the reason (see :func:`file_problem`)."""
    label = name or str(path)
    problem = file_problem(path, max_bytes)
    if problem is not None:
        raise error(f"{label}: {problem}")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise error(f"{label}: cannot read ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        problem = stat_problem(info, max_bytes)  # the file opened is the file checked
        if problem is not None:
            raise error(f"{label}: {problem}")
        limit = None if max_bytes is None else max_bytes + 1  # one byte more shows a file that grew
        chunks, total = [], 0
        want = info.st_size + 1  # the whole file in one read, usually
        while limit is None or total < limit:
            chunk = os.read(fd, want if limit is None else min(want, limit - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            want = 1 << 20
        if limit is not None and total >= limit:
            raise error(f"{label}: file grew past the limit of {_size(max_bytes or 0)} for an image file while read")
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    except OSError as exc:
        raise error(f"{label}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
