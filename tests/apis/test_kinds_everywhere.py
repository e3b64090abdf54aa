"""The new kinds take part in everything the old ones do: semantic hits, tenants,
controls, coalescing and metrics."""

from __future__ import annotations

import asyncio

import anthropic
import httpx
import openai

from tests.conftest import NO_DEADLINE
from tests.ops.conftest import KEY_A, KEY_B, MASTER

CLAUDE = {"name": "claude-test", "api_base": None, "api_key": "sk-ant"}


def _models(upstream):
    return [{"name": "gpt-test", "model": "sim-model", "api_base": upstream.api_base,
             "api_key": "sk-up"}, {**CLAUDE, "api_base": upstream.api_base}]


def _claude(gateway, key="sk-test"):
    return anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)


def _message(client, text, **extra):
    raw = client.messages.with_raw_response.create(
        model="claude-test", max_tokens=32, messages=[{"role": "user", "content": text}],
        **extra)
    return raw.headers, raw.parse()


def test_semantic_hits_on_responses_and_messages(make_gateway, upstream):
    gateway = make_gateway(models=_models(upstream), cache={"semantic": {**NO_DEADLINE}})
    client = gateway.client()
    first = client.responses.create(model="gpt-test", input="How do I learn Python?",
                                    instructions="Be brief.")
    raw = client.responses.with_raw_response.create(model="gpt-test",
                                                    input="How can I learn Python?",
                                                    instructions="Be brief.")
    assert raw.headers["x-hitrate-cache-kind"] == "semantic"
    assert raw.headers["x-litellm-semantic-similarity"] == \
        raw.headers["x-hitrate-semantic-similarity"]
    assert raw.parse().output_text == first.output_text
    # Other instructions are another scope: never a semantic candidate.
    other = client.responses.with_raw_response.create(model="gpt-test",
                                                      input="How can I learn Python?",
                                                      instructions="Answer in French.")
    assert other.headers["x-hitrate-cache"] == "miss"
    claude = _claude(gateway)
    _, original = _message(claude, "How do I learn Python?")
    headers, paraphrase = _message(claude, "How can I learn Python?")
    assert headers["x-hitrate-cache-kind"] == "semantic"
    assert paraphrase.content[0].text == original.content[0].text


def test_tenants_are_isolated_on_messages(make_gateway, upstream):
    gateway = make_gateway(models=_models(upstream), master_key=MASTER,
                           keys=[{"key": KEY_A, "tenant": "a"}, {"key": KEY_B, "tenant": "b"}])
    headers_a, _ = _message(_claude(gateway, KEY_A), "tenant secret")
    assert _message(_claude(gateway, KEY_A), "tenant secret")[0]["x-hitrate-cache"] == "hit"
    headers_b, _ = _message(_claude(gateway, KEY_B), "tenant secret")
    assert headers_b["x-hitrate-cache"] == "miss"
    assert headers_b["x-hitrate-cache-key"] != headers_a["x-hitrate-cache-key"]


def test_controls_apply_to_the_new_kinds(make_gateway, upstream):
    gateway = make_gateway(models=_models(upstream))
    claude = _claude(gateway)
    _message(claude, "controlled", extra_body={"cache": {"no-store": True}})
    assert _message(claude, "controlled")[0]["x-hitrate-cache"] == "miss"
    assert _message(claude, "controlled")[0]["x-hitrate-cache"] == "hit"
    headers, _ = _message(claude, "controlled", extra_headers={"cache-control": "no-cache"})
    assert headers["x-hitrate-cache"] == "bypass"
    bad = httpx.post(f"{gateway.url}/v1/messages", json={
        "model": "claude-test", "max_tokens": 5, "cache": {"ttl": "soon"},
        "messages": [{"role": "user", "content": "x"}]})
    assert bad.status_code == 400 and bad.json()["type"] == "error"
    client = gateway.client()
    raw = client.responses.with_raw_response.create(
        model="gpt-test", input="namespaced", extra_body={"cache": {"namespace": "team-a"}})
    assert ":team-a:responses:" in raw.headers["x-hitrate-cache-key"]


async def test_identical_concurrent_messages_share_one_call(make_gateway, upstream):
    gateway = make_gateway(models=_models(upstream))
    upstream.state.latency = (0.3, 0.3)
    client = anthropic.AsyncAnthropic(base_url=gateway.url, api_key="sk-test", max_retries=0)
    replies = await asyncio.gather(*[client.messages.create(
        model="claude-test", max_tokens=16, messages=[{"role": "user", "content": "together"}])
        for _ in range(6)])
    assert len({r.content[0].text for r in replies}) == 1
    assert upstream.calls("messages") == 1
    responses = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="sk-test",
                                   max_retries=0)
    answers = await asyncio.gather(*[responses.responses.create(
        model="gpt-test", input="together too") for _ in range(6)])
    assert len({a.output_text for a in answers}) == 1
    assert upstream.calls("responses") == 1


def test_metrics_have_an_endpoint_label_per_kind(make_gateway, upstream):
    gateway = make_gateway(models=_models(upstream))
    _message(_claude(gateway), "metered")
    gateway.client().responses.create(model="gpt-test", input="metered")
    text = httpx.get(f"{gateway.url}/metrics").text
    assert 'hitrate_requests_total{endpoint="messages",outcome="miss"} 1.0' in text
    assert 'hitrate_requests_total{endpoint="responses",outcome="miss"} 1.0' in text


def test_semantic_metrics(make_gateway, upstream):
    gateway = make_gateway(models=_models(upstream), cache={"semantic": {**NO_DEADLINE,
                                                                  "max_text_chars": 50}})
    client = gateway.client()
    client.chat.completions.create(model="gpt-test",
                                   messages=[{"role": "user", "content": "x" * 80}])
    client.chat.completions.create(model="gpt-test",
                                   messages=[{"role": "user", "content": "short question"}])
    text = httpx.get(f"{gateway.url}/metrics").text
    assert 'hitrate_semantic_skipped_total{reason="too_long"} 1.0' in text
    assert "hitrate_semantic_lookups_total 2.0" in text
