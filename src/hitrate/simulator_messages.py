"""The simulator's Anthropic Messages API (`POST /v1/messages`, plain and streamed, and
`POST /v1/messages/count_tokens`). It checks for a key (`x-api-key`, or a bearer token as newer SDKs send) and
`anthropic-version` like the real one, and answers errors in Anthropic's shape. Markers as for chat:
`[[max_tokens]]`, `[[refusal]]`, `[[pause]]`, `[[error:CODE]]`, `[[break]]`,
`[[overloaded]]` (an `error` event mid-stream), `[[thinking]]` (a thinking block first),
`[[empty]]`; a tool_use answer when tools are given.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

if TYPE_CHECKING:
    from hitrate.simulator import SimulatorState

_STOPS = {"max_tokens": "max_tokens", "refusal": "refusal", "pause": "pause_turn"}


def _error(status: int, kind: str, message: str) -> Response:
    return Response(orjson.dumps({"type": "error", "error": {"type": kind, "message": message}}),
                    status, media_type="application/json")


def _last_user_text(body: dict[str, Any]) -> str:
    from hitrate.simulator import last_user_text

    return last_user_text(body.get("messages") or [])


def build_message(body: dict[str, Any], number: int, markers: dict[str, str]) -> dict[str, Any]:
    prompt = _last_user_text(body)
    text = "" if "empty" in markers else f"Answer #{number} to: {prompt}"
    content: list[dict[str, Any]] = []
    if "thinking" in markers:
        content.append({"type": "thinking", "thinking": f"Thinking #{number}",
                        "signature": f"sig{number}"})
    stop = "end_turn"
    if body.get("tools"):
        tool = body["tools"][0].get("name", "tool")
        content.append({"type": "tool_use", "id": f"toolu_{number}", "name": tool,
                        "input": {"query": prompt, "n": number}})
        stop = "tool_use"
    else:
        content.append({"type": "text", "text": text})
    for marker, reason in _STOPS.items():
        if marker in markers:
            stop = reason
    words = max(1, len(prompt.split()))
    return {"id": f"msg_{number:024d}", "type": "message", "role": "assistant",
            "model": body.get("model", ""), "content": content, "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": words + 8, "output_tokens": max(1, len(text.split())),
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 4}}


async def _stream(message: dict[str, Any], markers: dict[str, str]) -> AsyncIterator[bytes]:
    from hitrate.gateway.sse_messages import replay_messages

    events = list(replay_messages(message, {}))
    yield b"event: ping\ndata: {\"type\": \"ping\"}\n\n"
    for i, raw in enumerate(events):
        if "break" in markers and i == len(events) // 2:
            raise ConnectionError("simulated broken stream")
        if "overloaded" in markers and i == len(events) - 2:
            yield (b"event: error\ndata: " + orjson.dumps({"type": "error", "error": {
                "type": "overloaded_error", "message": "Overloaded"}}) + b"\n\n")
            return
        yield raw


def routes(state: SimulatorState, delay: Callable[[dict[str, str]], Awaitable[None]],
           markers_of: Callable[[str], dict[str, str]]) -> list[Route]:
    def check(request: Request) -> Response | None:
        if not (request.headers.get("x-api-key") or request.headers.get("authorization")):
            return _error(401, "authentication_error", "x-api-key header is required")
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version header is required")
        return None

    async def create(request: Request) -> Response:
        denied = check(request)
        if denied is not None:
            return denied
        body = await request.json()
        state.calls["messages"] += 1
        number = sum(state.calls.values())
        state.requests.append({**body, "_headers": {k: v for k, v in request.headers.items()
                                                    if k.startswith("anthropic-")}})
        markers = markers_of(_last_user_text(body))
        if "error" in markers:
            status = int(markers["error"] or 500)
            return _error(status, "api_error" if status >= 500 else "invalid_request_error",
                          f"simulated upstream error {status}")
        message = build_message(body, number, markers)
        await delay(markers)
        if body.get("stream"):
            return StreamingResponse(_stream(message, markers), media_type="text/event-stream")
        return Response(orjson.dumps(message), media_type="application/json")

    async def count_tokens(request: Request) -> Response:
        denied = check(request)
        if denied is not None:
            return denied
        body = await request.json()
        state.calls["count_tokens"] += 1
        return Response(orjson.dumps({"input_tokens": len(_last_user_text(body).split()) + 8}),
                        media_type="application/json")

    return [Route("/v1/messages", create, methods=["POST"]),
            Route("/v1/messages/count_tokens", count_tokens, methods=["POST"])]
