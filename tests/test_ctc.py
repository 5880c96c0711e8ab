"""CTC decoding: greedy and beam search on hand-made probability matrices."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from edgeocr.core.charset import Charset
from edgeocr.core.ctc import (
    DecodedLine,
    beam_decode,
    ctc_log_likelihood,
    decode_batch,
    greedy_decode,
    softmax,
)

CHARSET = Charset("AB12")  # classes: 0 blank, 1 'A', 2 'B', 3 '1', 4 '2'


def frames(*rows: dict[int, float]) -> np.ndarray:
    """A [T, C] probability matrix; each row names some class probabilities, blank takes the rest."""
    probs = np.zeros((len(rows), CHARSET.num_classes))
    for t, row in enumerate(rows):
        for cls, p in row.items():
            probs[t, cls] = p
        probs[t, 0] += 1.0 - probs[t].sum()
    return probs


def path_matrix(path: str, peak: float = 0.9) -> np.ndarray:
    """Frames spelled as characters, '-' for blank: each frame gives ``peak`` to its class."""
    classes = {"-": 0, **{c: i + 1 for i, c in enumerate(CHARSET.chars)}}
    rest = (1.0 - peak) / (CHARSET.num_classes - 1)
    probs = np.full((len(path), CHARSET.num_classes), rest)
    for t, ch in enumerate(path):
        probs[t, classes[ch]] = peak
    return probs


def brute_force_text_probabilities(probs: np.ndarray) -> dict[str, float]:
    """p(text) for every text, by enumerating every alignment (tiny T only)."""
    totals: dict[str, float] = {}
    for path in itertools.product(range(probs.shape[1]), repeat=len(probs)):
        collapsed = [c for i, c in enumerate(path) if c != 0 and (i == 0 or path[i - 1] != c)]
        text = CHARSET.decode(collapsed)
        totals[text] = totals.get(text, 0.0) + math.prod(probs[t, c] for t, c in enumerate(path))
    return totals


@pytest.mark.parametrize("decode", [greedy_decode, lambda p, c: beam_decode(p, c, beam_width=8)])
@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("A-A", "AA"),  # a blank separates repeats
        ("AAA", "A"),  # a run collapses
        ("-AA--B1-12", "AB112"),
        ("AA-AB", "AAB"),
        ("----", ""),  # blank only
        ("2", "2"),
    ],
)
def test_decoders_round_trip_alignments(decode, path: str, text: str) -> None:
    line = decode(path_matrix(path), CHARSET)
    assert isinstance(line, DecodedLine)
    assert line.text == text
    assert len(line.char_confidences) == len(text)
    assert all(0.0 <= c <= 1.0 for c in line.char_confidences)
    assert 0.0 <= line.confidence <= 1.0


def test_greedy_returns_argmax_path_and_run_max_confidence() -> None:
    probs = frames({1: 0.6}, {1: 0.95}, {}, {1: 0.7}, {2: 0.55})
    line = greedy_decode(probs, CHARSET)
    assert line.text == "AAB"
    assert line.path == (1, 1, 0, 1, 2)
    assert line.char_confidences == pytest.approx((0.95, 0.7, 0.55))
    assert line.sequence_probability is None


def test_weakest_character_sets_line_confidence() -> None:
    probs = frames({1: 0.99}, {}, {2: 0.51}, {}, {3: 0.98})
    for line in (greedy_decode(probs, CHARSET), beam_decode(probs, CHARSET)):
        assert line.text == "AB1"
        assert line.confidence == pytest.approx(0.51)
        assert line.confidence == min(line.char_confidences)


def test_blank_only_gives_empty_text_with_blank_confidence() -> None:
    probs = frames({}, {1: 0.3}, {})
    for line in (greedy_decode(probs, CHARSET), beam_decode(probs, CHARSET)):
        assert line.text == ""
        assert line.char_confidences == ()
        assert line.confidence == pytest.approx(0.7)  # the least sure blank frame


def test_beam_sums_alignments_where_greedy_does_not() -> None:
    # Greedy reads blank-blank (0.16); "A" has three alignments worth 0.4025 together.
    probs = frames({1: 0.35, 2: 0.25}, {1: 0.35, 2: 0.25})
    assert greedy_decode(probs, CHARSET).text == ""
    line = beam_decode(probs, CHARSET)
    assert line.text == "A"
    assert line.sequence_probability == pytest.approx(0.35 * 0.35 + 2 * 0.35 * 0.4)
    assert line.char_confidences == pytest.approx((0.35,))


def test_beam_finds_the_most_probable_text_and_its_probability() -> None:
    rng = np.random.default_rng(7)
    for _ in range(5):
        probs = softmax(rng.normal(scale=1.5, size=(4, CHARSET.num_classes)))
        totals = brute_force_text_probabilities(probs)
        best_text = max(totals, key=totals.get)
        line = beam_decode(probs, CHARSET, beam_width=32, prune_threshold=0.0)
        assert line.text == best_text
        assert line.sequence_probability == pytest.approx(totals[best_text], rel=1e-9)
        assert math.exp(ctc_log_likelihood(np.log(probs), CHARSET.encode(best_text))) == pytest.approx(
            totals[best_text]
        )


def test_beam_path_is_an_alignment_of_its_text() -> None:
    line = beam_decode(path_matrix("-AA-A-B"), CHARSET)
    assert line.text == "AAB"
    collapsed = [c for i, c in enumerate(line.path) if c and (i == 0 or line.path[i - 1] != c)]
    assert CHARSET.decode(collapsed) == "AAB"


def test_softmax_is_stable_and_normalised() -> None:
    logits = np.array([[1000.0, 1000.0, -1000.0], [0.0, 1.0, 2.0]])
    probs = softmax(logits)
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0)
    np.testing.assert_allclose(probs[0], [0.5, 0.5, 0.0], atol=1e-12)


def test_decode_batch_accepts_logits_and_probabilities_and_trims_padding() -> None:
    probs = np.stack([path_matrix("A-B-"), path_matrix("1-1A")])
    logits = np.log(probs) + 3.0  # softmax recovers probs
    lengths = [4, 2]  # the second line's last two frames are padding
    for batch in (probs, logits):
        for decoder in ("greedy", "beam"):
            lines = decode_batch(batch, CHARSET, decoder=decoder, lengths=lengths)
            assert [line.text for line in lines] == ["AB", "1"]
    with pytest.raises(ValueError, match="unknown decoder"):
        decode_batch(probs, CHARSET, decoder="viterbi")  # type: ignore[arg-type]


def test_wrong_class_count_is_refused() -> None:
    with pytest.raises(ValueError, match="classes"):
        greedy_decode(np.full((3, 4), 0.25), CHARSET)
    with pytest.raises(ValueError, match="classes"):
        beam_decode(np.full((3, 4), 0.25), CHARSET)
