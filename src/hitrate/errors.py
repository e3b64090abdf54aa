"""OpenAI-shaped errors: `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

from typing import Any

import orjson


class APIError(Exception):
    """An error the gateway reports to the client with a status code."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.code, self.param)

    def body_bytes(self) -> bytes:
        return orjson.dumps(self.body())


def error_body(message: str, type_: str = "invalid_request_error", code: str | None = None,
               param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def bad_request(message: str, param: str | None = None, code: str = "invalid_value") -> APIError:
    return APIError(400, message, "invalid_request_error", code, param)


# Anthropic's error types by status (https://docs.anthropic.com/en/api/errors).
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                    403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                    429: "rate_limit_error", 529: "overloaded_error"}


def anthropic_error_bytes(exc: APIError) -> bytes:
    """`exc` shaped like Anthropic's API: {"type": "error", "error": {"type", "message"}}."""
    kind = _ANTHROPIC_TYPES.get(exc.status) or ("api_error" if exc.status >= 500
                                                else "invalid_request_error")
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": exc.message}})
