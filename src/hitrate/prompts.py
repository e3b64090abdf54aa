"""Which text of a request the semantic layer embeds, per API shape.

Scope rule (DESIGN.md): a cached answer is a semantic candidate only if everything but
the last user turn is identical. Each function returns (last user text, the rest of
the canonical request) or None when the request is not eligible (no trailing user
turn, non-text content, an empty prompt).
"""

from __future__ import annotations

from typing import Any


def text_of(content: Any) -> str | None:
    """A plain string, or a single text part ({"type": "text"|"input_text", "text": ...})."""
    if isinstance(content, str):
        return content
    if (isinstance(content, list) and len(content) == 1 and isinstance(content[0], dict)
            and content[0].get("type") in ("text", "input_text")
            and isinstance(content[0].get("text"), str)):
        return content[0]["text"]
    return None


def _split_turns(canonical: dict[str, Any], field: str) -> tuple[str, dict[str, Any]] | None:
    """The last turn of `canonical[field]` if it is a user's text, and the rest."""
    turns = canonical.get(field)
    if not isinstance(turns, list) or not turns:
        return None
    last = turns[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        return None
    text = text_of(last.get("content"))
    if not text or not text.strip():
        return None
    rest_of_last = {k: v for k, v in last.items() if k != "content"}
    return text, {**canonical, field: [*turns[:-1], rest_of_last]}


def split_chat(canonical: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    return _split_turns(canonical, "messages")


def split_completion(canonical: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    prompt = canonical.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return None
    return prompt, {k: v for k, v in canonical.items() if k != "prompt"}


def split_responses(canonical: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """Responses API: `input` is a string (one user turn) or a list of items whose last
    must be a user message; `instructions` and everything else are the scope."""
    value = canonical.get("input")
    if isinstance(value, str):
        if not value.strip():
            return None
        return value, {k: v for k, v in canonical.items() if k != "input"}
    return _split_turns(canonical, "input")


def split_messages(canonical: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """Anthropic Messages: the last user turn; `system` and earlier turns are the scope."""
    return _split_turns(canonical, "messages")
