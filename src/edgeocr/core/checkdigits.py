"""Check digits of the code families that carry one (ISO 6346 containers, GS1 GTIN).

Used both to generate valid synthetic codes and, when reading, to validate them.
"""

from __future__ import annotations

import string

# ISO 6346 letter values: A=10 and counting up, skipping multiples of 11 (11, 22, 33).
ISO6346_VALUES: dict[str, int] = {str(d): d for d in range(10)}
_value = 10
for _letter in string.ascii_uppercase:
    if _value % 11 == 0:
        _value += 1
    ISO6346_VALUES[_letter] = _value
    _value += 1

ISO6346_CATEGORY_IDS = "UJZ"  # U freight container, J detachable equipment, Z trailer/chassis


def iso6346_check_digit(code10: str) -> int:
    """Check digit for the first ten characters (owner code, category id, serial) of a container code."""
    if len(code10) != 10 or not code10[:4].isalpha() or not code10[4:].isdigit():
        raise ValueError(f"not an ISO 6346 owner+category+serial: {code10!r}")
    total = sum(ISO6346_VALUES[c] * (1 << i) for i, c in enumerate(code10.upper()))
    return total % 11 % 10  # a remainder of 10 is written as 0


def iso6346_is_valid(code: str) -> bool:
    """True when an 11-character container code (spaces ignored) carries the right check digit."""
    compact = "".join(code.split()).upper()
    if len(compact) != 11 or not compact[10].isdigit():
        return False
    try:
        return iso6346_check_digit(compact[:10]) == int(compact[10])
    except ValueError:
        return False


def gs1_check_digit(digits: str) -> int:
    """GS1 mod-10 check digit (GTIN-8/12/13/14, SSCC) for the digits that precede it."""
    if not digits.isdigit():
        raise ValueError(f"GS1 payload must be digits: {digits!r}")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return (10 - total % 10) % 10


def gs1_is_valid(code: str) -> bool:
    """True when a GTIN-like digit string ends with its GS1 check digit."""
    return code.isdigit() and len(code) >= 2 and gs1_check_digit(code[:-1]) == int(code[-1])
