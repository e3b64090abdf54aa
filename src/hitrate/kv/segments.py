"""Prompts made of reusable segments (documents) and fresh text (questions).

    parts = ["You answer from the documents.\\n", Segment(doc_a), Segment(doc_b),
             "Question: who won?"]
    layout = build_layout(tokenizer, parts)      # token ids + where each segment sits

or, like LMCache's `blend_special_str`, one string cut at a separator:

    parts = split_on_separator(text, " # # ")    # every piece but the last is a segment

A segment's KV is cached under a key made of the model identity, the segment's own
token ids and the `anchor` it was computed after (the model's BOS token by default),
never of what precedes it in a prompt; `hitrate.kv.blend` moves it to wherever the
segment appears. Each part is tokenized on its own (so a segment's ids are the same in
every prompt), and the tokenizer's leading special tokens (BOS) start the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Segment:
    """A reusable part of a prompt: text (needs a tokenizer) or token ids."""

    content: str | tuple[int, ...]

    def __init__(self, content: str | Sequence[int]):
        if not isinstance(content, str):
            content = tuple(int(t) for t in content)
        object.__setattr__(self, "content", content)


Part = str | Sequence[int] | Segment


@dataclass(frozen=True, slots=True)
class SegmentSpan:
    """Where a segment sits in a prompt: token positions [start, end)."""

    start: int
    end: int
    tokens: tuple[int, ...]

    @property
    def num_tokens(self) -> int:
        return self.end - self.start


@dataclass(slots=True)
class PromptLayout:
    ids: list[int]
    segments: list[SegmentSpan] = field(default_factory=list)

    @property
    def segment_tokens(self) -> int:
        return sum(s.num_tokens for s in self.segments)


def split_on_separator(text: str, separator: str) -> list[Part]:
    """`text` cut at `separator`: every piece but the last becomes a Segment, the last
    piece (the question) and the separators stay fresh text."""
    if not separator:
        raise ValueError("the blend separator must not be empty")
    pieces = text.split(separator)
    parts: list[Part] = []
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        if piece:
            parts.append(piece if last else Segment(piece))
        if not last:
            parts.append(separator)
    return parts


def start_tokens(tokenizer: Any) -> list[int]:
    """The special tokens the tokenizer puts before any text (BOS for Llama; none for Qwen)."""
    if tokenizer is None:
        return []
    ids = list(tokenizer("", add_special_tokens=True)["input_ids"])
    eos = getattr(tokenizer, "eos_token_id", None)
    return [t for t in ids if t != eos]


def _encode(tokenizer: Any, content: str | Sequence[int]) -> list[int]:
    if isinstance(content, str):
        if tokenizer is None:
            raise ValueError("text parts need a tokenizer; pass token ids instead")
        return list(tokenizer(content, add_special_tokens=False)["input_ids"])
    return [int(t) for t in content]


def build_layout(tokenizer: Any, parts: Sequence[Part], *, start: Sequence[int] | None = None
                 ) -> PromptLayout:
    """Token ids of the whole prompt and the span of every (non-empty) segment.

    `start`: tokens to begin with; default: the tokenizer's leading special tokens
    (none without a tokenizer)."""
    if isinstance(parts, str | Segment):
        parts = [parts]
    ids = list(start_tokens(tokenizer) if start is None else start)
    spans: list[SegmentSpan] = []
    for part in parts:
        if isinstance(part, Segment):
            tokens = _encode(tokenizer, part.content)
            if tokens:
                spans.append(SegmentSpan(len(ids), len(ids) + len(tokens), tuple(tokens)))
            ids.extend(tokens)
        else:
            ids.extend(_encode(tokenizer, part))
    if not ids:
        raise ValueError("empty prompt")
    return PromptLayout(ids, spans)
