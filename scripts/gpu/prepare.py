#!/usr/bin/env python3
"""Prepare, on this machine, what the device calls carry: the wheelhouse and the data (scripts/gpu/README.md).

    .venv/bin/python scripts/gpu/prepare.py --realdev ../shared/realdev [--python 3.12] [--cpu-table build/gpu/cpu/table.json]

Writes only git-ignored folders:

* ``scripts/gpu/wheels/core/`` and ``wheels/synth/``: the packages edgeocr needs that the lent machine's
  image lacks, each at the version installed here, for CPython ``--python`` on manylinux x86-64, with a
  ``requirements.txt`` naming them. core (every call, 6.9 MiB): pydantic and its parts, rapidfuzz,
  rapidocr's network code and its two small needs; rapidocr's wheel is rebuilt without its model files
  (27 MB of PP-OCRv6 ONNX that nothing here reads). synth (call 2, 5.2 MiB): albumentations and its
  parts, lmdb.
* ``scripts/gpu/carry/realdev/``: a copy of ``realdev/industrial`` and ``realdev/words`` (evaluation
  only, never committed: the folder is ignored; delete it after the calls).
* ``scripts/gpu/carry/lines/synth-lines``: the first 512 lines of the synthetic test set (seed 20261121),
  rendered here (PNG recompressed losslessly) so that both machines read the same pixels: call 1's lines.
* ``scripts/gpu/carry/scenes/``: ``realdev/scenes`` and ``synth-scenes`` (48 scenes of the detector's
  test seed 20261122): call 1's detector sets.
* ``scripts/gpu/carry/fonts/fonts.tar.xz``: the fonts this machine's synthetic generator draws with (the
  lent machine has none), for call 2's on-the-fly training lines; unpacked there into a folder named by
  ``EDGEOCR_FONT_DIRS`` with ``EDGEOCR_NO_SYSTEM_FONTS=1``, so that a seed draws the same lines.
* ``scripts/gpu/carry/cpu-table.json``: with ``--cpu-table``, this machine's call-1 table, shown beside
  the GPU rows in the table the device writes.

Then it adds up what each call sends (the working tree as git sees it, plus its carried folders)
against the 64 MiB limit and fails when a call would not fit.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import io
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpulib  # noqa: E402

gpulib.bootstrap()

WHEELS = gpulib.HERE / "wheels"
LIMIT = 64 * 2**20
# What edgeocr imports that the lent machine's image does not have (KINDS.md lists what it has:
# torch, lightning, onnx, onnxruntime (CPU), numpy, opencv-python-headless, pillow, scipy, psutil,
# nvidia-ml-py, pyyaml, typer, rich, requests, tqdm, ...).
# core: every call (the configuration models, the metrics, the PP-OCR network code); synth: rendering
# synthetic lines (call 2 trains on them), which call 1 does not do (its lines are rendered here).
PACKAGES = {
    "core": (
        "pydantic",
        "pydantic-core",
        "annotated-types",
        "typing-inspection",
        "typing-extensions",
        "rapidfuzz",
        "rapidocr",
        "colorlog",
        "omegaconf",
    ),
    "synth": ("albumentations", "albucore", "stringzilla", "simsimd", "lmdb"),
}
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34, 35)] + [
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
]
SLIM_OVER_BYTES = 1 << 20  # rapidocr: files larger than this (its model files) are left out
#: What each call names in ``carry`` (scripts/gpu/README.md gives the run commands).
CALLS = {
    "call1": (
        "scripts/gpu/wheels/core",
        "scripts/gpu/carry/realdev",
        "scripts/gpu/carry/lines",
        "scripts/gpu/carry/scenes",
        "scripts/gpu/carry/cpu-table.json",
    ),
    "call2": ("scripts/gpu/wheels", "scripts/gpu/carry/realdev", "scripts/gpu/carry/fonts"),
}


def run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def download_wheels(python_versions: list[str]) -> None:
    """Each package at the version installed here, for each Python version, into ``wheels/GROUP/`` with
    its ``requirements.txt`` (what device_setup.sh installs from that folder)."""
    for group, names in PACKAGES.items():
        folder = WHEELS / group
        folder.mkdir(parents=True, exist_ok=True)
        pins = [f"{name}=={metadata.version(name)}" for name in names]
        for version in python_versions:
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
            cmd += ["--python-version", version, "--implementation", "cp", "-d", str(folder)]
            for platform in PLATFORMS:
                cmd += ["--platform", platform]
            run(cmd + pins)
        (folder / "requirements.txt").write_text("\n".join(pins) + "\n", encoding="utf-8")


def slim_rapidocr() -> None:
    """Rebuild rapidocr's wheel without its model files (and their RECORD lines), under the same name."""
    for wheel in WHEELS.glob("*/rapidocr-*.whl"):
        buffer = io.BytesIO()
        dropped = []
        with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
            for info in source.infolist():
                if info.file_size > SLIM_OVER_BYTES and not info.filename.endswith(".dist-info/RECORD"):
                    dropped.append(info.filename)
                    continue
                data = source.read(info)
                if info.filename.endswith(".dist-info/RECORD"):
                    text = data.decode("utf-8").splitlines()
                    data = ("\n".join(x for x in text if x.split(",")[0] not in dropped) + "\n").encode()
                target.writestr(info, data)
        if dropped:
            # RECORD comes last in a wheel, so every dropped file is known when it is rewritten; check anyway.
            with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as check:
                record = next(n for n in check.namelist() if n.endswith(".dist-info/RECORD"))
                assert not any(d in check.read(record).decode() for d in dropped)
            wheel.write_bytes(buffer.getvalue())
            print(f"{wheel.name}: left out {', '.join(dropped)}")


def copy_tree(source: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, symlinks=False)


def pack_fonts(target: Path) -> None:
    """The fonts the generator finds here, flat (it tells fonts apart by file name), as one .tar.xz."""
    from edgeocr.synth.fonts import discover_fonts

    library = discover_fonts()
    fonts = sorted(
        {
            f
            for group in ("text", "bold", "mono", "seven_segment", "fourteen_segment", "dot")
            for f in getattr(library, group)
        }
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target, "w:xz") as tar:
        for font in fonts:
            tar.add(font, arcname=Path(font).name)
    print(f"{target}: {len(fonts)} fonts, {target.stat().st_size / 2**20:.1f} MiB")


def render(kind: str, count: int, seed: int, out: Path) -> None:
    from edgeocr.synth.dataset import SynthJob, synthesize

    if out.exists():
        shutil.rmtree(out)
    synthesize(SynthJob(kind=kind, count=count, seed=seed, out=out, workers=2), progress=False)
    before = size_of(out)
    recompress_png(out)
    print(f"{out}: {count} {kind}, seed {seed}, {before / 2**20:.1f} MiB, {size_of(out) / 2**20:.1f} MiB recompressed")


def recompress_png(folder: Path) -> None:
    """PNG files at zlib level 9, each checked pixel for pixel against the original (a third smaller)."""
    import cv2
    import numpy as np

    for path in folder.rglob("*.png"):
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        ok, encoded = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if not ok or not np.array_equal(cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED), image):
            raise SystemExit(f"error: recompressing {path} changed it")
        if len(encoded) < path.stat().st_size:
            path.write_bytes(encoded.tobytes())


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def tree_bytes() -> int:
    """The working tree as the device call sends it: tracked files and untracked files git does not ignore."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=gpulib.REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    total = 0
    for name in listing:
        path = gpulib.REPO / name.decode()
        if name and path.is_file():
            total += path.stat().st_size
    return total


def report_sizes() -> bool:
    tree = tree_bytes()
    fits = True
    print(f"working tree (tracked + untracked, not ignored): {tree / 2**20:.1f} MiB")
    for call, paths in CALLS.items():
        parts = {p: size_of(gpulib.REPO / p) for p in paths}
        total = tree + sum(parts.values())
        fits &= total <= LIMIT
        detail = ", ".join(f"{p} {b / 2**20:.1f}" for p, b in parts.items())
        print(f"{call}: {total / 2**20:.1f} MiB of 64 ({detail}){'' if total <= LIMIT else '  <-- OVER THE LIMIT'}")
    return fits


def main(argv: list[str] | None = None) -> int:
    from edgeocr.optimize.calibration import EVAL_SEED

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--realdev", type=Path, default=gpulib.REPO.parent / "shared" / "realdev")
    parser.add_argument(
        "--python", default="3.12", help="the lent machine's CPython, comma-separated (3.12 there in 2026-11)"
    )
    parser.add_argument("--lines", type=int, default=512, help="synthetic test lines to render")
    parser.add_argument("--scenes", type=int, default=48, help="synthetic test scenes to render")
    parser.add_argument("--cpu-table", type=Path, help="this machine's call-1 table.json, shown beside the GPU rows")
    parser.add_argument(
        "--skip", default="", help="comma-separated steps to leave as they are: wheels,realdev,lines,scenes,fonts"
    )
    parser.add_argument("--sizes-only", action="store_true", help="only add up what each call would send")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    if not args.sizes_only:
        if "wheels" not in skip:
            download_wheels([v.strip() for v in args.python.split(",") if v.strip()])
            slim_rapidocr()
        carry = gpulib.CARRY
        if "realdev" not in skip:
            for name in ("industrial", "words"):
                copy_tree(args.realdev / name, carry / "realdev" / name)
        if "lines" not in skip:
            render("lines", args.lines, EVAL_SEED, carry / "lines" / "synth-lines")
        if "scenes" not in skip:
            copy_tree(args.realdev / "scenes", carry / "scenes" / "realdev" / "scenes")
            render("scenes", args.scenes, 20261122, carry / "scenes" / "synth-scenes")
        if "fonts" not in skip:
            pack_fonts(carry / "fonts" / "fonts.tar.xz")
        if args.cpu_table:
            shutil.copyfile(args.cpu_table, carry / "cpu-table.json")
    return 0 if report_sizes() else 1


if __name__ == "__main__":
    sys.exit(main())
