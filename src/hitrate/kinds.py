"""Endpoint kinds: one spec per API the cache speaks, and the table of them.

Everything that differs between chat completions, legacy completions, embeddings (and
any API added later) is a field of `EndpointKind`: where it is routed, how its request
is validated, what stays out of its key, what may be stored, how a stream is captured
and replayed, which text the semantic layer embeds, and how its usage is read. The
routes, the proxy, the engine, the client wrapper and the savings all read this table;
none of them compares kind names. Adding an API is one spec here plus its route.

An unknown kind name is a `KeyError` at the point it is looked up (startup, for config),
never a silent "not stored".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from hitrate import policy, prompts
from hitrate.errors import APIError, anthropic_error_bytes


class StreamCapture(Protocol):
    """Assembles an upstream event stream into the stored (non-streaming) response."""

    done: bool  # the stream's terminal event arrived

    def feed(self, raw: bytes) -> None: ...

    @property
    def complete(self) -> bool: ...  # ended normally: safe to store

    def response(self) -> dict[str, Any]: ...


Rejection = Callable[[dict[str, Any], Any], "str | None"]
Replay = Callable[[dict[str, Any], dict[str, Any]], Iterator[bytes]]
Usage = Callable[[dict[str, Any]], "tuple[int, int, int]"]


@dataclass(frozen=True, slots=True)
class EndpointKind:
    """One API shape. `name` is part of every cache key of this kind."""

    name: str
    routes: tuple[str, ...]  # gateway paths (POST)
    upstream_path: str  # path appended to a deployment's api_base
    schema: Any  # a pydantic model validating the request body (shape only)
    rejection: Rejection  # (request, response) -> reason it may not be stored, or None
    usage: Usage  # stored response -> (prompt, completion, cached prompt) tokens
    capture: Callable[[], StreamCapture] | None = None  # None: this kind never streams
    replay: Replay | None = None  # (stored response, request) -> SSE bytes
    # (canonical request) -> (text to embed, everything else) or None: not eligible.
    semantic_split: Callable[[dict[str, Any]], tuple[str, dict[str, Any]] | None] | None = None
    # Fields of this kind's requests that never change the answer (beyond keys.EXCLUDED_FIELDS).
    excluded_fields: frozenset[str] = frozenset()
    batched: bool = False  # one cache entry per input item (embeddings)
    error_body: Callable[[APIError], bytes] = field(default=APIError.body_bytes)
    # How a deployment's API key goes upstream: "bearer" (Authorization) or "x-api-key".
    auth: str = "bearer"
    default_headers: Mapping[str, str] = field(default_factory=dict)  # sent upstream
    # Client request headers forwarded upstream; their values are part of the key.
    forwarded_headers: tuple[str, ...] = ()
    # Uncached routes of the same API forwarded as they are: (path, methods).
    passthrough: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def streams(self) -> bool:
        return self.capture is not None

    def __repr__(self) -> str:
        return f"EndpointKind({self.name!r})"


def _openai_usage(response: dict[str, Any]) -> tuple[int, int, int]:
    usage = response.get("usage")
    if not isinstance(usage, dict):
        return 0, 0, 0
    try:
        prompt = int(usage.get("prompt_tokens") or usage.get("input_tokens") or 0)
        completion = int(usage.get("completion_tokens") or usage.get("output_tokens") or 0)
        details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
        cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    except (TypeError, ValueError):
        return 0, 0, 0
    return prompt, completion, cached


def _anthropic_usage(response: dict[str, Any]) -> tuple[int, int, int]:
    """Anthropic counts cache reads and writes apart from `input_tokens`; the prompt is
    all three, of which the reads were cached."""
    usage = response.get("usage")
    if not isinstance(usage, dict):
        return 0, 0, 0
    try:
        cached = int(usage.get("cache_read_input_tokens") or 0)
        prompt = (int(usage.get("input_tokens") or 0) + cached
                  + int(usage.get("cache_creation_input_tokens") or 0))
        return prompt, int(usage.get("output_tokens") or 0), cached
    except (TypeError, ValueError):
        return 0, 0, 0


def _embedding_usage(item: dict[str, Any]) -> tuple[int, int, int]:
    try:
        return int(item.get("tokens") or 0), 0, 0
    except (TypeError, ValueError):
        return 0, 0, 0


def _build_table() -> dict[str, EndpointKind]:
    # Imported here: the gateway's schema and SSE modules import this one's users.
    from hitrate.gateway import schemas, sse, sse_messages, sse_responses

    kinds = [
        EndpointKind(
            name="chat",
            routes=("/v1/chat/completions", "/chat/completions"),
            upstream_path="/chat/completions",
            schema=schemas.ChatRequest,
            rejection=policy.chat_rejection,
            usage=_openai_usage,
            capture=sse.ChatCapture,
            replay=sse.replay_chat,
            semantic_split=prompts.split_chat,
        ),
        EndpointKind(
            name="completion",
            routes=("/v1/completions", "/completions"),
            upstream_path="/completions",
            schema=schemas.CompletionRequest,
            rejection=policy.completion_rejection,
            usage=_openai_usage,
            capture=sse.CompletionCapture,
            replay=sse.replay_completion,
            semantic_split=prompts.split_completion,
        ),
        EndpointKind(
            name="embedding",
            routes=("/v1/embeddings", "/embeddings"),
            upstream_path="/embeddings",
            schema=schemas.EmbeddingRequest,
            rejection=lambda _request, item: policy.embedding_rejection(item),
            usage=_embedding_usage,
            batched=True,
        ),
        EndpointKind(
            name="responses",
            routes=("/v1/responses", "/responses"),
            upstream_path="/responses",
            schema=schemas.ResponsesRequest,
            rejection=policy.responses_rejection,
            usage=_openai_usage,
            capture=sse_responses.ResponsesCapture,
            replay=sse_responses.replay_responses,
            semantic_split=prompts.split_responses,
            excluded_fields=frozenset({"background", "include_obfuscation"}),
            passthrough=(("/v1/responses/{rest:path}", ("GET", "DELETE", "POST")),),
        ),
        EndpointKind(
            name="messages",
            routes=("/v1/messages",),
            upstream_path="/messages",
            schema=schemas.MessagesRequest,
            rejection=policy.messages_rejection,
            usage=_anthropic_usage,
            capture=sse_messages.MessagesCapture,
            replay=sse_messages.replay_messages,
            semantic_split=prompts.split_messages,
            error_body=anthropic_error_bytes,
            auth="x-api-key",
            default_headers={"anthropic-version": "2023-06-01"},
            forwarded_headers=("anthropic-version", "anthropic-beta"),
            passthrough=(("/v1/messages/count_tokens", ("POST",)),),
        ),
    ]
    return {kind.name: kind for kind in kinds}


_TABLE: dict[str, EndpointKind] | None = None


def table() -> Mapping[str, EndpointKind]:
    global _TABLE
    if _TABLE is None:
        _TABLE = _build_table()
    return _TABLE


def get(name: str) -> EndpointKind:
    """The kind called `name`; KeyError naming the known ones otherwise."""
    try:
        return table()[name]
    except KeyError:
        raise KeyError(f"unknown endpoint kind {name!r} (known: {', '.join(table())})") from None


def for_upstream_path(path: str) -> EndpointKind | None:
    """The kind whose upstream path `path` ends with (longest match: /chat/completions
    before /completions)."""
    for kind in sorted(table().values(), key=lambda k: -len(k.upstream_path)):
        if path.endswith(kind.upstream_path):
            return kind
    return None
