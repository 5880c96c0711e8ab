"""``edgeocr study detector-settings``: every setting scored on every folder, bad settings refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeocr.bench.detector_settings import main, parse_setting
from edgeocr.core.errors import EdgeOCRError

SCENES = Path(__file__).resolve().parents[1] / "samples" / "scenes"


def test_each_setting_is_scored_on_each_folder(tmp_path: Path, capsys) -> None:
    code = main(
        ["--detector", "fast", "--data", str(SCENES), "--setting", "max_side=640", "--setting", "max_side=320",
         "--threads", "1", "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    result = json.loads((tmp_path / "detector-settings.json").read_text(encoding="utf-8"))
    assert [r["setting"] for r in result["rows"]] == ["max_side=640", "max_side=320"]
    for row in result["rows"]:
        assert row["images"] == 3 and row["tp"] + row["fn"] == 14  # the sample scenes' 14 lines
        assert 0 <= row["hmean"] <= 1 and row["ms_p50"] > 0
    # a smaller input finds no more of these small lines than the shipped size
    assert result["rows"][1]["tp"] <= result["rows"][0]["tp"]
    assert "| max_side=640 |" in capsys.readouterr().out


def test_settings_parse_and_bad_ones_are_refused(tmp_path: Path, capsys) -> None:
    assert parse_setting("max_side=960,unclip_ratio=none,box_threshold=0.6") == {
        "max_side": 960,
        "unclip_ratio": None,
        "box_threshold": 0.6,
    }
    with pytest.raises(EdgeOCRError, match="not FIELD=VALUE"):
        parse_setting("colour=red")
    assert main(["--detector", "fast", "--data", str(SCENES), "--setting", "max_side=641", "--out", str(tmp_path)]) == 2
    assert "multiple of size_multiple" in capsys.readouterr().err
