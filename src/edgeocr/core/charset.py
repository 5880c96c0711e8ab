"""The character set a recogniser reads, shared by synthetic data, training and inference.

Index 0 is the CTC blank; character ``i`` of the charset is class ``i + 1``. The charset travels
inside every exported model's sidecar so that a model can never be decoded with another one.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass, field

# Digits, both cases, space and the punctuation that industrial codes print.
INDUSTRIAL_PUNCTUATION = "-/:.,#()+*&%"
DEFAULT_CHARSET = string.digits + string.ascii_uppercase + string.ascii_lowercase + " " + INDUSTRIAL_PUNCTUATION
# Every printable ASCII character: the default charset, then the rest of the punctuation. Models
# imported from recognisers pretrained on real text use it, so that they keep reading the '?', '!',
# '@' or '$' of printed lines (the synthetic codes never print them; their source model does).
ASCII_CHARSET = DEFAULT_CHARSET + "".join(c for c in string.punctuation if c not in INDUSTRIAL_PUNCTUATION)
CHARSETS = {"default": DEFAULT_CHARSET, "ascii": ASCII_CHARSET}


@dataclass(frozen=True)
class Charset:
    """An ordered set of characters; class 0 is reserved for the CTC blank."""

    chars: str = DEFAULT_CHARSET
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.chars:
            raise ValueError("a charset needs at least one character")
        dupes = sorted({c for c in self.chars if self.chars.count(c) > 1})
        if dupes:
            raise ValueError(f"charset has duplicate characters: {''.join(dupes)!r}")
        if any(c in "\t\n\r" for c in self.chars):
            raise ValueError("charset may not contain tabs or newlines")
        object.__setattr__(self, "_index", {c: i + 1 for i, c in enumerate(self.chars)})

    @property
    def num_classes(self) -> int:
        """Number of output classes including the blank."""
        return len(self.chars) + 1

    @property
    def fingerprint(self) -> str:
        """Short stable hash, used to refuse a model decoded with the wrong charset."""
        return hashlib.sha256(self.chars.encode("utf-8")).hexdigest()[:16]

    def __contains__(self, char: str) -> bool:
        return char in self._index

    def unknown_chars(self, text: str) -> str:
        """Characters of ``text`` that the charset cannot represent, in order of first appearance."""
        return "".join(dict.fromkeys(c for c in text if c not in self._index))

    def encode(self, text: str) -> list[int]:
        """Class indices of ``text``; raises ValueError naming the characters it cannot encode."""
        missing = self.unknown_chars(text)
        if missing:
            raise ValueError(f"characters not in the charset: {missing!r}")
        return [self._index[c] for c in text]

    def decode(self, indices) -> str:
        """Text of class indices (blank, index 0, is skipped; no CTC collapsing here)."""
        return "".join(self.chars[i - 1] for i in indices if i > 0)
