"""Dot-matrix glyphs for continuous-inkjet (CIJ) printing.

A hand-drawn 5x7 design (single-stroke, as CIJ printers print it) covers digits, capitals and the
punctuation that codes use. Taller grids (7x9 and up, the printers' "high" fonts) and characters the
5x7 design lacks are sampled from a TrueType font at the grid's resolution, which looks right once
there are enough rows. Glyphs are boolean arrays [rows, cols]; the renderer draws one dot per cell.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

# Each glyph: 7 rows of 5 cells, '#' = dot. Drawn for this project.
_FONT_5X7_ROWS: dict[str, str] = {
    "0": ".###. #...# #..## #.#.# ##..# #...# .###.",
    "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####",
    "3": "##### ...#. ..#.. ...#. ....# #...# .###.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.",
    "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": "..##. .#... #.... ####. #...# #...# .###.",
    "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.",
    "9": ".###. #...# #...# .#### ....# ...#. .##..",
    "A": ".###. #...# #...# ##### #...# #...# #...#",
    "B": "####. #...# #...# ####. #...# #...# ####.",
    "C": ".###. #...# #.... #.... #.... #...# .###.",
    "D": "###.. #..#. #...# #...# #...# #..#. ###..",
    "E": "##### #.... #.... ####. #.... #.... #####",
    "F": "##### #.... #.... ####. #.... #.... #....",
    "G": ".###. #...# #.... #.### #...# #...# .####",
    "H": "#...# #...# #...# ##### #...# #...# #...#",
    "I": ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "J": "..### ...#. ...#. ...#. ...#. #..#. .##..",
    "K": "#...# #..#. #.#.. ##... #.#.. #..#. #...#",
    "L": "#.... #.... #.... #.... #.... #.... #####",
    "M": "#...# ##.## #.#.# #.#.# #...# #...# #...#",
    "N": "#...# #...# ##..# #.#.# #..## #...# #...#",
    "O": ".###. #...# #...# #...# #...# #...# .###.",
    "P": "####. #...# #...# ####. #.... #.... #....",
    "Q": ".###. #...# #...# #...# #.#.# #..#. .##.#",
    "R": "####. #...# #...# ####. #.#.. #..#. #...#",
    "S": ".#### #.... #.... .###. ....# ....# ####.",
    "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "U": "#...# #...# #...# #...# #...# #...# .###.",
    "V": "#...# #...# #...# #...# #...# .#.#. ..#..",
    "W": "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.",
    "X": "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
    "Y": "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..",
    "Z": "##### ....# ...#. ..#.. .#... #.... #####",
    " ": "..... ..... ..... ..... ..... ..... .....",
    "-": "..... ..... ..... ##### ..... ..... .....",
    "/": "..... ....# ...#. ..#.. .#... #.... .....",
    ":": "..... .##.. .##.. ..... .##.. .##.. .....",
    ".": "..... ..... ..... ..... ..... .##.. .##..",
    ",": "..... ..... ..... ..... .##.. ..#.. .#...",
    "#": ".#.#. .#.#. ##### .#.#. ##### .#.#. .#.#.",
    "(": "...#. ..#.. .#... .#... .#... ..#.. ...#.",
    ")": ".#... ..#.. ...#. ...#. ...#. ..#.. .#...",
    "+": "..... ..#.. ..#.. ##### ..#.. ..#.. .....",
    "*": "..... ..#.. #.#.# .###. #.#.# ..#.. .....",
    "&": ".##.. #..#. #.#.. .#... #.#.# #..#. .##.#",
    "%": "##... ##..# ...#. ..#.. .#... #..## ...##",
}

# Other designs printers use for the same character, chosen once per printed code (``style``):
# a "1" with a diagonal flag and no foot (its flag's lowest dot stands apart, next to the stem,
# so it must not read as a "4"), the same with a foot, and a plain (unslashed) zero.
_FONT_5X7_VARIANT_ROWS: dict[str, tuple[str, ...]] = {
    "1": ("..#.. .##.. #.#.. ..#.. ..#.. ..#.. ..#..", "..#.. .##.. #.#.. ..#.. ..#.. ..#.. .###."),
    "0": (".###. #...# #...# #...# #...# #...# .###.",),
}


def _glyph(rows: str) -> np.ndarray:
    return np.array([[c == "#" for c in row] for row in rows.split()], dtype=bool)


FONT_5X7: dict[str, np.ndarray] = {ch: _glyph(rows) for ch, rows in _FONT_5X7_ROWS.items()}
FONT_5X7_DESIGNS: dict[str, tuple[np.ndarray, ...]] = {
    ch: (glyph, *(_glyph(rows) for rows in _FONT_5X7_VARIANT_ROWS.get(ch, ()))) for ch, glyph in FONT_5X7.items()
}
GLYPH_STYLES = 6  # styles cycle through every character's designs (2 and 3 of them): lcm(2, 3)
assert all(g.shape == (7, 5) for designs in FONT_5X7_DESIGNS.values() for g in designs)

# Grids CIJ printers offer: (columns, rows). 5x7 is the workhorse; 7x9 and taller are "high" fonts.
DOT_GRIDS: tuple[tuple[int, int], ...] = ((5, 7), (5, 5), (7, 9), (7, 11), (9, 13), (10, 16))


@lru_cache(maxsize=4096)
def sampled_glyph(char: str, cols: int, rows: int, font_path: str) -> np.ndarray:
    """A glyph sampled from a TrueType font onto a cols x rows grid (cap height = grid height)."""
    import cv2
    from PIL import Image, ImageDraw, ImageFont

    scale = 12
    font = ImageFont.truetype(font_path, rows * scale)
    cap_top, cap_bottom = font.getbbox("H")[1], font.getbbox("H")[3]
    width = max(int(font.getlength(char)), 1)
    canvas = Image.new("L", (width + 2 * scale, rows * scale * 2), 0)
    ImageDraw.Draw(canvas).text((scale, 0), char, font=font, fill=255)
    ink = np.asarray(canvas, dtype=np.float32)[cap_top:cap_bottom] / 255.0
    cols_in_use = ink.any(axis=0).nonzero()[0]
    if len(cols_in_use) == 0:
        return np.zeros((rows, cols), dtype=bool)
    # Centre the character's ink in a cell as wide as the grid (narrow glyphs such as "1" stay narrow).
    cell = cols * ink.shape[0] // rows
    mid = (cols_in_use[0] + cols_in_use[-1]) // 2
    left = max(mid - cell // 2, 0)
    window = np.zeros((ink.shape[0], cell), dtype=np.float32)
    part = ink[:, left : left + cell]
    window[:, : part.shape[1]] = part
    coverage = cv2.resize(window, (cols, rows), interpolation=cv2.INTER_AREA)
    return coverage > 0.33


def dot_glyph(char: str, cols: int, rows: int, fallback_font: str | None, style: int = 0) -> np.ndarray:
    """Glyph for ``char`` on a cols x rows grid: a hand-drawn design for 5x7, else sampled.

    ``style`` picks among the hand-drawn designs of a character (0: the first), so one printer
    prints every "1" of a code alike."""
    if (cols, rows) in ((5, 7), (5, 5)) and char in FONT_5X7_DESIGNS:
        designs = FONT_5X7_DESIGNS[char]
        glyph = designs[style % len(designs)]
        # Low 5x5 fonts drop rows 2 and 5 of the 5x7 design (keeps cap and base lines).
        return glyph if rows == 7 else glyph[[0, 1, 3, 5, 6]]
    if fallback_font is None:
        raise KeyError(f"no dot-matrix glyph for {char!r} on a {cols}x{rows} grid and no font to sample it from")
    return sampled_glyph(char, cols, rows, fallback_font)
