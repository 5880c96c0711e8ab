"""`edgeocr synth`: outputs, byte-for-byte determinism, LMDB, previews, and bad input."""

import hashlib
import json
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeocr.core.checkdigits import iso6346_is_valid


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_lines_folder_layout_and_determinism_across_worker_counts(cli, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    out = cli(
        "synth",
        "lines",
        "--count",
        "40",
        "--seed",
        "3",
        "--workers",
        "2",
        "--out",
        str(a),
        "--preview",
        str(tmp_path / "sheet.png"),
    )
    assert out.returncode == 0, out.stderr
    assert "wrote 40 line crops" in out.stdout
    assert (
        cli("synth", "lines", "--count", "40", "--seed", "3", "--workers", "1", "--out", str(b), "-q").returncode == 0
    )
    assert tree_digest(a) == tree_digest(b)  # byte for byte, whatever the worker count

    rows = (a / "labels.tsv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 40
    for row in rows:
        rel, text = row.split("\t")
        assert text and (a / rel).is_file()
        image = cv2.imread(str(a / rel), cv2.IMREAD_UNCHANGED)
        assert image is not None and image.shape[0] >= 8 and image.shape[1] >= 8
    meta = [json.loads(line) for line in (a / "meta.jsonl").read_text().splitlines()]
    assert {m["file"].split("/")[0] for m in meta} == {m["category"] for m in meta}
    manifest = json.loads((a / "dataset.json").read_text())
    assert manifest["count"] == 40 and manifest["seed"] == 3 and sum(manifest["per_category"].values()) == 40
    sheet = cv2.imread(str(tmp_path / "sheet.png"))
    assert sheet is not None and sheet.shape[0] > 200 and sheet.shape[1] > 600

    c = tmp_path / "c"
    cli("synth", "lines", "--count", "40", "--seed", "4", "--workers", "1", "--out", str(c), "-q")
    assert (c / "labels.tsv").read_text() != (a / "labels.tsv").read_text()


def test_scenes_annotations(cli, tmp_path):
    out = cli(
        "synth",
        "scenes",
        "--count",
        "3",
        "--seed",
        "1",
        "--workers",
        "1",
        "--out",
        str(tmp_path / "s"),
        "--preview",
        str(tmp_path / "s.png"),
        "-q",
    )
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in (tmp_path / "s" / "annotations.jsonl").read_text().splitlines()]
    assert len(records) == 3
    for rec in records:
        image = cv2.imread(str(tmp_path / "s" / rec["file"]))
        assert image.shape[:2] == (rec["height"], rec["width"])
        assert rec["exhaustive"] is True and rec["lines"]
        for line in rec["lines"]:
            assert line["text"] and np.array(line["poly"]).shape == (4, 2)
    assert cv2.imread(str(tmp_path / "s.png")) is not None


def read_lmdb(path: Path) -> dict[bytes, bytes]:
    import lmdb

    with lmdb.open(str(path), readonly=True, lock=False) as env, env.begin() as txn:
        return dict(txn.cursor())


def test_lmdb_layout_of_the_scene_text_repos(cli, tmp_path):
    for name in ("x", "y"):
        out = cli(
            "synth",
            "lines",
            "--count",
            "25",
            "--seed",
            "2",
            "--workers",
            "2",
            "--format",
            "lmdb",
            "--out",
            str(tmp_path / name),
            "-q",
        )
        assert out.returncode == 0, out.stderr
    x = read_lmdb(tmp_path / "x")
    assert x[b"num-samples"] == b"25"
    assert b"image-000000001" in x and b"label-000000025" in x and b"image-000000026" not in x
    image = cv2.imdecode(np.frombuffer(x[b"image-000000001"], np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.size > 0
    assert x == read_lmdb(tmp_path / "y")
    assert tree_digest(tmp_path / "x") == tree_digest(tmp_path / "y")  # LMDB files too, byte for byte
    # The same crops as the folder format, in the same order.
    cli("synth", "lines", "--count", "25", "--seed", "2", "--workers", "1", "--out", str(tmp_path / "f"), "-q")
    rows = (tmp_path / "f" / "labels.tsv").read_text().splitlines()
    assert [r.split("\t")[1].encode() for r in rows] == [x[f"label-{i:09d}".encode()] for i in range(1, 26)]
    assert (tmp_path / "f" / rows[0].split("\t")[0]).read_bytes() == x[b"image-000000001"]


def test_user_templates_drive_the_output(cli, tmp_path):
    templates = tmp_path / "mine.yaml"
    templates.write_text("templates: [{name: boxes, category: container, lines: ['{iso6346:compact}']}]\n")
    out = cli(
        "synth",
        "lines",
        "--count",
        "10",
        "--workers",
        "1",
        "--templates",
        str(templates),
        "--no-default-templates",
        "--out",
        str(tmp_path / "o"),
        "-q",
    )
    assert out.returncode == 0, out.stderr
    texts = [r.split("\t")[1] for r in (tmp_path / "o" / "labels.tsv").read_text().splitlines()]
    assert len(texts) == 10 and all(iso6346_is_valid(t) for t in texts)


# --- bad input: a clear message, a non-zero exit, and nothing that looks complete ----------------


def no_partials(parent: Path) -> bool:
    return not any(".partial-" in p.name for p in parent.iterdir())


def test_malformed_template_fails_before_writing(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("templates: [{name: x, category: lot, lines: ['{nope:3}']}]\n")
    out = cli("synth", "lines", "--count", "5", "--templates", str(bad), "--out", str(tmp_path / "o"))
    assert out.returncode == 2
    assert str(bad) in out.stderr and "unknown field {nope}" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "o").exists() and no_partials(tmp_path)


def test_missing_fonts_are_a_clear_error(cli, tmp_path):
    out = cli("synth", "lines", "--count", "5", "--out", str(tmp_path / "o"), env={"EDGEOCR_NO_SYSTEM_FONTS": "1"})
    assert out.returncode == 2 and "no 'text' font found" in out.stderr and "make fonts" in out.stderr
    out = cli("synth", "lines", "--count", "5", "--fonts", str(tmp_path / "nofonts"), "--out", str(tmp_path / "o"))
    assert out.returncode == 2 and "font directory" in out.stderr and "does not exist" in out.stderr
    assert not (tmp_path / "o").exists()


def test_existing_or_unwritable_output(cli, tmp_path):
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("precious")
    out = cli("synth", "lines", "--count", "3", "--workers", "1", "--out", str(existing))
    assert out.returncode == 2 and "already exists" in out.stderr
    assert (existing / "keep.txt").read_text() == "precious"
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    out = cli("synth", "lines", "--count", "3", "--workers", "1", "--out", str(blocker / "sub"))
    assert out.returncode == 2 and "cannot write" in out.stderr and "Traceback" not in out.stderr


def _limit_file_size():
    # A file-size limit stands in for a full disk (tests run as root, so permissions cannot).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


@pytest.mark.parametrize("fmt", ["folder", "lmdb"])
def test_full_disk_leaves_no_dataset(tmp_path, fmt):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeocr.cli",
            "synth",
            "lines",
            "--count",
            "400",
            "--workers",
            "1",
            "--format",
            fmt,
            "--out",
            str(tmp_path / "o"),
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        preexec_fn=_limit_file_size,
    )
    assert out.returncode == 2, out.stderr
    assert "cannot write" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "o").exists() and no_partials(tmp_path)


def _start_long_run(tmp_path: Path, workers: int = 2) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / "big"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgeocr.cli",
            "synth",
            "lines",
            "--count",
            "200000",
            "--workers",
            str(workers),
            "--out",
            str(out),
            "-q",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A test run started in the background by a shell inherits SIGINT ignored, and Python then starts
        # without its Ctrl-C handler: give the run the disposition a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        partial = [p for p in tmp_path.iterdir() if ".partial-" in p.name]
        if partial and any(partial[0].rglob("*.png")):
            return proc, out
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("generation never started")


@pytest.mark.parametrize("sig, workers", [(signal.SIGINT, 2), (signal.SIGTERM, 2), (signal.SIGTERM, 1)])
def test_interrupted_run_exits_non_zero_and_leaves_nothing(tmp_path, sig, workers):
    proc, out = _start_long_run(tmp_path, workers)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not out.exists() and no_partials(tmp_path)


def test_killed_run_never_looks_complete_and_the_next_run_cleans_up(cli, tmp_path):
    proc, out = _start_long_run(tmp_path)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait(timeout=30)
    time.sleep(0.5)  # orphaned workers notice the closed pipe and exit
    assert not out.exists()  # only a .partial- directory is left, never the final name
    result = cli("synth", "lines", "--count", "5", "--workers", "1", "--out", str(out), "-q")
    assert result.returncode == 0, result.stderr
    assert no_partials(tmp_path) and len((out / "labels.tsv").read_text().splitlines()) == 5


def test_invalid_counts(cli, tmp_path):
    out = cli("synth", "lines", "--count", "0", "--out", str(tmp_path / "o"))
    assert out.returncode == 2 and "--count" in out.stderr
    out = cli("synth", "lines", "--count", "5", "--workers", "0", "--out", str(tmp_path / "o"))
    assert out.returncode == 2 and "--workers" in out.stderr
