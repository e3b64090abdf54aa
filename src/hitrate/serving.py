"""Running ASGI apps with uvicorn: in the foreground (`hitrate serve`) or on a
background thread with an ephemeral port (demo, tests, benchmarks)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import uvicorn

from hitrate.http_protocol import guarded_protocol

# Defaults of ServerConfig's connection bounds (hitrate/config.py), for callers without one.
HEADER_TIMEOUT = 15.0
KEEP_ALIVE_TIMEOUT = 5.0
MAX_CONNECTIONS = 4096


def uvicorn_config(app: Any, host: str, port: int, *, header_timeout: float = HEADER_TIMEOUT,
                   keep_alive_timeout: float = KEEP_ALIVE_TIMEOUT,
                   max_connections: int | None = MAX_CONNECTIONS,
                   **overrides: Any) -> uvicorn.Config:
    # uvicorn (uvloop + httptools) beat granian by ~20% on hit throughput and p99 in
    # benchmarks/gateway.py, so it is the server; its httptools protocol, with a header
    # deadline and a connection cap (hitrate/http_protocol.py) against slow clients.
    options: dict[str, Any] = {"loop": "uvloop",
                               "http": guarded_protocol(header_timeout, max_connections),
                               "timeout_keep_alive": keep_alive_timeout,
                               "log_level": "warning", "access_log": False, "lifespan": "on",
                               "timeout_graceful_shutdown": 5}
    options.update(overrides)
    return uvicorn.Config(app, host=host, port=port, **options)


def serve(app: Any, host: str, port: int, server: Any = None) -> None:
    """Run in the foreground; `server` is a `ServerConfig` (connection bounds)."""
    bounds: dict[str, Any] = {}
    if server is not None:
        bounds = {"header_timeout": server.header_timeout,
                  "keep_alive_timeout": server.keep_alive_timeout,
                  "max_connections": server.max_connections}
    uvicorn.Server(uvicorn_config(app, host, port, **bounds)).run()


class BackgroundServer:
    """`with BackgroundServer(app) as server: server.url` - a real server on 127.0.0.1."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, **overrides: Any):
        self.server = uvicorn.Server(uvicorn_config(app, host, port, **overrides))
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self.host = host
        self.port = port
        self._thread = threading.Thread(target=self._run, daemon=True, name="hitrate-server")
        self.loop: asyncio.AbstractEventLoop | None = None

    def _run(self) -> None:
        self.server.run()

    def start(self, timeout: float = 20.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server failed to start")
            time.sleep(0.005)
        sockets = self.server.servers[0].sockets
        self.port = sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
