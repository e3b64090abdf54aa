"""The exact cache through the real gateway, driven by the official openai SDK."""

from __future__ import annotations

import pytest

from tests.conftest import ask, stream_text


def test_repeat_is_served_from_cache(client, upstream):
    h1, first = ask(client, "What is HTTP?")
    h2, second = ask(client, "What is HTTP?")
    assert h1["x-hitrate-cache"] == "miss"
    assert h2["x-hitrate-cache"] == "hit"
    assert second.choices[0].message.content == first.choices[0].message.content
    assert upstream.calls("chat") == 1
    key = h1["x-hitrate-cache-key"]
    assert key.startswith("hitrate:v1:default:chat:")
    assert h2["x-hitrate-cache-key"] == key == h2["x-litellm-cache-key"]
    assert h1["x-hitrate-cache-age"] == "0"
    assert int(h2["x-hitrate-cache-age"]) >= 0


def test_different_parameters_are_different_entries(client, upstream):
    ask(client, "q")
    ask(client, "q", temperature=0.5)
    ask(client, "q", temperature=0.5, max_tokens=50)
    ask(client, "q", seed=3)
    ask(client, "q", model="gpt-test", stop=["\n"])
    assert upstream.calls("chat") == 5
    headers, _ = ask(client, "q", temperature=0.50)
    assert headers["x-hitrate-cache"] == "hit"


def test_excluded_fields_do_not_split_the_cache(client, upstream):
    ask(client, "same")
    headers, _ = ask(client, "same", user="alice", metadata={"trace": "1"},
                     extra_body={"request_id": "r-1"})
    assert headers["x-hitrate-cache"] == "hit"
    assert upstream.calls("chat") == 1


def test_stream_miss_then_stream_hit_replays_a_stream(client, upstream):
    h1, text1, chunks1 = stream_text(client, "stream this please")
    h2, text2, chunks2 = stream_text(client, "stream this please")
    assert h1["x-hitrate-cache"] == "miss" and h2["x-hitrate-cache"] == "hit"
    assert h2["content-type"].startswith("text/event-stream")
    assert text1 == text2 and text1.startswith("Answer #1")
    assert len(chunks1) > 3 and len(chunks2) >= 2
    assert chunks2[-1].choices[0].finish_reason == "stop"
    assert upstream.calls("chat") == 1


def test_stored_stream_serves_plain_request_and_vice_versa(client, upstream):
    _, streamed, _ = stream_text(client, "from a stream")
    headers, plain = ask(client, "from a stream")
    assert headers["x-hitrate-cache"] == "hit"
    assert plain.choices[0].message.content == streamed
    assert plain.choices[0].finish_reason == "stop"

    _, plain2 = ask(client, "from plain")
    headers, streamed2, _ = stream_text(client, "from plain")
    assert headers["x-hitrate-cache"] == "hit"
    assert streamed2 == plain2.choices[0].message.content
    assert upstream.calls("chat") == 2


def test_stream_hit_includes_usage_when_asked(client, upstream):
    ask(client, "usage please")
    _, _, chunks = stream_text(client, "usage please", stream_options={"include_usage": True})
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


TOOLS = [{"type": "function", "function": {
    "name": "search", "description": "search the web",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}]


def test_tool_calls_are_cached(client, upstream):
    _, first = ask(client, "find cats", tools=TOOLS)
    headers, second = ask(client, "find cats", tools=TOOLS)
    assert headers["x-hitrate-cache"] == "hit"
    call = second.choices[0].message.tool_calls[0]
    assert call.function.name == "search"
    assert call.function.arguments == first.choices[0].message.tool_calls[0].function.arguments
    assert upstream.calls("chat") == 1


def test_streamed_tool_calls_are_reassembled_and_cached(client, upstream):
    stream_text(client, "stream tools", tools=TOOLS)
    headers, plain = ask(client, "stream tools", tools=TOOLS)
    assert headers["x-hitrate-cache"] == "hit"
    call = plain.choices[0].message.tool_calls[0]
    assert call.function.name == "search"
    assert '"query"' in call.function.arguments
    assert plain.choices[0].finish_reason == "tool_calls"
    # and replayed as a stream with the same call
    _, _, replayed = stream_text(client, "stream tools", tools=TOOLS)
    calls = [tc for c in replayed if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls and calls[0].function.arguments == call.function.arguments
    assert upstream.calls("chat") == 1


@pytest.mark.parametrize("marker", ["[[length]]", "[[filter]]", "[[empty]]"])
def test_unusable_answers_are_not_stored(client, upstream, marker):
    ask(client, f"bad {marker}")
    headers, _ = ask(client, f"bad {marker}")
    assert headers["x-hitrate-cache"] == "miss"
    assert upstream.calls("chat") == 2


def test_invalid_json_in_json_mode_is_not_stored(client, upstream):
    fmt = {"type": "json_object"}
    ask(client, "json [[badjson]]", response_format=fmt)
    headers, _ = ask(client, "json [[badjson]]", response_format=fmt)
    assert headers["x-hitrate-cache"] == "miss"
    ask(client, "good json", response_format=fmt)
    headers, good = ask(client, "good json", response_format=fmt)
    assert headers["x-hitrate-cache"] == "hit"
    assert good.choices[0].message.content.startswith("{")


def test_upstream_errors_are_not_stored(client, upstream):
    import openai

    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            ask(client, "boom [[error:500]]")
    assert upstream.calls("chat") == 2


def test_broken_stream_is_not_stored(client, upstream):
    import openai

    with pytest.raises(openai.APIError):
        stream_text(client, "one two three four five six [[break]]")
    headers, _ = ask(client, "one two three four five six [[break]]")
    assert headers["x-hitrate-cache"] == "miss"


def test_streamed_length_cut_is_not_stored(client, upstream):
    stream_text(client, "long [[length]]")
    headers, _, _ = stream_text(client, "long [[length]]")
    assert headers["x-hitrate-cache"] == "miss"
    assert upstream.calls("chat") == 2


def test_n_choices_cached_together(client, upstream):
    _, first = ask(client, "several", n=3)
    headers, second = ask(client, "several", n=3)
    assert headers["x-hitrate-cache"] == "hit"
    assert [c.message.content for c in second.choices] == [c.message.content for c in first.choices]
    assert len(second.choices) == 3


def test_legacy_completions_cached_and_streamed(client, upstream):
    first = client.completions.with_raw_response.create(model="gpt-test", prompt="Say hi")
    second = client.completions.with_raw_response.create(model="gpt-test", prompt="Say hi")
    assert first.headers["x-hitrate-cache"] == "miss"
    assert second.headers["x-hitrate-cache"] == "hit"
    text = second.parse().choices[0].text
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="gpt-test", prompt="Say hi", stream=True) if c.choices)
    assert streamed == text
    assert upstream.calls("completion") == 1


def test_content_parts_equal_plain_string(client, upstream):
    ask(client, "parts")
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=[{"role": "user", "content": [{"type": "text", "text": "parts"}]}])
    assert raw.headers["x-hitrate-cache"] == "hit"


async def test_async_client_hits(gateway, upstream):
    client = gateway.async_client()
    first = await client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=[{"role": "user", "content": "async"}])
    second = await client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=[{"role": "user", "content": "async"}])
    assert (first.headers["x-hitrate-cache"], second.headers["x-hitrate-cache"]) == ("miss", "hit")
    stream = await client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "async"}], stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == first.parse().choices[0].message.content
    await client.close()
    assert upstream.calls("chat") == 1


def test_models_and_health(gateway, client):
    assert [m.id for m in client.models.list()] == ["gpt-test"]
    import httpx

    health = httpx.get(f"{gateway.url}/health").json()
    assert health["status"] == "ok" and health["cache"] == "memory"


def test_model_alias_is_rewritten_for_the_upstream(client, upstream):
    ask(client, "alias")
    assert upstream.state.requests[-1]["model"] == "sim-model"
    assert "cache" not in upstream.state.requests[-1]
