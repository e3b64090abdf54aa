"""Per-key cache settings: what a virtual key's requests may ask of the cache.

Each request's controls (the body's `cache` object and the Cache-Control header, parsed
by `hitrate.controls`) are resolved against its key's settings before the engine plans
the request (`ResponseCache.allowed`, which calls `effective_controls` with the cache's
defaults; the gateway's proxy calls it). One rule, applied the same way to every setting:

- what the request leaves unsaid, the key's defaults fill in (mode, ttl);
- what the request asks for and the key forbids is refused with 403, naming the
  control (`use-cache`, `no-cache`, `no-store`, `ttl`, `namespace`); nothing a client
  asked for explicitly is silently changed, so a client never believes it got
  something it did not;
- a gateway-wide default the key does not allow (a `cache.ttl` above the key's
  `max_ttl`) is clamped, since the client did not ask for it.

Shared namespaces (the config's `shared_namespaces`, one entry for every tenant) are
readable and writable by every key unless its `shared_read` / `shared_write` lists say
otherwise: read-only turns the request's store off, write-only turns its lookup off,
neither refuses the request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from hitrate.controls import Controls

CacheMode = Literal["on", "off", "default_off"]
MODES: tuple[str, ...] = ("on", "off", "default_off")


class ControlForbidden(ValueError):
    """A request asked for a cache control its key does not allow (the gateway: 403)."""

    def __init__(self, message: str, control: str):
        super().__init__(message)
        self.control = control  # the body field name: ttl, no-cache, ...


@dataclass(frozen=True, slots=True)
class KeySettings:
    """`None` everywhere means "as the gateway does": a key with default settings
    behaves exactly like a key without any."""

    mode: CacheMode | None = None  # on | off | default_off (None: the gateway's cache.mode)
    ttl: float | None = None  # default storage TTL for this key's answers
    max_ttl: float | None = None  # the largest ttl a request may ask for
    allow_no_cache: bool = True  # may skip the lookup (no-cache, use-cache: false)
    allow_no_store: bool = True  # may ask that its answer not be stored
    shared_read: frozenset[str] | None = None  # shared namespaces it may read (None: all)
    shared_write: frozenset[str] | None = None  # ... and write (None: all)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> KeySettings | None:
        """From a validated config/admin mapping (`config.KeyCacheConfig.model_dump()`)."""
        if not data:
            return None

        def names(value: Iterable[str] | None) -> frozenset[str] | None:
            return None if value is None else frozenset(value)

        return cls(mode=data.get("mode"), ttl=data.get("ttl"), max_ttl=data.get("max_ttl"),
                   allow_no_cache=data.get("allow_no_cache", True),
                   allow_no_store=data.get("allow_no_store", True),
                   shared_read=names(data.get("shared_read")),
                   shared_write=names(data.get("shared_write")))

    def public(self) -> dict[str, Any]:
        """What `GET /keys` shows and the keys file keeps."""
        return {"mode": self.mode, "ttl": self.ttl, "max_ttl": self.max_ttl,
                "allow_no_cache": self.allow_no_cache, "allow_no_store": self.allow_no_store,
                "shared_read": None if self.shared_read is None else sorted(self.shared_read),
                "shared_write": None if self.shared_write is None else sorted(self.shared_write)}


def effective_controls(controls: Controls, settings: KeySettings, *, default_ttl: float | None,
                       default_namespace: str, shared_namespaces: frozenset[str]) -> Controls:
    """`controls` as the key allows them (see the module docstring); raises
    `ControlForbidden` for a control the key does not allow."""
    use_cache = controls.use_cache
    if settings.mode == "off":
        if use_cache:
            raise ControlForbidden("caching is turned off for this API key; "
                                   "`use-cache: true` is not allowed", "use-cache")
        return Controls(use_cache=False)
    if not settings.allow_no_cache:
        if controls.no_cache:
            raise ControlForbidden("this API key may not skip the cache lookup (no-cache)",
                                   "no-cache")
        if use_cache is False:
            raise ControlForbidden("this API key may not bypass the cache (use-cache: false)",
                                   "use-cache")
    if controls.no_store and not settings.allow_no_store:
        raise ControlForbidden("this API key may not ask for its answers not to be stored "
                               "(no-store)", "no-store")
    if use_cache is None and settings.mode is not None:
        use_cache = settings.mode == "on"

    ttl = controls.ttl
    if ttl is not None and settings.max_ttl is not None and ttl > settings.max_ttl:
        raise ControlForbidden(f"this API key allows a ttl of at most {settings.max_ttl:g} "
                               "seconds", "ttl")
    if ttl is None:
        ttl = settings.ttl if settings.ttl is not None else default_ttl
    if settings.max_ttl is not None:
        ttl = settings.max_ttl if ttl is None else min(ttl, settings.max_ttl)

    no_cache, no_store = controls.no_cache, controls.no_store
    namespace = controls.namespace or default_namespace
    if namespace in shared_namespaces:
        read = settings.shared_read is None or namespace in settings.shared_read
        write = settings.shared_write is None or namespace in settings.shared_write
        if not (read or write):
            raise ControlForbidden(f"this API key may not use the shared namespace "
                                   f"{namespace!r}", "namespace")
        no_cache = no_cache or not read
        no_store = no_store or not write
    return Controls(ttl=ttl, max_age=controls.max_age, no_cache=no_cache, no_store=no_store,
                    namespace=controls.namespace, use_cache=use_cache)
