"""Hostile request bodies and controls through a real gateway: API-shaped 400s, never a
500, a hang or an upstream call (issue 11)."""

from __future__ import annotations

import httpx
import orjson
import pytest

from hitrate import keys

CHAT = "/v1/chat/completions"
GOOD = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}


def _error(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["type"] == "invalid_request_error"
    return body["error"]


def _nested(depth: int) -> bytes:
    """`depth` levels of alternating lists and objects, as raw JSON."""
    return b'{"a":[' * (depth // 2) + b"1" + b"]}" * (depth // 2)


@pytest.mark.parametrize("depth", [80, 300, 600, 1016])  # + wrapper levels <= 1023
@pytest.mark.parametrize("where", ["extra", "content", "tools"])
def test_deeply_nested_json_is_400(gateway, upstream, depth, where):
    nested = _nested(depth)
    if where == "extra":
        body = orjson.dumps(GOOD)[:-1] + b',"vendor_knob":' + nested + b"}"
    elif where == "content":
        body = (b'{"model":"gpt-test","messages":[{"role":"user","content":[{"type":"text",'
                b'"text":"x","deep":' + nested + b"}]}]}")
    else:
        body = orjson.dumps(GOOD)[:-1] + b',"tools":[{"type":"function","function":' + nested + b"}]}"
    response = gateway.post(CHAT, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    error = _error(response)
    assert error["code"] == "too_deeply_nested"
    assert "nest" in error["message"]
    assert upstream.calls() == 0


def test_reasonable_nesting_still_works(gateway, upstream):
    # A JSON schema nested a dozen levels deep is ordinary in response_format / tools.
    schema: dict = {"type": "string"}
    for _ in range(12):
        schema = {"type": "object", "properties": {"x": schema}}
    body = {**GOOD, "response_format": {"type": "json_schema",
                                        "json_schema": {"name": "s", "schema": schema}}}
    first = gateway.post(CHAT, json=body)
    assert first.status_code == 200
    assert gateway.post(CHAT, json=body).headers["x-hitrate-cache"] == "hit"
    assert upstream.calls() == 1


def test_canonical_request_refuses_deep_values_without_recursing():
    value: object = 1
    for _ in range(100_000):  # far beyond Python's recursion limit
        value = [value]
    with pytest.raises(ValueError, match="nested"):
        keys.canonical_request({"model": "m", "x": value})
    assert keys.json_depth({"a": [[{"b": 1}]]}) == 4
    assert keys.json_depth(value, limit=10) == 11  # stops counting past the limit


@pytest.mark.parametrize("header", [b"max-age=\xb2", b"s-maxage=1\xb9", b"max-age=\xb3\xb2",
                                    "max-age=\uff11".encode(), b"max-age=+5", b"max-age=5 5"])
def test_non_ascii_digits_in_cache_control_are_400(gateway, upstream, header):
    # Header bytes reach the app as latin-1: 0xB2 is "\u00b2", which str.isdigit() accepts.
    response = gateway.post(CHAT, json=GOOD, headers={"cache-control": header})
    assert response.status_code == 400, response.text
    assert "Cache-Control" in _error(response)["message"]
    assert upstream.calls() == 0
