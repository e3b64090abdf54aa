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
