"""May this response be stored? May this stored entry be served?

One function per kind (named in the kind's spec, `hitrate.kinds`) answers both
questions: the same rules run before a store and again after a read, so an entry
written by an older, laxer version (or damaged in a way the checksum missed) is never
served.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

UNCACHEABLE_FINISH_REASONS = frozenset({"length", "content_filter"})


def wants_json(request: dict[str, Any]) -> bool:
    response_format = request.get("response_format")
    return isinstance(response_format, dict) and response_format.get("type") in (
        "json_object",
        "json_schema",
    )


def _is_json(text: str) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


def _finished_choices(response: Any,
                      check: Callable[[dict[str, Any]], str | None]) -> str | None:
    """Rules shared by chat and completions; `check` judges one finished choice."""
    if not isinstance(response, dict) or "error" in response:
        return "error"
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices:
        return "no_choices"
    for choice in choices:
        if not isinstance(choice, dict):
            return "malformed"
        finish = choice.get("finish_reason")
        if finish in UNCACHEABLE_FINISH_REASONS:
            return f"finish_reason_{finish}"
        if finish is None:
            return "unfinished"
        reason = check(choice)
        if reason:
            return reason
    return None


def chat_rejection(request: dict[str, Any], response: Any) -> str | None:
    """None if this chat completion may be cached, else the reason it may not."""
    json_mode = wants_json(request)

    def check(choice: dict[str, Any]) -> str | None:
        message = choice.get("message")
        if not isinstance(message, dict):
            return "malformed"
        content = message.get("content")
        has_call = bool(message.get("tool_calls")) or bool(message.get("function_call"))
        has_text = isinstance(content, str) and content.strip() != ""
        if not has_text and not has_call:
            return "empty"
        if json_mode and not has_call and not _is_json(content):
            return "invalid_json"
        return None

    return _finished_choices(response, check)


def completion_rejection(request: dict[str, Any], response: Any) -> str | None:
    """Same rules for the legacy /v1/completions shape (`choices[].text`)."""

    def check(choice: dict[str, Any]) -> str | None:
        text = choice.get("text")
        return "empty" if not isinstance(text, str) or text.strip() == "" else None

    return _finished_choices(response, check)


def embedding_rejection(item: Any) -> str | None:
    """A stored embedding item: {"embedding": list[float] | base64 str, "tokens": int}."""
    if not isinstance(item, dict):
        return "malformed"
    vector = item.get("embedding")
    if isinstance(vector, list):
        if not vector or not all(isinstance(x, int | float) for x in vector[:4]):
            return "empty"
        return None
    if isinstance(vector, str) and vector:
        return None
    return "empty"


def _wants_json_text(request: dict[str, Any]) -> bool:
    """Responses API JSON mode: `text.format.type` json_object / json_schema."""
    text = request.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    return isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema")


def responses_rejection(request: dict[str, Any], response: Any) -> str | None:
    """A Responses API answer may be cached only if it completed with output: never
    `incomplete`, `failed`, `in_progress` or carrying an `error`."""
    if not isinstance(response, dict) or response.get("error"):
        return "error"
    status = response.get("status")
    if status != "completed":
        return f"status_{status}" if isinstance(status, str) else "unfinished"
    if response.get("incomplete_details"):
        return "incomplete"
    output = response.get("output")
    if not isinstance(output, list):
        return "malformed"
    texts: list[str] = []
    has_call = False
    for item in output:
        if not isinstance(item, dict):
            return "malformed"
        kind = item.get("type")
        if isinstance(kind, str) and kind.endswith("_call"):
            has_call = True
        elif kind == "message":
            for part in item.get("content") or []:
                if isinstance(part, dict) and part.get("type") == "output_text":
                    texts.append(str(part.get("text") or ""))
    text = "".join(texts)
    if not text.strip() and not has_call:
        return "empty"
    if _wants_json_text(request) and not has_call and not _is_json(text):
        return "invalid_json"
    return None


CACHEABLE_STOP_REASONS = frozenset({"end_turn", "stop_sequence", "tool_use"})


def messages_rejection(request: dict[str, Any], response: Any) -> str | None:
    """An Anthropic message may be cached only if the model finished on its own or
    asked for a tool: never `max_tokens`, `refusal`, `pause_turn` or an error."""
    if not isinstance(response, dict) or response.get("type") != "message":
        return "error"
    stop = response.get("stop_reason")
    if stop not in CACHEABLE_STOP_REASONS:
        return f"stop_reason_{stop}" if isinstance(stop, str) else "unfinished"
    content = response.get("content")
    if not isinstance(content, list):
        return "malformed"
    for block in content:
        if not isinstance(block, dict):
            return "malformed"
        if block.get("type") == "tool_use":
            return None
        if block.get("type") == "text" and str(block.get("text") or "").strip():
            return None
    return "empty"
