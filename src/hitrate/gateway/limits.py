"""Request body size limit, as a pure ASGI middleware.

A body larger than `max_bytes` is refused with an OpenAI-shaped 413 without being held
in memory: a `Content-Length` over the limit is refused before anything is read, and a
body without one (chunked) is counted while it streams in and cut off at the limit.
Bodies under the limit pass through untouched, chunk by chunk.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hitrate.errors import APIError

MB = 1024 * 1024
DEFAULT_MAX_BODY_MB = 32.0  # a 1M-token prompt is ~4 MB of JSON; images ride as URLs


class _TooLarge(Exception):
    """Raised from `receive` once the body passes the limit; unwinds the app."""


def _too_large(max_bytes: int) -> APIError:
    return APIError(413, f"request body is larger than the gateway's limit of {max_bytes} "
                    "bytes (server.max_request_body_mb)", "invalid_request_error",
                    "request_too_large")


class BodyLimit:
    """Wrap an ASGI app: `BodyLimit(app, max_bytes)`."""

    def __init__(self, app: ASGIApp, max_bytes: int = int(DEFAULT_MAX_BODY_MB * MB)):
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        refused = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the app's reaction to _TooLarge (a 500 page): replaced by our 413
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            pass
        except Exception:
            if not refused:
                raise
        if refused and not started:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = _too_large(self.max_bytes).body_bytes()
        # Close the connection: the rest of the body is still on the wire, unread.
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server rejects a malformed length itself
    return None
