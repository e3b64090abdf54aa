"""Hostile request bodies and controls through a real gateway: API-shaped 400s, never a
500, a hang or an upstream call (issue 11)."""

from __future__ import annotations

from urllib.parse import quote

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


# -- namespaces --------------------------------------------------------------------------


def _chat(gw, text: str, namespace: str | None = None, **headers: str) -> httpx.Response:
    body = {**GOOD, "messages": [{"role": "user", "content": text}]}
    if namespace is not None:
        body["cache"] = {"namespace": namespace}
    return gw.post(CHAT, json=body, headers=headers)


@pytest.mark.parametrize("namespace", ["faq\n", "faq\r\nx-evil: 1", "a\tb", "nul\x00", "bad space",
                                       "zero\u200bwidth", "x" * 129, ""])
def test_namespaces_that_cannot_be_a_key_or_header_are_400(gateway, upstream, namespace):
    for _ in range(2):  # the repeat too: nothing was stored
        response = _chat(gateway, "hi", namespace)
        assert response.status_code == 400, response.text
        assert "cache.namespace" in _error(response)["message"]
    assert upstream.calls() == 0


@pytest.mark.parametrize("namespace", ["user:12345", "team/a", "café", "50%", "a" * 128])
def test_namespaces_with_colons_and_other_printables_work(gateway, upstream, namespace):
    first = _chat(gateway, "hello", namespace)
    assert first.status_code == 200
    assert first.headers["x-hitrate-cache"] == "miss"
    key = first.headers["x-hitrate-cache-key"]
    assert key.isascii() and key.startswith(keys.namespace_prefix(namespace))
    assert key.count(":") == 4  # hitrate:v1:<namespace>:<kind>:<digest>
    assert _chat(gateway, "hello", namespace).headers["x-hitrate-cache"] == "hit"
    assert _chat(gateway, "hello").headers["x-hitrate-cache"] == "miss"  # default namespace
    assert upstream.calls() == 2


def test_flushing_a_namespace_leaves_one_that_extends_it_with_a_colon(make_gateway, upstream):
    gw = make_gateway(master_key="sk-master")
    admin = {"authorization": "Bearer sk-master"}
    for namespace in ("user", "user:12345", "user:12345:a"):
        assert _chat(gw, "q", namespace, **admin).headers["x-hitrate-cache"] == "miss"
    key = _chat(gw, "q", "user:12345", **admin).headers["x-hitrate-cache-key"]
    # A key is URL-escaped like any path segment (its `%` too).
    entry = httpx.get(f"{gw.url}/cache/entries/{quote(key, safe='')}", headers=admin).json()
    assert entry["namespace"] == "user:12345"
    response = httpx.delete(f"{gw.url}/cache/namespaces/user", headers=admin)
    assert response.json() == {"deleted": 1, "namespace": "user"}
    assert _chat(gw, "q", "user:12345", **admin).headers["x-hitrate-cache"] == "hit"
    assert _chat(gw, "q", "user:12345:a", **admin).headers["x-hitrate-cache"] == "hit"
    assert _chat(gw, "q", "user", **admin).headers["x-hitrate-cache"] == "miss"
    # A namespace with a colon is flushed by its own name (percent-encoded in the URL or not).
    for path in ("user%3A12345", "user:12345"):
        httpx.delete(f"{gw.url}/cache/namespaces/{path}", headers=admin).raise_for_status()
        assert _chat(gw, "q", "user:12345", **admin).headers["x-hitrate-cache"] == "miss"
    assert _chat(gw, "q", "user:12345:a", **admin).headers["x-hitrate-cache"] == "hit"


def test_namespace_key_encoding():
    assert keys.encode_namespace("prod-1.a_b") == "prod-1.a_b"  # old keys are unchanged
    assert keys.encode_namespace("user:1") == "user%3A1"
    assert keys.encode_namespace("50%") == "50%25"
    for namespace in ("user:1", "50%", "café", "a/b"):
        assert keys.decode_namespace(keys.encode_namespace(namespace)) == namespace
    assert not keys.namespace_prefix("user:1").startswith(keys.namespace_prefix("user"))


# -- TTL and age ranges -----------------------------------------------------------------


@pytest.mark.parametrize(("cache", "field"), [
    ({"ttl": 1e16}, "cache.ttl"), ({"ttl": 1e308}, "cache.ttl"),
    ({"ttl": 10 * 365 * 86400 + 1}, "cache.ttl"), ({"s-maxage": 1e308}, "cache.s-maxage"),
])
def test_out_of_range_ttl_and_age_are_400(gateway, upstream, cache, field):
    response = gateway.post(CHAT, json={**GOOD, "cache": cache})
    assert response.status_code == 400, response.text
    assert field in _error(response)["message"]
    assert upstream.calls() == 0


def test_ttl_and_age_limits_in_process():
    from hitrate.controls import MAX_SECONDS, ControlError, parse_controls

    assert MAX_SECONDS == 10 * 365 * 86400
    assert parse_controls({"ttl": MAX_SECONDS}, None).ttl == MAX_SECONDS
    for bad in (float("inf"), float("nan"), MAX_SECONDS * 2):
        with pytest.raises(ControlError):
            parse_controls({"ttl": bad}, None)
        with pytest.raises(ControlError):
            parse_controls({"s-maxage": bad}, None)
    # A huge header age means "any age" (RFC 9111 caps delta-seconds): capped, not refused.
    assert parse_controls(None, "max-age=" + "9" * 400).max_age == MAX_SECONDS


def test_config_ttl_is_range_checked():
    from hitrate.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"cache\.ttl"):
        parse_config({"cache": {"ttl": 1e16}})
    with pytest.raises(ConfigError, match=r"kv\.remote_ttl"):
        parse_config({"kv": {"remote_ttl": 1e308}})
    with pytest.raises(ConfigError, match=r"cache\.tiered\.l1_ttl"):
        parse_config({"cache": {"tiered": {"l1_ttl": 1e308}}})


@pytest.mark.parametrize("namespace", ["user:12345", "a/b%#?"])
def test_cli_flushes_a_namespace_with_url_special_characters(make_gateway, upstream, namespace):
    import subprocess
    import sys

    gw = make_gateway(master_key="sk-master")
    admin = {"authorization": "Bearer sk-master"}
    assert _chat(gw, "q", namespace, **admin).headers["x-hitrate-cache"] == "miss"
    assert _chat(gw, "q", "user", **admin).headers["x-hitrate-cache"] == "miss"
    result = subprocess.run([sys.executable, "-m", "hitrate.cli", "flush", "--url", gw.url,
                             "--key", "sk-master", "--yes", "--namespace", namespace],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "deleted 1 entries" in result.stdout
    assert _chat(gw, "q", namespace, **admin).headers["x-hitrate-cache"] == "miss"
    assert _chat(gw, "q", "user", **admin).headers["x-hitrate-cache"] == "hit"
