"""The OpenAI Responses API through the gateway, with the official `openai` SDK."""

from __future__ import annotations

import httpx
import openai
import pytest


def create(client: openai.OpenAI, prompt: str, **kwargs):
    kwargs.setdefault("model", "gpt-test")
    raw = client.responses.with_raw_response.create(input=prompt, **kwargs)
    return raw.headers, raw.parse()


def streamed(client: openai.OpenAI, prompt: str, **kwargs):
    kwargs.setdefault("model", "gpt-test")
    with client.responses.stream(input=prompt, **kwargs) as stream:
        events = [event.type for event in stream]
        return stream._response.headers, stream.get_final_response(), events


def test_plain_miss_then_hit(gateway, upstream):
    client = gateway.client()
    headers, first = create(client, "What is a cache?")
    assert headers["x-hitrate-cache"] == "miss" and first.status == "completed"
    headers, second = create(client, "What is a cache?")
    assert headers["x-hitrate-cache"] == "hit"
    assert second.output_text == first.output_text and second.id == first.id
    assert upstream.calls("responses") == 1


def test_stream_is_stored_and_replayed_as_typed_events(gateway, upstream):
    client = gateway.client()
    headers, first, events = streamed(client, "Stream me")
    assert headers["x-hitrate-cache"] == "miss"
    assert events[0] == "response.created" and events[-1] == "response.completed"
    headers, replayed, replay_events = streamed(client, "Stream me")
    assert headers["x-hitrate-cache"] == "hit"
    assert replayed.output_text == first.output_text and replayed.id == first.id
    assert "response.output_text.delta" in replay_events
    assert replay_events[-1] == "response.completed"
    # A plain request shares the entry the stream stored.
    headers, plain = create(client, "Stream me")
    assert headers["x-hitrate-cache"] == "hit" and plain.output_text == first.output_text
    assert upstream.calls("responses") == 1


def test_plain_answer_replays_as_a_stream(gateway, upstream):
    client = gateway.client()
    _, plain = create(client, "plain first")
    headers, replayed, _ = streamed(client, "plain first")
    assert headers["x-hitrate-cache"] == "hit" and replayed.output_text == plain.output_text


@pytest.mark.parametrize("marker", ["[[incomplete]]", "[[empty]]"])
def test_unfinished_answers_are_never_stored(gateway, upstream, marker):
    client = gateway.client()
    for _ in range(2):
        headers, _ = create(client, f"not this {marker}")
        assert headers["x-hitrate-cache"] == "miss"
    assert upstream.calls("responses") == 2
    assert gateway.cache.stats.stores == 0


@pytest.mark.parametrize("marker", ["[[failed]]", "[[incomplete]]"])
def test_failed_or_incomplete_streams_are_not_stored(gateway, upstream, marker):
    client = gateway.client()
    for _ in range(2):
        with client.responses.stream(model="gpt-test", input=f"stream {marker}") as stream:
            for _ in stream:
                pass
    assert upstream.calls("responses") == 2 and gateway.cache.stats.stores == 0


def test_broken_stream_is_not_stored(gateway, upstream):
    client = gateway.client()
    for _ in range(2):
        with (pytest.raises((openai.APIError, httpx.HTTPError, RuntimeError)),
              client.responses.stream(model="gpt-test", input="cut [[break]]") as stream):
            for _ in stream:
                pass
    assert gateway.cache.stats.stores == 0


def test_key_covers_what_changes_the_answer(gateway, upstream):
    client = gateway.client()
    create(client, "same input")
    variants = [{"instructions": "Be brief."}, {"temperature": 0.2},
                {"previous_response_id": "resp_1"}, {"reasoning": {"effort": "low"}},
                {"text": {"format": {"type": "json_object"}}, "input": "same input as JSON"}]
    for extra in variants:
        prompt = extra.pop("input", "same input")
        headers, _ = create(client, prompt, **extra)
        assert headers["x-hitrate-cache"] == "miss", extra
    # ...and not what does not: metadata, user, store, stream.
    headers, _ = create(client, "same input", metadata={"trace": "1"}, user="u1", store=False)
    assert headers["x-hitrate-cache"] == "hit"


def test_function_calls_are_stored_and_replayed(gateway, upstream):
    client = gateway.client()
    tools = [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]
    _, first = create(client, "call a tool", tools=tools)
    assert first.output[0].type == "function_call"
    headers, replayed, _ = streamed(client, "call a tool", tools=tools)
    assert headers["x-hitrate-cache"] == "hit"
    assert replayed.output[0].arguments == first.output[0].arguments


def test_reasoning_items_survive_the_replay(gateway, upstream):
    client = gateway.client()
    streamed(client, "think [[reasoning]]")
    headers, replayed, _ = streamed(client, "think [[reasoning]]")
    assert headers["x-hitrate-cache"] == "hit"
    assert [item.type for item in replayed.output] == ["reasoning", "message"]


def test_upstream_errors_pass_through_uncached(gateway, upstream):
    client = gateway.client()
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            client.responses.create(model="gpt-test", input="boom [[error:500]]")
    assert upstream.calls("responses") == 2


def test_get_and_delete_pass_through(gateway, upstream):
    client = gateway.client()
    _, first = create(client, "keep me")
    fetched = client.responses.retrieve(first.id)
    assert fetched.id == first.id
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    assert upstream.calls("responses_passthrough") == 3


def test_bad_request_is_openai_shaped(gateway):
    reply = gateway.post("/v1/responses", json={"model": "gpt-test", "input": 3})
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "input"


async def test_library_wrapper_caches_responses(upstream):
    import hitrate

    cache = hitrate.Cache()
    sync = hitrate.cached_client(openai.OpenAI(base_url=upstream.api_base, api_key="sk-x",
                                               max_retries=0), cache)
    first = sync.responses.create(model="sim-model", input="library responses")
    second = sync.responses.create(model="sim-model", input="library responses")
    assert second.output_text == first.output_text
    async_client = hitrate.cached_client(openai.AsyncOpenAI(base_url=upstream.api_base,
                                                            api_key="sk-x", max_retries=0), cache)
    third = await async_client.responses.create(model="sim-model", input="library responses")
    assert third.output_text == first.output_text
    assert upstream.calls("responses") == 1
    assert cache.stats.hits == 2
