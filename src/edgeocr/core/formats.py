"""Format-constrained CTC decoding: read the most probable string that fits a declared format.

Users declare the formats they expect (``LOT \\d{6}``, ``EXP {MM}/{YYYY}``, ``iso6346``, a list
of product codes). :func:`decode_constrained` then searches the network's per-frame
probabilities for the most probable string *that fits*, instead of reading freely and filtering
afterwards: when greedy decoding reads ``CSQU3O54383`` because one frame prefers ``O`` to ``0``,
the constrained search reads ``CSQU3054383``, at the probability the network actually gave that
``0``. Probabilities are never renormalised over the allowed characters, so a forced character
keeps its (low) confidence and the usual reject threshold still trips on it.

Design:

* **Patterns** compile to a Thompson NFA: literals, ``\\d``, ``\\s`` (space), escapes, classes
  ``[A-Z0-9]``, groups with alternation ``(A|B)``, quantifiers ``? + * {n} {n,} {n,m}`` and named
  fields in braces (:data:`FIELDS`). ``.`` is a literal dot, as printed in dates.
* **Semantics live in the automaton state**, so the search never spends its beam on strings that
  cannot be valid and never needs a post-filter. A character read inside a field carries a tag;
  the automaton state is (NFA state, memory) and the memory is updated by the tags: the ISO 6346
  weighted sum mod 11 and the GS1 sum mod 10 (exact and small), and for dates, the day, month,
  year and day-of-year read so far reduced to the classes that matter (day <= 28, 29, 30, 31;
  February, 30- or 31-day month; leap year or not). A character that makes the date impossible
  (``31/02``, ``29/02/2023``, day 366 of 2023) has no transition. Fields of one date are grouped
  per path: a field kind seen again starts a new date.
* **The DFA is built lazily** (subset construction on the (NFA state, memory) pairs), one state
  at a time as the search reaches it, and cached; per charset, each state's transitions become a
  row of class indices. Big allowlists (a trie) and patterns with many dates stay cheap.
* **Search**: a CTC prefix beam search over label prefixes that only extends a prefix along the
  automaton's transitions (the automaton state is a function of the prefix). Scores are
  log p(prefix) summed over alignments, vectorised over the beam with numpy.
* **Confidences** are those of :mod:`edgeocr.core.ctc`: per character, the highest probability
  over its frames in the most likely alignment of the text; the line confidence is their minimum.
* **Shortcut**: when the greedy read fits and its best path alone has probability above 1/2, no
  other string can be more probable, and the search is skipped.

Build a :class:`FormatSet` once and reuse it: its lazy automaton and class tables are cached.
"""

from __future__ import annotations

import functools
import itertools
import math
import string
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeocr.core.charset import Charset
from edgeocr.core.checkdigits import ISO6346_CATEGORY_IDS, ISO6346_VALUES
from edgeocr.core.ctc import BLANK, greedy_decode, line_from_alignment
from edgeocr.core.errors import EdgeOCRError

__all__ = [
    "BUILTINS",
    "FIELDS",
    "Format",
    "FormatError",
    "FormatRead",
    "FormatSet",
    "allowlist_format",
    "compile_format",
    "decode_constrained",
]

_NEG_INF = -math.inf
_LOG_FLOOR = -1e4  # log probabilities are floored here where cumulative sums must stay finite
MAX_REPEAT = 64  # codes are short; a larger count is almost certainly a typo
MAX_DFA_STATES = 200_000  # a guard against patterns whose automaton would not fit in memory
#: Automaton states one pattern may expand to. Repeats copy their item, so nested repeats multiply:
#: ``(([A-Z]{64}){64}){64}`` (23 characters) would be 262,144 copies; real patterns need under 200.
MAX_PATTERN_STATES = 1024
MAX_NESTING = 16  # groups inside groups
#: Steps (a state's transitions on one character, a state added to a closure) the lazy automaton may
#: take in all: a bound on its time (1 to 2 s) and memory (a few hundred MB) for patterns whose
#: states each hold many NFA states (optional repeats inside optional repeats).
MAX_DFA_WORK = 5_000_000


class FormatError(EdgeOCRError):
    """A format declaration is malformed; the message names the pattern and the position."""

    def __init__(self, message: str, pattern: str | None = None, position: int | None = None) -> None:
        self.pattern = pattern
        self.position = position
        if pattern is not None and position is not None:
            message = (
                f"{message} at position {position} of format pattern {pattern!r}\n  {pattern}\n  {' ' * position}^"
            )
        elif pattern is not None:
            message = f"{message} in format pattern {pattern!r}"
        super().__init__(message)


# ---------------------------------------------------------------------------------------------
# Named fields and built-ins
# ---------------------------------------------------------------------------------------------

_DIGITS = frozenset(string.digits)
_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")

# Field name -> every string it accepts (all of one length).
_FIELD_VALUES: dict[str, tuple[str, ...]] = {
    "DD": tuple(f"{d:02d}" for d in range(1, 32)),
    "MM": tuple(f"{m:02d}" for m in range(1, 13)),
    "MON": _MONTH_NAMES,
    "YY": tuple(f"{y:02d}" for y in range(100)),
    "YYYY": tuple(str(y) for y in range(2000, 2100)),
    "JJJ": tuple(f"{d:03d}" for d in range(1, 367)),
    "HH": tuple(f"{h:02d}" for h in range(24)),
    "mm": tuple(f"{m:02d}" for m in range(60)),
    "SS": tuple(f"{s:02d}" for s in range(60)),
}
FIELDS: dict[str, str] = {
    "DD": "day of month 01-31 (checked against the month and year of its date)",
    "MM": "month 01-12",
    "MON": "month JAN-DEC (upper case)",
    "YY": "two-digit year 00-99 (read as 20YY)",
    "YYYY": "year 2000-2099",
    "JJJ": "day of year 001-366 (366 only in a leap year)",
    "HH": "hour 00-23",
    "mm": "minute 00-59",
    "SS": "second 00-59",
}
BUILTINS: dict[str, str] = {
    "iso6346": "ISO 6346 container code with a correct check digit: 'CSQU3054383' or 'CSQU 305438 3'",
    "gtin8": "GTIN-8 with its GS1 check digit",
    "gtin12": "GTIN-12 (UPC-A) with its GS1 check digit",
    "gtin13": "GTIN-13 (EAN-13) with its GS1 check digit",
    "gtin14": "GTIN-14 with its GS1 check digit",
}

# Date fields: which slot of the date memory they fill (day, month, year, day of year).
_DATE_SLOT = {"DD": 0, "MM": 1, "MON": 1, "YY": 2, "YYYY": 2, "JJJ": 3}
# Every class a slot can take: day <= 28 (as 28), 29, 30, 31; month = its number of days
# (2 for February); year = leap or not; day of year <= 365 (as 365) or 366.
_ALL_CLASSES = ((28, 29, 30, 31), (2, 30, 31), (False, True), (365, 366))


def _month_days(month: int) -> int:
    return 2 if month == 2 else 30 if month in (4, 6, 9, 11) else 31


def _value_class(field_name: str, text: str) -> int | bool:
    """The class of a complete field value that decides whether its date exists."""
    if field_name == "DD":
        return max(int(text), 28)  # every month has days 1-28
    if field_name == "MM":
        return _month_days(int(text))
    if field_name == "MON":
        return _month_days(_MONTH_NAMES.index(text) + 1)
    if field_name == "YY":
        return int(text) % 4 == 0  # 2000-2099: every fourth year is leap, 2000 included
    if field_name == "YYYY":
        year = int(text)
        return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if field_name == "JJJ":
        return 366 if int(text) == 366 else 365
    raise AssertionError(field_name)


def _date_exists(day: int, month: int, leap: bool, day_of_year: int) -> bool:
    max_day = (29 if leap else 28) if month == 2 else month
    return day <= max_day and (day_of_year != 366 or leap)


# Date memory: (day, month, year, day_of_year, field in progress, its characters so far); a slot
# is None until its field is complete, then holds the field's class.
_EMPTY_DATE = (None, None, None, None, None, "")
# Memory of one NFA path: (check-digit running sum or -1, date memory).
_EMPTY_MEMORY = (-1, _EMPTY_DATE)


@functools.lru_cache(maxsize=4096)
def _date_possible(date: tuple) -> bool:
    """Whether some completion of the fields read so far gives a date that exists."""
    options: list[tuple] = []
    for slot in range(4):
        if date[slot] is not None:
            options.append((date[slot],))
        elif date[4] is not None and _DATE_SLOT[date[4]] == slot:
            name, prefix = date[4], date[5]
            completions = (v for v in _FIELD_VALUES[name] if v.startswith(prefix))
            options.append(tuple({_value_class(name, v) for v in completions}))
        else:
            options.append(_ALL_CLASSES[slot])
    return any(_date_exists(*classes) for classes in itertools.product(*options))


def _gs1_weight(length: int, index: int) -> int:
    # Payload digits are weighted 3, 1, 3, ... from the right (the check digit's neighbour is 3).
    return 3 if (length - 2 - index) % 2 == 0 else 1


@functools.lru_cache(maxsize=65536)
def _step_memory(memory: tuple, tag: tuple, char: str) -> tuple | None:
    """The memory after reading ``char`` under ``tag``; None when the string can no longer be valid."""
    check_sum, date = memory
    kind = tag[0]
    if kind == "iso":
        index = tag[1]
        if index == 10:
            return (-1, date) if int(char) == check_sum % 10 else None
        value = ISO6346_VALUES[char] << index
        return ((value if index == 0 else check_sum + value) % 11, date)
    if kind == "gs1":
        length, index = tag[1], tag[2]
        digit = int(char)
        if index == length - 1:
            return (-1, date) if digit == (10 - check_sum) % 10 else None
        weighted = digit * _gs1_weight(length, index)
        return ((weighted if index == 0 else check_sum + weighted) % 10, date)
    # A date field character.
    name, index = tag[1], tag[2]
    slots = list(date[:4])
    if index == 0:
        if slots[_DATE_SLOT[name]] is not None:
            slots = [None, None, None, None]  # the same kind again: a new date begins
        text = char
    else:
        text = date[5] + char
    if len(text) == len(_FIELD_VALUES[name][0]):
        slots[_DATE_SLOT[name]] = _value_class(name, text)
        new_date = (*slots, None, "")
    else:
        new_date = (*slots, name, text)
    return (check_sum, new_date) if _date_possible(new_date) else None


# ---------------------------------------------------------------------------------------------
# Pattern parser -> syntax tree
# ---------------------------------------------------------------------------------------------
# Nodes: ("chars", frozenset, tag) | ("seq", [nodes]) | ("alt", [nodes]) | ("repeat", node, lo, hi)
# | ("field", name). hi is None for an unbounded repeat.


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.pos = 0
        self.depth = 0

    def error(self, message: str, position: int | None = None) -> FormatError:
        return FormatError(message, self.pattern, self.pos if position is None else position)

    def peek(self, offset: int = 0) -> str:
        index = self.pos + offset
        return self.pattern[index] if index < len(self.pattern) else ""

    def parse(self) -> tuple:
        if not self.pattern:
            raise FormatError("empty format pattern")
        node = self.alternation()
        if self.pos < len(self.pattern):  # only an unmatched ')' stops an alternation early
            raise self.error("unbalanced ')'")
        return node

    def alternation(self) -> tuple:
        branches = [self.sequence()]
        while self.peek() == "|":
            self.pos += 1
            branches.append(self.sequence())
        return branches[0] if len(branches) == 1 else ("alt", branches)

    def sequence(self) -> tuple:
        items = []
        while self.pos < len(self.pattern) and self.peek() not in "|)":
            items.append(self.quantified(self.atom()))
        return ("seq", items)

    def atom(self) -> tuple:
        char = self.peek()
        if char == "(":
            opened = self.pos
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise self.error(f"groups nested more than {MAX_NESTING} deep")
            self.pos += 1
            node = self.alternation()
            if self.peek() != ")":
                raise self.error("missing ')' for the '(' opened", opened)
            self.pos += 1
            self.depth -= 1
            return node
        if char == "[":
            return self.char_class()
        if char == "{":
            if self.peek(1).isdigit():
                raise self.error("nothing to repeat before this quantifier")
            return self.named_field()
        if char == "\\":
            return ("chars", self.escape(), None)
        if char in "?+*":
            raise self.error(f"nothing to repeat before {char!r}")
        if char in "]}":
            raise self.error(f"unescaped {char!r} (write \\{char} for the character)")
        self.pos += 1
        return ("chars", frozenset(char), None)

    def escape(self) -> frozenset[str]:
        start = self.pos
        self.pos += 1
        char = self.peek()
        if not char:
            raise self.error("a pattern may not end with '\\'", start)
        self.pos += 1
        if char == "d":
            return _DIGITS
        if char == "s":
            return frozenset(" ")
        if char.isalnum():
            raise self.error(f"unknown escape \\{char} (use \\d for a digit, \\s for a space)", start)
        return frozenset(char)

    def char_class(self) -> tuple:
        opened = self.pos
        self.pos += 1
        if self.peek() == "^":
            raise self.error("negated classes are not supported; list the allowed characters")
        chars: set[str] = set()
        while self.peek() != "]":
            if not self.peek():
                raise self.error("missing ']' for the '[' opened", opened)
            if self.peek() == "\\":
                members = self.escape()
                if len(members) > 1:
                    chars |= members
                    continue
                low = next(iter(members))
            else:
                low = self.peek()
                self.pos += 1
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                dash = self.pos
                self.pos += 1
                if self.peek() == "\\":
                    members = self.escape()
                    if len(members) > 1:
                        raise self.error("a range cannot end in a class", dash)
                    high = next(iter(members))
                else:
                    high = self.peek()
                    self.pos += 1
                if ord(high) < ord(low):
                    raise self.error(f"range {low}-{high} runs backwards", dash)
                chars |= {chr(c) for c in range(ord(low), ord(high) + 1)}
            else:
                chars.add(low)
        if not chars:
            raise self.error("empty character class", opened)
        self.pos += 1
        return ("chars", frozenset(chars), None)

    def named_field(self) -> tuple:
        opened = self.pos
        end = self.pattern.find("}", self.pos)
        if end < 0:
            raise self.error("missing '}' for the '{' opened", opened)
        name = self.pattern[self.pos + 1 : end]
        if name not in _FIELD_VALUES and name not in BUILTINS:
            known = ", ".join(f"{{{n}}}" for n in [*_FIELD_VALUES, *BUILTINS])
            raise self.error(f"unknown field {{{name}}}; known fields: {known}", opened)
        self.pos = end + 1
        return ("field", name)

    def quantified(self, node: tuple) -> tuple:
        bounds = self.quantifier()
        if bounds is None:
            return node
        if self.quantifier_follows():
            raise self.error("multiple repeat (a quantifier after a quantifier)")
        return ("repeat", node, *bounds)

    def quantifier_follows(self) -> bool:
        return self.peek() in ("?", "+", "*") or (self.peek() == "{" and self.peek(1).isdigit())

    def quantifier(self) -> tuple[int, int | None] | None:
        char = self.peek()
        if char in ("?", "+", "*"):
            self.pos += 1
            return {"?": (0, 1), "+": (1, None), "*": (0, None)}[char]
        if not (char == "{" and self.peek(1).isdigit()):
            return None
        opened = self.pos
        end = self.pattern.find("}", self.pos)
        if end < 0:
            raise self.error("missing '}' for the quantifier opened", opened)
        body = self.pattern[self.pos + 1 : end]
        low_text, comma, high_text = body.partition(",")
        if not low_text.isdigit() or (high_text and not high_text.isdigit()):
            raise self.error(f"malformed quantifier {{{body}}} (write {{n}}, {{n,}} or {{n,m}})", opened)
        low = int(low_text)
        high = None if (comma and not high_text) else int(high_text) if high_text else low
        if high is not None and high < low:
            raise self.error(f"quantifier {{{body}}} has its maximum below its minimum", opened)
        if max(low, high or 0) > MAX_REPEAT:
            raise self.error(f"quantifier {{{body}}} repeats more than {MAX_REPEAT} times", opened)
        self.pos = end + 1
        return low, high


def _parse(pattern: str) -> tuple:
    return _Parser(pattern).parse()


@functools.cache
def _field_states(name: str) -> int:
    nfa = _Nfa()
    nfa._field(name)
    return len(nfa.edges)


def _tree_states(node: tuple) -> int:
    """How many NFA states :meth:`_Nfa.build` makes for a syntax tree node, without building them."""
    kind = node[0]
    if kind == "chars":
        return 2
    if kind == "seq":
        return 1 + sum(_tree_states(item) for item in node[1])
    if kind == "alt":
        return 2 + sum(_tree_states(branch) for branch in node[1])
    if kind == "repeat":
        item, low, high = _tree_states(node[1]), node[2], node[3]
        return 1 + low * item + (1 + item if high is None else 1 + (high - low) * item)
    if kind == "field":
        return _field_states(node[1])
    raise AssertionError(kind)


def _check_size(tree: tuple, pattern: str) -> None:
    """Refuse, at compile time, a pattern whose automaton would be too large to build (nested repeats)."""
    states = _tree_states(tree)
    if states > MAX_PATTERN_STATES:
        count = f"{states:,}" if states < 10**12 else f"{states:.2g}"
        raise FormatError(
            f"the pattern expands to {count} automaton states, over the limit of {MAX_PATTERN_STATES:,} "
            "(repeats copy what they repeat, so nested repeats multiply: a group repeated {64} inside "
            "another repeated {64} is 4,096 copies); write the code's length once, e.g. [A-Z]{8,12}",
            pattern,
        )


# ---------------------------------------------------------------------------------------------
# Thompson NFA and the lazy (NFA state, memory) DFA
# ---------------------------------------------------------------------------------------------


class _Nfa:
    """States with epsilon edges and character edges ``(chars, tag or None, target)``."""

    def __init__(self) -> None:
        self.epsilon: list[list[int]] = []
        self.edges: list[list[tuple[frozenset[str], tuple | None, int]]] = []
        self.accepting: dict[int, int] = {}  # NFA state -> index of the format it completes

    def state(self) -> int:
        self.epsilon.append([])
        self.edges.append([])
        return len(self.edges) - 1

    def edge(self, source: int, chars: frozenset[str], tag: tuple | None, target: int) -> None:
        self.edges[source].append((chars, tag, target))

    def build(self, node: tuple) -> tuple[int, int]:
        """Add the fragment of a syntax tree node; returns its (start, end) states."""
        kind = node[0]
        if kind == "chars":
            start, end = self.state(), self.state()
            self.edge(start, node[1], node[2], end)
            return start, end
        if kind == "seq":
            start = end = self.state()
            for item in node[1]:
                item_start, item_end = self.build(item)
                self.epsilon[end].append(item_start)
                end = item_end
            return start, end
        if kind == "alt":
            start, end = self.state(), self.state()
            for branch in node[1]:
                branch_start, branch_end = self.build(branch)
                self.epsilon[start].append(branch_start)
                self.epsilon[branch_end].append(end)
            return start, end
        if kind == "repeat":
            return self._repeat(node[1], node[2], node[3])
        if kind == "field":
            return self._field(node[1])
        raise AssertionError(kind)

    def _repeat(self, item: tuple, low: int, high: int | None) -> tuple[int, int]:
        start = end = self.state()
        for _ in range(low):
            item_start, item_end = self.build(item)
            self.epsilon[end].append(item_start)
            end = item_end
        if high is None:  # a loop: any number of further copies
            loop = self.state()
            self.epsilon[end].append(loop)
            item_start, item_end = self.build(item)
            self.epsilon[loop].append(item_start)
            self.epsilon[item_end].append(loop)
            return start, loop
        exit_state = self.state()
        for _ in range(high - low):
            self.epsilon[end].append(exit_state)  # stop here
            item_start, item_end = self.build(item)
            self.epsilon[end].append(item_start)
            end = item_end
        self.epsilon[end].append(exit_state)
        return start, exit_state

    def _chain(self, steps: Sequence[tuple[frozenset[str], tuple | None, bool]]) -> tuple[int, int]:
        """A straight line of character steps ``(chars, tag, optional)``."""
        start = end = self.state()
        for chars, tag, optional in steps:
            nxt = self.state()
            self.edge(end, chars, tag, nxt)
            if optional:
                self.epsilon[end].append(nxt)
            end = nxt
        return start, end

    def _field(self, name: str) -> tuple[int, int]:
        if name == "iso6346":
            letters = frozenset(string.ascii_uppercase)
            space = frozenset(" ")
            steps = [(letters, ("iso", i), False) for i in range(3)]
            steps.append((frozenset(ISO6346_CATEGORY_IDS), ("iso", 3), False))
            steps.append((space, None, True))
            steps += [(_DIGITS, ("iso", i), False) for i in range(4, 10)]
            steps.append((space, None, True))
            steps.append((_DIGITS, ("iso", 10), False))
            return self._chain(steps)
        if name.startswith("gtin"):
            length = int(name[4:])
            return self._chain([(_DIGITS, ("gs1", length, i), False) for i in range(length)])
        return self._value_trie(name, _FIELD_VALUES[name])

    def _value_trie(self, name: str, values: Sequence[str]) -> tuple[int, int]:
        """A trie of equal-length values whose last characters share one end state."""
        dated = name in _DATE_SLOT
        width = len(values[0])
        start, end = self.state(), self.state()
        nodes = {"": start}
        last_chars: dict[str, set[str]] = {}
        for value in values:
            for depth in range(width - 1):
                prefix = value[: depth + 1]
                if prefix not in nodes:
                    nodes[prefix] = self.state()
                    tag = ("date", name, depth) if dated else None
                    self.edge(nodes[value[:depth]], frozenset(value[depth]), tag, nodes[prefix])
            last_chars.setdefault(value[:-1], set()).add(value[-1])
        for prefix, chars in last_chars.items():
            self.edge(nodes[prefix], frozenset(chars), ("date", name, width - 1) if dated else None, end)
        return start, end

    def add_words(self, words: Iterable[str]) -> tuple[int, int]:
        """A trie of literal strings (an allowlist)."""
        start, end = self.state(), self.state()
        children: dict[tuple[int, str], int] = {}
        for word in words:
            node = start
            for char in word:
                child = children.get((node, char))
                if child is None:
                    child = children[(node, char)] = self.state()
                    self.edge(node, frozenset(char), None, child)
                node = child
            if end not in self.epsilon[node]:
                self.epsilon[node].append(end)
        return start, end


class _LazyDfa:
    """Subset construction over (NFA state, memory) pairs, one DFA state at a time.

    State 0 is the start. ``moves(state)`` maps each character to the next DFA state; it is
    computed on first use and cached. ``accepting[state]`` is the index of the first format that
    the state completes, or -1.
    """

    def __init__(self, nfa: _Nfa, start: int) -> None:
        self.nfa = nfa
        self.sets: list[frozenset[tuple[int, tuple]]] = []
        self.ids: dict[frozenset[tuple[int, tuple]], int] = {}
        self.accepting: list[int] = []
        self._moves: list[dict[str, int] | None] = []
        self._lock = threading.Lock()
        self.work = 0  # steps taken so far, against MAX_DFA_WORK
        self.exhausted = False
        self._intern({(start, _EMPTY_MEMORY)})

    def _spend(self, steps: int) -> None:
        self.work += steps
        if self.work > MAX_DFA_WORK or self.exhausted:
            self.exhausted = True  # every later growth fails at once, never after the same work again
            raise FormatError(
                f"the formats' automaton grew past {MAX_DFA_WORK:,} steps while reading (optional repeats "
                "inside optional repeats make every state hold many others); simplify them"
            )

    def _closure(self, pairs: Iterable[tuple[int, tuple]]) -> frozenset[tuple[int, tuple]]:
        seen = set(pairs)
        stack = list(seen)
        while stack:
            state, memory = stack.pop()
            for target in self.nfa.epsilon[state]:
                pair = (target, memory)
                if pair not in seen:
                    seen.add(pair)
                    stack.append(pair)
        self._spend(len(seen))
        return frozenset(seen)

    def _intern(self, pairs: Iterable[tuple[int, tuple]]) -> int:
        # Only pairs that read a character or accept tell DFA states apart; an accepting state
        # reads nothing more, so its memory no longer matters either.
        edges, accepting = self.nfa.edges, self.nfa.accepting
        kernel = frozenset(
            (s, memory if edges[s] else _EMPTY_MEMORY)
            for s, memory in self._closure(pairs)
            if edges[s] or s in accepting
        )
        found = self.ids.get(kernel)
        if found is not None:
            return found
        if len(self.sets) >= MAX_DFA_STATES:
            raise FormatError(f"the formats need more than {MAX_DFA_STATES} automaton states; simplify them")
        index = len(self.sets)
        self.sets.append(kernel)
        self.ids[kernel] = index
        accepted = [accepting[s] for s, _ in kernel if s in accepting]
        self.accepting.append(min(accepted) if accepted else -1)
        self._moves.append(None)
        return index

    def moves(self, state: int) -> dict[str, int]:
        found = self._moves[state]
        if found is not None:
            return found
        with self._lock:
            if self._moves[state] is None:
                targets: dict[str, set[tuple[int, tuple]]] = {}
                for nfa_state, memory in self.sets[state]:
                    for chars, tag, target in self.nfa.edges[nfa_state]:
                        self._spend(len(chars))
                        for char in chars:
                            after = memory if tag is None else _step_memory(memory, tag, char)
                            if after is not None:
                                targets.setdefault(char, set()).add((target, after))
                self._moves[state] = {char: self._intern(pairs) for char, pairs in targets.items()}
            return self._moves[state]

    def run(self, text: str) -> int:
        """The DFA state after reading ``text``, or -1 when the text leaves the automaton."""
        state = 0
        for char in text:
            state = self.moves(state).get(char, -1)
            if state < 0:
                return -1
        return state


class _ClassTable:
    """A lazy DFA's transitions over one charset's class indices, as numpy rows.

    ``next[s, c]`` is the state after class ``c`` from state ``s`` (-1: not allowed; column 0,
    the blank, is always -1). Rows are filled by :meth:`ensure` before the search uses them.
    """

    def __init__(self, dfa: _LazyDfa, charset: Charset) -> None:
        self.dfa = dfa
        self.class_of = {char: index + 1 for index, char in enumerate(charset.chars)}
        self.num_classes = charset.num_classes
        self.next = np.full((64, self.num_classes), -1, dtype=np.int64)
        self.accepting = np.full(64, -1, dtype=np.int64)
        self.built = np.zeros(64, dtype=bool)
        self._lock = threading.Lock()

    def ensure(self, state: int) -> None:
        if state < len(self.built) and self.built[state]:
            return
        moves = self.dfa.moves(state)
        with self._lock:
            if state >= len(self.built):
                size = max(2 * len(self.built), state + 1)
                grown_next = np.full((size, self.num_classes), -1, dtype=np.int64)
                grown_next[: len(self.next)] = self.next
                grown_accepting = np.full(size, -1, dtype=np.int64)
                grown_accepting[: len(self.accepting)] = self.accepting
                grown_built = np.zeros(size, dtype=bool)
                grown_built[: len(self.built)] = self.built
                self.next, self.accepting, self.built = grown_next, grown_accepting, grown_built
            for char, target in moves.items():
                cls = self.class_of.get(char)
                if cls is not None:  # characters outside the charset can never be read
                    self.next[state, cls] = target
            self.accepting[state] = self.dfa.accepting[state]
            self.built[state] = True

    def ensure_many(self, states: np.ndarray) -> None:
        """:meth:`ensure` for every state of an array (a no-op check when all rows exist)."""
        if len(states) and (states.max() >= len(self.built) or not self.built[states].all()):
            for state in np.unique(states).tolist():
                self.ensure(state)


# ---------------------------------------------------------------------------------------------
# Public format objects
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Format:
    """One expected format: a ``pattern`` (see the module docstring) or an ``allowlist`` of
    literal strings (e.g. product codes), exactly one of them. ``Format(name, pattern=...)``
    parses the pattern at once and raises :class:`FormatError` when it is malformed.
    ``accepts`` tells whether a string fits, with every semantic check (check digits, existing
    dates) applied.
    """

    name: str
    pattern: str | None = None
    allowlist: tuple[str, ...] | None = None
    _tree: tuple | None = field(default=None, init=False, repr=False, compare=False)
    _single: list = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.pattern == "":
            raise FormatError("empty format pattern")
        if not isinstance(self.name, str) or not self.name:
            raise FormatError(f"a format needs a non-empty name, got {self.name!r}")
        if (self.pattern is None) == (self.allowlist is None):
            raise FormatError(f"format {self.name!r} needs exactly one of a pattern and an allowlist")
        if self.pattern is not None:
            if not isinstance(self.pattern, str):
                kind = type(self.pattern).__name__
                raise FormatError(f"format {self.name!r}: a pattern must be a string, got {kind}")
            tree = _parse(self.pattern)
            _check_size(tree, self.pattern)
            object.__setattr__(self, "_tree", tree)
            return
        if isinstance(self.allowlist, str):
            raise FormatError(f"allowlist {self.name!r} must be a list of strings, not one string")
        words = tuple(dict.fromkeys(self.allowlist))
        if not words:
            raise FormatError(f"allowlist {self.name!r} is empty")
        bad = [w for w in words if not isinstance(w, str) or not w]
        if bad:
            raise FormatError(f"allowlist {self.name!r} holds empty or non-string entries: {bad[:3]!r}")
        object.__setattr__(self, "allowlist", words)

    def _add_to(self, nfa: _Nfa) -> tuple[int, int]:
        if self.allowlist is not None:
            return nfa.add_words(self.allowlist)
        return nfa.build(self._tree)

    def as_set(self) -> FormatSet:
        """This format alone, as a cached :class:`FormatSet` (so its automaton is built once)."""
        if not self._single:
            self._single.append(FormatSet([self]))
        return self._single[0]

    def accepts(self, text: str) -> bool:
        """True when ``text`` fits this format exactly."""
        return self.as_set().match(text) is not None


def allowlist_format(name: str, codes: Iterable[str]) -> Format:
    """A format that accepts exactly the given literal strings (e.g. product codes), read as a trie."""
    return Format(name=name, allowlist=codes)


def compile_format(spec: str | Mapping[str, Any] | Format, name: str | None = None) -> Format:
    """Compile one format declaration.

    ``spec`` is a pattern (``"LOT \\d{6}"``, ``"EXP {MM}/{YYYY}"``), the bare name of a built-in
    (``"iso6346"``, ``"gtin13"``, see :data:`BUILTINS`), a mapping ``{"name": ..., "pattern": ...}``
    or ``{"name": ..., "allowlist": [...]}`` (as in a YAML file), or an already compiled
    :class:`Format`. ``name`` defaults to the pattern text. Raises :class:`FormatError`.
    """
    if isinstance(spec, Format):
        return spec
    if isinstance(spec, str):
        if spec in BUILTINS:
            return Format(name=name or spec, pattern=f"{{{spec}}}")
        return Format(name=name or spec, pattern=spec)
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"name", "pattern", "allowlist"}
        if unknown:
            raise FormatError(f"format declaration has unknown keys {sorted(unknown)}; use name, pattern or allowlist")
        given_name = name or spec.get("name")
        if "pattern" in spec and "allowlist" not in spec:
            return compile_format(spec["pattern"], given_name)
        return Format(name=given_name, pattern=spec.get("pattern"), allowlist=spec.get("allowlist"))
    raise FormatError(f"cannot read a format from {type(spec).__name__}; give a pattern string or a mapping")


class FormatSet:
    """Several formats searched as one automaton (their union): the decoder reads the most
    probable string that fits any of them and reports which. When a string fits several, the
    first declared wins. Build it once and reuse it: the automaton is built lazily and cached.
    """

    def __init__(self, formats: Iterable[str | Mapping[str, Any] | Format] | str | Format) -> None:
        if isinstance(formats, (str, Format, Mapping)):
            formats = [formats]
        self.formats: tuple[Format, ...] = tuple(compile_format(f) for f in formats)
        if not self.formats:
            raise FormatError("a format set needs at least one format")
        names = [f.name for f in self.formats]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise FormatError(f"format names must be unique; repeated: {repeated}")
        nfa = _Nfa()
        start = nfa.state()
        for index, fmt in enumerate(self.formats):
            fmt_start, fmt_end = fmt._add_to(nfa)
            nfa.epsilon[start].append(fmt_start)
            nfa.accepting[fmt_end] = index
        self._dfa = _LazyDfa(nfa, start)
        self._tables: dict[str, _ClassTable] = {}
        self._lock = threading.Lock()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.formats)

    def __len__(self) -> int:
        return len(self.formats)

    def __iter__(self) -> Iterator[Format]:
        return iter(self.formats)

    def match(self, text: str) -> str | None:
        """The name of the first format that ``text`` fits, or None."""
        state = self._dfa.run(text)
        if state < 0 or self._dfa.accepting[state] < 0:
            return None
        return self.formats[self._dfa.accepting[state]].name

    def _table(self, charset: Charset) -> _ClassTable:
        table = self._tables.get(charset.fingerprint)
        if table is None:
            with self._lock:
                table = self._tables.setdefault(charset.fingerprint, _ClassTable(self._dfa, charset))
        return table


@functools.lru_cache(maxsize=64)
def _cached_format_set(patterns: tuple[str, ...]) -> FormatSet:
    return FormatSet(patterns)


def _as_format_set(formats: FormatSet | Format | str | Mapping | Iterable) -> FormatSet:
    if isinstance(formats, FormatSet):
        return formats
    if isinstance(formats, Format):
        return formats.as_set()
    if isinstance(formats, str):
        return _cached_format_set((formats,))
    if isinstance(formats, (list, tuple)) and all(isinstance(f, str) for f in formats):
        return _cached_format_set(tuple(formats))  # plain pattern lists are compiled once
    return FormatSet(formats)


# ---------------------------------------------------------------------------------------------
# Constrained CTC prefix beam search
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FormatRead:
    """The result of a format-constrained read.

    ``valid`` is True when a string fitting one of the formats was found with a line confidence
    of at least ``min_confidence``; then ``text`` is it, ``format_name`` names the format it fits
    and ``char_confidences``/``confidence`` are defined as in :mod:`edgeocr.core.ctc` (the weakest
    character decides), from the network's own probabilities (never renormalised).
    Otherwise ``text`` is "" and ``reason`` says why, naming the best fitting candidate if there
    is one (then ``confidence`` is that candidate's, so a caller can see how far it fell short).

    ``raw_text``/``raw_confidence`` are the unconstrained greedy read, always filled in.
    ``log_probability`` is the search's log p(text | frames), summed over the alignments it kept
    (a lower bound: runs that would start on a frame below ``prune_threshold`` are not counted);
    when the search was skipped because the best path alone has probability above 1/2 and its
    text fits, it is that path's log probability (again a lower bound).
    ``relative_probability`` is p(best alignment of text) / p(best alignment of any text), in
    [0, 1]: 1 when the constraint changed nothing, small when it had to force characters the
    network did not see; a caller can reject on it too.
    """

    text: str
    confidence: float
    char_confidences: tuple[float, ...]
    format_name: str | None
    valid: bool
    raw_text: str
    raw_confidence: float
    log_probability: float = _NEG_INF
    relative_probability: float = 0.0
    reason: str = ""


_scratch = threading.local()


def _child_table(capacity: int, n_classes: int) -> np.ndarray:
    """A reusable [nodes, classes] table of child node ids, all -1 (callers reset what they set)."""
    table = getattr(_scratch, "child_of", None)
    if table is None or table.shape[0] < capacity or table.shape[1] != n_classes:
        table = np.full((max(capacity, 4096), n_classes), -1, dtype=np.int32)
        _scratch.child_of = table
    return table


def _stay_through(
    log_probs: np.ndarray,
    blank_cumsum: np.ndarray,
    start: int,
    end: int,
    last: np.ndarray,
    p_blank: np.ndarray,
    p_char: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Carry every prefix through frames ``start..end-1`` in which no character starts, at once.

    Frame by frame a prefix would only stay: ``blank' = (blank + char) * p(blank)`` and
    ``char' = char * p(last)``. Unrolled over the run (with ``B``, ``Q`` the cumulative log
    probabilities of the blank and of the prefix's last character):
    ``char_n = char_0 * Q[n]`` and ``blank_n = total_0 * B[n] + sum over j < n-1 of
    char_0 * Q[j+1] * B[n] / B[j+1]`` (the mass that left the character run after frame j).
    """
    n = end - start
    frames_q = np.cumsum(np.maximum(log_probs[start:end, last], _LOG_FLOOR), axis=0)  # Q[1..n]
    blank_run = blank_cumsum[start : end + 1] - blank_cumsum[start]  # B[0..n]
    total = np.logaddexp(p_blank, p_char)
    left_run = p_char + frames_q[: n - 1] + (blank_run[n] - blank_run[1:n])[:, None]
    new_blank = np.logaddexp(total + blank_run[n], np.logaddexp.reduce(left_run, axis=0))
    return new_blank, p_char + frames_q[n - 1]


def _constrained_search(
    log_probs: np.ndarray,
    probs: np.ndarray,
    table: _ClassTable,
    beam_width: int,
    prune_threshold: float,
) -> tuple[list[int], float, int] | None:
    """Most probable accepted label sequence: (labels, log p, format index), or None.

    Prefixes are nodes of a trie (parent, label, automaton state); ``child_of`` gives each prefix
    one node, so a prefix that leaves the beam and comes back is still merged with its extensions.
    """
    n_frames, n_classes = log_probs.shape
    capacity = 2 + max(n_frames - 1, 0) * beam_width + beam_width * n_classes
    root_parent = capacity - 1  # a node id that is never in the beam
    node_parent = np.full(capacity, root_parent, dtype=np.int64)
    node_label = np.zeros(capacity, dtype=np.int64)
    child_of = _child_table(capacity, n_classes)
    n_nodes = 1
    table.ensure(0)
    beam_position = np.full(capacity, -1, dtype=np.int64)
    column_of = np.full(n_classes, -1, dtype=np.int64)
    counting = np.arange(max(capacity, n_classes))
    no_mass = np.full(beam_width * n_classes, _NEG_INF)

    # The beam: prefix nodes, their last label, automaton state and log p (blank- / char-ending).
    nodes = np.zeros(1, dtype=np.int64)
    last = np.zeros(1, dtype=np.int64)
    state = np.zeros(1, dtype=np.int64)
    p_blank = np.zeros(1)
    p_char = np.full(1, _NEG_INF)
    # Per frame, the characters probable enough to start a run there (sorted by class).
    frame_hits, class_hits = np.nonzero(probs[:, 1:] >= prune_threshold)
    class_hits = class_hits + 1
    hit_log_probs = log_probs[frame_hits, class_hits]
    splits = np.searchsorted(frame_hits, np.arange(n_frames + 1)).tolist()
    blank_log_probs = log_probs[:, BLANK].tolist()
    # For each frame, the first frame from there on where some character may start.
    active_frames = np.flatnonzero(np.diff(splits) > 0)
    next_active = np.append(active_frames, n_frames)[np.searchsorted(active_frames, np.arange(n_frames))]
    next_active = next_active.tolist()
    blank_cumsum = np.concatenate([[0.0], np.cumsum(np.maximum(log_probs[:, BLANK], _LOG_FLOOR))])
    t = 0
    try:
        while t < n_frames:
            low, high = splits[t], splits[t + 1]
            if low == high and next_active[t] - t >= 2:
                t_end = min(next_active[t], n_frames)
                p_blank, p_char = _stay_through(log_probs, blank_cumsum, t, t_end, last, p_blank, p_char)
                t = t_end
                continue
            active = low < high
            if active:
                candidates = class_hits[low:high]
                next_states = table.next[state[:, None], candidates]
                allowed = next_states >= 0
                active = np.count_nonzero(allowed) > 0
            total = np.logaddexp(p_blank, p_char)
            stay_blank = total + blank_log_probs[t]
            stay_char = p_char + log_probs[t, last]  # the root has p_char = -inf, so its "last" is moot
            if not active:
                p_blank, p_char = stay_blank, stay_char
                t += 1
                continue
            n_beam, n_cand = len(nodes), high - low
            # Growing by a candidate; a repeated character needs a blank between, so it grows
            # from the blank-ending mass only.
            grow = np.where(candidates == last[:, None], p_blank[:, None], total[:, None])
            grow += hit_log_probs[low:high]
            grow[~allowed] = _NEG_INF
            # A prefix grown into a prefix already in the beam adds to that one instead.
            beam_position[nodes] = counting[:n_beam]
            column_of[candidates] = counting[:n_cand]
            parent_at = beam_position[node_parent[nodes]]
            column = column_of[last]
            beam_position[nodes] = -1
            column_of[candidates] = -1
            merge = np.flatnonzero((parent_at >= 0) & (column >= 0))
            if len(merge):
                rows, cols = parent_at[merge], column[merge]
                stay_char[merge] = np.logaddexp(stay_char[merge], grow[rows, cols])
                grow[rows, cols] = _NEG_INF

            scores = np.concatenate([np.logaddexp(stay_blank, stay_char), grow.ravel()])
            if t < n_frames - 1 and len(scores) > beam_width:
                chosen = np.argpartition(-scores, beam_width - 1)[:beam_width]
                chosen = np.sort(chosen[scores[chosen] > _NEG_INF])
            else:  # the last frame keeps every prefix, for the acceptance check
                chosen = np.flatnonzero(scores > _NEG_INF)
            split = int(np.searchsorted(chosen, n_beam))
            stays = chosen[:split]
            grow_rows, grow_cols = np.divmod(chosen[split:] - n_beam, n_cand)
            parents, labels = nodes[grow_rows], candidates[grow_cols]
            children = child_of[parents, labels].astype(np.int64)
            grown_states = next_states[grow_rows, grow_cols]
            fresh = np.flatnonzero(children < 0)
            if len(fresh):
                ids = counting[n_nodes : n_nodes + len(fresh)]
                n_nodes += len(fresh)
                children[fresh] = ids
                node_parent[ids], node_label[ids] = parents[fresh], labels[fresh]
                child_of[node_parent[ids], node_label[ids]] = ids
                table.ensure_many(grown_states[fresh])  # automaton rows are built on first visit only
            nodes = np.concatenate([nodes[stays], children])
            last = np.concatenate([last[stays], labels])
            state = np.concatenate([state[stays], grown_states])
            p_blank = np.concatenate([stay_blank[stays], no_mass[: len(children)]])
            p_char = np.concatenate([stay_char[stays], grow[grow_rows, grow_cols]])
            t += 1
    finally:
        child_of[node_parent[1:n_nodes], node_label[1:n_nodes]] = -1

    total = np.logaddexp(p_blank, p_char)
    accepted = table.accepting[state]
    total = np.where(accepted >= 0, total, _NEG_INF)
    if len(total) == 0 or total.max() == _NEG_INF:
        return None
    best = int(np.argmax(total))
    labels = []
    node = int(nodes[best])
    while node != 0:
        labels.append(int(node_label[node]))
        node = int(node_parent[node])
    return labels[::-1], float(total[best]), int(accepted[best])


def _best_alignment(log_probs: np.ndarray, labels: Sequence[int]) -> np.ndarray:
    """The most likely frame alignment of ``labels`` (Viterbi), as per-frame classes.

    Same result as :func:`edgeocr.core.ctc.ctc_best_alignment`, computed state by state instead
    of frame by frame: a path stays in a CTC state for one run of frames, so the best score of
    being in state ``s`` at frame ``t`` is ``cum[t] + max over entries t' <= t of (best score of a
    predecessor at t'-1 - cum[t'-1])``, a running maximum over time. That is a handful of numpy
    calls per state (2 per character) rather than per frame.
    """
    n_frames = len(log_probs)
    extended = np.zeros(2 * len(labels) + 1, dtype=np.int64)
    extended[1::2] = labels
    n_states = len(extended)
    if n_frames == 0:
        return np.zeros(0, dtype=np.int64)
    cum = np.cumsum(np.maximum(log_probs[:, extended], _LOG_FLOOR), axis=0)
    cum_before = np.vstack([np.zeros(n_states), cum[:-1]])
    skip = np.zeros(n_states, dtype=bool)
    skip[2:] = (extended[2:] != BLANK) & (extended[2:] != extended[:-2])
    best = np.empty((n_frames, n_states))  # best score in state s at frame t
    entry = np.empty((n_frames, n_states))  # score of entering state s at frame t, minus cum[t-1]
    for state in range(n_states):
        inflow = np.full(n_frames, _NEG_INF)
        if state < 2:
            inflow[0] = 0.0  # a path starts in the first blank or the first character
        if state >= 1:
            inflow[1:] = best[:-1, state - 1]
        if skip[state]:
            np.maximum(inflow[1:], best[:-1, state - 2], out=inflow[1:])
        entry[:, state] = inflow - cum_before[:, state]
        best[:, state] = cum[:, state] + np.maximum.accumulate(entry[:, state])

    state = n_states - 1
    if n_states > 1 and best[-1, n_states - 2] > best[-1, n_states - 1]:
        state = n_states - 2
    path = np.zeros(n_frames, dtype=np.int64)
    end = n_frames - 1
    while end >= 0:
        start = int(np.argmax(entry[: end + 1, state]))
        path[start : end + 1] = extended[state]
        if start == 0:
            break
        previous = state - 1
        if skip[state] and best[start - 1, state - 2] > best[start - 1, state - 1]:
            previous = state - 2
        state, end = previous, start - 1
    return path


def decode_constrained(
    probs: np.ndarray,
    charset: Charset | str,
    formats: FormatSet | Format | str | Mapping | Iterable,
    beam_width: int = 32,
    min_confidence: float = 0.0,
    prune_threshold: float = 1e-3,
) -> FormatRead:
    """Read the most probable string that fits one of ``formats`` from probabilities ``[T, C]``.

    ``probs`` are the network's softmax outputs (class 0 = blank, class i = ``charset.chars[i-1]``).
    The search is a CTC prefix beam search of ``beam_width`` prefixes that only grows a prefix
    along the formats' automaton, so check digits and date existence are enforced during the
    search. A character whose probability in a frame is below ``prune_threshold`` is not tried
    there: a format that needs characters the network gives no evidence for yields no valid read.
    ``min_confidence`` rejects a fitting read whose weakest character is less probable.
    ``formats`` is a :class:`FormatSet` (build it once and reuse it), a :class:`Format` or
    anything :class:`FormatSet` accepts (plain pattern strings are compiled once and cached).

    When the greedy read fits and its path alone has probability above 1/2, no other string can
    be more probable, so it is returned without a search (the common case for a clean read).
    """
    if beam_width < 1:
        raise ValueError(f"beam_width must be at least 1, got {beam_width}")
    charset = charset if isinstance(charset, Charset) else Charset(charset)
    format_set = _as_format_set(formats)
    raw = greedy_decode(probs, charset)  # also validates the shape against the charset
    probs = np.asarray(probs, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_probs = np.log(np.clip(probs, 0.0, None))
    raw_fields = {"raw_text": raw.text, "raw_confidence": raw.confidence}
    best_path = float(log_probs[np.arange(len(probs)), list(raw.path)].sum())

    raw_format = format_set.match(raw.text)
    if raw_format is not None and best_path > math.log(0.5):
        # The best path alone holds more than half of all probability, so its text is the most
        # probable string of all (every other string has less than half), and it fits: no search.
        line, format_name, log_probability = raw, raw_format, best_path
    else:
        found = _constrained_search(log_probs, probs, format_set._table(charset), beam_width, prune_threshold)
        if found is None:
            return FormatRead(
                text="",
                confidence=0.0,
                char_confidences=(),
                format_name=None,
                valid=False,
                reason=f"no string fitting {', '.join(format_set.names)} was found",
                **raw_fields,
            )
        labels, log_probability, format_index = found
        format_name = format_set.formats[format_index].name
        if charset.decode(labels) == raw.text:
            line = raw  # the argmax path is then the most likely alignment of this text
        else:
            line = line_from_alignment(probs, _best_alignment(log_probs, labels), charset, None)
    text_path = float(log_probs[np.arange(len(probs)), list(line.path)].sum())
    relative = math.exp(min(text_path - best_path, 0.0))
    if line.confidence < min_confidence:
        return FormatRead(
            text="",
            confidence=line.confidence,
            char_confidences=(),
            format_name=None,
            valid=False,
            log_probability=log_probability,
            relative_probability=relative,
            reason=(
                f"best fitting read {line.text!r} ({format_name}) has confidence {line.confidence:.3g}, "
                f"below min_confidence {min_confidence:.3g}"
            ),
            **raw_fields,
        )
    return FormatRead(
        text=line.text,
        confidence=line.confidence,
        char_confidences=line.char_confidences,
        format_name=format_name,
        valid=True,
        log_probability=log_probability,
        relative_probability=relative,
        **raw_fields,
    )
