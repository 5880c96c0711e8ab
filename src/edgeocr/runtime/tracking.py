"""Merge the reads of a video stream into codes: one report per printed code, however many frames show it.

A camera sees the same lot number in many consecutive frames, read a little differently now and
then (a ``0`` taken for an ``O`` while the product moves). :class:`CodeTracker` follows each code
from frame to frame and reports it **once**, with the span of frames that showed it and the
reading most frames agreed on.

Matching is greedy per frame: a read joins an open track when its polygon overlaps the track's
last polygon (intersection over union of the convex quadrilaterals, at least
``min_overlap``), its region name agrees (``'roi'`` mode), and its text is close to the track's
(normalised edit distance at most ``max_text_distance``). Pairs are taken cheapest first (text
distance, then poorer overlap), one read per track and frame; reads left over open new tracks.

Each track votes on whole lines: every read adds its confidence to its text's tally, and the
reported text is the one with the largest tally (per-character votes could splice two readings
into a text no frame produced, which a format check never saw). A track is *confirmed* once it
has been read in ``min_frames`` frames (single-frame flukes never are) and *closes* when more
than ``max_gap`` read frames in a row miss it; only confirmed tracks are reported.

A tracker holds the state of one stream: use one per stream, from one thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edgeocr.runtime.results import LineRead, Point


class TrackerConfig(BaseModel):
    """How reads are merged across frames."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_frames: int = Field(
        default=3, ge=1, description="A code is confirmed (and reported) once it has been read in this many frames."
    )
    max_gap: int = Field(
        default=5,
        ge=0,
        description="A code's track closes when more than this many read frames in a row do not show it.",
    )
    min_overlap: float = Field(
        default=0.3,
        gt=0.0,
        le=1.0,
        description="Least intersection over union of a read's polygon with its track's last polygon.",
    )
    max_text_distance: float = Field(
        default=0.34,
        ge=0.0,
        le=1.0,
        description="Largest edit distance, divided by the longer text's length, between a read and its track.",
    )
    valid_only: bool = Field(
        default=True,
        description="Track only reads marked valid (confidence, format); False: every non-empty read.",
    )


@dataclass(frozen=True)
class TrackedCode:
    """A code followed across frames.

    ``text``/``confidence``/``format``/``valid``/``poly``: those of the most confident read of
    the winning text (the text with the largest sum of read confidences). ``first_frame`` and
    ``last_frame``: source frame indices of its first and last read; ``frames``: how many frames
    read it; ``agreement``: the winning text's share of the summed confidences (1.0: every read
    agreed); ``readings``: how many distinct texts were read.
    """

    track_id: int
    text: str
    confidence: float
    format: str | None
    valid: bool
    region: str | None
    poly: tuple[Point, Point, Point, Point]
    first_frame: int
    last_frame: int
    frames: int
    agreement: float
    readings: int

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return {
            "track_id": self.track_id,
            "text": self.text,
            "confidence": self.confidence,
            "format": self.format,
            "valid": self.valid,
            "region": self.region,
            "poly": [list(p) for p in self.poly],
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "frames": self.frames,
            "agreement": self.agreement,
            "readings": self.readings,
        }


@dataclass(frozen=True)
class TrackEvents:
    """What one frame changed: codes confirmed by it (a snapshot) and confirmed codes it closed (final)."""

    confirmed: tuple[TrackedCode, ...] = ()
    closed: tuple[TrackedCode, ...] = ()


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions and substitutions cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def text_distance(a: str, b: str) -> float:
    """Edit distance divided by the longer text's length: 0 for equal texts, 1 for nothing in common."""
    longest = max(len(a), len(b))
    return edit_distance(a, b) / longest if longest else 0.0


def polygon_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two convex quadrilaterals (``[4, 2]`` corners, either orientation)."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    area_a, area_b = abs(cv2.contourArea(a)), abs(cv2.contourArea(b))
    if area_a <= 0.0 or area_b <= 0.0:
        return 0.0
    intersection, _ = cv2.intersectConvexConvex(a, b)
    union = area_a + area_b - intersection
    return float(intersection / union) if union > 0 else 0.0


@dataclass(eq=False)
class _Track:
    track_id: int
    first_frame: int
    last_frame: int
    last_seen: int  # the tracker's frame counter when last read (gaps count read frames, not source frames)
    poly: np.ndarray
    region: str | None
    last_text: str
    frames: int = 0
    confirmed: bool = False
    votes: dict[str, float] = field(default_factory=dict)
    best: dict[str, LineRead] = field(default_factory=dict)

    def add(self, frame_index: int, counter: int, read: LineRead) -> None:
        self.last_frame, self.last_seen, self.frames = frame_index, counter, self.frames + 1
        self.poly, self.last_text = np.asarray(read.poly, np.float64), read.text
        self.votes[read.text] = self.votes.get(read.text, 0.0) + read.confidence
        if read.text not in self.best or read.confidence > self.best[read.text].confidence:
            self.best[read.text] = read

    def leading_text(self) -> str:
        # Largest tally; ties go to the most confident single read, then to the first text seen.
        return max(self.votes, key=lambda text: (self.votes[text], self.best[text].confidence))

    def snapshot(self) -> TrackedCode:
        text = self.leading_text()
        best, total = self.best[text], sum(self.votes.values())
        return TrackedCode(
            track_id=self.track_id,
            text=text,
            confidence=best.confidence,
            format=best.format,
            valid=best.valid,
            region=best.region,
            poly=best.poly,
            first_frame=self.first_frame,
            last_frame=self.last_frame,
            frames=self.frames,
            agreement=self.votes[text] / total if total > 0 else 1.0,
            readings=len(self.votes),
        )


class CodeTracker:
    """Follows codes across the frames of one stream; see the module documentation."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._open: list[_Track] = []
        self._counter = 0  # read frames seen so far
        self._next_id = 0
        self._last_frame = -1

    @property
    def open_tracks(self) -> int:
        """Tracks still open (confirmed or not)."""
        return len(self._open)

    def update(self, frame_index: int, reads: Sequence[LineRead]) -> TrackEvents:
        """Add the reads of one frame (``frame_index``: its index in the source, increasing)."""
        if frame_index <= self._last_frame:
            raise ValueError(f"frame indices must increase: {frame_index} after {self._last_frame}")
        self._last_frame = frame_index
        self._counter += 1
        config = self.config
        reads = [r for r in reads if r.text and (r.valid or not config.valid_only)]
        pairs = []
        for track_number, track in enumerate(self._open):
            for read_number, read in enumerate(reads):
                if read.region != track.region:
                    continue
                overlap = polygon_iou(track.poly, np.asarray(read.poly))
                if overlap < config.min_overlap:
                    continue
                distance = min(text_distance(read.text, text) for text in (track.leading_text(), track.last_text))
                if distance <= config.max_text_distance:
                    pairs.append((distance, 1.0 - overlap, track_number, read_number))
        used_tracks: set[int] = set()
        used_reads: set[int] = set()
        confirmed: list[TrackedCode] = []
        for _, _, track_number, read_number in sorted(pairs):
            if track_number in used_tracks or read_number in used_reads:
                continue
            used_tracks.add(track_number)
            used_reads.add(read_number)
            self._extend(self._open[track_number], frame_index, reads[read_number], confirmed)
        for read_number, read in enumerate(reads):
            if read_number not in used_reads:
                track = _Track(
                    self._next_id,
                    frame_index,
                    frame_index,
                    self._counter,
                    np.asarray(read.poly, np.float64),
                    read.region,
                    read.text,
                )
                self._next_id += 1
                self._open.append(track)
                self._extend(track, frame_index, read, confirmed)
        still_open, closed = [], []
        for track in self._open:
            if self._counter - track.last_seen > config.max_gap:
                if track.confirmed:
                    closed.append(track.snapshot())
            else:
                still_open.append(track)
        self._open = still_open
        return TrackEvents(confirmed=tuple(confirmed), closed=tuple(closed))

    def finish(self) -> list[TrackedCode]:
        """Close every open track (end of the stream); the confirmed ones, in the order they began."""
        codes = [track.snapshot() for track in self._open if track.confirmed]
        self._open = []
        return codes

    def _extend(self, track: _Track, frame_index: int, read: LineRead, confirmed: list[TrackedCode]) -> None:
        track.add(frame_index, self._counter, read)
        if not track.confirmed and track.frames >= self.config.min_frames:
            track.confirmed = True
            confirmed.append(track.snapshot())
