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
from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hitrate.errors import APIError

if TYPE_CHECKING:
    from hitrate.config import ServerConfig

MB = 1024 * 1024
DEFAULT_MAX_BODY_MB = 32.0  # a 1M-token prompt is ~4 MB of JSON; images ride as URLs
DEFAULT_BODY_TIMEOUT = 120.0  # 32 MB at 2 Mbit/s takes about as long


class _Refused(BaseException):
    """Raised from `receive` once the body breaks a limit; unwinds the app. A
    BaseException, like CancelledError, so no `except Exception` in the app turns it into
    a 500 page before this middleware answers with the real status (`_Body.refused`)."""


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
        # Bodies still arriving. One sweep timer for all of them, re-armed only while any
        # are in flight, instead of a timer per request (a hit paid ~10 us for its own).
        # A late body is cut within `_tick` after its deadline.
        self.reading: set[_Body] = set()
        self._tick = min(1.0, body_timeout / 4)
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, _too_large(self.max_bytes))
            return
        loop = asyncio.get_running_loop()
        body = _Body(receive, self, loop.time() + self.body_timeout,
                     asyncio.current_task(loop), loop.time)
        self.reading.add(body)
        if self._sweep is None or self._sweep_loop is not loop:
            self._arm(loop)
        try:
            await self.app(scope, body, send)
        except BaseException:
            # _Refused itself, or whatever the app made of it (an exception group): the
            # app has sent nothing, since a refusal comes while the body is still read.
            if body.refused is None:
                raise
        finally:
            self.reading.discard(body)
        if body.refused is not None:
            await self._refuse(send, body.refused)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweep_loop = loop
        self._sweep = loop.call_later(self._tick, self._expire_late, loop)

    def _expire_late(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweep = None
        if not self.reading:
            return  # idle: the next request re-arms
        now = loop.time()
        for body in list(self.reading):
            if now >= body.deadline:
                body.expire()
        self._arm(loop)

    @staticmethod
    async def _refuse(send: Send, error: APIError) -> None:
        body = error.body_bytes()
        # Close the connection: the rest of the body is still on the wire, unread.
        await send({"type": "http.response.start", "status": error.status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class _Body:
    """One request's body read: counts bytes, knows its deadline. A plain object with
    slots, not closures: this runs on every request, hits included."""

    __slots__ = (
        "clock",
        "deadline",
        "done",
        "expired",
        "limit",
        "receive",
        "received",
        "refused",
        "task",
        "waiting",
    )

    def __init__(self, receive: Receive, limit: BodyLimit, deadline: float,
                 task: asyncio.Task | None, clock: Callable[[], float]):
        self.clock = clock
        self.receive = receive
        self.limit = limit
        self.deadline = deadline
        self.task = task
        self.received = 0
        self.done = False
        self.waiting = False
        self.expired = False
        self.refused: APIError | None = None

    def expire(self) -> None:
        """Called by the sweep once the deadline has passed: cancel the waiting read."""
        if self.waiting and not self.done and self.task is not None:
            self.expired = True
            self.task.cancel()

    def refuse(self, error: APIError) -> _Refused:
        self.refused = error
        return _Refused(error.status)

    async def __call__(self) -> Message:
        if self.done:
            return await self.receive()  # e.g. a streaming response waiting for disconnect
        limit = self.limit
        if self.received and self.clock() >= self.deadline:  # a chunked body still dripping
            raise self.refuse(_too_slow(limit.body_timeout))
        self.waiting = True
        try:
            message = await self.receive()
        except asyncio.CancelledError:
            if not self.expired:
                raise
            if self.task is not None:
                self.task.uncancel()
            raise self.refuse(_too_slow(limit.body_timeout)) from None
        finally:
            self.waiting = False
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > limit.max_bytes:
                raise self.refuse(_too_large(limit.max_bytes))
            if not message.get("more_body", False):
                self.done = True
                limit.reading.discard(self)
        return message


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server rejects a malformed length itself
    return None
