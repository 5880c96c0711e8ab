"""Code formats as data: the catalogue, its fields, check digits and its error messages."""

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from edgeocr.core.charset import DEFAULT_CHARSET, Charset
from edgeocr.core.checkdigits import gs1_check_digit, gs1_is_valid, iso6346_check_digit, iso6346_is_valid
from edgeocr.core.errors import TemplateError
from edgeocr.synth.templates import SamplingContext, compile_pattern, load_catalogue

CTX = SamplingContext(dt.datetime(2026, 1, 1))


def sample(pattern: str, n: int = 200, seed: int = 0) -> list[str]:
    parts = compile_pattern(pattern, "test", Charset(DEFAULT_CHARSET))
    rng = np.random.default_rng(seed)
    return ["".join(p(rng, CTX) for p in parts) for _ in range(n)]


def test_known_check_digits():
    assert iso6346_check_digit("CSQU305438") == 3  # the standard's worked example
    assert iso6346_is_valid("CSQU 305438 3") and not iso6346_is_valid("CSQU 305438 4")
    assert gs1_check_digit("400638133393") == 1 and gs1_is_valid("4006381333931")
    assert not gs1_is_valid("4006381333932")


def test_default_catalogue_covers_the_code_families():
    catalogue = load_catalogue()
    categories = {t.spec.category for t in catalogue.templates}
    assert {"lot", "date", "serial", "container", "gtin", "free", "block"} <= categories
    block_sizes = {len(t.spec.lines) for t in catalogue.templates if t.spec.category == "block"}
    assert {2, 3, 4} <= block_sizes
    rng = np.random.default_rng(1)
    charset = Charset(DEFAULT_CHARSET)
    texts = [line for _ in range(3000) for line in catalogue.pick(rng).sample(rng, CTX)]
    assert all(text and not charset.unknown_chars(text) for text in texts)
    assert max(len(t) for t in texts) >= 30  # long codes exist
    assert text_with("EXP", texts) and text_with("LOT", texts) and text_with(":", texts)


def text_with(fragment: str, texts: list[str]) -> bool:
    return any(fragment in t for t in texts)


def test_container_codes_carry_a_correct_check_digit():
    for code in sample("{iso6346}") + sample("{iso6346:compact}"):
        assert iso6346_is_valid(code), code


def test_gtins_carry_a_correct_check_digit():
    for n in (8, 13, 14):
        codes = sample(f"{{gtin:{n}}}")
        assert all(len(c) == n and gs1_is_valid(c) for c in codes)


def test_dates_exist_and_fall_on_the_right_side_of_the_anchor():
    for text in sample("{exp:%d.%m.%Y}", 500):
        day = dt.datetime.strptime(text, "%d.%m.%Y")
        assert day > CTX.anchor
    for text in sample("{mfg:%Y-%m-%d %H:%M}", 500):
        assert dt.datetime.strptime(text, "%Y-%m-%d %H:%M") <= CTX.anchor + dt.timedelta(days=1)
    months = {t.split()[1] for t in sample("{exp:%d %b %Y}", 500)}
    assert months <= {"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}
    assert len(months) == 12


def test_character_classes_and_lengths():
    assert all(len(t) == 7 and t.isalnum() and t.upper() == t for t in sample("{X:7}"))
    lengths = {len(t) for t in sample("{d:4-8}", 500)}
    assert lengths == {4, 5, 6, 7, 8}
    assert set(sample("{one:EXP|BB|USE BY}", 300)) == {"EXP", "BB", "USE BY"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "codes.yaml"
    path.write_text(text)
    return path


def test_users_extend_the_catalogue(tmp_path):
    extra = write(tmp_path, "templates:\n  - {name: my_lot, category: lot, lines: ['MYLOT {d:5}']}\n")
    catalogue = load_catalogue([extra])
    assert "my_lot" in {t.spec.name for t in catalogue.templates}
    only = load_catalogue([extra], include_default=False)
    assert [t.spec.name for t in only.templates] == ["my_lot"]


@pytest.mark.parametrize(
    "body, expected",
    [
        ("templates: [{name: a, category: lot, lines: ['{q:3}']}]", "unknown field {q}"),
        ("templates: [{name: a, category: lot, lines: ['{d:x}']}]", "length 'x'"),
        ("templates: [{name: a, category: lot, lines: ['{exp:%Q}']}]", "date format"),
        ("templates: [{name: a, category: lot, lines: ['LOT {d:3']}]", "unbalanced brace"),
        ("templates: [{name: a, category: lot, lines: ['LOT ü']}]", "not in the charset"),
        ("templates: [{name: a, category: lot}]", "lines"),
        ("templates: [{name: a, category: lot, lines: ['A'], processes: [spray]}]", "unknown print process"),
        ("templates: [{name: a, category: lot, lines: ['A', 'B'], vertical: 0.5}]", "only one-line codes"),
        ("templates: [{name: a, category: lot, lines: [A]}, {name: a, category: lot, lines: [B]}]", "already defined"),
        ("templates: [{name: a, category: lot, lines: [A], colour: red}]", "colour"),
        ("templates: [name: a\n  - broken", "not valid YAML"),
    ],
)
def test_malformed_templates_name_the_file_and_the_problem(tmp_path, body, expected):
    path = write(tmp_path, body)
    with pytest.raises(TemplateError) as err:
        load_catalogue([path], include_default=False)
    assert str(path) in str(err.value) and expected in str(err.value)


def test_missing_catalogue_file_is_a_clear_error(tmp_path):
    with pytest.raises(TemplateError, match="cannot read"):
        load_catalogue([tmp_path / "nope.yaml"])
