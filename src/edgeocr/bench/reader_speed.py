"""How fast the reader is on a camera frame and on a single line crop, beside the peers, in one run.

The reader issue's speed targets, on 2 CPU cores: a 640x480 frame with 1 to 3 code lines read end
to end (detection + crops + recognition) at p50 <= 15 ms, and a single line crop (``mode
"whole"``) at p50 <= 1.5 ms. This script measures them and says whether they are met.

Inputs, fixed by ``--seed``: synthetic scenes (:class:`edgeocr.synth.scenes.SceneSynthesizer`)
with 1 to 3 horizontal lines, 4:3 ones only, resized to 640x480; the crops are the labelled lines
of those frames, cut upright (:func:`edgeocr.core.crops.crop_line`).

Engines, all with the same ``--threads`` (ONNX Runtime intra-op threads, torch threads for EasyOCR):

* frames: ours = :class:`~edgeocr.runtime.reader.Reader` in ``detector`` mode, each of ``--models``
  (recognisers) with each of ``--detectors`` (by default our shipped ``fast`` DB detector, then
  ``default``, PP-OCRv6's imported; a model's targets are judged on the first), and the peers' full
  pipelines (:mod:`edgeocr.bench.peers`);
* crops: ours = a ``Reader`` in ``whole`` mode per model, and the peers' recognisers on the whole crop;
* where the time goes, for ours on frames (each detector): the detector's ``detect`` and the recogniser's
  ``recognize``, both timed inside the real reads through pass-through wrappers, and the rest
  (load and checks, crop warps, preprocessing, results) by difference, read by read.

Each input is read ``--repeats`` times after ``--warmup`` untimed reads; p50 / p95 / mean are
over all timed reads. Run it on an otherwise idle machine for figures worth reporting.
Usage: ``edgeocr study reader-speed --threads 2 --out build/bench/reader-speed.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from edgeocr.bench.peers import (
    DeviceNotSupported,
    EasyOcrEngine,
    EasyOcrPipeline,
    EdgeOcrPipeline,
    EngineNotInstalled,
    PpOcrV4Engine,
    PpOcrV4Pipeline,
    PpOcrV6Engine,
    PpOcrV6Pipeline,
)
from edgeocr.core.atomic import atomic_write_bytes
from edgeocr.core.crops import crop_line
from edgeocr.core.errors import EdgeOCRError
from edgeocr.measure.resources import environment

FRAME_SIZE = (640, 480)  # width, height
REFERENCE_WHAT = "p50 of a 5x5 Gaussian blur of a 640x480 BGR frame, 1 thread"
FRAME_TARGET_MS = 15.0
CROP_TARGET_MS = 1.5
#: Our reader's detectors, in order: the shipped DB detector (the targets are judged on it), PP-OCRv4's.
DETECTORS = ("fast", "default")  # the fast one first: the frame target is judged on it
PEERS = {
    "easyocr": (EasyOcrPipeline, EasyOcrEngine),
    "ppocrv4": (PpOcrV4Pipeline, PpOcrV4Engine),
    "ppocrv6": (PpOcrV6Pipeline, PpOcrV6Engine),
}


def make_frames(count: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """``count`` 640x480 frames with 1 to 3 horizontal lines, the line crops, and each frame's line count."""
    from edgeocr.synth.fonts import discover_fonts
    from edgeocr.synth.scenes import SceneSynthConfig, SceneSynthesizer
    from edgeocr.synth.templates import load_catalogue

    synth = SceneSynthesizer(load_catalogue(), discover_fonts(), seed, SceneSynthConfig(blocks=(1, 2)))
    frames, crops, lines = [], [], []
    index = 0
    while len(frames) < count:
        if index > 200 * count:
            raise EdgeOCRError(f"seed {seed}: too few scenes with 1 to 3 horizontal lines at 4:3")
        sample = synth.sample(index)
        index += 1
        height, width = sample.image.shape[:2]
        if width * 3 != height * 4 or not 1 <= len(sample.lines) <= 3 or any(line.vertical for line in sample.lines):
            continue
        scale = np.array([FRAME_SIZE[0] / width, FRAME_SIZE[1] / height], np.float32)
        frame = cv2.resize(sample.image, FRAME_SIZE, interpolation=cv2.INTER_AREA)
        frames.append(frame)
        lines.append(len(sample.lines))
        crops += [crop_line(frame, np.asarray(line.poly, np.float32) * scale) for line in sample.lines]
    return frames, crops, lines


def time_calls(
    call: Callable[[np.ndarray], object], inputs: Sequence[np.ndarray], warmup: int, repeats: int
) -> list[float]:
    """Milliseconds of each timed ``call(input)``: every input ``repeats`` times, after ``warmup`` untimed calls."""
    for i in range(warmup):
        call(inputs[i % len(inputs)])
    times = []
    for _ in range(repeats):
        for item in inputs:
            start = time.perf_counter()
            call(item)
            times.append((time.perf_counter() - start) * 1000)
    return times


def stats(times: Sequence[float]) -> dict:
    return {
        "n": len(times),
        "p50_ms": round(float(np.percentile(times, 50)), 3),
        "p95_ms": round(float(np.percentile(times, 95)), 3),
        "mean_ms": round(float(np.mean(times)), 3),
    }


class _Timed:
    """Passes calls through to ``call`` and records how long each took (ms)."""

    def __init__(self, call: Callable) -> None:
        self.call = call
        self.times: list[float] = []

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        out = self.call(*args, **kwargs)
        self.times.append((time.perf_counter() - start) * 1000)
        return out


class _TimedDetector:
    """A line detector whose ``detect`` calls are timed."""

    def __init__(self, inner) -> None:
        self.detect = _Timed(inner.detect)


def _loaded(engine) -> tuple[object | None, str | None]:
    try:
        engine.load()
    except (EngineNotInstalled, DeviceNotSupported) as exc:
        return None, str(exc)
    return engine, None


def ours_on_frames(
    model: str, detector_spec: str, threads: int, frames: list[np.ndarray], warmup: int, repeats: int
) -> dict:
    """Our reader with the detector ``detector_spec`` names: end-to-end figures and where the time goes.

    The detector's ``detect`` and the recogniser's ``recognize`` are wrapped by pass-through timers,
    so all three parts of a frame's time come from the same read."""
    from edgeocr.runtime.reader import Reader

    pipeline, reason = _loaded(EdgeOcrPipeline(model, threads, detector_spec))
    if pipeline is None:
        return {"status": "not installed", "name": f"edgeocr:{model}+{detector_spec}", "reason": reason}
    reader = pipeline.reader  # the same settings as `edgeocr bench --mode e2e`
    detector = _TimedDetector(reader.detector)
    instrumented = Reader(reader.config, detector=detector)
    recognise = _Timed(instrumented.recognizer.recognize)
    instrumented.recognizer.recognize = recognise  # an instance attribute: this reader's recogniser only
    lines: list[int] = []
    total = time_calls(lambda frame: lines.append(len(instrumented.read(frame))), frames, warmup, repeats)
    detector_ms = detector.detect.times[warmup:]
    # A frame where nothing was found never calls the recogniser: it costs 0 there.
    recogniser_ms, calls = [], iter(recognise.times)
    for count in lines:
        recogniser_ms.append(next(calls) if count else 0.0)
    recogniser_ms = recogniser_ms[warmup:]
    rest = [t - d - r for t, d, r in zip(total, detector_ms, recogniser_ms, strict=True)]
    return {
        "status": "ok",
        "name": pipeline.name,
        "version": pipeline.version,
        "frame": stats(total),
        "lines_read_per_frame": round(float(np.mean(lines[warmup:])), 2),
        "breakdown": {
            "detector": stats(detector_ms),
            "recogniser": stats(recogniser_ms),
            "rest (load, crops, preprocessing, results)": stats(rest),
        },
    }


def ours_on_crops(model: str, threads: int, crops: list[np.ndarray], warmup: int, repeats: int) -> dict:
    from edgeocr.runtime.reader import Reader, ReaderConfig
    from edgeocr.runtime.recognizer import EngineConfig

    reader = Reader(ReaderConfig(model=model, engine=EngineConfig(intra_op_threads=threads), mode="whole"))
    return {
        "status": "ok",
        "name": f"edgeocr:{model} (Reader, mode whole)",
        "crop": stats(time_calls(reader.read, crops, warmup, repeats)),
    }


def peer_figures(
    name: str,
    threads: int,
    frames: list[np.ndarray],
    crops: list[np.ndarray],
    warmup: int,
    repeats: int,
    frame_repeats: int,
) -> dict:
    pipeline_class, recogniser_class = PEERS[name]
    record: dict = {"name": name}
    pipeline, reason = _loaded(pipeline_class(threads=threads))
    if pipeline is None:
        return {**record, "status": "not installed", "reason": reason}
    record.update(
        status="ok",
        version=pipeline.version,
        frame=stats(time_calls(pipeline.read_scene, frames, warmup, frame_repeats)),
    )
    recogniser, reason = _loaded(recogniser_class(threads=threads))
    record["crop"] = stats(time_calls(recogniser.read, crops, warmup, repeats)) if recogniser else None
    record["crop_version"] = recogniser.version if recogniser else reason
    return record


def machine_reference(rounds: int = 200) -> float:
    """p50 ms of a fixed workload that no model change touches (an OpenCV 5x5 Gaussian blur of a
    fixed 640x480 BGR frame on 1 thread): how fast the machine runs at this moment. Timed at the
    start and the end of a run, it tells runs on a fast or a slow shared VM apart."""
    frame = np.random.default_rng(0).integers(0, 256, (FRAME_SIZE[1], FRAME_SIZE[0], 3), dtype=np.uint8)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        for _ in range(10):
            cv2.GaussianBlur(frame, (5, 5), 0)
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            cv2.GaussianBlur(frame, (5, 5), 0)
            times.append((time.perf_counter() - start) * 1000)
    finally:
        cv2.setNumThreads(threads)
    return round(float(np.percentile(times, 50)), 4)


def _ms(figures: dict | None, key: str = "p50_ms") -> str:
    return "-" if not figures else f"{figures[key]:.2f}"


def markdown(result: dict) -> str:
    settings = result["settings"]
    env = result["environment"]
    reference = result["machine_reference"]
    crops = {record["model"]: record for record in result["ours_crops"]}
    rows = [
        "| engine | frame 640x480 p50 / p95 ms | lines read per frame | line crop p50 / p95 ms |",
        "|---|---|---|---|",
    ]
    shown: set[str] = set()
    for ours in result["ours_frames"]:
        crop_figures = crops[ours["model"]]["crop"]
        crop = "(same recogniser)" if ours["model"] in shown else f"{_ms(crop_figures)} / {_ms(crop_figures, 'p95_ms')}"
        shown.add(ours["model"])
        if ours["status"] != "ok":
            rows.append(f"| {ours['name']} (ours) | {ours['status']}: {ours['reason']} | - | {crop} |")
            continue
        rows.append(
            f"| {ours['name']} (ours) | {_ms(ours['frame'])} / {_ms(ours['frame'], 'p95_ms')} | "
            f"{ours['lines_read_per_frame']} | {crop} |"
        )
    for peer in result["peers"]:
        if peer["status"] != "ok":
            rows.append(f"| {peer['name']} | {peer['status']} | - | - |")
            continue
        rows.append(
            f"| {peer['name']} ({peer['version']}) | {_ms(peer['frame'])} / {_ms(peer['frame'], 'p95_ms')} | "
            f"- | {_ms(peer['crop'])} / {_ms(peer['crop'], 'p95_ms')} |"
        )
    parts = [
        f"# Reader speed ({env['date']})",
        "",
        f"{settings['frames']} synthetic 640x480 frames ({settings['lines']} code lines in all, 1 to 3 each "
        f"({settings['lines'] / settings['frames']:.2f} per frame), seed "
        f"{settings['seed']}) and their {settings['crops']} line crops; {settings['threads']} threads for every "
        f"engine; {settings['warmup']} warm-up reads, then each input {settings['repeats']} times "
        f"(peers' frames {settings['frame_repeats']} times). {env['cpu']['model']}, "
        f"{env['cpu']['usable_cores']} usable cores; load average {env['load_average']}. Machine reference "
        f"(a fixed OpenCV workload, {REFERENCE_WHAT}; lower is faster): {reference['start_ms']:.3f} ms at the "
        f"start, {reference['end_ms']:.3f} ms at the end.",
        "",
        *rows,
        "",
    ]
    for ours in result["ours_frames"]:
        if ours["status"] == "ok":
            parts += [
                f"Where the frame time of {ours['name']} goes (p50 / mean ms): "
                + "; ".join(f"{step} {_ms(v)} / {_ms(v, 'mean_ms')}" for step, v in ours["breakdown"].items())
                + ".",
                "",
            ]
    for model, targets in result["targets"].items():
        parts += [
            f"Targets of {model} (2 cores, frames judged on {targets['judged_on']}): frame p50 <= "
            f"{FRAME_TARGET_MS} ms: **{targets['frame']}**; line crop p50 <= {CROP_TARGET_MS} ms: "
            f"**{targets['crop']}**.",
            "",
        ]
    return "\n".join(parts)


def run(
    threads: int,
    frames_count: int,
    seed: int,
    warmup: int,
    repeats: int,
    frame_repeats: int,
    peers: Sequence[str],
    models: Sequence[str] = ("default",),
    detectors: Sequence[str] = DETECTORS,
    progress: Callable[[str], None] = print,
) -> dict:
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise EdgeOCRError(f"unknown peer {', '.join(unknown)}: choose from {', '.join(PEERS)}")
    frames, crops, lines = make_frames(frames_count, seed)
    progress(f"{len(frames)} frames, {len(crops)} crops")
    reference_start = machine_reference()
    if not detectors or not models:
        raise EdgeOCRError("name at least one model and one detector for our reader")
    ours_frames, ours_crops = [], []
    for model in models:
        for spec in detectors:
            ours_frames.append({"model": model, **ours_on_frames(model, spec, threads, frames, warmup, repeats)})
            progress(f"ours {model} + {spec}, frames: {ours_frames[-1].get('frame')}")
        ours_crops.append({"model": model, **ours_on_crops(model, threads, crops, warmup, repeats)})
        progress(f"ours {model}, crops: {ours_crops[-1]['crop']}")
    peer_records = []
    for name in peers:
        peer_records.append(peer_figures(name, threads, frames, crops, warmup, repeats, frame_repeats))
        progress(f"{name}: frame {peer_records[-1].get('frame')}, crop {peer_records[-1].get('crop')}")

    def verdict(figures: dict | None, target: float) -> str:
        if not figures:
            return "not measured"
        return f"{'met' if figures['p50_ms'] <= target else 'NOT met'} (p50 {figures['p50_ms']:.2f} ms)"

    targets = {}
    for model, crop_record in zip(models, ours_crops, strict=True):
        first = next(r for r in ours_frames if r["model"] == model)
        targets[model] = {
            "judged_on": first["name"],
            "frame": verdict(first.get("frame"), FRAME_TARGET_MS),
            "crop": verdict(crop_record.get("crop"), CROP_TARGET_MS),
        }
    return {
        "settings": {
            "threads": threads,
            "frames": len(frames),
            "lines": sum(lines),
            "crops": len(crops),
            "seed": seed,
            "warmup": warmup,
            "repeats": repeats,
            "frame_repeats": frame_repeats,
            "models": list(models),
            "detectors": list(detectors),
            "frame_size": list(FRAME_SIZE),
        },
        "targets": targets,
        "ours_frames": ours_frames,
        "ours_crops": ours_crops,
        "peers": peer_records,
        "machine_reference": {"what": REFERENCE_WHAT, "start_ms": reference_start, "end_ms": machine_reference()},
        "environment": environment(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="threads for every engine")
    parser.add_argument("--frames", type=int, default=20, help="synthetic 640x480 frames")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5, help="timed reads of each frame / crop (ours, peers' crops)")
    parser.add_argument(
        "--frame-repeats",
        type=int,
        default=1,
        help="timed reads of each frame for the peers (EasyOCR takes seconds per frame)",
    )
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated; '' for none")
    parser.add_argument(
        "--models",
        default="default",
        help="our recognisers, comma-separated (shipped names or "
        ".onnx paths); each is timed with every detector and on the crops",
    )
    parser.add_argument(
        "--detectors",
        default=",".join(DETECTORS),
        help="our reader's detectors, comma-separated "
        "(shipped names, .onnx paths or 'rapidocr'); the targets are judged on the first",
    )
    parser.add_argument("--out", type=Path, default=Path("build/bench/reader-speed.json"))
    args = parser.parse_args(argv)
    if args.threads < 1 or args.frames < 1 or args.repeats < 1 or args.frame_repeats < 1 or args.warmup < 0:
        parser.error("--threads, --frames, --repeats and --frame-repeats must be at least 1, --warmup at least 0")
    try:
        result = run(
            args.threads,
            args.frames,
            args.seed,
            args.warmup,
            args.repeats,
            args.frame_repeats,
            [p for p in args.peers.split(",") if p.strip()],
            [m for m in args.models.split(",") if m.strip()],
            [d for d in args.detectors.split(",") if d.strip()],
        )
    except EdgeOCRError as exc:
        print(f"error: {exc}")
        return 2
    text = markdown(result)
    atomic_write_bytes(args.out, (json.dumps(result, indent=1) + "\n").encode())
    atomic_write_bytes(args.out.with_suffix(".md"), text.encode())
    print(text)
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0
