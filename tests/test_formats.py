"""Format-constrained decoding: the pattern language, its automaton and the constrained CTC search."""

from __future__ import annotations

import datetime as dt
import itertools
import math

import numpy as np
import pytest

from edgeocr.core.charset import Charset
from edgeocr.core.checkdigits import gs1_check_digit, gs1_is_valid, iso6346_check_digit, iso6346_is_valid
from edgeocr.core.ctc import ctc_best_alignment, ctc_log_likelihood, greedy_decode, softmax
from edgeocr.core.errors import EdgeOCRError
from edgeocr.core.formats import (
    Format,
    FormatError,
    FormatRead,
    FormatSet,
    _best_alignment,
    _stay_through,
    allowlist_format,
    compile_format,
    decode_constrained,
)

CHARSET = Charset()  # the default industrial charset: 76 characters + blank


def line_probs(
    text: str,
    alternatives: dict[int, dict[str, float]] | None = None,
    peak: float = 0.99,
    charset: Charset = CHARSET,
) -> np.ndarray:
    """A [T, C] matrix spelling ``text``: a blank frame, then per character one frame and a blank.

    The blank frame after every character separates repeats. A character frame gives ``peak`` to
    its character, or, for a position in ``alternatives``, the probabilities listed there. Each
    frame's remaining mass is spread evenly over its other classes.
    """
    alternatives = alternatives or {}
    classes = [{0: peak}]
    for index, char in enumerate(text):
        given = alternatives.get(index, {char: peak})
        classes.append({charset.encode(c)[0]: p for c, p in given.items()})
        classes.append({0: peak})
    probs = np.zeros((len(classes), charset.num_classes))
    for t, named in enumerate(classes):
        others = [c for c in range(charset.num_classes) if c not in named]
        probs[t, others] = (1.0 - sum(named.values())) / len(others)
        for cls, p in named.items():
            probs[t, cls] = p
    return probs


def char_frame(position: int) -> int:
    """The frame of ``line_probs`` that holds character ``position``."""
    return 2 * position + 1


# --- the pattern language ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "accepted", "rejected"),
    [
        ("LOT 123", ["LOT 123"], ["LOT 12", "LOT 1234", "lot 123"]),
        ("LOT \\d{6}", ["LOT 012345"], ["LOT 12345", "LOT 1234567", "LOT 12345A"]),
        ("[A-Z]{2}-\\d{2,3}", ["AB-12", "ZZ-999"], ["AB-1", "AB-1234", "ab-12", "A1-12"]),
        ("[A-Z0-9]+", ["A", "A1B2C3"], ["", "a1"]),
        ("X\\d*", ["X", "X0123456789"], ["", "XA"]),
        ("B\\d{2,}", ["B12", "B1234567"], ["B1"]),
        ("AB?C", ["AC", "ABC"], ["ABBC"]),
        ("(EXP|BB) \\d", ["EXP 1", "BB 2"], ["EX 1", "EXPBB 1"]),
        ("(A|)B", ["AB", "B"], ["A"]),
        ("12.05.2024", ["12.05.2024"], ["12x05x2024"]),  # '.' is a literal dot
        ("\\(\\d\\)\\s\\[\\]\\{\\}\\\\", ["(1) []{}\\"], ["(1)[]{}\\"]),
        ("[\\-+/]", ["-", "+", "/"], [",", "*"]),
        ("[-A]", ["-", "A"], ["B"]),
        ("{HH}:{mm}", ["00:00", "23:59"], ["24:00", "12:60", "1:00"]),
    ],
)
def test_patterns_accept_and_reject(pattern: str, accepted: list[str], rejected: list[str]) -> None:
    fmt = compile_format(pattern)
    assert fmt.name == pattern
    for text in accepted:
        assert fmt.accepts(text), text
    for text in rejected:
        assert not fmt.accepts(text), text


@pytest.mark.parametrize(
    ("pattern", "position", "words"),
    [
        ("A{3", 1, "missing '}'"),
        ("[A-", 0, "missing ']'"),
        ("(AB", 0, "missing ')'"),
        ("AB)", 2, "unbalanced ')'"),
        ("*A", 0, "nothing to repeat"),
        ("{3}", 0, "nothing to repeat"),
        ("A+*", 2, "multiple repeat"),
        ("LOT {FOO}", 4, "unknown field {FOO}"),
        ("[Z-A]", 2, "runs backwards"),
        ("\\q", 0, "unknown escape"),
        ("A{5,2}", 1, "maximum below its minimum"),
        ("A{1,x}", 1, "malformed quantifier"),
        ("A{999}", 1, "more than 64"),
        ("[^A]", 1, "negated classes"),
        ("[]", 0, "empty character class"),
        ("A}", 1, "unescaped '}'"),
        ("AB\\", 2, "may not end with"),
    ],
)
def test_malformed_patterns_raise_format_error_with_position(pattern: str, position: int, words: str) -> None:
    with pytest.raises(FormatError) as caught:
        compile_format(pattern)
    error = caught.value
    assert isinstance(error, EdgeOCRError)
    assert error.pattern == pattern
    assert error.position == position
    assert words in str(error)
    assert repr(pattern) in str(error)


def test_format_declarations_and_their_errors() -> None:
    assert compile_format("iso6346").name == "iso6346"
    assert compile_format({"name": "lot", "pattern": "LOT \\d{3}"}).accepts("LOT 123")
    products = compile_format({"name": "products", "allowlist": ["AB-100", "AB-1000"]})
    assert products == allowlist_format("products", ["AB-100", "AB-1000"])
    assert compile_format(products) is products
    with pytest.raises(FormatError, match="empty format pattern"):
        compile_format("")
    with pytest.raises(FormatError, match="unknown keys"):
        compile_format({"name": "x", "regex": "A"})
    with pytest.raises(FormatError, match="exactly one of"):
        Format(name="x", pattern="A", allowlist=("A",))
    with pytest.raises(FormatError, match="is empty"):
        allowlist_format("none", [])
    with pytest.raises(FormatError, match="not one string"):
        allowlist_format("codes", "AB-100")
    with pytest.raises(FormatError, match="unique"):
        FormatSet(["LOT \\d", {"name": "LOT \\d", "pattern": "\\d"}])


def test_allowlist_accepts_exactly_its_strings() -> None:
    fmt = allowlist_format("products", ["AB-100", "AB-1000", "XY-7"])
    assert all(fmt.accepts(code) for code in ["AB-100", "AB-1000", "XY-7"])
    assert not any(fmt.accepts(code) for code in ["AB-10", "AB-10000", "XY-70", "", "ab-100"])


def test_format_set_reports_the_first_format_that_fits() -> None:
    formats = FormatSet(["\\d{8}", "gtin8", {"name": "lot", "pattern": "L\\d+"}])
    assert formats.names == ("\\d{8}", "gtin8", "lot")
    assert formats.match("96385074") == "\\d{8}"  # fits both; the first declared wins
    assert formats.match("L42") == "lot"
    assert formats.match("X42") is None
    assert FormatSet(["gtin8", "\\d{8}"]).match("96385074") == "gtin8"


# --- built-ins and semantic checks ------------------------------------------------------------


def test_iso6346_accepts_compact_and_spaced_codes_with_a_correct_check_digit() -> None:
    fmt = compile_format("iso6346")
    assert fmt.accepts("CSQU3054383")
    assert fmt.accepts("CSQU 305438 3")
    assert not fmt.accepts("CSQU3054384")  # wrong check digit
    assert not fmt.accepts("CSQA3054383")  # category identifier must be U, J or Z
    assert not fmt.accepts("CSQU  305438 3")
    assert not fmt.accepts("CSQU305438")


def test_iso6346_agrees_with_the_check_digit_module() -> None:
    fmt = compile_format("iso6346")
    rng = np.random.default_rng(6346)
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    for _ in range(300):
        owner = "".join(rng.choice(list(letters), 3)) + str(rng.choice(list("UJZ")))
        serial = "".join(rng.choice(list("0123456789"), 6))
        code = owner + serial + str(rng.integers(10))
        assert fmt.accepts(code) == iso6346_is_valid(code), code
        right = owner + serial + str(iso6346_check_digit(owner + serial))
        assert fmt.accepts(right) and fmt.accepts(f"{owner} {serial} {right[-1]}")


@pytest.mark.parametrize("length", [8, 12, 13, 14])
def test_gtin_agrees_with_the_gs1_check_digit(length: int) -> None:
    fmt = compile_format(f"gtin{length}")
    rng = np.random.default_rng(length)
    for _ in range(200):
        payload = "".join(rng.choice(list("0123456789"), length - 1))
        code = payload + str(rng.integers(10))
        assert fmt.accepts(code) == gs1_is_valid(code), code
        assert fmt.accepts(payload + str(gs1_check_digit(payload)))
    assert not fmt.accepts("1" * (length - 1))


def _exists(day: int, month: int, year: int) -> bool:
    try:
        dt.date(year, month, day)
    except ValueError:
        return False
    return True


def test_dates_accept_exactly_the_days_that_exist() -> None:
    fmt = compile_format("EXP {DD}/{MM}/{YYYY}")
    for year, month, day in itertools.product((2023, 2024, 2100), range(1, 13), range(0, 33)):
        text = f"EXP {day:02d}/{month:02d}/{year}"
        assert fmt.accepts(text) == (_exists(day, month, year) and year < 2100), text


@pytest.mark.parametrize(
    ("pattern", "accepted", "rejected"),
    [
        ("{YYYY}-{MM}-{DD}", ["2024-02-29", "2000-02-29"], ["2023-02-29", "2024-04-31", "1999-01-01"]),
        ("{DD}.{MM}.{YY}", ["29.02.24", "31.12.99"], ["29.02.23", "31.11.24"]),
        ("{DD}/{MM}", ["29/02", "31/01"], ["30/02", "31/06", "00/01", "01/13"]),
        ("{MM}/{YY}", ["02/24", "12/99"], ["13/24", "00/24"]),
        ("{DD} {MON} {YYYY}", ["29 FEB 2024", "31 DEC 2030"], ["29 FEB 2025", "31 APR 2030", "01 Jan 2030"]),
        ("{YY}{JJJ}", ["24366", "23365", "24001"], ["23366", "24367", "24000"]),
        # Two dates in one pattern are checked separately: a repeated field kind starts a new date.
        ("{DD}/{MM}/{YY} {DD}/{MM}/{YY}", ["31/01/24 29/02/24"], ["31/01/24 30/02/24", "29/02/23 01/01/24"]),
    ],
)
def test_date_fields(pattern: str, accepted: list[str], rejected: list[str]) -> None:
    fmt = compile_format(pattern)
    for text in accepted:
        assert fmt.accepts(text), text
    for text in rejected:
        assert not fmt.accepts(text), text


# --- constrained decoding ---------------------------------------------------------------------


def test_constrained_read_corrects_an_o_for_zero_confusion() -> None:
    probs = line_probs("CSQU3054383", {5: {"O": 0.7, "0": 0.25}})
    assert greedy_decode(probs, CHARSET).text == "CSQU3O54383"
    read = decode_constrained(probs, CHARSET, "iso6346")
    assert isinstance(read, FormatRead)
    assert read.valid
    assert read.text == "CSQU3054383"
    assert read.format_name == "iso6346"
    assert read.raw_text == "CSQU3O54383"
    assert read.raw_confidence == pytest.approx(0.7)
    # Not renormalised over the allowed characters: the forced '0' keeps its own probability.
    assert read.char_confidences[5] == pytest.approx(0.25)
    assert read.confidence == pytest.approx(0.25)
    assert read.relative_probability == pytest.approx(0.25 / 0.7)
    # The search sums the alignments it kept (pruning drops runs that start on improbable frames).
    exact = ctc_log_likelihood(np.log(probs), CHARSET.encode(read.text))
    assert exact - 0.01 < read.log_probability <= exact + 1e-12


def test_a_forced_character_keeps_its_small_probability_and_min_confidence_rejects_it() -> None:
    probs = line_probs("CSQU3054383", {5: {"O": 0.97, "0": 0.01}})
    read = decode_constrained(probs, CHARSET, "iso6346")
    assert read.valid and read.text == "CSQU3054383"
    assert read.confidence == pytest.approx(0.01)  # not 0.01 / (0.01 + other digits)
    assert read.relative_probability == pytest.approx(0.01 / 0.97)

    rejected = decode_constrained(probs, CHARSET, "iso6346", min_confidence=0.5)
    assert not rejected.valid
    assert rejected.text == "" and rejected.format_name is None
    assert rejected.raw_text == "CSQU3O54383"
    assert rejected.confidence == pytest.approx(0.01)
    assert "CSQU3054383" in rejected.reason and "min_confidence" in rejected.reason


def test_the_check_digit_decides_between_near_tied_digits() -> None:
    # '6' is read slightly more often than '5', but only '5' gives a correct check digit.
    probs = line_probs("CSQU3054383", {6: {"6": 0.5, "5": 0.48}})
    assert greedy_decode(probs, CHARSET).text == "CSQU3064383"
    assert not iso6346_is_valid("CSQU3064383")
    read = decode_constrained(probs, CHARSET, "iso6346")
    assert read.valid and read.text == "CSQU3054383"
    assert read.char_confidences[6] == pytest.approx(0.48)


def test_the_gs1_check_digit_decides_between_near_tied_digits() -> None:
    probs = line_probs("4006381333931", {11: {"8": 0.5, "3": 0.45}})
    assert greedy_decode(probs, CHARSET).text == "4006381333981"
    read = decode_constrained(probs, CHARSET, ["gtin13"])
    assert read.valid and read.text == "4006381333931" and read.format_name == "gtin13"


def test_a_date_that_does_not_exist_loses_to_one_that_does() -> None:
    probs = line_probs("EXP 31/03/2024", {8: {"2": 0.55, "3": 0.4}})
    assert greedy_decode(probs, CHARSET).text == "EXP 31/02/2024"
    read = decode_constrained(probs, CHARSET, "EXP {DD}/{MM}/{YYYY}")
    assert read.valid and read.text == "EXP 31/03/2024"
    assert read.confidence == pytest.approx(0.4)


def test_a_leap_day_needs_a_leap_year() -> None:
    # Day 29 of February: the year's last digit decides between 2023 (no 29 February) and 2024.
    probs = line_probs("29/02/2024", {9: {"3": 0.6, "4": 0.35}})
    assert greedy_decode(probs, CHARSET).text == "29/02/2023"
    assert decode_constrained(probs, CHARSET, "{DD}/{MM}/{YYYY}").text == "29/02/2024"


def test_allowlist_decoding_reads_the_nearest_listed_code() -> None:
    codes = allowlist_format("products", ["PRD-102", "PRD-107", "QRS-100"])
    probs = line_probs("PRD-102", {5: {"O": 0.8, "0": 0.15}, 6: {"2": 0.5, "7": 0.45}})
    assert greedy_decode(probs, CHARSET).text == "PRD-1O2"
    read = decode_constrained(probs, CHARSET, codes)
    assert read.valid and read.text == "PRD-102" and read.format_name == "products"


def test_format_set_decoding_names_the_format_that_fit() -> None:
    formats = FormatSet(["gtin13", "iso6346", {"name": "lot", "pattern": "LOT \\d{5}"}])
    read = decode_constrained(line_probs("CSQU 305438 3"), CHARSET, formats)
    assert read.valid and read.text == "CSQU 305438 3" and read.format_name == "iso6346"
    read = decode_constrained(line_probs("LOT 35752"), CHARSET, formats)
    assert read.valid and read.format_name == "lot"


def test_no_fitting_string_gives_no_valid_read_with_the_raw_text() -> None:
    probs = line_probs("HELLO")
    read = decode_constrained(probs, CHARSET, ["gtin13", "\\d{4}"])
    assert not read.valid
    assert read.text == "" and read.format_name is None and read.char_confidences == ()
    assert read.raw_text == "HELLO" and read.raw_confidence == pytest.approx(0.99)
    assert read.log_probability == -math.inf and read.relative_probability == 0.0
    assert "no string fitting" in read.reason
    # A missing character is not invented: three digits never fit four.
    assert not decode_constrained(line_probs("123"), CHARSET, "\\d{4}").valid


def test_an_unconstrained_read_that_fits_is_returned_unchanged() -> None:
    probs = line_probs("LOT 35752 EXP 07/2020")
    raw = greedy_decode(probs, CHARSET)
    read = decode_constrained(probs, CHARSET, "LOT \\d{5} EXP {MM}/{YYYY}")
    assert read.valid and read.text == raw.text
    assert read.char_confidences == raw.char_confidences
    assert read.relative_probability == 1.0


def test_a_clean_read_that_fits_skips_the_search() -> None:
    # The best path holds more than half of all probability: its text is the most probable one.
    probs = line_probs("CSQU3054383")
    best_path = float(np.log(probs.max(axis=1)).sum())
    assert best_path > math.log(0.5)
    read = decode_constrained(probs, CHARSET, "iso6346")
    assert read.valid and read.text == "CSQU3054383"
    assert read.log_probability == pytest.approx(best_path)


def test_the_most_probable_string_wins_over_the_best_path() -> None:
    # Two frames of (blank 0.6, A 0.4): the best path reads "" (0.36) but p("A") = 0.64.
    charset = Charset("AB")
    probs = np.array([[0.6, 0.4, 0.0], [0.6, 0.4, 0.0]])
    read = decode_constrained(probs, charset, "A?")
    assert read.raw_text == "" and read.text == "A"
    assert read.log_probability == pytest.approx(math.log(0.64))
    assert read.confidence == pytest.approx(0.4)


def test_characters_outside_the_charset_cannot_be_read() -> None:
    upper = Charset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    probs = line_probs("LOT1", charset=upper)
    assert not decode_constrained(probs, upper, "lot\\d").valid
    assert decode_constrained(probs, upper, "(lot|LOT)\\d").text == "LOT1"


def test_empty_and_malformed_inputs() -> None:
    empty = np.zeros((0, CHARSET.num_classes))
    assert not decode_constrained(empty, CHARSET, "\\d").valid
    with pytest.raises(ValueError, match="classes"):
        decode_constrained(np.full((4, 5), 0.2), CHARSET, "\\d")
    with pytest.raises(ValueError, match="beam_width"):
        decode_constrained(line_probs("1"), CHARSET, "\\d", beam_width=0)


def _brute_force_best(probs: np.ndarray, charset: Charset, fmt: Format, max_len: int) -> tuple[str, float]:
    """The accepted string of highest CTC probability, by scoring every string up to max_len."""
    log_probs = np.log(probs)
    best = ("", -math.inf)
    for length in range(1, max_len + 1):
        for chars in itertools.product(charset.chars, repeat=length):
            text = "".join(chars)
            if fmt.accepts(text):
                score = ctc_log_likelihood(log_probs, charset.encode(text))
                if score > best[1]:
                    best = (text, score)
    return best


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("chars", "pattern"), [("AB1", "[AB]1?[AB]+"), ("0123", "{DD}{MM}")])
def test_constrained_search_finds_the_most_probable_fitting_string(seed: int, chars: str, pattern: str) -> None:
    charset = Charset(chars)
    fmt = compile_format(pattern)
    probs = softmax(np.random.default_rng(seed).normal(0.0, 2.0, (6, charset.num_classes)))
    text, log_p = _brute_force_best(probs, charset, fmt, max_len=6)
    assert text  # something fits
    read = decode_constrained(probs, charset, fmt, beam_width=256, prune_threshold=0.0)
    assert read.text == text
    assert read.log_probability == pytest.approx(log_p, abs=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_fast_viterbi_alignment_matches_the_ctc_module(seed: int) -> None:
    rng = np.random.default_rng(seed)
    log_probs = np.log(softmax(rng.normal(0.0, 2.0, (30, 6))))
    labels = [1, 2, 2, 3, 1, 5, 5, 4]
    ours, reference = _best_alignment(log_probs, labels), ctc_best_alignment(log_probs, labels)
    frames = np.arange(30)
    assert log_probs[frames, ours].sum() == pytest.approx(log_probs[frames, reference].sum(), abs=1e-9)


def test_a_run_of_frames_without_candidates_is_carried_in_one_step() -> None:
    rng = np.random.default_rng(3)
    log_probs = np.log(softmax(rng.normal(0.0, 2.0, (12, 5))))
    last = np.array([0, 1, 3, 3, 4])
    p_blank = np.log(rng.uniform(0.01, 1.0, 5))
    p_char = np.append(-math.inf, np.log(rng.uniform(0.01, 1.0, 4)))  # the root has no last character
    blank, char = p_blank.copy(), p_char.copy()
    for t in range(2, 9):  # frame by frame: only stay
        blank, char = np.logaddexp(blank, char) + log_probs[t, 0], char + log_probs[t, last]
    blank_cumsum = np.concatenate([[0.0], np.cumsum(log_probs[:, 0])])
    one_step = _stay_through(log_probs, blank_cumsum, 2, 9, last, p_blank, p_char)
    np.testing.assert_allclose(one_step[0], blank, rtol=1e-12)
    np.testing.assert_allclose(one_step[1], char, rtol=1e-12)
