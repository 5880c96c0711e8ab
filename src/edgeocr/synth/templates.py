"""Industrial code formats as data: a YAML catalogue of templates that users can extend.

A template is one to four lines of a code block (``LOT {X:7}`` / ``EXP {exp:%m/%Y}``). Each line is
literal text with fields in braces:

=====================  ====================================================================
``{d:N}``/``{d:N-M}``  N (or N to M) digits; likewise ``A`` capitals, ``X`` capitals and digits,
                       ``a`` lower case, ``x`` letters of both cases and digits, ``H`` hex digits
``{exp:FMT}``          an expiry date after the anchor date (``%d %m %y %Y %b %j %H %M %S``)
``{mfg:FMT}``          a production date and time before the anchor date
``{date:FMT}``         any date within three years of the anchor date
``{one:A|B|C}``        one of the literals
``{iso6346}``          a container code with its check digit (``:spaced``, ``:compact``, ``:owner``)
``{gtin:N}``           an N-digit GS1 number (8, 12, 13, 14) with its check digit
=====================  ====================================================================

Dates are built with :mod:`datetime`, so every date exists. The anchor date is fixed per dataset,
never "today", so the same seed gives the same data on any day.
"""

from __future__ import annotations

import datetime as dt
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgeocr.core.charset import DEFAULT_CHARSET, Charset
from edgeocr.core.checkdigits import ISO6346_CATEGORY_IDS, gs1_check_digit, iso6346_check_digit
from edgeocr.core.errors import TemplateError

PRINT_PROCESSES = ("inkjet", "thermal", "laser", "etched", "embossed", "stamped", "painted", "segment")

_CLASSES = {
    "d": string.digits,
    "A": string.ascii_uppercase,
    "X": string.ascii_uppercase + string.digits,
    "a": string.ascii_lowercase,
    "x": string.ascii_letters + string.digits,
    "H": "0123456789ABCDEF",
}
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DATE_DIRECTIVES = set("dmyYbjHMS")
_FIELD_RE = re.compile(r"\{([A-Za-z0-9]+)(?::([^{}]*))?\}")

Part = Callable[[np.random.Generator, "SamplingContext"], str]


@dataclass(frozen=True)
class SamplingContext:
    """What fields of one code block share: the dataset's anchor date."""

    anchor: dt.datetime


class TemplateSpec(BaseModel):
    """One code format, as written in the catalogue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Unique name, used in error messages and sample metadata.")
    category: str = Field(description="Family: lot, date, serial, container, gtin, free, block, ...")
    weight: float = Field(default=1.0, gt=0, description="Relative frequency when sampling.")
    lines: list[str] = Field(min_length=1, max_length=4, description="One pattern per printed line.")
    processes: list[str] | None = Field(
        default=None, description="Print processes this code appears in; all when omitted."
    )
    vertical: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Probability of printing a one-line code vertically, "
        "one upright character under the next (as on container doors).",
    )

    @field_validator("processes")
    @classmethod
    def _known_processes(cls, value: list[str] | None) -> list[str] | None:
        unknown = sorted(set(value or []) - set(PRINT_PROCESSES))
        if unknown:
            raise ValueError(f"unknown print process {unknown}; known: {list(PRINT_PROCESSES)}")
        return value


class CatalogueSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(default=1, description="Catalogue format version.")
    templates: list[TemplateSpec] = Field(min_length=1)


def _count(arg: str | None, where: str) -> tuple[int, int]:
    if arg is None:
        raise TemplateError(f"{where}: needs a length, e.g. {{d:6}} or {{d:4-8}}")
    m = re.fullmatch(r"(\d+)(?:-(\d+))?", arg.strip())
    if not m:
        raise TemplateError(f"{where}: length {arg!r} is not N or N-M")
    lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
    if not (0 <= lo <= hi <= 64 and hi >= 1):
        raise TemplateError(f"{where}: length {arg!r} must satisfy 0 <= N <= M <= 64, M >= 1")
    return lo, hi


def _format_date(value: dt.datetime, fmt: str) -> str:
    out, i = [], 0
    while i < len(fmt):
        if fmt[i] == "%" and i + 1 < len(fmt):
            code = fmt[i + 1]
            out.append(_MONTHS[value.month - 1] if code == "b" else value.strftime("%" + code))
            i += 2
        else:
            out.append(fmt[i])
            i += 1
    return "".join(out)


def _compile_field(kind: str, arg: str | None, where: str) -> Part:
    if kind in _CLASSES:
        alphabet = _CLASSES[kind]
        lo, hi = _count(arg, where)

        def chars(rng: np.random.Generator, ctx: SamplingContext) -> str:
            n = int(rng.integers(lo, hi + 1))
            return "".join(alphabet[i] for i in rng.integers(0, len(alphabet), n))

        return chars
    if kind in ("exp", "mfg", "date"):
        fmt = arg or "%d/%m/%Y"
        directives = set(re.findall(r"%(.)", fmt))
        if not directives or directives - _DATE_DIRECTIVES:
            raise TemplateError(f"{where}: date format {fmt!r} must use only %d %m %y %Y %b %j %H %M %S")
        # Day ranges relative to the anchor: expiry ahead, production behind.
        lo_days, hi_days = {"exp": (30, 5 * 365), "mfg": (-2 * 365, 0), "date": (-3 * 365, 3 * 365)}[kind]

        def date(rng: np.random.Generator, ctx: SamplingContext) -> str:
            offset = dt.timedelta(days=int(rng.integers(lo_days, hi_days + 1)), minutes=int(rng.integers(0, 1440)))
            return _format_date(ctx.anchor + offset, fmt)

        return date
    if kind == "one":
        options = (arg or "").split("|")
        if len(options) < 2:
            raise TemplateError(f"{where}: {{one:...}} needs at least two options separated by '|'")
        return lambda rng, ctx: options[int(rng.integers(0, len(options)))]
    if kind == "iso6346":
        style = arg or "spaced"
        if style not in ("spaced", "compact", "owner"):
            raise TemplateError(f"{where}: iso6346 style {style!r} is not spaced, compact or owner")

        def container(rng: np.random.Generator, ctx: SamplingContext) -> str:
            owner = "".join(string.ascii_uppercase[i] for i in rng.integers(0, 26, 3))
            category = ISO6346_CATEGORY_IDS[0] if rng.random() < 0.9 else ISO6346_CATEGORY_IDS[int(rng.integers(1, 3))]
            serial = "".join(str(d) for d in rng.integers(0, 10, 6))
            check = iso6346_check_digit(owner + category + serial)
            if style == "compact":
                return f"{owner}{category}{serial}{check}"
            if style == "owner":
                return f"{owner}{category}"
            return f"{owner}{category} {serial} {check}"

        return container
    if kind == "gtin":
        if arg not in ("8", "12", "13", "14"):
            raise TemplateError(f"{where}: gtin length must be 8, 12, 13 or 14, not {arg!r}")
        n = int(arg)

        def gtin(rng: np.random.Generator, ctx: SamplingContext) -> str:
            body = "".join(str(d) for d in rng.integers(0, 10, n - 1))
            return body + str(gs1_check_digit(body))

        return gtin
    known = sorted(list(_CLASSES) + ["exp", "mfg", "date", "one", "iso6346", "gtin"])
    raise TemplateError(f"{where}: unknown field {{{kind}}}; known fields: {', '.join(known)}")


def compile_pattern(pattern: str, where: str, charset: Charset) -> list[Part]:
    """Split a line pattern into literal and field parts, checking every literal against the charset."""
    parts: list[Part] = []
    pos = 0
    for m in _FIELD_RE.finditer(pattern):
        parts.append(_literal(pattern[pos : m.start()], where, charset))
        parts.append(_compile_field(m.group(1), m.group(2), f"{where}, field {m.group(0)}"))
        pos = m.end()
    parts.append(_literal(pattern[pos:], where, charset))
    return [p for p in parts if p is not None]


def _literal(text: str, where: str, charset: Charset) -> Part | None:
    if "{" in text or "}" in text:
        raise TemplateError(f"{where}: unbalanced brace in {text!r}")
    missing = charset.unknown_chars(text)
    if missing:
        raise TemplateError(f"{where}: characters {missing!r} are not in the charset")
    return (lambda rng, ctx: text) if text else None


@dataclass(frozen=True)
class CodeTemplate:
    """A compiled template: sample() gives the text of each printed line."""

    spec: TemplateSpec
    source: str
    compiled_lines: tuple[tuple[Part, ...], ...]

    def sample(self, rng: np.random.Generator, ctx: SamplingContext) -> list[str]:
        return [" ".join("".join(p(rng, ctx) for p in line).split()) for line in self.compiled_lines]


@dataclass(frozen=True)
class Catalogue:
    """All templates in use, with their sampling weights."""

    templates: tuple[CodeTemplate, ...]

    def __post_init__(self) -> None:
        weights = np.array([t.spec.weight for t in self.templates], dtype=np.float64)
        object.__setattr__(self, "_cumulative", np.cumsum(weights / weights.sum()))

    def pick(self, rng: np.random.Generator) -> CodeTemplate:
        index = int(np.searchsorted(self._cumulative, rng.random(), side="right"))
        return self.templates[min(index, len(self.templates) - 1)]


def default_catalogue_path() -> Path:
    return Path(str(resources.files("edgeocr.synth") / "catalogue" / "codes.yaml"))


def load_catalogue(
    paths: list[Path | str] | None = None, charset: Charset | None = None, include_default: bool = True
) -> Catalogue:
    """Load the built-in catalogue and/or user YAML files; any defect raises TemplateError."""
    charset = charset or Charset(DEFAULT_CHARSET)
    files = ([default_catalogue_path()] if include_default else []) + [Path(p) for p in paths or []]
    if not files:
        raise TemplateError("no template catalogue given")
    templates: list[CodeTemplate] = []
    seen: dict[str, str] = {}
    for path in files:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise TemplateError(f"{path}: cannot read template catalogue ({exc.strerror or exc})") from exc
        except yaml.YAMLError as exc:
            raise TemplateError(f"{path}: not valid YAML: {exc}") from exc
        try:
            spec = CatalogueSpec.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
            raise TemplateError(f"{path}: malformed template catalogue: {problems}") from exc
        for t in spec.templates:
            if t.name in seen:
                raise TemplateError(f"{path}: template '{t.name}' is already defined in {seen[t.name]}")
            seen[t.name] = str(path)
            if t.vertical and len(t.lines) > 1:
                raise TemplateError(f"{path}: template '{t.name}': only one-line codes can be vertical")
            compiled = tuple(
                tuple(compile_pattern(line, f"{path}: template '{t.name}', line {i + 1}", charset))
                for i, line in enumerate(t.lines)
            )
            templates.append(CodeTemplate(spec=t, source=str(path), compiled_lines=compiled))
    return Catalogue(templates=tuple(templates))
