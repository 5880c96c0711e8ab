"""``edgeocr read --executor ray``: batch reading on a local Ray instance gives the local engine's rows.

One Ray instance (2 CPUs) serves the whole module: starting Ray takes seconds.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path

import pytest

from edgeocr.cli import main

REPO = Path(__file__).resolve().parents[1]
BATCH = 1  # the same batches on both engines: a line's confidence shifts slightly with its batch's padding


@pytest.fixture(scope="module")
def ray_session():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """The bundled line crops (read whole in the default auto mode), scenes (detected) and one corrupt file."""
    folder = tmp_path_factory.mktemp("ray") / "in"
    folder.mkdir()
    for path in [*(REPO / "samples" / "lines").glob("*/*.png"), *(REPO / "samples" / "scenes" / "images").glob("*")]:
        shutil.copy(path, folder / f"{path.parent.name}_{path.name}")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return folder


def load(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return [json.loads(row) for row in path.read_text(encoding="utf-8").splitlines()]
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def same_reads(rows: list[dict], expected: list[dict]) -> None:
    """Equal rows but for the worker; confidences to float rounding."""
    assert len(rows) == len(expected)
    rounded = ("worker", "confidence", "char_confidences")
    for row, want in zip(rows, expected):
        assert {k: v for k, v in row.items() if k not in rounded} == {k: v for k, v in want.items() if k not in rounded}
        assert (row["confidence"] is None) == (want["confidence"] is None)
        if want["confidence"] is not None:
            assert row["confidence"] == pytest.approx(want["confidence"], abs=1e-5)
            assert row["char_confidences"] == pytest.approx(want["char_confidences"], abs=1e-5)


@pytest.fixture(scope="module")
def local_rows(images: Path, tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("local") / "local.jsonl"
    assert main(["read", str(images), "--threads", "1", "--batch", str(BATCH), "--out", str(out), "--quiet"]) == 1
    return load(out)


def test_ray_engine_reads_a_folder_like_the_local_engine_one_model_per_actor(
    ray_session, images: Path, local_rows: list[dict], tmp_path: Path, capsys
) -> None:
    count = len(list(images.iterdir()))
    assert (
        len({row["source"] for row in local_rows}) == count and sum(row["error"] is not None for row in local_rows) == 1
    )
    # auto: one row per crop, read whole; the scenes' lines come from the detector
    crops = [row for row in local_rows if "images_" not in row["source"] and row["error"] is None]
    scenes = [row for row in local_rows if "images_" in row["source"]]
    assert len(crops) == count - 4 and all(row["detection_score"] is None for row in crops)
    assert len(scenes) > 3 and all(row["detection_score"] is not None for row in scenes)
    broken = next(row for row in local_rows if row["error"] is not None)
    assert broken["source"].endswith("broken.png") and "broken.png" in broken["error"] and broken["line"] is None
    assert {row["text"] for row in local_rows} >= {"HQTU 710659 5", "USE BY JUL 2029", "3034194290586"}
    for out, quiet in ((tmp_path / "ray.parquet", []), (tmp_path / "ray.jsonl", ["--quiet"])):
        code = main(
            [
                "read",
                "--executor",
                "ray",
                str(images),
                "--threads",
                "1",
                "--batch",
                str(BATCH),
                "--actors",
                "2",
                "--out",
                str(out),
                *quiet,
            ]
        )
        assert code == 1  # the corrupt file is an error row, the others are read
        rows = load(out)
        same_reads(rows, local_rows)
        # The model is loaded once per actor: more batches than actors, at most one reader per actor,
        # each in an actor process (not this one).
        workers = {row["worker"] for row in rows}
        assert math.ceil(count / BATCH) > 2 and 1 <= len(workers) <= 2
        assert all(int(worker.split(":")[1]) != os.getpid() for worker in workers)
        printed = capsys.readouterr().out
        if quiet:  # nothing on stdout but the outputs asked for
            assert printed == ""
        else:
            assert (
                f"read {count} images ({len(rows)} rows, 1 errors) on 2 actor(s) (one model load each; "
                f"{len(workers)} produced rows)" in printed
            )
    assert not list(tmp_path.glob(".ray*"))  # no temporary files left beside the outputs


def test_ray_engine_reads_uris(ray_session, images: Path, local_rows: list[dict], tmp_path: Path) -> None:
    out = tmp_path / "uri.jsonl"
    # Batches of BATCH images, as the local rows were read: Ray Data groups images otherwise than the
    # local engine, and a line's read can shift with the padding of the batch it shares.
    assert (
        main(
            [
                "read",
                "--executor",
                "ray",
                images.absolute().as_uri(),
                "--threads",
                "1",
                "--batch",
                str(BATCH),
                "--actors",
                "1",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 1
    )
    rows = load(out)  # sorted by path, which is the local engine's (sorted folder) order here
    assert [Path(row["source"]).name for row in rows] == [Path(row["source"]).name for row in local_rows]
    assert [row["text"] for row in rows] == [row["text"] for row in local_rows]
    (error,) = [row["error"] for row in rows if row["error"] is not None]
    assert "not a decodable image" in error or "truncated" in error


def test_ray_engine_refuses_bad_requests_clearly(
    ray_session, images: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    assert main(["read", "--executor", "ray", str(images)]) == 2
    assert "--out FILE.parquet or FILE.jsonl" in capsys.readouterr().err
    assert main(["read", "--executor", "ray", str(images), "--out", str(tmp_path / "r.csv")]) == 2
    assert "must end in .parquet or .jsonl" in capsys.readouterr().err
    assert (
        main(
            [
                "read",
                "--executor",
                "ray",
                str(images),
                "--out",
                str(tmp_path / "r.jsonl"),
                "--json",
                str(tmp_path / "r.json"),
            ]
        )
        == 2
    )
    assert "local executor" in capsys.readouterr().err
    (tmp_path / "clip.avi").write_bytes(b"0")
    assert main(["read", "--executor", "ray", str(tmp_path / "clip.avi"), "--out", str(tmp_path / "r.jsonl")]) == 2
    assert "read videos with --engine local" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    assert main(["read", "--executor", "ray", str(images), "--out", str(tmp_path / "r.jsonl")]) == 2
    assert "pip install 'edgeocr[scale]'" in capsys.readouterr().err
    assert not (tmp_path / "r.jsonl").exists()
