"""Read a video file, camera or stream frame by frame and report each code once (``edgeocr watch``).

Frames come from :func:`edgeocr.runtime.sources.video_frames` (every ``every``-th frame), each is
read by a :class:`~edgeocr.runtime.reader.Reader` as soon as it arrives (one frame at a time:
a live stream wants the lowest latency, not the largest batch), and a
:class:`~edgeocr.runtime.tracking.CodeTracker` merges the reads of the same code across frames.
Ctrl-C ends a live stream like the end of a file: open codes are closed and reported.

A frame the reader fails on (any exception: an OpenCV error, MemoryError, our own errors) is a
:class:`FrameError` (frame index, the error's type and message), reported through ``on_error``,
and the watch goes on with the next frame; only ``max_consecutive_errors`` failures in a row (a
reader that fails on everything) end it early, with the codes seen so far. Ctrl-C is never caught
as a frame error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from edgeocr.core.errors import ImageError
from edgeocr.core.failures import describe_failure
from edgeocr.core.files import file_problem
from edgeocr.runtime.reader import Reader
from edgeocr.runtime.sources import video_frames
from edgeocr.runtime.tracking import CodeTracker, TrackedCode, TrackerConfig


class WatchConfig(BaseModel):
    """What to read of a stream and how to merge it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    every: int = Field(default=1, ge=1, description="Read every N-th frame of the source (the others are skipped).")
    max_frames: int | None = Field(
        default=None, ge=1, description="Stop after reading this many frames; None: until the stream ends."
    )
    stats_every_s: float = Field(
        default=5.0, gt=0.0, description="Seconds between two progress reports (frames per second so far)."
    )
    tracker: TrackerConfig = Field(
        default_factory=TrackerConfig, description="How reads of the same code are merged across frames."
    )
    max_consecutive_errors: int = Field(
        default=50,
        ge=1,
        description="Stop after this many frames in a row could not be read (each failed frame is reported "
        "and skipped; a reader that fails on every frame ends the watch instead of failing forever).",
    )


#: A watch keeps this many frame errors in its result (all are counted and reported through on_error).
MAX_ERRORS_KEPT = 100


@dataclass(frozen=True)
class FrameError:
    """A frame the reader failed on: its index in the source and the error (type and message)."""

    frame: int
    error: str


@dataclass(frozen=True)
class WatchStats:
    """Progress of a watch. ``frames_read``: frames given to the reader; ``last_frame``: the source
    index of the last of them; ``seconds``: wall time since the stream was opened (decoding
    included); ``read_seconds``: time spent in the reader alone; ``codes``: codes confirmed so far;
    ``errors``: frames the reader failed on (not counted in ``frames_read``).
    """

    frames_read: int
    last_frame: int
    seconds: float
    read_seconds: float
    codes: int
    errors: int = 0

    @property
    def frames_per_second(self) -> float:
        """Frames read per second of wall time: what the whole pipeline sustains."""
        return self.frames_read / self.seconds if self.seconds > 0 else 0.0

    @property
    def reader_ms_per_frame(self) -> float:
        """Mean milliseconds the reader spent on one frame."""
        return 1000.0 * self.read_seconds / self.frames_read if self.frames_read else 0.0


@dataclass(frozen=True)
class WatchResult:
    """Every confirmed code of the stream (in the order they first appeared) and the final figures.

    ``errors``: the first :data:`MAX_ERRORS_KEPT` frames the reader failed on (``stats.errors`` counts
    them all); ``stopped``: why the watch ended early (too many failed frames in a row), else None."""

    codes: tuple[TrackedCode, ...]
    stats: WatchStats
    interrupted: bool
    errors: tuple[FrameError, ...] = ()
    stopped: str | None = None


def stream_target(source: str) -> int | str:
    """A camera index (digits), a stream URL (``scheme://...``) or an existing video file."""
    text = source.strip()
    if text.isdigit():
        return int(text)
    if "://" in text:
        return text
    problem = file_problem(text, max_bytes=None)  # streamed, never read whole: no size cap
    if problem == "no such file":
        raise ImageError(f"{text}: no such video file (give a video file, a camera index such as 0, or a stream URL)")
    if problem is not None:  # a FIFO, a device, a directory, a symlink loop: refused before it is opened
        raise ImageError(f"{text}: {problem}")
    return text


def watch_stream(
    reader: Reader,
    source: str,
    config: WatchConfig | None = None,
    *,
    on_confirmed: Callable[[int, TrackedCode], None] | None = None,
    on_closed: Callable[[TrackedCode], None] | None = None,
    on_stats: Callable[[WatchStats], None] | None = None,
    on_error: Callable[[FrameError], None] | None = None,
) -> WatchResult:
    """Read ``source`` until it ends, ``max_frames`` frames were read, or Ctrl-C.

    ``on_confirmed(frame_index, code)`` runs when a code is confirmed (its reading so far),
    ``on_closed(code)`` when a confirmed code's track closes (final figures), ``on_stats`` every
    ``stats_every_s`` seconds, ``on_error(error)`` for each frame the reader failed on (the watch goes
    on). Raises :class:`ImageError` when the source cannot be opened or read.
    """
    config = config or WatchConfig()
    target = stream_target(source)
    tracker = CodeTracker(config.tracker)
    closed: list[TrackedCode] = []
    frames_read, last_frame, read_seconds, confirmed = 0, -1, 0.0, 0
    errors: list[FrameError] = []
    error_count = in_a_row = 0
    interrupted, stopped = False, None
    start = next_report = time.perf_counter()
    next_report += config.stats_every_s

    def stats() -> WatchStats:
        return WatchStats(frames_read, last_frame, time.perf_counter() - start, read_seconds, confirmed, error_count)

    frames = video_frames(target, config.every)
    try:
        for frame_index, frame in frames:
            began = time.perf_counter()
            try:
                reads = reader.read(frame)
            except Exception as exc:  # one bad frame costs that frame; Ctrl-C is not an Exception
                read_seconds += time.perf_counter() - began
                failure = FrameError(frame_index, describe_failure(exc))
                error_count, in_a_row = error_count + 1, in_a_row + 1
                if len(errors) < MAX_ERRORS_KEPT:
                    errors.append(failure)
                if on_error is not None:
                    on_error(failure)
                if in_a_row >= config.max_consecutive_errors:
                    stopped = (
                        f"{in_a_row} frames in a row could not be read (the last, frame {frame_index}: {failure.error})"
                    )
                    break
                continue
            in_a_row = 0
            read_seconds += time.perf_counter() - began
            frames_read, last_frame = frames_read + 1, frame_index
            events = tracker.update(frame_index, reads)
            confirmed += len(events.confirmed)
            for code in events.confirmed:
                if on_confirmed is not None:
                    on_confirmed(frame_index, code)
            for code in events.closed:
                closed.append(code)
                if on_closed is not None:
                    on_closed(code)
            if on_stats is not None and time.perf_counter() >= next_report:
                on_stats(stats())
                next_report = time.perf_counter() + config.stats_every_s
            if config.max_frames is not None and frames_read >= config.max_frames:
                break
    except KeyboardInterrupt:  # the way a live camera is stopped: report what was seen
        interrupted = True
    finally:
        frames.close()  # releases the capture now, not at garbage collection
    final = tracker.finish()
    for code in final:
        if on_closed is not None:
            on_closed(code)
    codes = sorted(closed + final, key=lambda code: (code.first_frame, code.track_id))
    return WatchResult(
        codes=tuple(codes), stats=stats(), interrupted=interrupted, errors=tuple(errors), stopped=stopped
    )
