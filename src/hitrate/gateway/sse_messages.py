"""Anthropic Messages API streams: capture one into the stored message, replay one.

Capture rebuilds the message from `message_start`, the content blocks and their
deltas (text, tool input JSON, thinking, signatures, citations, and any delta type
this version does not know: its string fields are concatenated, lists extended), and
`message_delta` (stop reason, usage). It is complete only at `message_stop` with no
`error` event and every block closed.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import orjson

from hitrate.gateway.sse import TypedEventCapture, merge_into, named_event

# delta type -> the block field its payload extends (the rest: merged generically)
_DELTA_FIELDS = {"text_delta": "text", "thinking_delta": "thinking"}


class MessagesCapture(TypedEventCapture):
    def __init__(self) -> None:
        super().__init__()
        self.message: dict[str, Any] | None = None
        self._blocks: dict[int, dict[str, Any]] = {}
        self._json: dict[int, str] = {}
        self._open: set[int] = set()

    def _add(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "error":
            self.failed = True
            return
        if kind == "message_start":
            message = event.get("message")
            if not isinstance(message, dict):
                self.failed = True
                return
            self.message = copy.deepcopy(message)
            return
        if self.message is None:
            if kind != "ping":
                self.failed = True  # content before message_start
            return
        index = event.get("index")
        if kind == "content_block_start" and isinstance(index, int):
            block = event.get("content_block")
            if not isinstance(block, dict):
                self.failed = True
                return
            self._blocks[index] = copy.deepcopy(block)
            self._open.add(index)
        elif kind == "content_block_delta" and index in self._blocks:
            self._add_delta(index, event.get("delta") or {})
        elif kind == "content_block_stop" and index in self._blocks:
            self._open.discard(index)
        elif kind == "message_delta":
            self.message.update(event.get("delta") or {})
            usage = event.get("usage")
            if isinstance(usage, dict):  # cumulative totals: overwrite, keep what's absent
                target = self.message.setdefault("usage", {})
                target.update({k: v for k, v in usage.items() if v is not None})
        elif kind == "message_stop":
            self.done = True

    def _add_delta(self, index: int, delta: dict[str, Any]) -> None:
        block = self._blocks[index]
        kind = delta.get("type")
        if kind in _DELTA_FIELDS:
            field = _DELTA_FIELDS[kind]
            block[field] = (block.get(field) or "") + (delta.get(field) or "")
        elif kind == "input_json_delta":
            self._json[index] = self._json.get(index, "") + (delta.get("partial_json") or "")
        elif kind == "signature_delta":
            block["signature"] = delta.get("signature", "")
        elif kind == "citations_delta":
            block.setdefault("citations", []).append(delta.get("citation"))
        else:
            merge_into(block, {k: v for k, v in delta.items() if k != "type"})

    @property
    def complete(self) -> bool:
        if not (self.done and not self.failed and self.message is not None) or self._open:
            return False
        for index, text in self._json.items():
            try:
                orjson.loads(text or "{}")
            except orjson.JSONDecodeError:
                return False
            if index not in self._blocks:
                return False
        return True

    def response(self) -> dict[str, Any]:
        assert self.message is not None
        message = copy.deepcopy(self.message)
        content = []
        for index in sorted(self._blocks):
            block = copy.deepcopy(self._blocks[index])
            if index in self._json:
                block["input"] = orjson.loads(self._json[index] or "{}")
            content.append(block)
        message["content"] = content
        return message


def _block_events(index: int, block: dict[str, Any]) -> Iterator[dict[str, Any]]:
    kind = block.get("type")
    start = copy.deepcopy(block)
    deltas: list[dict[str, Any]] = []
    if kind == "text":
        start["text"] = ""
        start.pop("citations", None)
        deltas.append({"type": "text_delta", "text": block.get("text", "")})
        deltas += [{"type": "citations_delta", "citation": c} for c in block.get("citations") or []]
    elif kind in ("tool_use", "server_tool_use"):
        start["input"] = {}
        deltas.append({"type": "input_json_delta",
                       "partial_json": orjson.dumps(block.get("input", {})).decode()})
    elif kind == "thinking":
        start["thinking"] = ""
        start["signature"] = ""
        deltas.append({"type": "thinking_delta", "thinking": block.get("thinking", "")})
        if block.get("signature"):
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
    yield {"type": "content_block_start", "index": index, "content_block": start}
    for delta in deltas:
        yield {"type": "content_block_delta", "index": index, "delta": delta}
    yield {"type": "content_block_stop", "index": index}


def replay_messages(response: dict[str, Any], request: dict[str, Any]) -> Iterator[bytes]:
    """A stored message as the event stream Anthropic's API would send."""
    usage = response.get("usage") if isinstance(response.get("usage"), dict) else {}
    start = {**response, "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": {**usage, "output_tokens": min(1, int(usage.get("output_tokens") or 0))}}
    yield named_event({"type": "message_start", "message": start})
    for index, block in enumerate(response.get("content") or []):
        if isinstance(block, dict):
            for event in _block_events(index, block):
                yield named_event(event)
    delta = {"stop_reason": response.get("stop_reason"),
             "stop_sequence": response.get("stop_sequence")}
    yield named_event({"type": "message_delta", "delta": delta, "usage": usage})
    yield named_event({"type": "message_stop"})
