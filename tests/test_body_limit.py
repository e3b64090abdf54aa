"""The request body limit (gateway/limits.py): 413, OpenAI-shaped, without holding an
oversized body in memory."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import orjson
import pytest

from hitrate.config import parse_config
from hitrate.gateway.app import create_app
from hitrate.gateway.limits import MB
from hitrate.serving import BackgroundServer

CHAT = "/v1/chat/completions"
LIMIT_MB = 1


@pytest.fixture
def limited(upstream) -> Iterator[str]:
    config = parse_config({"models": [{"name": "gpt-test", "api_base": upstream.api_base}],
                           "server": {"max_request_body_mb": LIMIT_MB}})
    with BackgroundServer(create_app(config)) as server:
        yield server.url


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
    host, port = limited.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"POST {CHAT} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     f"content-length: {LIMIT_MB * MB + 1}\r\n\r\n".encode())
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)  # the answer comes though no body byte was sent
            if not chunk:
                break
            reply += chunk
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
