"""The one error shape of the HTTP service: ``{"error": {"code": ..., "message": ...}}``."""

from __future__ import annotations

from edgeocr.core.errors import EdgeOCRError

#: The code reported for a status when nothing more precise is known (framework errors).
DEFAULT_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    500: "internal_error",
    504: "timeout",
}


class RequestError(EdgeOCRError):
    """A request the service refuses: an HTTP status (4xx, or 504 for a timeout), a stable code and a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    """The JSON body of every error answer."""
    return {"error": {"code": code, "message": message}}
