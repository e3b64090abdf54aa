"""uvicorn's httptools protocol with two bounds uvicorn lacks: a deadline for reading a
request's headers, and a cap on open connections.

Without them a client that opens connections and sends its headers a byte at a time (or
nothing at all) holds each connection, and its file descriptor, forever. uvicorn already
closes a keep-alive connection idle between requests (`timeout_keep_alive`); here the
headers of every request - the first on a connection, or the next on a kept-alive one -
must arrive within `header_timeout` seconds of the connection opening or the request's
first byte, or the connection is closed. A connection opened while `max_connections` are
already open is answered 503 and closed at once, before anything is read.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_BUSY_BODY = (b'{"error":{"message":"too many open connections","type":"server_error",'
              b'"param":null,"code":"too_many_connections"}}')
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
         b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY))


class GuardedHttpProtocol(HttpToolsProtocol):
    header_timeout: float = 15.0
    max_connections: int | None = None

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.max_connections is not None and len(self.connections) > self.max_connections:
            transport.write(_BUSY)
            transport.close()
            return
        self._arm_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()  # the next request on a kept-alive connection

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:  # measured from the first byte, not reset per chunk
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(header_timeout: float, max_connections: int | None) -> type[GuardedHttpProtocol]:
    """A protocol class for `uvicorn.Config(http=...)` with these bounds."""
    if header_timeout <= 0 or (max_connections is not None and max_connections < 1):
        raise ValueError("header_timeout must be > 0 and max_connections >= 1")
    return type("HitrateHttpProtocol", (GuardedHttpProtocol,),
                {"header_timeout": header_timeout, "max_connections": max_connections})
