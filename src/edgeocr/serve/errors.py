"""The one error shape of the HTTP service: ``{"error": {"code": ..., "message": ...}}``."""

from __future__ import annotations

from edgeocr.core.errors import EdgeOCRError

#: The code reported for a status when nothing more precise is known (framework errors).
DEFAULT_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "body_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    431: "headers_too_large",
    422: "invalid_request",
    500: "internal_error",
    503: "busy",
    504: "timeout",
}


#: Error messages are cut to this many characters: they never echo a request's data at length.
MAX_MESSAGE_CHARS = 600


def clip(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 40]}... ({len(text) - limit + 40} more characters)"


class RequestError(EdgeOCRError):
    """A request the service refuses: an HTTP status (4xx, or 504 for a timeout), a stable code and a message
    (clipped to :data:`MAX_MESSAGE_CHARS`)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        message = clip(message)
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    """The JSON body of every error answer (the message clipped)."""
    return {"error": {"code": code, "message": clip(message)}}
