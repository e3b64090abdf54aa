"""Stream fields hitrate does not model (reasoning_content, provider extras) survive the
capture, the replay, and a plain answer built from a stored stream."""

from __future__ import annotations

import httpx
import orjson

from hitrate.gateway.sse import ChatCapture, replay_chat


def _reasoning_of_stream(client, text: str) -> tuple[str, str, str]:
    with client.chat.completions.with_streaming_response.create(
            model="gpt-test", messages=[{"role": "user", "content": text}],
            stream=True) as response:
        chunks = list(response.parse())
        status = response.headers["x-hitrate-cache"]
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or ""
                        for c in chunks if c.choices)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return status, reasoning, content


def test_reasoning_deltas_are_stored_and_replayed(gateway, upstream):
    client = gateway.client()
    status, reasoning, content = _reasoning_of_stream(client, "why? [[reasoning]]")
    assert status == "miss" and reasoning.startswith("Thinking #")
    status, replayed_reasoning, replayed = _reasoning_of_stream(client, "why? [[reasoning]]")
    assert status == "hit"
    assert (replayed_reasoning, replayed) == (reasoning, content)
    # A plain request served from the stored stream carries the reasoning too.
    plain = httpx.post(f"{gateway.url}/v1/chat/completions", json={
        "model": "gpt-test", "messages": [{"role": "user", "content": "why? [[reasoning]]"}]})
    assert plain.headers["x-hitrate-cache"] == "hit"
    assert plain.json()["choices"][0]["message"]["reasoning_content"] == reasoning
    assert upstream.calls("chat") == 1


def test_unknown_fields_round_trip_through_capture_and_replay():
    capture = ChatCapture()
    events = [
        {"id": "c", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "",
                                                        "audio": {"id": "a1", "data": "AB"}}}]},
        {"id": "c", "choices": [{"index": 0, "delta": {"reasoning": "th",
                                                        "audio": {"data": "CD"}}}]},
        {"id": "c", "choices": [{"index": 0, "delta": {"reasoning": "ink", "content": "hi",
                                                        "annotations": [{"url": "u"}]}}]},
        {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop",
                                 "stop_reason": 42}]},
    ]
    for event in events:
        capture.feed(b"data: " + orjson.dumps(event) + b"\n\n")
    capture.feed(b"data: [DONE]\n\n")
    assert capture.complete
    response = capture.response()
    message = response["choices"][0]["message"]
    assert message["reasoning"] == "think" and message["content"] == "hi"
    assert message["audio"] == {"id": "a1", "data": "ABCD"}
    assert message["annotations"] == [{"url": "u"}]
    assert response["choices"][0]["stop_reason"] == 42
    replayed = ChatCapture()
    for raw in replay_chat(response, {}):
        replayed.feed(raw)
    assert replayed.complete and replayed.response()["choices"][0]["message"] == message
