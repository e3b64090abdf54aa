"""Embeddings are cached per input item."""

from __future__ import annotations

import base64
import struct


def _embed(client, inputs, **kwargs):
    raw = client.embeddings.with_raw_response.create(model="gpt-test", input=inputs, **kwargs)
    return raw.headers, raw.parse()


def test_only_missing_items_go_upstream(client, upstream):
    _, first = _embed(client, ["alpha", "beta"])
    assert upstream.state.embedding_inputs == 2
    headers, second = _embed(client, ["alpha", "gamma", "beta"])
    assert upstream.state.embedding_inputs == 3  # only "gamma" was sent
    assert upstream.state.requests[-1]["input"] == ["gamma"]
    assert headers["x-hitrate-cache"] == "miss"
    assert headers["x-hitrate-cache-items-hit"] == "2/3"
    assert second.data[0].embedding == first.data[0].embedding
    assert second.data[2].embedding == first.data[1].embedding
    assert [d.index for d in second.data] == [0, 1, 2]
    headers, third = _embed(client, ["gamma", "alpha"])
    assert headers["x-hitrate-cache"] == "hit"
    assert upstream.calls("embedding") == 2
    assert third.usage.prompt_tokens > 0


def test_single_string_and_float_format(client, upstream):
    _embed(client, "one text", encoding_format="float")
    headers, again = _embed(client, "one text", encoding_format="float")
    assert headers["x-hitrate-cache"] == "hit"
    assert len(again.data[0].embedding) == 16
    assert upstream.calls("embedding") == 1


def test_base64_and_float_are_separate_entries(gateway, upstream):
    import httpx

    url = f"{gateway.url}/v1/embeddings"
    f = httpx.post(url, json={"model": "gpt-test", "input": "x", "encoding_format": "float"})
    b = httpx.post(url, json={"model": "gpt-test", "input": "x", "encoding_format": "base64"})
    assert b.headers["x-hitrate-cache"] == "miss"
    b2 = httpx.post(url, json={"model": "gpt-test", "input": "x", "encoding_format": "base64"})
    assert b2.headers["x-hitrate-cache"] == "hit"
    decoded = struct.unpack("<16f", base64.b64decode(b2.json()["data"][0]["embedding"]))
    floats = f.json()["data"][0]["embedding"]
    assert max(abs(x - y) for x, y in zip(decoded, floats, strict=True)) < 1e-6


def test_token_inputs(client, upstream):
    _embed(client, [[1, 2, 3], [4, 5]])
    headers, _ = _embed(client, [[4, 5]])
    assert headers["x-hitrate-cache"] == "hit"


def test_usage_adds_up_for_mixed_batches(client, upstream):
    _, fresh = _embed(client, ["a b c", "d e"])
    _, mixed = _embed(client, ["a b c", "d e"])
    assert mixed.usage.prompt_tokens == fresh.usage.prompt_tokens


def test_embedding_upstream_error_passes_through(make_gateway, upstream):
    import httpx

    gw = make_gateway(models=[{"name": "gpt-test", "api_base": upstream.url + "/nowhere"}])
    response = httpx.post(f"{gw.url}/v1/embeddings", json={"model": "gpt-test", "input": "x"})
    assert response.status_code == 404
