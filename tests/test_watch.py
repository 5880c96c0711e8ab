"""``edgeocr watch``: reads merged across the frames of a stream, each code reported once.

The tracker is tested on fabricated reads (jitter, misreads, neighbours, gaps); the command on a
short MJPG video made of the bundled sample crops, read by the shipped default model.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeocr.cli import main
from edgeocr.runtime.reader import LineRead
from edgeocr.runtime.tracking import CodeTracker, TrackerConfig, edit_distance, polygon_iou, text_distance

REPO = Path(__file__).resolve().parents[1]
LINES = REPO / "samples" / "lines"


def line(
    text: str,
    x: float = 10.0,
    y: float = 10.0,
    confidence: float = 0.9,
    valid: bool = True,
    region: str | None = None,
    width: float = 100.0,
    height: float = 20.0,
) -> LineRead:
    poly = ((x, y), (x + width, y), (x + width, y + height), (x, y + height))
    return LineRead(
        text=text,
        confidence=confidence,
        char_confidences=(confidence,) * len(text),
        poly=poly,
        format=None,
        valid=valid,
        raw_text=text,
        region=region,
    )


def run(tracker: CodeTracker, frames: list[list[LineRead]], start: int = 0):
    """Feed frames start, start+1, ...; the confirmed codes closed on the way plus those open at the end."""
    closed = []
    for index, reads in enumerate(frames, start):
        closed += tracker.update(index, reads).closed
    return closed + tracker.finish()


# --- the tracker ---------------------------------------------------------------------------------


def test_text_and_polygon_measures() -> None:
    assert edit_distance("LOT 12345", "L0T 12345") == 1
    assert edit_distance("", "ABC") == 3 and edit_distance("ABC", "ABC") == 0
    assert edit_distance("kitten", "sitting") == 3
    assert text_distance("ABCD", "ABXD") == pytest.approx(0.25) and text_distance("", "") == 0.0
    square = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], np.float64)
    assert polygon_iou(square, square) == pytest.approx(1.0)
    assert polygon_iou(square, square + [5, 0]) == pytest.approx(50 / 150)
    assert polygon_iou(square, square[::-1]) == pytest.approx(1.0)  # either orientation
    assert polygon_iou(square, square + [20, 0]) == 0.0


def test_jittered_reads_of_one_code_merge_into_one_report_with_the_majority_text() -> None:
    rng = np.random.default_rng(0)
    texts = ["LOT 12345", "LOT 12345", "L0T 12345", "LOT 12345", "LOT 1234", "LOT 12345"]
    frames = [
        [line(text, x=10 + rng.uniform(-4, 4), y=10 + rng.uniform(-3, 3), confidence=0.8 + 0.02 * i)]
        for i, text in enumerate(texts)
    ]
    (code,) = run(CodeTracker(TrackerConfig(min_frames=3)), frames, start=100)
    assert code.text == "LOT 12345" and code.readings == 3
    assert (code.first_frame, code.last_frame, code.frames) == (100, 105, 6)
    votes = [0.8 + 0.02 * i for i, text in enumerate(texts)]
    winning = sum(v for v, text in zip(votes, texts) if text == "LOT 12345")
    assert code.agreement == pytest.approx(winning / sum(votes))
    assert code.confidence == pytest.approx(0.8 + 0.02 * 5)  # the best read of the winning text


def test_neighbouring_codes_regions_and_a_new_code_in_the_same_place_stay_apart() -> None:
    tracker = CodeTracker(TrackerConfig(min_frames=2, max_gap=0))
    # Two similar codes one above the other (no overlap), and a region pair sharing a polygon.
    frames = [
        [
            line("LOT 123", y=0),
            line("LOT 124", y=40),
            line("A1", region="left", x=300),
            line("A1", region="right", x=300),
        ]
        for _ in range(3)
    ]
    # The product changes: another code where the first one was.
    frames += [[line("EXP 2029", y=0)] for _ in range(3)]
    codes = sorted(run(tracker, frames), key=lambda c: (c.first_frame, c.track_id))
    assert [(c.text, c.region, c.first_frame, c.last_frame) for c in codes] == [
        ("LOT 123", None, 0, 2),
        ("LOT 124", None, 0, 2),
        ("A1", "left", 0, 2),
        ("A1", "right", 0, 2),
        ("EXP 2029", None, 3, 5),
    ]


def test_a_moving_code_is_followed_while_its_boxes_overlap() -> None:
    frames = [[line("SN 998877", x=10 + 15 * i)] for i in range(8)]  # 15 px a frame, boxes 100 px wide
    (code,) = run(CodeTracker(), frames)
    assert (code.first_frame, code.last_frame, code.frames) == (0, 7, 8)


def test_gaps_up_to_max_gap_are_bridged_longer_ones_close_the_track() -> None:
    seen, missing = [line("P 25335 L1")], []
    frames = [seen] * 3 + [missing] * 2 + [seen] * 2 + [missing] * 3 + [seen] * 3
    tracker = CodeTracker(TrackerConfig(min_frames=3, max_gap=2))
    events = [tracker.update(i, reads) for i, reads in enumerate(frames)]
    closed = [code for event in events for code in event.closed]
    # frames 0-6 (gap of 2 bridged) close at frame 9 (three missed); frames 10-12 are a new code.
    assert [(c.first_frame, c.last_frame, c.frames) for c in closed] == [(0, 6, 5)]
    assert [i for i, event in enumerate(events) if event.closed] == [9]
    assert [(c.first_frame, c.last_frame, c.frames) for c in tracker.finish()] == [(10, 12, 3)]
    assert [i for i, event in enumerate(events) if event.confirmed] == [2, 12]


def test_flukes_and_invalid_reads_are_not_reported_unless_asked() -> None:
    frames = [[line("FLUKE", y=0), line("LOW 42", y=50, confidence=0.2, valid=False)]]
    frames += [[line("LOW 42", y=50, confidence=0.2, valid=False)] for _ in range(3)]
    assert run(CodeTracker(TrackerConfig(min_frames=2)), frames) == []
    (code,) = run(CodeTracker(TrackerConfig(min_frames=2, valid_only=False)), frames)
    assert (code.text, code.valid, code.frames) == ("LOW 42", False, 4)


def test_frames_must_come_in_order() -> None:
    tracker = CodeTracker()
    tracker.update(5, [])
    with pytest.raises(ValueError, match="increase"):
        tracker.update(5, [])


# --- the command on a video ----------------------------------------------------------------------

SAMPLES = [
    "block/00000019.png",
    "date/00000004.png",
    "gtin/00000003.png",
    "lot/00000009.png",
    "lot/00000000.png",
    "container/00000001.png",
]
BLANK, SHOWN = 2, 5  # each crop: 2 empty frames, then 5 jittered noisy frames
WIDTH, HEIGHT = 320, 64


def labels() -> dict[str, str]:
    rows = (row.split("\t") for row in (LINES / "labels.tsv").read_text(encoding="utf-8").splitlines() if row)
    return {path: text for path, text in rows}


def write_clip(path: Path, repeats: int = 1) -> Path:
    """An MJPG clip of the sample crops, each fitted to the frame, shifted by up to 3 px and noised;
    ``repeats`` times over (the benchmark in the README uses a longer clip)."""
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (WIDTH, HEIGHT))
    for name in SAMPLES * repeats:
        crop = cv2.imread(str(LINES / name))
        scale = min((WIDTH - 8) / crop.shape[1], (HEIGHT - 6) / crop.shape[0])
        crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        background = np.median(np.concatenate([crop[0], crop[-1]]), axis=0).astype(np.uint8)
        for _ in range(BLANK):
            writer.write(np.full((HEIGHT, WIDTH, 3), 235, np.uint8))
        for _ in range(SHOWN):
            frame = np.empty((HEIGHT, WIDTH, 3), np.uint8)
            frame[:] = background
            dx, dy = rng.integers(-3, 4, 2)
            y = int(np.clip((HEIGHT - crop.shape[0]) // 2 + dy, 0, HEIGHT - crop.shape[0]))
            x = int(np.clip((WIDTH - crop.shape[1]) // 2 + dx, 0, WIDTH - crop.shape[1]))
            frame[y : y + crop.shape[0], x : x + crop.shape[1]] = crop
            writer.write(np.clip(frame + rng.normal(0, 3, frame.shape), 0, 255).astype(np.uint8))
    writer.release()
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("watch") / "clip.avi")


def shown_frames(index: int, every: int = 1) -> list[int]:
    """The clip's frames that show sample ``index`` and are read when reading every N-th frame."""
    return [f for f in range(index * (BLANK + SHOWN) + BLANK, (index + 1) * (BLANK + SHOWN)) if f % every == 0]


@functools.cache  # one reading of the clip per setting, shared by the tests below
def voted_texts(video: Path, every: int = 1) -> tuple[str, ...]:
    """Each sample's text as the tracker should report it, worked out independently: a plain reader with
    watch's settings reads every frame, and the text with the largest sum of confidences wins (ties:
    the most confident single read). The model's accuracy is not what these tests check."""
    from edgeocr.runtime.reader import Reader, ReaderConfig
    from edgeocr.runtime.recognizer import EngineConfig

    reader = Reader(ReaderConfig(model="default", engine=EngineConfig(intra_op_threads=1), min_confidence=0.3))
    capture, frames = cv2.VideoCapture(str(video)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    texts = []
    for index in range(len(SAMPLES)):
        votes: dict[str, float] = {}
        best: dict[str, float] = {}
        for f in shown_frames(index, every):
            for line in reader.read(frames[f]):
                if line.text and line.valid:
                    votes[line.text] = votes.get(line.text, 0.0) + line.confidence
                    best[line.text] = max(best.get(line.text, 0.0), line.confidence)
        texts.append(max(votes, key=lambda text: (votes[text], best[text])))
    return tuple(texts)


def expected_spans(video: Path, every: int = 1) -> list[tuple[str, int, int, int]]:
    """(text, first frame, last frame, frames read) of each sample in the clip, reading every N-th frame."""
    spans = []
    for index, text in enumerate(voted_texts(video, every)):
        shown = shown_frames(index, every)
        spans.append((text, shown[0], shown[-1], len(shown)))
    return spans


def test_the_clip_shows_codes_the_default_model_reads(video: Path) -> None:
    # A sanity check of the clip, not of the tracker: the votes of plain reads give the labels of
    # most samples (default v2 reads "BEF X9Z-5615" on the compressed frames of "REF X9Z-5615").
    truth = labels()
    right = sum(text == truth[name] for text, name in zip(voted_texts(video), SAMPLES, strict=True))
    assert right >= len(SAMPLES) - 1


def test_watch_reports_each_code_of_a_video_once_with_its_frames(video: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "codes.jsonl"
    assert main(["watch", str(video), "--threads", "1", "--min-confidence", "0.3", "--json", str(out)]) == 0
    codes = [json.loads(row) for row in out.read_text(encoding="utf-8").splitlines()]
    assert [(c["text"], c["first_frame"], c["last_frame"], c["frames"]) for c in codes] == expected_spans(video)
    assert all(c["valid"] and 0.3 <= c["confidence"] <= 1.0 for c in codes)
    printed = capsys.readouterr().out
    # Confirmed as it happened: once, at its third frame. The text printed then is the vote of those
    # three frames, which may still differ from the final one checked above.
    confirmations = [line for line in printed.splitlines() if re.match(r"frame \d+: ", line)]
    assert len(confirmations) == len(expected_spans(video))
    for line, (_, first, *_rest) in zip(confirmations, expected_spans(video), strict=True):
        assert line.startswith(f"frame {first + 2}: ") and line.endswith(f"seen since frame {first})"), line
    assert f"{len(SAMPLES) * (BLANK + SHOWN)} frames read in" in printed and "frames/s" in printed


def test_watch_every_other_frame_and_max_frames(video: Path, tmp_path: Path) -> None:
    out = tmp_path / "codes.jsonl"
    assert (
        main(
            [
                "watch",
                str(video),
                "--threads",
                "1",
                "--min-confidence",
                "0.3",
                "--every",
                "2",
                "--min-frames",
                "2",
                "--json",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    codes = [json.loads(row) for row in out.read_text(encoding="utf-8").splitlines()]
    assert [(c["text"], c["first_frame"], c["last_frame"], c["frames"]) for c in codes] == expected_spans(
        video, every=2
    )
    # Ten frames read: the first code (frames 2-6) is complete, the second (from 9) has one frame only.
    assert (
        main(
            [
                "watch",
                str(video),
                "--threads",
                "1",
                "--min-confidence",
                "0.3",
                "--max-frames",
                "10",
                "--json",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    codes = [json.loads(row) for row in out.read_text(encoding="utf-8").splitlines()]
    assert [(c["text"], c["first_frame"], c["last_frame"]) for c in codes] == [expected_spans(video)[0][:3]]


def test_watch_refuses_missing_or_unreadable_sources_clearly(tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"not a video at all" * 50)
    assert main(["watch", str(tmp_path / "missing.mp4")]) == 2
    assert "missing.mp4: no such video file" in capsys.readouterr().err
    assert main(["watch", str(broken)]) == 2
    assert "broken.avi: cannot open as a video" in capsys.readouterr().err
    assert main(["watch", "97"]) == 2  # no such camera here
    assert "camera 97: cannot open" in capsys.readouterr().err
    assert main(["watch", str(broken), "--min-frames", "0"]) == 2
    assert "--min-frames" in capsys.readouterr().err


def write_scene_clip(path: Path, frames_per_scene: int = 8) -> Path:
    """The bundled 800x600 scenes, each drifting right and down 4 and 2 px a frame (for timing
    ``watch --mode detector``; not used by the tests, which stay fast)."""
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (800, 600))
    for scene in sorted((REPO / "samples" / "scenes" / "images").glob("*.jpg")):
        image = cv2.imread(str(scene))
        for k in range(frames_per_scene):
            shift = np.float32([[1, 0, 4 * k], [0, 1, 2 * k]])
            frame = cv2.warpAffine(image, shift, (800, 600), borderMode=cv2.BORDER_REPLICATE)
            writer.write(np.clip(frame + rng.normal(0, 3, frame.shape), 0, 255).astype(np.uint8))
    writer.release()
    return path


if __name__ == "__main__":  # python tests/test_watch.py clip|scenes OUT.avi [REPEATS]: clips for timing watch
    kind, out = sys.argv[1], Path(sys.argv[2])
    print(write_clip(out, int(sys.argv[3]) if len(sys.argv) > 3 else 1) if kind == "clip" else write_scene_clip(out))


# --- runs that finish: a frame the reader fails on is reported and skipped ---------------------------


class _FlakyReader:
    """Reads nothing, and raises ``failure`` on the frames (call order) listed in ``bad``."""

    def __init__(self, bad: set[int] | None, failure: BaseException) -> None:
        self.bad, self.failure, self.calls = bad, failure, 0

    def read(self, frame):
        call, self.calls = self.calls, self.calls + 1
        if self.bad is None or call in self.bad:
            raise self.failure
        return []


def test_a_frame_the_reader_fails_on_is_an_error_and_the_watch_goes_on(video: Path) -> None:
    from edgeocr.runtime.watch import WatchConfig, watch_stream

    reader = _FlakyReader({3, 4, 10}, cv2.error("OpenCV(4.x) error: (-215:Assertion failed) in function 'resize'"))
    seen = []
    result = watch_stream(reader, str(video), WatchConfig(), on_error=seen.append)  # type: ignore[arg-type]
    total = len(SAMPLES) * (BLANK + SHOWN)
    assert reader.calls == total and result.stats.frames_read == total - 3 and result.stats.errors == 3
    assert [e.frame for e in result.errors] == [3, 4, 10] == [e.frame for e in seen]
    assert all(e.error.startswith("cv2.error: OpenCV(4.x) error: (-215") for e in result.errors)
    assert "(-215:Assertion failed)" in result.errors[0].error and result.stopped is None

    # a reader that fails on every frame ends the watch after max_consecutive_errors, not never
    always = _FlakyReader(None, MemoryError())
    result = watch_stream(always, str(video), WatchConfig(max_consecutive_errors=4))  # type: ignore[arg-type]
    assert always.calls == 4 and result.stats.errors == 4 and result.errors[0].error == "MemoryError"
    assert result.stopped is not None and "4 frames in a row" in result.stopped

    # Ctrl-C is not a frame error: it ends the watch as it always did, codes reported
    stopped = _FlakyReader({5}, KeyboardInterrupt())
    result = watch_stream(stopped, str(video), WatchConfig())  # type: ignore[arg-type]
    assert result.interrupted and stopped.calls == 6 and result.stats.errors == 0


def test_watch_command_reports_failed_frames_on_stderr_and_exits_1(
    video: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    from edgeocr.runtime.reader import Reader

    read, calls = Reader.read, []

    def flaky(self, image, **options):
        calls.append(1)
        if len(calls) == 3:
            raise ValueError("operands could not be broadcast together")
        return read(self, image, **options)

    monkeypatch.setattr(Reader, "read", flaky)
    out = tmp_path / "codes.jsonl"
    code = main(["watch", str(video), "--threads", "1", "--min-confidence", "0.3", "--jsonl", str(out), "-q"])
    assert code == 1
    err = capsys.readouterr().err
    assert "frame 2: error: ValueError: operands could not be broadcast together" in err
    assert "1 frame(s) could not be read" in err
    assert len(out.read_text(encoding="utf-8").splitlines()) == len(SAMPLES)  # every code still reported


@pytest.mark.timeout(60)  # a FIFO that was opened would block
def test_watch_refuses_a_fifo_or_a_folder_before_opening_it(tmp_path: Path, capsys) -> None:
    import os

    os.mkfifo(tmp_path / "pipe.mp4")
    assert main(["watch", str(tmp_path / "pipe.mp4")]) == 2
    assert "pipe.mp4: a FIFO (named pipe), not a regular file" in capsys.readouterr().err
    assert main(["watch", str(tmp_path)]) == 2
    assert "a directory, not a regular file" in capsys.readouterr().err
