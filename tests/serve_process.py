"""`hitrate serve` as a real subprocess, for tests of what the console command does."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def hitrate_command() -> list[str]:
    exe = shutil.which("hitrate", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "hitrate.cli"]


@contextlib.contextmanager
def serve(config: Path, port: int | None = None, timeout: float = 60.0,
          env: dict[str, str] | None = None) -> Iterator[str]:
    """Starts `hitrate serve --config CONFIG`, waits for /health, yields its URL."""
    port = port or free_port()
    proc = subprocess.Popen([*hitrate_command(), "serve", "--config", str(config),
                             "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                output = proc.communicate(timeout=10)[0] if proc.poll() is not None else ""
                raise AssertionError(f"hitrate serve did not start: {output}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)
