"""The simulator's OpenAI Responses API (`POST /v1/responses`, plain and streamed,
and `GET`/`DELETE /v1/responses/{id}`), with the same markers as chat:
`[[incomplete]]` (status incomplete), `[[failed]]` (a failed stream), `[[error:CODE]]`,
`[[break]]` (the stream dies), `[[empty]]`, `[[reasoning]]` (a reasoning item first),
and a function call when tools are given.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

if TYPE_CHECKING:
    from hitrate.simulator import SimulatorState


def _input_text(body: dict[str, Any]) -> str:
    from hitrate.simulator import last_user_text

    value = body.get("input")
    return value if isinstance(value, str) else last_user_text(value or [])


def build_response(body: dict[str, Any], number: int, markers: dict[str, str]) -> dict[str, Any]:
    prompt = _input_text(body)
    text = "" if "empty" in markers else f"Answer #{number} to: {prompt}"
    output: list[dict[str, Any]] = []
    if "reasoning" in markers:
        output.append({"id": f"rs_{number}", "type": "reasoning",
                       "summary": [{"type": "summary_text", "text": f"Thinking #{number}"}]})
    if body.get("tools"):
        tool = body["tools"][0].get("name", "tool")
        output.append({"id": f"fc_{number}", "type": "function_call", "status": "completed",
                       "call_id": f"call_{number}", "name": tool,
                       "arguments": orjson.dumps({"query": prompt, "n": number}).decode()})
    else:
        output.append({"id": f"msg_{number}", "type": "message", "status": "completed",
                       "role": "assistant", "content": [
                           {"type": "output_text", "text": text, "annotations": []}]})
    words = max(1, len(prompt.split()))
    status = "incomplete" if "incomplete" in markers else "completed"
    return {"id": f"resp_{number}", "object": "response", "created_at": int(time.time()),
            "status": status, "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete"
            else None,
            "instructions": body.get("instructions"), "model": body.get("model", ""),
            "output": output, "parallel_tool_calls": True, "tool_choice": "auto",
            "tools": body.get("tools") or [], "temperature": body.get("temperature", 1.0),
            "top_p": 1.0, "text": body.get("text") or {"format": {"type": "text"}},
            "usage": {"input_tokens": words + 8, "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens": max(1, len(text.split())),
                      "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": words + 8 + max(1, len(text.split()))}}


def _event(event: dict[str, Any]) -> bytes:
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


async def _stream(response: dict[str, Any], markers: dict[str, str]) -> AsyncIterator[bytes]:
    from hitrate.gateway.sse_responses import replay_responses

    # The upstream's own events: the replay generator emits the same sequence, then the
    # terminal event is rewritten for the failure markers.
    events = list(replay_responses(response, {}))
    for i, raw in enumerate(events[:-1]):
        if "break" in markers and i == len(events) // 2:
            raise ConnectionError("simulated broken stream")
        yield raw
    if "failed" in markers:
        failed = {**response, "status": "failed",
                  "error": {"code": "server_error", "message": "simulated failure"}}
        yield _event({"type": "response.failed", "response": failed,
                      "sequence_number": len(events) - 1})
    elif response["status"] == "incomplete":
        yield _event({"type": "response.incomplete", "response": response,
                      "sequence_number": len(events) - 1})
    else:
        yield events[-1]


def routes(state: SimulatorState, delay: Callable[[dict[str, str]], Awaitable[None]],
           markers_of: Callable[[str], dict[str, str]]) -> list[Route]:
    stored: dict[str, dict[str, Any]] = {}

    async def create(request: Request) -> Response:
        body = await request.json()
        state.calls["responses"] += 1
        number = sum(state.calls.values())
        state.requests.append(body)
        markers = markers_of(_input_text(body))
        if "error" in markers:
            status = int(markers["error"] or 500)
            return Response(orjson.dumps({"error": {"message": f"simulated upstream error "
                                                    f"{status}", "type": "server_error",
                                                    "param": None, "code": "simulated"}}),
                            status, media_type="application/json")
        response = build_response(body, number, markers)
        stored[response["id"]] = response
        await delay(markers)
        if body.get("stream"):
            return StreamingResponse(_stream(response, markers), media_type="text/event-stream")
        return Response(orjson.dumps(response), media_type="application/json")

    async def get_or_delete(request: Request) -> Response:
        state.calls["responses_passthrough"] += 1
        response_id = request.path_params["response_id"]
        if response_id not in stored:
            return Response(orjson.dumps({"error": {"message": "not found", "type":
                                                    "invalid_request_error", "param": None,
                                                    "code": None}}), 404,
                            media_type="application/json")
        if request.method == "DELETE":
            del stored[response_id]
            return Response(orjson.dumps({"id": response_id, "object": "response",
                                          "deleted": True}), media_type="application/json")
        return Response(orjson.dumps(stored[response_id]), media_type="application/json")

    return [Route("/v1/responses", create, methods=["POST"]),
            Route("/v1/responses/{response_id}", get_or_delete, methods=["GET", "DELETE"])]
