"""A simulated OpenAI-compatible upstream: realistic latency, deterministic answers.

Used by `hitrate demo` (no network, no API key), by the test suite as the fake
provider, and by the benchmarks. It speaks the OpenAI wire format for chat,
completions (both also as SSE streams), embeddings and models, the Responses API
(`simulator_responses.py`) and Anthropic's Messages API (`simulator_messages.py`).

Every answer carries a call number ("#7"), so a client can tell a fresh answer from
a cached one. Markers in the last user message trigger the awkward cases tests need:
`[[length]]`, `[[filter]]`, `[[empty]]`, `[[error:CODE]]`, `[[slow:SECONDS]]`,
`[[break]]` (stream dies before it ends), `[[badjson]]` (invalid JSON in JSON mode),
`[[reasoning]]` (chat: a `reasoning_content` field, streamed as its own deltas),
`[[answer:WORD]]` (the answer is exactly WORD, with no call number: the same on every call).

Semantic judge calls (a chat request whose system prompt is
`hitrate.semantic.judge.SYSTEM_PROMPT`) are counted as `judge`, not `chat`, and answered
"yes" when the two questions have the same words (case, punctuation, order and markers
ignored), else "no"; a marker in both questions overrides that: `[[judge:yes]]`,
`[[judge:no]]`, `[[judge:error]]` (HTTP 500), `[[judge:slow]]` (answers after 5 s).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import re
import struct
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

_MARKER = re.compile(r"\[\[(\w+)(?::([\w.]+))?\]\]")
EMBEDDING_DIM = 16


@dataclass
class SimulatorState:
    latency: tuple[float, float] = (0.0, 0.0)  # seconds, uniform in [lo, hi]
    calls: Counter[str] = field(default_factory=Counter)
    embedding_inputs: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    seed: int = 7

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)

    def reset(self) -> None:
        self.calls.clear()
        self.embedding_inputs = 0
        self.requests.clear()


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status, media_type="application/json")


def _markers(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) or "" for m in _MARKER.finditer(text)}


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return content or ""
    return ""


def _is_judge(body: dict[str, Any]) -> bool:
    from hitrate.semantic.judge import SYSTEM_PROMPT

    messages = body.get("messages") or []
    return bool(messages) and isinstance(messages[0], dict) \
        and messages[0].get("role") == "system" and messages[0].get("content") == SYSTEM_PROMPT


def _questions(judge_prompt: str) -> list[str]:
    return re.findall(r"^Question \d: (.*)$", judge_prompt, re.MULTILINE)


def _judge_marker(judge_prompt: str) -> str | None:
    """A `[[judge:...]]` marker both questions carry (one side alone does not count)."""
    found = [_markers(q).get("judge") for q in _questions(judge_prompt)]
    return found[0] if len(found) == 2 and found[0] == found[1] else None


def _same_words(judge_prompt: str) -> bool:
    """The judge prompt's two questions (`Question 1: ...` / `Question 2: ...`) have the
    same words, whatever their case, punctuation, order or markers."""
    bags = [sorted(re.findall(r"\w+", _MARKER.sub(" ", q).lower()))
            for q in _questions(judge_prompt)]
    return len(bags) == 2 and bags[0] == bags[1]


def _words(text: str) -> int:
    return max(1, len(text.split()))


def _vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    raw = [b / 255.0 - 0.5 for b in digest[:EMBEDDING_DIM]]
    norm = sum(x * x for x in raw) ** 0.5 or 1.0
    return [round(x / norm, 6) for x in raw]


def create_simulator(state: SimulatorState | None = None) -> Starlette:
    state = state or SimulatorState()

    async def delay(markers: dict[str, str]) -> None:
        lo, hi = state.latency
        seconds = float(markers["slow"]) if "slow" in markers else state.random.uniform(lo, hi)
        if seconds > 0:
            await asyncio.sleep(seconds)

    def answer(kind: str, body: dict[str, Any], number: int) -> tuple[dict[str, Any], dict]:
        if kind == "chat":
            prompt = last_user_text(body.get("messages") or [])
        else:
            prompt = body.get("prompt") if isinstance(body.get("prompt"), str) else str(body.get("prompt"))
        markers = _markers(prompt)
        finish = "stop"
        content: str | None = f"Answer #{number} to: {prompt}"
        if "answer" in markers:
            content = markers["answer"]
        if body.get("response_format", {}).get("type") in ("json_object", "json_schema"):
            content = orjson.dumps({"answer": number, "prompt": prompt}).decode()
            if "badjson" in markers:
                content = '{"answer": ' + str(number)
        if "length" in markers:
            finish = "length"
        if "filter" in markers:
            finish, content = "content_filter", ""
        if "empty" in markers:
            content = ""
        n = body.get("n") or 1
        choices = []
        for index in range(n):
            text = content if n == 1 else f"{content} (choice {index})"
            if kind == "chat":
                message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
                if "reasoning" in markers:
                    message["reasoning_content"] = f"Thinking #{number} about: {prompt}"
                if body.get("tools"):
                    tool = body["tools"][0]["function"]["name"]
                    message = {"role": "assistant", "content": None, "tool_calls": [{
                        "id": f"call_{number}_{index}", "type": "function",
                        "function": {"name": tool, "arguments": orjson.dumps(
                            {"query": prompt, "n": number}).decode()}}]}
                    finish = "tool_calls" if finish == "stop" else finish
                choices.append({"index": index, "message": message, "logprobs": None,
                                "finish_reason": finish})
            else:
                choices.append({"index": index, "text": text, "logprobs": None,
                                "finish_reason": finish})
        usage = {"prompt_tokens": _words(prompt) + 8,
                 "completion_tokens": _words(content or "x") * n,
                 "total_tokens": _words(prompt) + 8 + _words(content or "x") * n}
        response = {"id": f"sim-{number}", "object": "chat.completion" if kind == "chat"
                    else "text_completion", "created": int(time.time()),
                    "model": body.get("model", ""), "system_fingerprint": "fp_sim",
                    "choices": choices, "usage": usage}
        return response, markers

    async def judge(body: dict[str, Any]) -> Response:
        state.calls["judge"] += 1
        state.requests.append(body)
        question = last_user_text(body.get("messages") or [])
        verdict = _judge_marker(question) or ("yes" if _same_words(question) else "no")
        if verdict == "error":
            return _json({"error": {"message": "simulated judge error", "type": "server_error",
                                    "param": None, "code": "simulated"}}, 500)
        if verdict == "slow":
            await asyncio.sleep(5.0)
            verdict = "no"
        number = sum(state.calls.values())
        return _json({"id": f"sim-{number}", "object": "chat.completion",
                      "created": int(time.time()), "model": body.get("model", ""),
                      "choices": [{"index": 0, "message": {"role": "assistant",
                                                           "content": verdict},
                                   "logprobs": None, "finish_reason": "stop"}],
                      "usage": {"prompt_tokens": _words(question) + 20, "completion_tokens": 1,
                                "total_tokens": _words(question) + 21}})

    async def generate(request: Request, kind: str) -> Response:
        body = await request.json()
        if kind == "chat" and _is_judge(body):
            return await judge(body)
        state.calls[kind] += 1
        number = sum(state.calls.values())
        state.requests.append(body)
        response, markers = answer(kind, body, number)
        if "error" in markers:
            status = int(markers["error"] or 500)
            await delay({})
            return _json({"error": {"message": f"simulated upstream error {status}",
                                    "type": "server_error", "param": None, "code": "simulated"}},
                         status)
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(stream(kind, response, markers, include_usage),
                                     media_type="text/event-stream")
        await delay(markers)
        return _json(response)

    async def stream(kind: str, response: dict[str, Any], markers: dict[str, str],
                     include_usage: bool) -> AsyncIterator[bytes]:
        await delay(markers)
        base = {k: response[k] for k in ("id", "created", "model", "system_fingerprint")}
        base["object"] = "chat.completion.chunk" if kind == "chat" else "text_completion"
        for choice in response["choices"]:
            index = choice["index"]
            if kind == "chat":
                message = choice["message"]
                yield _event({**base, "choices": [{"index": index, "delta": {
                    "role": "assistant", "content": "" if message.get("content") is not None
                    else None}, "logprobs": None, "finish_reason": None}]})
                for piece in re.findall(r"\S+\s*", message.get("reasoning_content") or ""):
                    yield _event({**base, "choices": [{"index": index, "delta": {
                        "reasoning_content": piece}, "logprobs": None, "finish_reason": None}]})
                if message.get("tool_calls"):
                    call = message["tool_calls"][0]
                    args = call["function"]["arguments"]
                    yield _event({**base, "choices": [{"index": index, "delta": {"tool_calls": [{
                        "index": 0, "id": call["id"], "type": "function",
                        "function": {"name": call["function"]["name"], "arguments": ""}}]},
                        "logprobs": None, "finish_reason": None}]})
                    for part in (args[: len(args) // 2], args[len(args) // 2:]):
                        yield _event({**base, "choices": [{"index": index, "delta": {
                            "tool_calls": [{"index": 0, "function": {"arguments": part}}]},
                            "logprobs": None, "finish_reason": None}]})
                pieces = re.findall(r"\S+\s*", message.get("content") or "")
            else:
                pieces = re.findall(r"\S+\s*", choice["text"])
            for i, piece in enumerate(pieces):
                if "break" in markers and i == len(pieces) // 2:
                    raise ConnectionError("simulated broken stream")
                if kind == "chat":
                    delta = {"index": index, "delta": {"content": piece}, "logprobs": None,
                             "finish_reason": None}
                else:
                    delta = {"index": index, "text": piece, "logprobs": None,
                             "finish_reason": None}
                yield _event({**base, "choices": [delta]})
                await asyncio.sleep(0)
            last = {"index": index, "logprobs": None, "finish_reason": choice["finish_reason"]}
            if kind == "chat":
                last["delta"] = {}
            else:
                last["text"] = ""
            yield _event({**base, "choices": [last]})
        if include_usage:
            yield _event({**base, "choices": [], "usage": response["usage"]})
        yield b"data: [DONE]\n\n"

    async def chat(request: Request) -> Response:
        return await generate(request, "chat")

    async def completions(request: Request) -> Response:
        return await generate(request, "completion")

    async def embeddings(request: Request) -> Response:
        body = await request.json()
        state.calls["embedding"] += 1
        state.requests.append(body)
        value = body["input"]
        items = [value] if isinstance(value, str) or (value and isinstance(value[0], int)) \
            else value
        state.embedding_inputs += len(items)
        await delay({})
        data = []
        tokens = 0
        for index, item in enumerate(items):
            text = item if isinstance(item, str) else " ".join(map(str, item))
            tokens += _words(text)
            vector = _vector(text)
            embedding: Any = vector
            if body.get("encoding_format") == "base64":
                embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        return _json({"object": "list", "data": data, "model": body.get("model", ""),
                      "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    async def models(request: Request) -> Response:
        return _json({"object": "list", "data": [{"id": "sim-model", "object": "model",
                                                  "created": 0, "owned_by": "simulator"}]})

    async def stats(request: Request) -> Response:
        return _json({"calls": dict(state.calls), "total": sum(state.calls.values()),
                      "embedding_inputs": state.embedding_inputs})

    async def reset(request: Request) -> Response:
        state.reset()
        return _json({"ok": True})

    from hitrate import simulator_messages, simulator_responses

    app = Starlette(routes=[
        *simulator_responses.routes(state, delay, _markers),
        *simulator_messages.routes(state, delay, _markers),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/_stats", stats, methods=["GET"]),
        Route("/_reset", reset, methods=["POST"]),
    ])
    app.state.simulator = state
    return app


def _event(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"
