"""A command line that scripts well: -h everywhere, --version, outputs to stdout (-), one record layout
across --json, --jsonl, --csv and --out, --format misuse refused, -q silent, --config files.

In-process runs (``main([...])`` with capsys) where the output streams allow it; one real subprocess
pipe for ``--json -``. Models are the sharpened crnn_tiny of the conftest (or the shipped default
where a readable code matters); data are a few generated crops.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edgeocr.cli import app, main
from edgeocr.scale.results import POLY_COLUMNS, READ_FIELDS

REPO = Path(__file__).resolve().parents[1]


def crop(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((32, 120), 220, np.uint8)
    for x in range(6, 110, 10):
        img[6:26, x : x + 5] = rng.integers(0, 80)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)


@pytest.fixture()
def inputs(tmp_path: Path) -> Path:
    """Two crops, a two-frame clip and a corrupt file."""
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), crop(1))
    cv2.imwrite(str(folder / "b.jpg"), crop(2))
    writer = cv2.VideoWriter(str(folder / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (120, 32))
    for i in range(2):
        writer.write(crop(10 + i))
    writer.release()
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder


def commands(group=None, prefix=()) -> list[tuple[str, ...]]:
    """Every command path of the CLI (groups included), from the app itself."""
    import typer.main

    group = group or typer.main.get_command(app)
    paths = [prefix]
    for name, command in getattr(group, "commands", {}).items():
        paths += commands(command, (*prefix, name)) if hasattr(command, "commands") else [(*prefix, name)]
    return paths


def no_line_record(source: str, error: str | None) -> dict:
    return {
        "source": source,
        "line": None,
        "text": "",
        "confidence": None,
        "format": None,
        "valid": False,
        "raw_text": "",
        "region": None,
        "detection_score": None,
        "model": None,
        "char_confidences": None,
        "poly": None,
        "error": error,
    }


def json_records(document: dict) -> list[dict]:
    """The records of a --json document: each input's lines, or its one no-line record (the documented rule)."""
    records = []
    for result in document["results"]:
        records += result["lines"] or [no_line_record(result["source"], result["error"])]
    return records


def number(cell: str) -> float | None:
    return None if cell == "" else float(cell)


def csv_records(text: str) -> list[dict]:
    """Records back from --csv cells (null: empty cell; poly from x1..y4; char_confidences space-separated)."""
    reader = csv.DictReader(io.StringIO(text))
    assert "poly" not in reader.fieldnames and set(POLY_COLUMNS) <= set(reader.fieldnames)
    records = []
    for row in reader:
        line = None if row["line"] == "" else int(row["line"])
        corners = [number(row[c]) for c in POLY_COLUMNS]
        records.append(
            {
                "source": row["source"],
                "line": line,
                "text": row["text"],
                "confidence": number(row["confidence"]),
                "format": row["format"] or None,
                "valid": {"true": True, "false": False}[row["valid"]],
                "raw_text": row["raw_text"],
                "region": row["region"] or None,
                "detection_score": number(row["detection_score"]),
                "model": row["model"] or None,
                "char_confidences": [float(c) for c in row["char_confidences"].split()] if line is not None else None,
                "poly": None if corners[0] is None else [corners[i : i + 2] for i in range(0, 8, 2)],
                "error": row["error"] or None,
            }
        )
    return records


# --- 1. -h and --version --------------------------------------------------------------------------


def test_h_is_help_on_every_command_and_version_prints_the_version(capsys) -> None:
    paths = commands()
    assert {("read",), ("train",), ("optimize",), ("synth", "lines"), ("synth",), ()} <= set(paths)
    for path in paths:
        assert main([*path, "-h"]) == 0, path
        short = capsys.readouterr().out
        assert main([*path, "--help"]) == 0, path
        # Studies parse their own options (argparse): its usage line, under the study's full name.
        usage = f"usage: edgeocr {' '.join(path)}" if path[:1] == ("study",) and len(path) == 2 else "Usage: edgeocr"
        assert short == capsys.readouterr().out and usage in short, path
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == metadata.version("edgeocr") + "\n"
    assert main(["version"]) == 0
    assert capsys.readouterr().out == metadata.version("edgeocr") + "\n"


# --- 2 and 3. stdout outputs, one record layout -----------------------------------------------------


def test_json_jsonl_csv_and_out_carry_the_same_records(
    sharpened_tiny_model: str, inputs: Path, tmp_path: Path, capsys
) -> None:
    files = {kind: tmp_path / f"r.{kind}" for kind in ("json", "jsonl", "csv")}
    rows_file = tmp_path / "rows.jsonl"
    code = main(
        [
            "read",
            str(inputs),
            "--model",
            sharpened_tiny_model,
            "--threads",
            "1",
            "--json",
            str(files["json"]),
            "--jsonl",
            str(files["jsonl"]),
            "--csv",
            str(files["csv"]),
            "--out",
            str(rows_file),
            "-q",
        ]
    )
    assert code == 1  # the corrupt file is an error record; the others are read
    captured = capsys.readouterr()
    assert captured.out == "" and "1 input(s) could not be read" in captured.err

    document = json.loads(files["json"].read_text(encoding="utf-8"))
    assert document["model"] == sharpened_tiny_model and document["mode"] == "auto"
    # auto reads these 120x32 crops whole; the corrupt file has no mode
    assert [r["mode"] for r in document["results"]] == ["whole", "whole", None, "whole", "whole"]
    from_json = json_records(document)
    from_jsonl = [json.loads(row) for row in files["jsonl"].read_text(encoding="utf-8").splitlines()]
    from_csv = csv_records(files["csv"].read_text(encoding="utf-8"))
    rows = [json.loads(row) for row in rows_file.read_text(encoding="utf-8").splitlines()]

    # folder order: a.png, b.jpg, broken.png, clip.avi frames 0 and 1; one line each, the error has none
    assert [r["source"] for r in from_jsonl] == [
        str(inputs / "a.png"),
        str(inputs / "b.jpg"),
        str(inputs / "broken.png"),
        f"{inputs / 'clip.avi'}#frame=0",
        f"{inputs / 'clip.avi'}#frame=1",
    ]
    assert all(list(record) == list(READ_FIELDS) for record in from_jsonl)
    assert from_json == from_jsonl == from_csv  # same fields, same values (floats round-trip exactly)
    assert [{k: v for k, v in row.items() if k != "worker"} for row in rows] == from_jsonl
    assert all(set(row) == {*READ_FIELDS, "worker"} for row in rows)

    broken = from_jsonl[2]
    assert broken["line"] is None and "broken.png" in broken["error"] and broken["poly"] is None
    for record in from_jsonl[:2] + from_jsonl[3:]:
        assert record["line"] == 0 and record["error"] is None
        # polygons are arrays of [x, y] pairs, not strings
        assert len(record["poly"]) == 4 and all(
            len(p) == 2 and all(isinstance(v, float) for v in p) for p in record["poly"]
        )
        assert record["poly"][2] == [120.0, 32.0]  # whole mode: the image's corners
    header = next(csv.reader(io.StringIO(files["csv"].read_text(encoding="utf-8"))))
    assert header[header.index("x1") : header.index("x1") + 8] == list(POLY_COLUMNS)
    # the files are written whole, under their names only: nothing else left beside them
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "r.csv", "r.json", "r.jsonl", "rows.jsonl"]


def test_outputs_to_stdout_hold_only_the_data(sharpened_tiny_model: str, inputs: Path, tmp_path: Path, capsys) -> None:
    images = [str(inputs / "a.png"), str(inputs / "b.jpg")]
    common = ["--model", sharpened_tiny_model, "--threads", "1"]
    assert (
        main(
            [
                "read",
                *images,
                *common,
                "--json",
                str(tmp_path / "r.json"),
                "--jsonl",
                str(tmp_path / "r.jsonl"),
                "--csv",
                str(tmp_path / "r.csv"),
                "-q",
            ]
        )
        == 0
    )
    capsys.readouterr()
    for kind in ("json", "jsonl", "csv"):
        # not quiet: the table would go to stdout, but the output has it; the --out summary goes to stderr
        assert main(["read", *images, *common, f"--{kind}", "-", "--out", str(tmp_path / f"{kind}-rows.jsonl")]) == 0
        captured = capsys.readouterr()
        assert captured.out == (tmp_path / f"r.{kind}").read_bytes().decode("utf-8"), kind
        assert "read 2 images (2 rows, 0 errors)" in captured.err
    assert json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["results"][1]["source"] == images[1]

    assert main(["read", *images, *common, "--json", "-", "--csv", "-"]) == 2
    assert "only one output can go to stdout ('-'), got --json and --csv" in capsys.readouterr().err


def test_json_to_stdout_pipes_into_a_json_parser(cli, sharpened_tiny_model: str, inputs: Path) -> None:
    # A real pipe, as `edgeocr read ... --json - | python -m json.tool`; two inputs, so a progress bar
    # would be drawn were it on stdout.
    done = cli(
        "read",
        str(inputs / "a.png"),
        str(inputs / "b.jpg"),
        "--model",
        sharpened_tiny_model,
        "--threads",
        "1",
        "--json",
        "-",
    )
    assert done.returncode == 0, done.stderr
    import subprocess

    tool = subprocess.run(
        [sys.executable, "-m", "json.tool"], input=done.stdout, capture_output=True, text=True, check=False
    )
    assert tool.returncode == 0, tool.stderr
    document = json.loads(done.stdout)
    assert [r["source"] for r in document["results"]] == [str(inputs / "a.png"), str(inputs / "b.jpg")]


def test_watch_writes_its_codes_to_stdout_as_json_lines(tmp_path: Path, capsys) -> None:
    sample = cv2.imread(str(next((REPO / "samples" / "lines" / "lot").glob("*.png"))))
    clip = tmp_path / "clip.avi"
    height, width = sample.shape[:2]
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (width, height))
    for _ in range(6):
        writer.write(sample)
    writer.release()
    args = ["watch", str(clip), "--threads", "1", "--min-confidence", "0.3", "--min-frames", "2"]
    assert main([*args, "--json", str(tmp_path / "codes.jsonl")]) == 0  # --json: the older name of --jsonl
    capsys.readouterr()
    assert main([*args, "--jsonl", "-"]) == 0
    captured = capsys.readouterr()
    assert captured.out == (tmp_path / "codes.jsonl").read_text(encoding="utf-8")
    (code,) = [json.loads(row) for row in captured.out.splitlines()]
    assert code["text"] and code["first_frame"] == 0 and code["frames"] == 6
    assert "frame 1: " in captured.err and "6 frames read" in captured.err  # what is said goes to stderr
    assert main([*args, "--jsonl", str(tmp_path / "quiet.jsonl"), "-q"]) == 0
    assert capsys.readouterr() == ("", "")
    assert (tmp_path / "quiet.jsonl").read_text(encoding="utf-8") == captured.out


# --- 4. --format that names an output format ---------------------------------------------------------


@pytest.mark.parametrize("word", ["json", "CSV", "JsonL", "parquet"])
def test_a_format_naming_an_output_is_refused_with_a_hint(word: str, inputs: Path, capsys) -> None:
    image = str(inputs / "a.png")
    hints = {
        "json": "--json FILE or --json -",
        "csv": "--csv FILE or --csv -",
        "jsonl": "--jsonl FILE or --jsonl -",
        "parquet": "--out FILE.parquet",
    }
    # serve: --workers 0 is refused right after the check, so the test cannot start a server
    for args, hint in (
        (["read", image], hints[word.lower()]),
        (["watch", str(inputs / "clip.avi")], "--jsonl FILE or --jsonl -"),
        (["serve", "--workers", "0"], "the server always answers in JSON"),
    ):
        assert main([*args, "--format", "LOT [A-Z0-9]{7}", "--format", word]) == 2, args
        err = capsys.readouterr().err
        assert (
            err.startswith(
                f"error: --format '{word}': --format is the expected code format, e.g. 'LOT [A-Z0-9]{{7}}'; "
            )
            and hint in err
            and len(err.splitlines()) == 1
        ), err


# --- 5. -q --------------------------------------------------------------------------------------------


def test_quiet_means_nothing_on_stdout_but_the_outputs_asked_for(
    sharpened_tiny_model: str, inputs: Path, tmp_path: Path, capsys
) -> None:
    images = [str(inputs / "a.png"), str(inputs / "b.jpg")]
    common = ["--model", sharpened_tiny_model, "--threads", "1"]
    assert main(["read", *images, *common]) == 0
    assert "a.png" in capsys.readouterr().out  # the table
    assert main(["read", *images, *common, "-q"]) == 0
    assert capsys.readouterr() == ("", "")
    assert main(["read", *images, *common, "--out", str(tmp_path / "rows.parquet")]) == 0
    assert "read 2 images" in capsys.readouterr().out
    assert main(["read", *images, *common, "--out", str(tmp_path / "rows.parquet"), "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")
    assert main(["read", *images, *common, "--jsonl", "-", "-q"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2

    crops = tmp_path / "crops"
    assert main(["synth", "lines", "-n", "4", "-w", "1", "-o", str(crops), "-q"]) == 0
    assert capsys.readouterr().out == "" and (crops / "labels.tsv").is_file()
    assert main(["synth", "lines", "-n", "4", "-w", "1", "-o", str(crops), "--overwrite"]) == 0
    assert "wrote 4 line crops" in capsys.readouterr().out

    assert main(["eval", "--data", str(crops), *common]) == 0
    assert "char acc" in capsys.readouterr().out
    assert main(["eval", "--data", str(crops), *common, "-q"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["eval", "--data", str(crops), *common, "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 4  # the scores alone, no table


def test_every_quiet_option_says_what_it_silences() -> None:
    import typer.main

    for path in commands():
        command = typer.main.get_command(app)
        for name in path:
            command = command.commands[name]
        quiet = [p for p in getattr(command, "params", []) if "--quiet" in getattr(p, "opts", [])]
        if quiet:
            assert "-q" in quiet[0].opts and "stdout" in quiet[0].help and "stderr" in quiet[0].help, path


# --- 6. --config --------------------------------------------------------------------------------------


def test_shared_training_options_are_declared_once() -> None:
    import typer.main

    group = typer.main.get_command(app)
    helps: dict[str, set[str]] = {}
    for name in ("train", "train-detector", "finetune"):
        for param in group.commands[name].params:
            for opt in (
                "--accelerator",
                "--precision",
                "--max-steps",
                "--checkpoint-every",
                "--resume",
                "--seed",
                "--batch-size",
                "--lr",
                "--workers",
                "--epochs",
                "--quiet",
            ):
                if opt in param.opts:
                    helps.setdefault(opt, set()).add(param.help.split(" (warm-up")[0])
    assert set(helps) >= {"--accelerator", "--precision", "--max-steps", "--resume", "--batch-size", "--lr"}
    assert all(len(texts) == 1 and all(texts) for texts in helps.values()), helps


def test_train_takes_a_config_file_that_the_command_line_overrides(tmp_path: Path, capsys) -> None:
    pytest.importorskip("lightning")  # the train extra: make test installs it
    from edgeocr.synth.dataset import SynthJob, synthesize

    val = tmp_path / "val"
    synthesize(SynthJob(kind="lines", count=8, seed=1, out=val, workers=1), progress=False)
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "arch": "crnn_tiny",
                "synthetic": 8,
                "epochs": 1,
                "max-steps": 4,
                "batch_size": 4,
                "workers": 0,
                "accelerator": "cpu",
                "val": str(val),
                "checkpoint-every": 0,
                "out": str(tmp_path / "run"),
                "lr": "3e-3",
            }
        )
    )
    assert main(["train", "--config", str(config), "--max-steps", "2", "-q"]) == 0
    assert capsys.readouterr().out == ""  # quiet: not even the model path
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert saved["max_steps"] == 2  # the command line wins over the file
    assert (saved["batch_size"], saved["arch"], saved["synthetic_per_epoch"], saved["lr"]) == (4, "crnn_tiny", 8, 0.003)
    assert saved["val"] == str(val) and saved["checkpoint_every_n_steps"] == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["steps"] == 2
    assert (tmp_path / "run" / "model.onnx").is_file()


@pytest.mark.parametrize("command", ["train", "optimize"])
def test_bad_config_files_are_one_line_errors(command: str, tmp_path: Path, capsys) -> None:
    prefix = ["optimize", "default"] if command == "optimize" else ["train"]
    cases = {
        "unknown.yaml": (
            "threads: 2\nbogus_key: 1\n" if command == "optimize" else "epochs: 2\nbogus_key: 1\n",
            f"unknown option 'bogus_key' for 'edgeocr {command}'; valid keys: ",
        ),
        "broken.yaml": ("out: [unclosed\n", "not valid YAML"),
        "list.yaml": ("- threads\n", "expected 'option: value' pairs"),
        "type.yaml": ("seed: many\n", "seed: Invalid value for '--seed'"),
        "twice.yaml": ("out: a\n--out: b\n", "out is given twice"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert main([*prefix, "--config", str(tmp_path / name), "-o", str(tmp_path / "o")]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith(f"error: {tmp_path / name}: ") and message in err, err
        assert len(err.splitlines()) == 1, err
    assert main([*prefix, "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml: cannot read the config file" in capsys.readouterr().err
    # the list of valid keys names the command's options
    (tmp_path / "unknown.yaml").write_text("bogus_key: 1\n", encoding="utf-8")
    main([*prefix, "--config", str(tmp_path / "unknown.yaml")])
    keys = capsys.readouterr().err.split("valid keys: ")[1].strip().split(", ")
    expected = (
        {"int8", "calib-lines", "threads", "out"}
        if command == "optimize"
        else {"max-steps", "batch-size", "data", "out"}
    )
    assert expected <= set(keys) and "config" not in keys and "help" not in keys


def test_optimize_takes_a_config_file_that_the_command_line_overrides(
    sharpened_tiny_model: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    pytest.importorskip("torch")
    from edgeocr.optimize import pipeline

    seen = {}

    def fake_optimize_command(settings, command_line, progress):  # the measuring is test_optimize's
        seen["settings"] = settings
        return {
            "headline": {"verdict": "fine"},
            "output": {"model": str(settings.out / "model.onnx")},
            "outputs": {"markdown": str(settings.out / "report.md")},
        }

    monkeypatch.setattr(pipeline, "optimize_command", fake_optimize_command)
    config = tmp_path / "opt.yaml"
    config.write_text(
        "int8: true\ncalib-lines: 16\nthreads: 4\neval: [a, b]\nproviders: cpu\n"
        f"out: {tmp_path / 'from-file'}\nquant_format: qdq\n",
        encoding="utf-8",
    )
    assert main(["optimize", sharpened_tiny_model, "--config", str(config), "--threads", "1"]) == 0
    settings = seen["settings"]
    assert settings.int8 and settings.calib_lines == 16 and settings.quant_format == "qdq"
    assert settings.threads == 1  # the command line wins
    assert settings.eval == (Path("a"), Path("b")) and settings.out == tmp_path / "from-file"
    assert (
        capsys.readouterr().out == f"fine\nmodel: {tmp_path / 'from-file' / 'model.onnx'}\nreport: "
        f"{tmp_path / 'from-file' / 'report.md'}\n"
    )
    assert main(["optimize", sharpened_tiny_model, "--config", str(config), "--out", str(tmp_path / "cli"), "-q"]) == 0
    assert seen["settings"].out == tmp_path / "cli" and seen["settings"].threads == 4
    assert capsys.readouterr().out == ""


# --- studies: the side scripts are subcommands, none is run as python -m -------------------------------------


def test_every_study_is_a_subcommand_and_no_package_module_is_a_script(capsys) -> None:
    from edgeocr.cli import STUDIES

    assert main(["study", "-h"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in STUDIES)
    # Each study parses its own options: -h reaches its argparse (exit 0, its own usage line).
    assert main(["study", "synth-speed", "-h"]) == 0
    assert "--workers" in capsys.readouterr().out
    assert main(["study", "peers"]) == 0
    assert "tesseract" in capsys.readouterr().out
    assert main(["study", "ablation"]) == 2  # argparse: --data is required
    package = Path(__file__).resolve().parents[1] / "src" / "edgeocr"
    scripts = [
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if '__name__ == "__main__"' in p.read_text(encoding="utf-8")
    ]
    assert scripts == ["cli.py"]
    import importlib

    for module, _ in STUDIES.values():
        assert callable(importlib.import_module(module).main), module
