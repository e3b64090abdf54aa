"""Server-sent events: capture an upstream stream into one response, replay one as a stream.

We store streamed answers in the non-streaming shape (`chat.completion` /
`text_completion`), so either kind of request can be served from either kind of
miss with the same answer. The endpoint-kind table (`hitrate.kinds`) says which
capture and replay each kind uses.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"


class SSEParser:
    """Incremental parser: feed raw bytes, get complete `data:` payloads back."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        if b"\n\n" not in self._buffer and b"\r\n\r\n" not in self._buffer:
            return []
        normalized = self._buffer.replace(b"\r\n", b"\n")
        *events, self._buffer = normalized.split(b"\n\n")
        out = []
        for event in events:
            data = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
            if data:
                out.append(b"\n".join(data))
        return out


def merge_into(target: dict[str, Any], fields: dict[str, Any]) -> None:
    """Streamed fields into an accumulated object: strings concatenate, lists extend,
    objects merge, anything else replaces. Fields no parser models (reasoning_content,
    audio, annotations, provider extras) survive capture this way."""
    for key, value in fields.items():
        current = target.get(key)
        if isinstance(value, str) and isinstance(current, str):
            target[key] = current + value
        elif isinstance(value, list) and isinstance(current, list):
            current.extend(copy.deepcopy(value))
        elif isinstance(value, dict) and isinstance(current, dict):
            merge_into(current, value)
        elif value is not None or key not in target:
            target[key] = copy.deepcopy(value)


class _ChoicesCapture:
    """Assembles `chat.completion.chunk` / `text_completion` chunks into one response.

    `complete` is True only if the stream ended with [DONE], every choice got a
    finish_reason and no error event was seen: a broken stream is never stored.
    """

    object_name = ""

    def __init__(self) -> None:
        self.parser = SSEParser()
        self.done = False
        self.failed = False
        self.meta: dict[str, Any] = {}
        self.choices: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] | None = None

    def feed(self, raw: bytes) -> None:
        if self.failed:
            return
        for data in self.parser.feed(raw):
            if data == b"[DONE]":
                self.done = True
                continue
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                self.failed = True
                return
            self._add(chunk)

    def _add(self, chunk: Any) -> None:
        if not isinstance(chunk, dict) or "error" in chunk:
            self.failed = True
            return
        for field in ("id", "created", "model", "system_fingerprint", "service_tier"):
            if field in chunk and field not in self.meta:
                self.meta[field] = chunk[field]
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            index = choice.get("index", 0)
            slot = self.choices.setdefault(index, {"index": index, "finish_reason": None})
            self._add_choice(slot, choice)
            if choice.get("finish_reason"):
                slot["finish_reason"] = choice["finish_reason"]
            extras = {k: v for k, v in choice.items() if k not in _CHOICE_FIELDS}
            if extras:  # provider extras on the choice (vLLM's stop_reason, ...)
                merge_into(slot, extras)

    def _add_choice(self, slot: dict[str, Any], choice: dict[str, Any]) -> None:
        raise NotImplementedError

    @property
    def complete(self) -> bool:
        return (
            self.done
            and not self.failed
            and bool(self.choices)
            and all(c["finish_reason"] for c in self.choices.values())
        )

    def _finish_choice(self, slot: dict[str, Any]) -> dict[str, Any]:
        return slot

    def response(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.meta.get("id", ""), "object": self.object_name,
                               "created": self.meta.get("created", 0),
                               "model": self.meta.get("model", "")}
        if "system_fingerprint" in self.meta:
            out["system_fingerprint"] = self.meta["system_fingerprint"]
        out["choices"] = [self._finish_choice(dict(self.choices[i])) for i in sorted(self.choices)]
        if self.usage is not None:
            out["usage"] = self.usage
        return out


_CHOICE_FIELDS = frozenset({"index", "delta", "text", "logprobs", "finish_reason"})
_DELTA_FIELDS = frozenset({"role", "content", "tool_calls", "function_call"})


class ChatCapture(_ChoicesCapture):
    object_name = "chat.completion"

    def _add_choice(self, slot: dict[str, Any], choice: dict[str, Any]) -> None:
        message = slot.setdefault("message", {"role": "assistant", "content": None})
        delta = choice.get("delta") or {}
        if delta.get("role"):
            message["role"] = delta["role"]
        if delta.get("content"):
            message["content"] = (message["content"] or "") + delta["content"]
        # refusal, reasoning_content, reasoning, audio, annotations, anything new
        merge_into(message, {k: v for k, v in delta.items() if k not in _DELTA_FIELDS})
        for call in delta.get("tool_calls") or []:
            calls = message.setdefault("tool_calls", [])
            index = call.get("index", len(calls))
            while len(calls) <= index:
                calls.append({"id": None, "type": "function",
                              "function": {"name": "", "arguments": ""}})
            target = calls[index]
            if call.get("id"):
                target["id"] = call["id"]
            if call.get("type"):
                target["type"] = call["type"]
            function = call.get("function") or {}
            target["function"]["name"] += function.get("name") or ""
            target["function"]["arguments"] += function.get("arguments") or ""
        if delta.get("function_call"):
            fc = message.setdefault("function_call", {"name": "", "arguments": ""})
            fc["name"] += delta["function_call"].get("name") or ""
            fc["arguments"] += delta["function_call"].get("arguments") or ""
        logprobs = choice.get("logprobs")
        if logprobs and logprobs.get("content"):
            slot.setdefault("logprobs", {"content": []})["content"].extend(logprobs["content"])

    def _finish_choice(self, slot: dict[str, Any]) -> dict[str, Any]:
        slot.setdefault("logprobs", None)
        return slot


class CompletionCapture(_ChoicesCapture):
    object_name = "text_completion"

    def _add_choice(self, slot: dict[str, Any], choice: dict[str, Any]) -> None:
        slot["text"] = slot.get("text", "") + (choice.get("text") or "")
        if choice.get("logprobs"):
            self.failed = True  # legacy logprobs streams are not reassembled


def _event(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def named_event(obj: dict[str, Any]) -> bytes:
    """A typed event (Responses, Anthropic Messages): `event:` line = the payload's type."""
    return b"event: " + obj["type"].encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


class TypedEventCapture:
    """Base for streams of typed JSON events (`{"type": ...}`) with no [DONE] line:
    feeds each decoded event to `_add`; a payload that is not a JSON object fails it."""

    def __init__(self) -> None:
        self.parser = SSEParser()
        self.done = False
        self.failed = False

    def feed(self, raw: bytes) -> None:
        if self.failed or self.done:
            return
        for data in self.parser.feed(raw):
            try:
                event = orjson.loads(data)
            except orjson.JSONDecodeError:
                self.failed = True
                return
            if not isinstance(event, dict):
                self.failed = True
                return
            self._add(event)
            if self.failed or self.done:
                return

    def _add(self, event: dict[str, Any]) -> None:
        raise NotImplementedError


def include_usage(request: dict[str, Any]) -> bool:
    options = request.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def _chunk_base(response: dict[str, Any], obj: str, with_usage: bool) -> dict[str, Any]:
    base: dict[str, Any] = {"id": response.get("id", ""), "object": obj,
                            "created": response.get("created", 0),
                            "model": response.get("model", "")}
    if response.get("system_fingerprint") is not None:
        base["system_fingerprint"] = response["system_fingerprint"]
    if with_usage:
        base["usage"] = None
    return base


def replay_chat(response: dict[str, Any], request: dict[str, Any]) -> Iterator[bytes]:
    """A stored chat completion as the SSE byte stream the upstream would have sent."""
    with_usage = include_usage(request)
    base = _chunk_base(response, "chat.completion.chunk", with_usage)
    for choice in response.get("choices", []):
        message = choice.get("message") or {}
        # Every field of the stored message goes out (reasoning_content, audio, ...).
        delta: dict[str, Any] = {k: v for k, v in message.items()
                                 if v is not None and k not in _DELTA_FIELDS}
        delta["role"] = message.get("role", "assistant")
        if message.get("content") is not None:
            delta["content"] = message["content"]
        if message.get("tool_calls"):
            delta["tool_calls"] = [dict(call, index=i) for i, call in
                                   enumerate(message["tool_calls"])]
        if message.get("function_call"):
            delta["function_call"] = message["function_call"]
        index = choice.get("index", 0)
        yield _event({**base, "choices": [{"index": index, "delta": delta,
                                           "logprobs": choice.get("logprobs"),
                                           "finish_reason": None}]})
        yield _event({**base, "choices": [{"index": index, "delta": {}, "logprobs": None,
                                           "finish_reason": choice.get("finish_reason")}]})
    if with_usage and response.get("usage"):
        yield _event({**base, "choices": [], "usage": response["usage"]})
    yield DONE


def replay_completion(response: dict[str, Any], request: dict[str, Any]) -> Iterator[bytes]:
    with_usage = include_usage(request)
    base = _chunk_base(response, "text_completion", with_usage)
    for choice in response.get("choices", []):
        yield _event({**base, "choices": [{"index": choice.get("index", 0),
                                           "text": choice.get("text", ""),
                                           "logprobs": None,
                                           "finish_reason": choice.get("finish_reason")}]})
    if with_usage and response.get("usage"):
        yield _event({**base, "choices": [], "usage": response["usage"]})
    yield DONE
