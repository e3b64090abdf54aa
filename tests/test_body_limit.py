"""The request body limit (gateway/limits.py): 413, OpenAI-shaped, without holding an
oversized body in memory."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import StreamingResponse
from starlette.routing import Route

from hitrate.config import parse_config
from hitrate.gateway.app import create_app
from hitrate.gateway.limits import MB, BodyLimit
from hitrate.serving import BackgroundServer
from tests import serve_process

CHAT = "/v1/chat/completions"
LIMIT_MB = 1


BODY_TIMEOUT = 0.5
DEADLINE = 30.0  # generous: the machine may be busy


@pytest.fixture
def limited(upstream) -> Iterator[str]:
    config = parse_config({"models": [{"name": "gpt-test", "api_base": upstream.api_base}],
                           "server": {"max_request_body_mb": LIMIT_MB,
                                      "body_timeout": BODY_TIMEOUT}})
    with BackgroundServer(create_app(config)) as server:
        yield server.url


def _raw_post(url: str, head: bytes, drip: bytes) -> bytes:
    """Sends request headers, then `drip` a byte every 50 ms, then waits for the answer
    (b"" if none came within DEADLINE). Keep `drip` short: a byte landing after the
    server has closed makes it reset the connection, which can discard its answer."""
    host, port = url.removeprefix("http://").split(":")
    reply = b""
    with socket.create_connection((host, int(port)), timeout=DEADLINE) as sock:
        sock.sendall(head)
        sock.settimeout(0.05)
        deadline = time.monotonic() + DEADLINE
        sent = 0
        while time.monotonic() < deadline:
            if sent < len(drip):
                with contextlib.suppress(OSError):
                    sock.send(drip[sent:sent + 1])
                sent += 1
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            reply += chunk
    return reply


def _body(size: int) -> bytes:
    head = b'{"model":"gpt-test","messages":[{"role":"user","content":"'
    tail = b'"}]}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def _assert_413(response: httpx.Response) -> None:
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "request_too_large" and error["type"] == "invalid_request_error"
    assert "max_request_body_mb" in error["message"]


def test_a_body_under_the_limit_passes(limited, upstream):
    response = httpx.post(limited + CHAT, content=_body(LIMIT_MB * MB - 10),
                          headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 200
    assert upstream.calls() == 1


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(limited,
                                                                             upstream):
    # The answer comes though no body byte is ever sent.
    reply = _raw_post(limited, f"POST {CHAT} HTTP/1.1\r\nhost: x\r\ncontent-type: "
                      f"application/json\r\ncontent-length: {LIMIT_MB * MB + 1}\r\n\r\n"
                      .encode(), b"")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert orjson.loads(body)["error"]["code"] == "request_too_large"
    assert upstream.calls() == 0


def test_a_chunked_body_is_cut_off_at_the_limit(limited, upstream):
    sent = []

    def chunks() -> Iterator[bytes]:
        body = _body(4 * LIMIT_MB * MB)
        for start in range(0, len(body), 64 * 1024):
            sent.append(start)
            yield body[start:start + 64 * 1024]

    try:
        response = httpx.post(limited + CHAT, content=chunks(), timeout=30,
                              headers={"content-type": "application/json"})
    except httpx.HTTPError:
        # The server may close before the client has written everything; then it must
        # still have answered 413 rather than read on (checked below via the upstream).
        response = None
    if response is not None:
        _assert_413(response)
    assert upstream.calls() == 0


def test_limit_applies_to_every_route(limited):
    response = httpx.post(limited + "/v1/embeddings", content=_body(2 * LIMIT_MB * MB),
                          timeout=30)
    _assert_413(response)


def test_limit_config():
    assert parse_config({}).server.max_request_body_mb == 32
    assert parse_config({}).server.body_timeout == 120
    litellm = parse_config({"model_list": [],
                            "general_settings": {"max_request_size_mb": 5}})
    assert litellm.server.max_request_body_mb == 5
    with pytest.raises(Exception, match="max_request_body_mb"):
        parse_config({"server": {"max_request_body_mb": 0}})


def test_keep_alive_connection_is_closed_after_a_413(limited):
    with httpx.Client(timeout=30) as client:
        response = client.post(limited + CHAT, content=_body(2 * LIMIT_MB * MB))
        _assert_413(response)
        assert response.headers["connection"] == "close"
        assert client.get(limited + "/health").status_code == 200  # on a new connection


def test_a_body_dripped_a_byte_at_a_time_gets_408(limited, upstream):
    body = _body(4000)  # announced in full; three bytes of it are ever sent
    reply = _raw_post(limited, f"POST {CHAT} HTTP/1.1\r\nhost: x\r\ncontent-type: "
                      f"application/json\r\ncontent-length: {len(body)}\r\n\r\n".encode(),
                      body[:3])
    head, _, payload = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), reply[:200]
    error = orjson.loads(payload)["error"]
    assert error["code"] == "request_timeout" and "body_timeout" in error["message"]
    assert upstream.calls() == 0


def test_a_response_streamed_for_longer_than_the_body_timeout_is_not_cut():
    async def slow_stream(request):
        await request.body()

        async def chunks():
            for i in range(4):
                await asyncio.sleep(BODY_TIMEOUT / 2)
                yield f"chunk {i}\n".encode()

        return StreamingResponse(chunks())  # listens on receive() for the disconnect

    app = Starlette(routes=[Route("/s", slow_stream, methods=["POST"])],
                    middleware=[Middleware(BodyLimit, max_bytes=1000,
                                           body_timeout=BODY_TIMEOUT)])
    with BackgroundServer(app) as server:
        response = httpx.post(server.url + "/s", content=b"x" * 100, timeout=DEADLINE)
    assert response.status_code == 200
    assert response.text == "".join(f"chunk {i}\n" for i in range(4))


def test_hitrate_serve_enforces_the_configured_limit(tmp_path, upstream):
    config = tmp_path / "config.yaml"
    config.write_text(f"models: [{{name: gpt-test, api_base: '{upstream.api_base}'}}]\n"
                      "server: {max_request_body_mb: 1}\n")
    with serve_process.serve(config) as url:
        _assert_413(httpx.post(url + CHAT, content=_body(2 * MB), timeout=DEADLINE))
        ok = httpx.post(url + CHAT, content=_body(MB - 10), timeout=DEADLINE,
                        headers={"content-type": "application/json"})
        assert ok.status_code == 200
    assert upstream.calls() == 1
