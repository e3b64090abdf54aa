"""Slow and idle clients of `hitrate serve`'s server (hitrate/http_protocol.py): headers
sent a byte at a time are cut off at the header deadline, and connections beyond the cap
are refused, while normal requests keep working."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from hitrate.config import parse_config
from hitrate.serving import BackgroundServer
from tests import serve_process

DEADLINE = 30.0  # generous: the machine may be busy; the server's own timeout is short


async def hello(request):
    return PlainTextResponse("hello")


APP = Starlette(routes=[Route("/", hello)])


@contextlib.contextmanager
def server(**bounds) -> Iterator[tuple[str, int]]:
    with BackgroundServer(APP, **bounds) as running:
        yield running.host, running.port


def closed_by_server(sock: socket.socket, drip: bytes = b"", within: float = DEADLINE) -> bool:
    """Sends `drip` a byte at a time (then nothing) until the server closes the
    connection or `within` seconds pass. True if the server closed it without a response."""
    sock.settimeout(0.05)
    deadline = time.monotonic() + within
    sent = 0
    while time.monotonic() < deadline:
        if sent < len(drip):
            try:
                sock.send(drip[sent:sent + 1])
            except OSError:
                return True  # reset: closed
            sent += 1
        try:
            data = sock.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            return True
        return data == b""
    return False


SLOW_HEADERS = b"GET / HTTP/1.1\r\nhost: x\r\n" + b"x-slow: " + b"a" * 100_000


def test_headers_sent_a_byte_at_a_time_are_cut_off():
    with server(header_timeout=0.5) as (host, port):
        sockets = [socket.create_connection((host, port)) for _ in range(20)]
        try:
            assert all(closed_by_server(s, SLOW_HEADERS) for s in sockets)
            assert httpx.get(f"http://{host}:{port}/", timeout=DEADLINE).text == "hello"
        finally:
            for s in sockets:
                s.close()


def test_a_connection_that_sends_nothing_is_closed():
    with server(header_timeout=0.5) as (host, port), \
            socket.create_connection((host, port)) as sock:
        assert closed_by_server(sock)


def test_the_next_request_on_a_kept_alive_connection_has_a_deadline_too():
    with server(header_timeout=0.5, keep_alive_timeout=60) as (host, port), \
            socket.create_connection((host, port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        reply = b""
        while not reply.endswith(b"hello"):
            reply += sock.recv(4096)
        assert reply.startswith(b"HTTP/1.1 200")
        assert closed_by_server(sock, SLOW_HEADERS)


def test_connections_beyond_the_cap_are_refused_with_503():
    with server(header_timeout=60, max_connections=3) as (host, port):
        idle = [socket.create_connection((host, port)) for _ in range(3)]
        try:
            with socket.create_connection((host, port), timeout=DEADLINE) as extra:
                reply = b""
                while chunk := extra.recv(4096):
                    reply += chunk
            assert reply.startswith(b"HTTP/1.1 503")
            assert b"too_many_connections" in reply
        finally:
            for s in idle:
                s.close()
        deadline = time.monotonic() + DEADLINE  # the server notices the closes, then serves
        while True:
            try:
                if httpx.get(f"http://{host}:{port}/", timeout=DEADLINE).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "never served again after connections closed"
            time.sleep(0.05)


def test_server_config_defaults():
    server_config = parse_config({}).server
    assert (server_config.header_timeout, server_config.keep_alive_timeout,
            server_config.max_connections) == (15.0, 5.0, 4096)
    with pytest.raises(Exception, match="header_timeout"):
        parse_config({"server": {"header_timeout": 0}})


def test_hitrate_serve_applies_the_configured_header_timeout(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("server: {header_timeout: 0.5}\ncache: {enabled: false}\n")
    with serve_process.serve(config) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:
            # 20x the configured 0.5 s, and less than the 15 s default it would get if the
            # config's value were not applied.
            assert closed_by_server(sock, SLOW_HEADERS, within=10)
        assert httpx.get(f"{url}/health", timeout=DEADLINE).status_code == 200
