"""Request body limits - size and time - as a pure ASGI middleware.

A body larger than `max_bytes` is refused with an OpenAI-shaped 413 without being held
in memory: a `Content-Length` over the limit is refused before anything is read, and a
body without one (chunked) is counted while it streams in and cut off at the limit.
A body that has not fully arrived `body_timeout` seconds after the request's headers
(a client dripping it a byte at a time) gets a 408. Bodies within both limits pass
through untouched, chunk by chunk; once a body is complete nothing is timed (a long
streamed response keeps listening for the client's disconnect).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hitrate.errors import APIError

if TYPE_CHECKING:
    from hitrate.config import ServerConfig

MB = 1024 * 1024
DEFAULT_MAX_BODY_MB = 32.0  # a 1M-token prompt is ~4 MB of JSON; images ride as URLs
DEFAULT_BODY_TIMEOUT = 120.0  # 32 MB at 2 Mbit/s takes about as long


class _Refused(Exception):
    """Raised from `receive` once the body breaks a limit; unwinds the app."""

    def __init__(self, error: APIError):
        super().__init__(error.status)
        self.error = error


def _too_large(max_bytes: int) -> APIError:
    return APIError(413, f"request body is larger than the gateway's limit of {max_bytes} "
                    "bytes (server.max_request_body_mb)", "invalid_request_error",
                    "request_too_large")


def _too_slow(seconds: float) -> APIError:
    return APIError(408, f"request body did not arrive within {seconds:g} s "
                    "(server.body_timeout)", "invalid_request_error", "request_timeout")


def middleware(server: ServerConfig) -> Middleware:
    """The limits of a `ServerConfig`, for `Starlette(middleware=[...])`."""
    return Middleware(BodyLimit, max_bytes=int(server.max_request_body_mb * MB),
                      body_timeout=server.body_timeout)


class BodyLimit:
    """Wrap an ASGI app: `BodyLimit(app, max_bytes, body_timeout=...)`."""

    def __init__(self, app: ASGIApp, max_bytes: int = int(DEFAULT_MAX_BODY_MB * MB),
                 body_timeout: float = DEFAULT_BODY_TIMEOUT):
        if max_bytes <= 0 or body_timeout <= 0:
            raise ValueError("max_bytes and body_timeout must be positive")
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, _too_large(self.max_bytes))
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout
        task = asyncio.current_task()
        received = 0
        body_done = False
        waiting = expired = False
        refused: APIError | None = None
        started = False

        def expire() -> None:
            # One timer per request (not an asyncio.timeout per receive: that cost a hit
            # about a tenth of its CPU): cancel the read still waiting for the body.
            nonlocal expired
            if waiting and not body_done and task is not None:
                expired = True
                task.cancel()

        timer = loop.call_at(deadline, expire)

        async def limited_receive() -> Message:
            nonlocal received, body_done, refused, waiting
            if body_done:
                return await receive()  # e.g. a streaming response waiting for disconnect
            if loop.time() >= deadline:
                refused = _too_slow(self.body_timeout)
                raise _Refused(refused)
            waiting = True
            try:
                message = await receive()
            except asyncio.CancelledError:
                if not expired:
                    raise
                if task is not None:
                    task.uncancel()
                refused = _too_slow(self.body_timeout)
                raise _Refused(refused) from None
            finally:
                waiting = False
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = _too_large(self.max_bytes)
                    raise _Refused(refused)
                body_done = not message.get("more_body", False)
                if body_done:
                    timer.cancel()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused is not None:
                return  # the app's reaction to _Refused (a 500 page): replaced by ours
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _Refused:
            pass
        except Exception:
            if refused is None:
                raise
        finally:
            timer.cancel()
        if refused is not None and not started:
            await self._refuse(send, refused)

    @staticmethod
    async def _refuse(send: Send, error: APIError) -> None:
        body = error.body_bytes()
        # Close the connection: the rest of the body is still on the wire, unread.
        await send({"type": "http.response.start", "status": error.status,
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
