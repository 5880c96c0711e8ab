"""Find the system fonts that print processes draw with, grouped by the look they give.

Fonts come from Debian's packages (fonts-dejavu, fonts-liberation2, fonts-freefont-ttf,
fonts-urw-base35, fonts-dseg, fonts-dotgothic16), installed by ``make fonts``, or from directories the
user names. Nothing is downloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edgeocr.core.errors import FontError

DEFAULT_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts")
FONT_SUFFIXES = {".ttf", ".otf"}
DEBIAN_FONT_PACKAGES = (
    "fonts-dejavu-core fonts-dejavu-extra fonts-liberation2 fonts-freefont-ttf "
    "fonts-urw-base35 fonts-dseg fonts-dotgothic16"
)

# Fonts that cannot print codes: symbols, dingbats, math, script faces.
_EXCLUDED = ("symbol", "dingbat", "d050000l", "math", "z003", "standardsymbols")


@dataclass(frozen=True)
class FontLibrary:
    """System fonts by look. ``text`` is every font that prints letters and digits."""

    text: tuple[str, ...]
    bold: tuple[str, ...]
    mono: tuple[str, ...]
    seven_segment: tuple[str, ...]
    fourteen_segment: tuple[str, ...]
    dot: tuple[str, ...]

    def require(self, group: str) -> tuple[str, ...]:
        fonts = getattr(self, group)
        if not fonts:
            raise FontError(
                f"no '{group}' font found. Install Debian's fonts with `make fonts` "
                f"(apt-get install {DEBIAN_FONT_PACKAGES}) or pass --fonts DIR"
            )
        return fonts


def _font_dirs(extra: list[str] | None) -> list[Path]:
    """User directories first, then EDGEOCR_FONT_DIRS, then the system's (unless
    EDGEOCR_NO_SYSTEM_FONTS=1, for runs that must not depend on what the machine has installed)."""
    dirs = [Path(d).expanduser() for d in (extra or [])]
    env = os.environ.get("EDGEOCR_FONT_DIRS")
    if env:
        dirs += [Path(d).expanduser() for d in env.split(os.pathsep) if d]
    if os.environ.get("EDGEOCR_NO_SYSTEM_FONTS", "") not in ("", "0"):
        return dirs
    return dirs + [Path(d).expanduser() for d in DEFAULT_FONT_DIRS]


def discover_fonts(extra_dirs: list[str] | None = None) -> FontLibrary:
    """Scan font directories; ``extra_dirs`` must exist and hold at least one font each."""
    for d in extra_dirs or []:
        path = Path(d).expanduser()
        if not path.is_dir():
            raise FontError(f"font directory {path} does not exist")
        if not any(p.suffix.lower() in FONT_SUFFIXES for p in path.rglob("*")):
            raise FontError(f"font directory {path} holds no .ttf or .otf font")
    found: list[Path] = []
    for d in _font_dirs(extra_dirs):
        if d.is_dir():
            found += sorted(p for p in d.rglob("*") if p.suffix.lower() in FONT_SUFFIXES and p.is_file())
    # Sorted, de-duplicated by file name: the same seed must pick the same font on every machine.
    by_name = {}
    for p in found:
        by_name.setdefault(p.name, str(p))
    names = sorted(by_name)
    lower = {n: n.lower() for n in names}

    def pick(pred) -> tuple[str, ...]:
        return tuple(by_name[n] for n in names if pred(lower[n]))

    usable = [n for n in names if not any(x in lower[n] for x in _EXCLUDED)]
    usable_set = set(usable)
    seven = pick(lambda n: n.startswith("dseg7"))
    fourteen = pick(lambda n: n.startswith("dseg14"))
    dot = pick(lambda n: "dotgothic" in n)
    special = set(pick(lambda n: n.startswith("dseg"))) | set(dot)
    text = tuple(by_name[n] for n in usable if by_name[n] not in special and n in usable_set)
    bold = tuple(f for f in text if any(k in Path(f).name.lower() for k in ("bold", "demi", "black", "heavy")))
    mono = tuple(f for f in text if any(k in Path(f).name.lower() for k in ("mono", "courier", "cousine")))
    return FontLibrary(text=text, bold=bold, mono=mono, seven_segment=seven, fourteen_segment=fourteen, dot=dot)
