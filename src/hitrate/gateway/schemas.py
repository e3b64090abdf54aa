"""Request validation for the OpenAI routes.

Only the shape is checked (strict types, no coercion of "0.5" into 0.5); the original
body is forwarded untouched, so parameters we don't know pass through.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hitrate.errors import APIError, bad_request
from hitrate.keys import json_depth

# Deepest nesting a request body may have. Real requests stay far below it (a JSON schema
# in `response_format` or `tools` a dozen levels deep is already unusual); deeper bodies
# are refused before anything recurses over them.
MAX_DEPTH = 64


class _Strict(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class Message(_Strict):
    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class _Sampling(_Strict):
    model: str = Field(min_length=1)
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    n: int | None = Field(default=None, ge=1, le=128)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    cache: dict[str, Any] | None = None


class ChatRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = None
    echo: bool | None = None
    best_of: int | None = None


class EmbeddingRequest(_Strict):
    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1)
    cache: dict[str, Any] | None = None


def validate(schema: type[BaseModel], body: Any, raw: bytes | None = None) -> None:
    """Checks `body` against a kind's request schema; a 400 naming the parameter.
    `raw` (the bytes `body` was parsed from) lets the nesting check be skipped when the
    body has too few brackets to be that deep, which is nearly always."""
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object", code="invalid_json")
    if raw is None or raw.count(b"{") + raw.count(b"[") > MAX_DEPTH:
        check_depth(body)
    try:
        schema.model_validate(body)
    except ValidationError as exc:
        raise _from_pydantic(exc) from None


def check_depth(body: Any) -> None:
    """400 for a body nested deeper than `MAX_DEPTH` (iterative: cannot overflow)."""
    if json_depth(body, MAX_DEPTH) > MAX_DEPTH:
        raise bad_request(f"request body is nested more than {MAX_DEPTH} levels deep",
                          code="too_deeply_nested")


_TYPE_TAG = re.compile(r"^(str|int|float|bool|list|dict|none)(\[.*\])?$|\[")


def _from_pydantic(exc: ValidationError) -> APIError:
    error = exc.errors(include_url=False)[0]
    parts: list[str] = []
    union_member = False
    for part in error["loc"]:
        # Union errors add the member type ("str", "list[int]") to the location.
        if isinstance(part, str) and _TYPE_TAG.search(part):
            union_member = True
            break
        parts.append(str(part))
    param = ".".join(parts)
    detail = "has an invalid type or value" if union_member else error["msg"]
    message = f"{param}: {detail}" if param else detail
    code = "missing_required_parameter" if error["type"] == "missing" else "invalid_type"
    return bad_request(message, param=param or None, code=code)


class ResponsesRequest(_Strict):
    """OpenAI Responses API (`POST /v1/responses`)."""

    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    stream: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_output_tokens: int | None = Field(default=None, ge=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    cache: dict[str, Any] | None = None


class AnthropicMessage(_Strict):
    role: str
    content: str | list[dict[str, Any]]


class MessagesRequest(_Strict):
    """Anthropic Messages API (`POST /v1/messages`)."""

    model: str = Field(min_length=1)
    messages: list[AnthropicMessage] = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    system: str | list[dict[str, Any]] | None = None
    stream: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    stop_sequences: list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None
    cache: dict[str, Any] | None = None
