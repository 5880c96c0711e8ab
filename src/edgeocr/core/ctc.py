"""CTC decoding of per-frame class probabilities into text with confidences (numpy only).

Every decoder returns a :class:`DecodedLine`. Its ``confidence`` is the *minimum* of the
per-character confidences, not their mean or geometric mean: industrial codes are accepted or
rejected as a whole, and one unreadable character makes the whole code wrong. Averaging would
let eleven crisp characters hide one coin-flip, so a reject threshold must trip on the weakest.

Class 0 is the CTC blank; class ``i`` is character ``i - 1`` of the charset (see
:mod:`edgeocr.core.charset`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edgeocr.core.charset import Charset

BLANK = 0
DecoderName = Literal["greedy", "beam"]
DECODERS: tuple[str, ...] = ("greedy", "beam")

_NEG_INF = -math.inf


@dataclass(frozen=True)
class DecodedLine:
    """One decoded text line.

    ``char_confidences[i]`` is the confidence of ``text[i]``, in [0, 1]. ``confidence`` is the
    minimum of them (the weakest character decides); for an empty text it is the smallest blank
    probability over the frames, i.e. how sure the model is that nothing is written there.
    ``path`` is the per-frame class alignment the text was read from (the argmax path for greedy
    decoding, the most likely alignment of the chosen text for beam search).
    ``sequence_probability`` is p(text | image) summed over all alignments (beam search only).
    """

    text: str
    char_confidences: tuple[float, ...]
    confidence: float
    path: tuple[int, ...] = ()
    sequence_probability: float | None = None


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax (the max is subtracted before exponentiation)."""
    x = np.asarray(x, dtype=np.float64)
    shifted = x - np.max(x, axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / np.sum(exp, axis=axis, keepdims=True)


def _as_charset(charset: Charset | str) -> Charset:
    return charset if isinstance(charset, Charset) else Charset(charset)


def _check_probs(probs: np.ndarray, charset: Charset) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"expected probabilities of shape [T, C], got shape {probs.shape}")
    if probs.shape[1] != charset.num_classes:
        raise ValueError(
            f"probabilities have {probs.shape[1]} classes but the charset needs {charset.num_classes} "
            "(its characters plus the blank)"
        )
    return probs


def _empty_line_confidence(probs: np.ndarray) -> float:
    # No characters: we are as sure of "nothing here" as the least blank-looking frame allows.
    return float(np.clip(probs[:, BLANK].min(), 0.0, 1.0)) if len(probs) else 0.0


def line_from_alignment(
    probs: np.ndarray, path: np.ndarray, charset: Charset, sequence_probability: float | None
) -> DecodedLine:
    """Collapse an alignment (repeats merged, blanks dropped); each char keeps its run's max prob."""
    # Vectorised over runs of equal classes: a Python loop over frames cost a tenth of a crop's read.
    path = np.asarray(path, dtype=np.int64)
    if len(path):
        starts = np.flatnonzero(np.r_[True, path[1:] != path[:-1]])
        run_classes = path[starts]
        run_best = np.maximum.reduceat(probs[np.arange(len(path)), path], starts)
        keep = run_classes != BLANK
        labels = run_classes[keep].tolist()
        confidences = np.clip(run_best[keep], 0.0, 1.0).tolist()
    else:
        labels, confidences = [], []
    line_confidence = min(confidences) if confidences else _empty_line_confidence(probs)
    return DecodedLine(
        text=charset.decode(labels),
        char_confidences=tuple(confidences),
        confidence=float(line_confidence),
        path=tuple(path.tolist()),
        sequence_probability=sequence_probability,
    )


def greedy_decode(probs: np.ndarray, charset: Charset | str) -> DecodedLine:
    """Best-path decoding of softmax probabilities ``[T, C]``.

    Takes the argmax class of every frame, merges consecutive repeats and drops blanks, so "AA"
    is read only when a blank separates the two runs. A character's confidence is the highest
    probability among the frames of its run.
    """
    charset = _as_charset(charset)
    probs = _check_probs(probs, charset)
    path = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    return line_from_alignment(probs, path, charset, sequence_probability=None)


def _logaddexp(a: float, b: float) -> float:
    if a == _NEG_INF:
        return b
    if b == _NEG_INF:
        return a
    if a > b:
        return a + math.log1p(math.exp(b - a))
    return b + math.log1p(math.exp(a - b))


def _extended_labels(labels: Sequence[int]) -> np.ndarray:
    """The CTC state sequence: blank, l1, blank, l2, ..., blank."""
    extended = np.zeros(2 * len(labels) + 1, dtype=np.int64)
    extended[1::2] = labels
    return extended


def _skip_allowed(extended: np.ndarray) -> np.ndarray:
    """True for states that may be entered from two states back (a label unlike the previous one)."""
    allowed = np.zeros(len(extended), dtype=bool)
    allowed[2:] = (extended[2:] != BLANK) & (extended[2:] != extended[:-2])
    return allowed


def _shifted(scores: np.ndarray, skip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores of the state one back and (where a skip is allowed) two back, -inf otherwise."""
    padded = np.concatenate(([_NEG_INF, _NEG_INF], scores))
    return padded[1:-1], np.where(skip, padded[:-2], _NEG_INF)


def ctc_log_likelihood(log_probs: np.ndarray, labels: Sequence[int]) -> float:
    """log p(labels | frames), summed over all CTC alignments (the forward algorithm)."""
    extended = _extended_labels(labels)
    skip = _skip_allowed(extended)
    n_states = len(extended)
    alpha = np.full(n_states, _NEG_INF)
    alpha[0] = log_probs[0, BLANK]
    if n_states > 1:
        alpha[1] = log_probs[0, extended[1]]
    for t in range(1, len(log_probs)):
        step, jump = _shifted(alpha, skip)
        alpha = np.logaddexp(np.logaddexp(alpha, step), jump) + log_probs[t, extended]
    tail = alpha[-2:] if n_states > 1 else alpha[-1:]
    return float(np.logaddexp.reduce(tail))


def ctc_best_alignment(log_probs: np.ndarray, labels: Sequence[int]) -> np.ndarray:
    """The single most likely frame alignment of ``labels`` (Viterbi), as per-frame classes."""
    extended = _extended_labels(labels)
    skip = _skip_allowed(extended)
    n_frames, n_states = len(log_probs), len(extended)
    score = np.full(n_states, _NEG_INF)
    score[0] = log_probs[0, BLANK]
    if n_states > 1:
        score[1] = log_probs[0, extended[1]]
    backpointer = np.zeros((n_frames, n_states), dtype=np.int64)
    states = np.arange(n_states)
    for t in range(1, n_frames):
        candidates = np.stack([score, *_shifted(score, skip)])
        best = candidates.argmax(axis=0)
        backpointer[t] = states - best
        score = candidates[best, states] + log_probs[t, extended]
    state = n_states - 1
    if n_states > 1 and score[n_states - 2] > score[n_states - 1]:
        state = n_states - 2
    path = np.zeros(n_frames, dtype=np.int64)
    for t in range(n_frames - 1, -1, -1):
        path[t] = extended[state]
        state = backpointer[t, state]
    return path


def _scores_of(table: dict[tuple[int, ...], list[float]], prefix: tuple[int, ...]) -> list[float]:
    """The mutable [blank-ending, char-ending] log probabilities of ``prefix``, created at -inf."""
    scores = table.get(prefix)
    if scores is None:
        scores = table[prefix] = [_NEG_INF, _NEG_INF]
    return scores


def beam_decode(
    probs: np.ndarray,
    charset: Charset | str,
    beam_width: int = 8,
    prune_threshold: float = 1e-4,
) -> DecodedLine:
    """CTC prefix beam search over softmax probabilities ``[T, C]``, in log space.

    Each prefix carries two probabilities, ending in a blank and ending in its last character,
    so that repeats are merged unless a blank separates them. Characters whose probability in a
    frame is below ``prune_threshold`` are not tried as extensions in that frame (a standard
    speed-up that changes nothing for a reasonably confident model).

    Character confidences: beam search sums over alignments, so a character has no single set of
    frames. We take the most likely alignment (Viterbi) of the winning text and, like greedy
    decoding, give each character the highest probability over its frames there. This is exact
    for that alignment and an approximation of the character's marginal probability.
    ``sequence_probability`` is p(text | frames) over all alignments (forward algorithm).
    """
    if beam_width < 1:
        raise ValueError(f"beam_width must be at least 1, got {beam_width}")
    charset = _as_charset(charset)
    probs = _check_probs(probs, charset)
    if len(probs) == 0:
        return DecodedLine(text="", char_confidences=(), confidence=0.0, path=(), sequence_probability=1.0)
    with np.errstate(divide="ignore"):
        log_probs = np.log(np.clip(probs, 0.0, None))

    # prefix -> [log p(prefix, ends in blank), log p(prefix, ends in its last char)]
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, _NEG_INF)}
    for frame_log_probs, frame_probs in zip(log_probs, probs, strict=True):
        frame = frame_log_probs.tolist()
        candidates = [int(c) for c in np.flatnonzero(frame_probs[1:] >= prune_threshold) + 1]
        extended: dict[tuple[int, ...], list[float]] = {}
        for prefix, (p_blank, p_char) in beams.items():
            p_total = _logaddexp(p_blank, p_char)
            same = _scores_of(extended, prefix)
            same[0] = _logaddexp(same[0], p_total + frame[BLANK])
            last = prefix[-1] if prefix else None
            for cls in candidates:
                grown = _scores_of(extended, (*prefix, cls))
                if cls == last:
                    # The same char again continues the run, unless a blank came in between.
                    same[1] = _logaddexp(same[1], p_char + frame[cls])
                    grown[1] = _logaddexp(grown[1], p_blank + frame[cls])
                else:
                    grown[1] = _logaddexp(grown[1], p_total + frame[cls])
        ranked = sorted(extended.items(), key=lambda item: _logaddexp(*item[1]), reverse=True)
        beams = {prefix: (scores[0], scores[1]) for prefix, scores in ranked[:beam_width]}

    best = max(beams.items(), key=lambda item: _logaddexp(*item[1]))[0]
    labels = list(best)
    path = ctc_best_alignment(log_probs, labels)
    sequence_probability = math.exp(ctc_log_likelihood(log_probs, labels))
    return line_from_alignment(probs, path, charset, sequence_probability=sequence_probability)


def _looks_like_probabilities(values: np.ndarray) -> bool:
    if values.size == 0:
        return True
    if values.min() < 0.0 or values.max() > 1.0:
        return False
    return bool(np.allclose(values.sum(axis=-1), 1.0, atol=1e-3))


def decode_batch(
    logits_or_probs: np.ndarray,
    charset: Charset | str,
    decoder: DecoderName = "greedy",
    beam_width: int = 8,
    lengths: Sequence[int] | None = None,
    are_probabilities: bool | None = None,
) -> list[DecodedLine]:
    """Decode a batch ``[N, T, C]`` of logits or softmax probabilities.

    ``are_probabilities``: None detects it (non-negative values whose frames sum to 1 are taken
    as probabilities; anything else gets a softmax). ``lengths`` gives each item's number of
    valid frames, so that frames computed on batch padding are not read.
    """
    charset = _as_charset(charset)
    values = np.asarray(logits_or_probs)
    if values.ndim != 3:
        raise ValueError(f"expected a batch of shape [N, T, C], got shape {values.shape}")
    if are_probabilities is None:
        are_probabilities = _looks_like_probabilities(values)
    probs = values.astype(np.float64) if are_probabilities else softmax(values, axis=-1)
    if lengths is not None and len(lengths) != len(probs):
        raise ValueError(f"got {len(lengths)} lengths for a batch of {len(probs)}")
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
    lines = []
    for index, item in enumerate(probs):
        if lengths is not None:
            item = item[: int(lengths[index])]
        if decoder == "greedy":
            lines.append(greedy_decode(item, charset))
        else:
            lines.append(beam_decode(item, charset, beam_width=beam_width))
    return lines
