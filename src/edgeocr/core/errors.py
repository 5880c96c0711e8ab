"""Errors the user can act on. The CLI prints their message and exits non-zero without a traceback."""


class EdgeOCRError(Exception):
    """Base class: a problem with the user's input, files or environment, explained in the message."""


class TemplateError(EdgeOCRError):
    """A code template (YAML catalogue) is malformed; the message names the file and the template."""


class FontError(EdgeOCRError):
    """A font that a print process needs is missing or unreadable."""


class OutputError(EdgeOCRError):
    """The output cannot be written (unwritable, full disk, existing output)."""


class ModelError(EdgeOCRError):
    """An exported model cannot be used: missing, modified or malformed files; the message names them."""


class ImageError(EdgeOCRError):
    """An input image has a type or shape the recogniser cannot read."""


class Interrupted(EdgeOCRError):
    """The run was stopped by Ctrl-C or SIGTERM; partial outputs were removed."""


class DataError(EdgeOCRError):
    """A dataset or label file is missing, empty or malformed; the message names the file and line."""


def read_text_or_raise(path, error: type[EdgeOCRError], missing: str, what: str, encoding: str = "utf-8") -> str:
    """The text of ``path``; a missing file raises ``error(missing)``, an unreadable one ``error``
    naming ``what`` and the file, so every loader reports file problems the same way."""
    try:
        return path.read_text(encoding=encoding)
    except FileNotFoundError:
        raise error(missing) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read {what} {path}: {exc}") from exc
