"""Request errors and how each API spells them.

Vertex AI answers with Google's error shape (``{"error": {"code", "message", "status"}}``),
the OpenAI route with OpenAI's (``{"error": {"message", "type", "param", "code"}}``).
"""

from __future__ import annotations

from typing import Any

# Google's canonical status names for the HTTP codes the service returns.
_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    405: "INVALID_ARGUMENT",
    413: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_OPENAI_TYPE = {500: "server_error", 503: "server_error"}


class ServiceError(Exception):
    """A request the service refuses or cannot answer now.

    Attributes:
      status_code: the HTTP status.
      message: what was wrong, naming the field (``instances[3]``, ``dimensions``).
      param: the request field at fault, when there is one (OpenAI's ``param``).
    """

    def __init__(self, status_code: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.param = param


def vertex_error_body(status_code: int, message: str) -> dict[str, Any]:
    """Google's error body, as Vertex AI returns it."""
    status = _GOOGLE_STATUS.get(status_code, "UNKNOWN")
    return {"error": {"code": status_code, "message": message, "status": status}}


def openai_error_body(status_code: int, message: str, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error body."""
    kind = _OPENAI_TYPE.get(status_code, "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}
