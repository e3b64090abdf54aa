"""Per-request cache controls: the body's `cache` object and the Cache-Control header.

Body (what the OpenAI SDK sends via `extra_body={"cache": {...}}`):
    ttl        seconds to keep the stored answer (storage TTL)
    s-maxage   oldest entry (seconds) this request accepts; not a storage TTL
    no-cache   skip the lookup, go upstream, store the fresh answer
    no-store   do not store this answer
    namespace  a separate key space (printable, no spaces: `faq`, `user:12345`)
    use-cache  opt in (needed under `mode: default_off`) or out (false)

Header (HTTP request semantics): `no-cache`, `no-store`, and `max-age=N` / `s-maxage=N`,
which both bound the age of an entry the client accepts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from hitrate.keys import NAMESPACE_RULE, valid_namespace

Mode = Literal["default_on", "default_off"]


# Longest TTL or age a request may ask for: 10 years. Longer values are refused (a 400), as
# they would overflow a backend's expiry arithmetic (Redis keeps milliseconds in an int64).
MAX_SECONDS = 10 * 365 * 86400


class ControlError(ValueError):
    """A cache control the client sent is malformed; the gateway answers 400."""


@dataclass(frozen=True, slots=True)
class Controls:
    ttl: float | None = None
    max_age: float | None = None
    no_cache: bool = False
    no_store: bool = False
    namespace: str | None = None
    use_cache: bool | None = None

    def enabled(self, mode: Mode) -> bool:
        if self.use_cache is not None:
            return self.use_cache
        return mode == "default_on"


# RFC 9111 delta-seconds: ASCII digits only (str.isdigit() also accepts "\u00b2", "\u0663").
_DELTA_SECONDS = re.compile(r"[0-9]+")

_KNOWN_BODY_FIELDS = {"ttl", "s-maxage", "no-cache", "no-store", "namespace", "use-cache"}


def _seconds(name: str, value: Any, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ControlError(f"cache.{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value > MAX_SECONDS:
        raise ControlError(f"cache.{name} must be at most {MAX_SECONDS} seconds (10 years)")
    if value < 0 or (value == 0 and not allow_zero):
        raise ControlError(f"cache.{name} must be {'>= 0' if allow_zero else '> 0'}")
    return float(value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ControlError(f"cache.{name} must be true or false, got {value!r}")
    return value


def _from_body(cache: Any) -> dict[str, Any]:
    if cache is None:
        return {}
    if not isinstance(cache, dict):
        raise ControlError("`cache` must be an object such as {\"ttl\": 600}")
    unknown = set(cache) - _KNOWN_BODY_FIELDS
    if unknown:
        raise ControlError(
            f"unknown cache control {sorted(unknown)[0]!r}; "
            f"known: {', '.join(sorted(_KNOWN_BODY_FIELDS))}"
        )
    out: dict[str, Any] = {}
    if "ttl" in cache:
        out["ttl"] = _seconds("ttl", cache["ttl"], allow_zero=False)
    if "s-maxage" in cache:
        out["max_age"] = _seconds("s-maxage", cache["s-maxage"], allow_zero=True)
    if "no-cache" in cache:
        out["no_cache"] = _flag("no-cache", cache["no-cache"])
    if "no-store" in cache:
        out["no_store"] = _flag("no-store", cache["no-store"])
    if "use-cache" in cache:
        out["use_cache"] = _flag("use-cache", cache["use-cache"])
    if "namespace" in cache:
        namespace = cache["namespace"]
        if not valid_namespace(namespace):
            raise ControlError(f"cache.namespace must be {NAMESPACE_RULE}")
        out["namespace"] = namespace
    return out


def _from_header(header: str | None) -> dict[str, Any]:
    if not header:
        return {}
    out: dict[str, Any] = {}
    for raw in header.split(","):
        directive = raw.strip().lower()
        if not directive:
            continue
        name, _, value = directive.partition("=")
        name = name.strip()
        if name == "no-cache":
            out["no_cache"] = True
        elif name == "no-store":
            out["no_store"] = True
        elif name in ("max-age", "s-maxage"):
            value = value.strip().strip('"')
            if not _DELTA_SECONDS.fullmatch(value):
                raise ControlError(f"Cache-Control {name} needs a whole number of seconds")
            # RFC 9111 1.2.2: a delta-seconds too large to represent means "very old".
            age = float(min(int(value), MAX_SECONDS) if len(value) <= 12 else MAX_SECONDS)
            out["max_age"] = min(age, out.get("max_age", age))
        # Other directives (private, no-transform, ...) say nothing to a response cache.
    return out


def parse_controls(cache: Any, cache_control_header: str | None) -> Controls:
    """Merge header and body controls; the body wins where both speak."""
    merged = _from_header(cache_control_header)
    body = _from_body(cache)
    if "max_age" in merged and "max_age" in body:
        body["max_age"] = min(merged["max_age"], body["max_age"])
    merged.update(body)
    return Controls(**merged)
