"""Anthropic's Messages API through the gateway, with the official `anthropic` SDK."""

from __future__ import annotations

import anthropic
import httpx
import pytest

MESSAGES_MODEL = "claude-test"


@pytest.fixture
def claude_gateway(make_gateway, upstream):
    return make_gateway(models=[
        {"name": MESSAGES_MODEL, "model": "sim-claude", "api_base": upstream.api_base,
         "api_key": "sk-ant-upstream"}])


def client_for(gateway, **kwargs) -> anthropic.Anthropic:
    kwargs.setdefault("api_key", "sk-test")
    return anthropic.Anthropic(base_url=gateway.url, max_retries=0, **kwargs)


def create(client: anthropic.Anthropic, text: str, **kwargs):
    kwargs.setdefault("model", MESSAGES_MODEL)
    kwargs.setdefault("max_tokens", 64)
    raw = client.messages.with_raw_response.create(
        messages=[{"role": "user", "content": text}], **kwargs)
    return raw.headers, raw.parse()


def streamed(client: anthropic.Anthropic, text: str, **kwargs):
    kwargs.setdefault("model", MESSAGES_MODEL)
    kwargs.setdefault("max_tokens", 64)
    with client.messages.stream(messages=[{"role": "user", "content": text}], **kwargs) as s:
        events = [event.type for event in s]
        headers = s.response.headers
        return headers, s.get_final_message(), events


def test_plain_miss_then_hit(claude_gateway, upstream):
    client = client_for(claude_gateway)
    headers, first = create(client, "Hello Claude")
    assert headers["x-hitrate-cache"] == "miss" and first.stop_reason == "end_turn"
    headers, second = create(client, "Hello Claude")
    assert headers["x-hitrate-cache"] == "hit"
    assert second.content[0].text == first.content[0].text
    assert upstream.calls("messages") == 1
    sent = upstream.state.requests[-1]
    assert sent["model"] == "sim-claude"
    assert sent["_headers"]["anthropic-version"] == client.default_headers["anthropic-version"]


def test_a_client_without_anthropic_version_gets_the_default(claude_gateway, upstream):
    reply = httpx.post(f"{claude_gateway.url}/v1/messages", json={
        "model": MESSAGES_MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "v"}]})
    assert reply.status_code == 200, reply.text
    assert upstream.state.requests[-1]["_headers"]["anthropic-version"] == "2023-06-01"


def test_stream_is_stored_and_replayed(claude_gateway, upstream):
    client = client_for(claude_gateway)
    headers, first, events = streamed(client, "Stream, Claude")
    assert headers["x-hitrate-cache"] == "miss" and events[0] == "message_start"
    headers, replayed, events = streamed(client, "Stream, Claude")
    assert headers["x-hitrate-cache"] == "hit"
    assert replayed.content[0].text == first.content[0].text
    assert replayed.stop_reason == "end_turn" and events[-1] == "message_stop"
    headers, plain = create(client, "Stream, Claude")
    assert headers["x-hitrate-cache"] == "hit" and plain.content[0].text == first.content[0].text
    assert plain.usage.input_tokens == first.usage.input_tokens
    assert upstream.calls("messages") == 1


def test_thinking_and_tool_use_survive_capture_and_replay(claude_gateway, upstream):
    client = client_for(claude_gateway)
    tools = [{"name": "lookup", "input_schema": {"type": "object"}}]
    _, first, _ = streamed(client, "think then call [[thinking]]", tools=tools)
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    _, replayed, _ = streamed(client, "think then call [[thinking]]", tools=tools)
    assert [b.type for b in replayed.content] == ["thinking", "tool_use"]
    assert replayed.content[0].signature == first.content[0].signature
    assert replayed.content[1].input == first.content[1].input
    assert replayed.stop_reason == "tool_use"
    assert upstream.calls("messages") == 1


@pytest.mark.parametrize("marker", ["[[max_tokens]]", "[[refusal]]", "[[pause]]", "[[empty]]"])
def test_unfinished_messages_are_never_stored(claude_gateway, upstream, marker):
    client = client_for(claude_gateway)
    for _ in range(2):
        headers, _ = create(client, f"not stored {marker}")
        assert headers["x-hitrate-cache"] == "miss"
    for _ in range(2):
        streamed(client, f"not stored streamed {marker}")
    assert upstream.calls("messages") == 4 and claude_gateway.cache.stats.stores == 0


def test_error_event_mid_stream_is_not_stored(claude_gateway, upstream):
    client = client_for(claude_gateway)
    for _ in range(2):
        with pytest.raises(anthropic.APIStatusError):
            streamed(client, "overloaded [[overloaded]]")
    assert claude_gateway.cache.stats.stores == 0


def test_upstream_errors_pass_through_in_anthropics_shape(claude_gateway, upstream):
    client = client_for(claude_gateway)
    for _ in range(2):
        with pytest.raises(anthropic.InternalServerError) as caught:
            create(client, "boom [[error:500]]")
        assert caught.value.body["type"] == "error"
    assert upstream.calls("messages") == 2


def test_gateway_errors_are_anthropic_shaped(claude_gateway):
    reply = httpx.post(f"{claude_gateway.url}/v1/messages", json={
        "model": MESSAGES_MODEL, "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 400
    body = reply.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]
    unknown = httpx.post(f"{claude_gateway.url}/v1/messages", json={
        "model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found_error"


def test_x_api_key_is_checked_against_the_gateway_keys(make_gateway, upstream):
    gateway = make_gateway(models=[{"name": MESSAGES_MODEL, "api_base": upstream.api_base,
                                    "api_key": "sk-ant-upstream"}], master_key="sk-master-1")
    with pytest.raises(anthropic.AuthenticationError):
        create(client_for(gateway, api_key="wrong"), "hi")
    headers, _ = create(client_for(gateway, api_key="sk-master-1"), "hi")
    assert headers["x-hitrate-cache"] == "miss"


def test_beta_header_is_forwarded_and_keyed(claude_gateway, upstream):
    client = client_for(claude_gateway)
    create(client, "beta?", extra_headers={"anthropic-beta": "feature-a"})
    assert upstream.state.requests[-1]["_headers"]["anthropic-beta"] == "feature-a"
    headers, _ = create(client, "beta?", extra_headers={"anthropic-beta": "feature-b"})
    assert headers["x-hitrate-cache"] == "miss"
    headers, _ = create(client, "beta?", extra_headers={"anthropic-beta": "feature-a"})
    assert headers["x-hitrate-cache"] == "hit"


def test_prompt_caching_blocks_pass_through_untouched(claude_gateway, upstream):
    client = client_for(claude_gateway)
    system = [{"type": "text", "text": "Long shared context.",
               "cache_control": {"type": "ephemeral"}}]
    create(client, "with provider caching", system=system)
    assert upstream.state.requests[-1]["system"] == system


def test_count_tokens_passes_through(claude_gateway, upstream):
    client = client_for(claude_gateway)
    for _ in range(2):
        counted = client.messages.count_tokens(model=MESSAGES_MODEL,
                                               messages=[{"role": "user", "content": "a b c"}])
        assert counted.input_tokens == 11
    assert upstream.calls("count_tokens") == 2


def test_savings_read_anthropic_usage(claude_gateway, upstream):
    client = client_for(claude_gateway)
    create(client, "count my tokens")
    create(client, "count my tokens")
    totals = claude_gateway.cache.stats.savings.totals()
    assert totals.hits == 1
    assert totals.prompt_tokens == 3 + 8 + 4  # input + cache reads
    assert totals.completion_tokens > 0


async def test_library_wrapper_caches_messages(upstream):
    import hitrate

    cache = hitrate.Cache()
    sync = hitrate.cached_client(anthropic.Anthropic(base_url=upstream.url, api_key="sk-x",
                                                     max_retries=0), cache)
    kwargs = {"model": "sim-claude", "max_tokens": 32,
              "messages": [{"role": "user", "content": "library messages"}]}
    first = sync.messages.create(**kwargs)
    assert sync.messages.create(**kwargs).content[0].text == first.content[0].text
    async_client = hitrate.cached_client(anthropic.AsyncAnthropic(
        base_url=upstream.url, api_key="sk-x", max_retries=0), cache)
    third = await async_client.messages.create(**kwargs)
    assert third.content[0].text == first.content[0].text
    assert upstream.calls("messages") == 1 and cache.stats.hits == 2
