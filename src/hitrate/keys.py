"""Request -> canonical form -> cache key.

The key covers everything that can change the answer and nothing that cannot.
We include every field of the request body except an explicit exclude list, so an
unknown parameter that changes the output (a new OpenAI knob, a vLLM extra) splits
the cache instead of serving a wrong answer: a miss only costs money.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any
from urllib.parse import quote, unquote

import orjson

# Fields that never change the generated answer (transport, bookkeeping, our own controls).
EXCLUDED_FIELDS = frozenset(
    {
        "stream",
        "stream_options",
        "user",
        "metadata",
        "cache",
        "store",
        "request_id",
        "session_id",
        "trace_id",
        "litellm_session_id",
        "litellm_call_id",
        "service_tier",
        "prompt_cache_key",
        "safety_identifier",
    }
)

KEY_VERSION = "v1"
NAMESPACE_MAX_LENGTH = 128
NAMESPACE_RULE = (f"1-{NAMESPACE_MAX_LENGTH} printable characters, no spaces or control "
                  "characters (e.g. `faq`, `user:12345`)")


def valid_namespace(namespace: Any) -> bool:
    """Namespaces come from clients (LiteLLM's own example is `user:12345`) and end up in
    keys, response headers and log lines: printable, no whitespace, bounded length."""
    return (isinstance(namespace, str) and 0 < len(namespace) <= NAMESPACE_MAX_LENGTH
            and namespace.isprintable() and not any(c.isspace() for c in namespace))


@functools.lru_cache(maxsize=4096)
def encode_namespace(namespace: str) -> str:
    """The namespace as spelled inside a key: percent-encoded beyond `A-Z a-z 0-9 _ . - ~`,
    so a key stays ASCII (it is sent as a header) and `:` always ends the namespace -
    the prefix scan that flushes `user` cannot reach `user:12345` (`user%3A12345`).
    Cached: every request's key spells its namespace, and there are few namespaces."""
    return quote(namespace, safe="")


def decode_namespace(encoded: str) -> str:
    return unquote(encoded)


# Deepest JSON nesting a request may have. The gateway refuses deeper bodies with a 400
# before this is reached (gateway/schemas.py, 64); this bound keeps the recursion below
# far from Python's limit and under orjson's (254) for library callers too.
MAX_DEPTH = 128
_CONTAINERS = frozenset({dict, list, tuple})


def json_depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of a JSON-like value (a scalar is 0), counted iteratively; stops
    at `limit + 1`, so a hostile value costs at most `limit` levels of work."""
    if type(value) not in _CONTAINERS:
        return 0
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]  # containers only: a flat list costs no pushes
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return depth
        deepest = max(deepest, depth)
        children = item.values() if type(item) is dict else item
        # Exact types (what a JSON parser builds): 3-5x faster than isinstance on big lists.
        stack.extend((child, depth + 1) for child in children if type(child) in _CONTAINERS)
    return deepest


def _normalize(value: Any, depth: int = 0) -> Any:
    """Make equal requests spell the same: 1.0 == 1, 0.70 == 0.7, key order ignored."""
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        return value
    if isinstance(value, dict | list):
        if depth >= MAX_DEPTH:
            raise ValueError(f"request is nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            return {k: _normalize(v, depth + 1) for k, v in value.items()}
        return [_normalize(v, depth + 1) for v in value]
    return value


def _normalize_message(message: Any) -> Any:
    if not isinstance(message, dict):
        return _normalize(message, 2)
    out = _normalize(message, 2)  # body -> messages -> message
    content = out.get("content")
    # [{"type": "text", "text": "hi"}] and "hi" mean the same thing to every provider.
    if (
        isinstance(content, list)
        and len(content) == 1
        and isinstance(content[0], dict)
        and content[0].get("type") == "text"
        and set(content[0]) <= {"type", "text"}
        and isinstance(content[0].get("text"), str)
    ):
        out["content"] = content[0]["text"]
    return out


def canonical_request(body: dict[str, Any],
                      excluded: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The part of a request body that decides the answer, normalized. `excluded`: a
    kind's own fields that never change its answer, on top of EXCLUDED_FIELDS.

    Raises ValueError for a body nested more than `MAX_DEPTH` levels deep."""
    canon: dict[str, Any] = {}
    for field, value in body.items():
        if field in EXCLUDED_FIELDS or field in excluded:
            continue
        if field == "messages" and isinstance(value, list):
            canon[field] = [_normalize_message(m) for m in value]
        else:
            canon[field] = _normalize(value, 1)
    return canon


def canonical_bytes(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def digest(obj: Any) -> str:
    return hashlib.blake2b(canonical_bytes(obj), digest_size=16).hexdigest()


def make_key(kind: str, namespace: str, canonical: Any, scope: str = "") -> str:
    """`hitrate:v1:<namespace>:<kind>:<digest>`.

    The namespace (encoded: `encode_namespace`) is a readable prefix so that a namespace
    can be listed and deleted with a prefix scan; `scope` (a tenant) is hashed in, never
    readable.
    """
    payload = canonical if not scope else {"scope": scope, "request": canonical}
    return f"{namespace_prefix(namespace)}{kind}:{digest(payload)}"


def namespace_prefix(namespace: str) -> str:
    return f"hitrate:{KEY_VERSION}:{encode_namespace(namespace)}:"


def namespace_of(key: str) -> str | None:
    """The namespace of a response-cache key, or None for any other string."""
    parts = key.split(":")
    if len(parts) != 5 or parts[0] != "hitrate" or not parts[2]:
        return None
    return decode_namespace(parts[2])


ALL_KEYS_PREFIX = "hitrate:"
