"""OpenAI Responses API streams: capture one into the stored response, replay one.

The upstream's terminal `response.completed` event carries the whole response object,
so capture keeps exactly that (and nothing from a stream that ended any other way).
Replay emits the typed events `openai`'s `responses.stream(...)` accumulates, from
`response.created` to `response.completed`, with consistent item ids and sequence
numbers; text and arguments go out as one delta each.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from hitrate.gateway.sse import TypedEventCapture, named_event

_FAILED = frozenset({"response.failed", "response.incomplete", "error"})


class ResponsesCapture(TypedEventCapture):
    def __init__(self) -> None:
        super().__init__()
        self._response: dict[str, Any] | None = None

    def _add(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "response.completed":
            response = event.get("response")
            if isinstance(response, dict):
                self._response = response
            else:
                self.failed = True
            self.done = True
        elif kind in _FAILED:
            self.failed = True
            self.done = True

    @property
    def complete(self) -> bool:
        return self.done and not self.failed and self._response is not None

    def response(self) -> dict[str, Any]:
        assert self._response is not None
        return self._response


def _skeleton(item: dict[str, Any]) -> dict[str, Any]:
    """An output item as `response.output_item.added` announces it: no content yet."""
    out = copy.deepcopy(item)
    if item.get("type") == "message":
        out["content"] = []
        out["status"] = "in_progress"
    elif item.get("type") == "function_call":
        out["arguments"] = ""
        out["status"] = "in_progress"
    return out


def _empty_part(part: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(part)
    if part.get("type") == "output_text":
        out["text"] = ""
        out["annotations"] = []
    elif part.get("type") == "refusal":
        out["refusal"] = ""
    return out


def _item_events(index: int, item: dict[str, Any]) -> Iterator[dict[str, Any]]:
    item_id = item.get("id")
    yield {"type": "response.output_item.added", "output_index": index, "item": _skeleton(item)}
    if item.get("type") == "message":
        for j, part in enumerate(item.get("content") or []):
            where = {"item_id": item_id, "output_index": index, "content_index": j}
            yield {"type": "response.content_part.added", **where, "part": _empty_part(part)}
            if part.get("type") == "output_text":
                text = part.get("text", "")
                yield {"type": "response.output_text.delta", **where, "delta": text,
                       "logprobs": []}
                yield {"type": "response.output_text.done", **where, "text": text,
                       "logprobs": []}
            elif part.get("type") == "refusal":
                refusal = part.get("refusal", "")
                yield {"type": "response.refusal.delta", **where, "delta": refusal}
                yield {"type": "response.refusal.done", **where, "refusal": refusal}
            yield {"type": "response.content_part.done", **where, "part": part}
    elif item.get("type") == "function_call":
        arguments = item.get("arguments", "")
        where = {"item_id": item_id, "output_index": index}
        yield {"type": "response.function_call_arguments.delta", **where, "delta": arguments}
        yield {"type": "response.function_call_arguments.done", **where,
               "arguments": arguments}
    yield {"type": "response.output_item.done", "output_index": index, "item": item}


def replay_responses(response: dict[str, Any], request: dict[str, Any]) -> Iterator[bytes]:
    """A stored (completed) response as the typed event stream the API would send."""
    started = {**response, "status": "in_progress", "output": [], "usage": None}
    for field in ("completed_at", "incomplete_details"):
        if field in started:
            started[field] = None
    events: list[dict[str, Any]] = [{"type": "response.created", "response": started},
                                    {"type": "response.in_progress", "response": started}]
    for index, item in enumerate(response.get("output") or []):
        if isinstance(item, dict):
            events.extend(_item_events(index, item))
    events.append({"type": "response.completed", "response": response})
    for number, event in enumerate(events):
        yield named_event({**event, "sequence_number": number})
