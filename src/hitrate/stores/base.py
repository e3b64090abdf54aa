"""The byte-store protocol every backend implements.

Both halves of hitrate store bytes through it: the response cache (encoded entries)
and the KV cache (encoded tensor chunks). A store knows nothing about what the bytes
mean; validation (checksums, expiry of the record itself) happens above it.

Callers are coroutines on the event loop. Rules for implementers:
- Never block the event loop: a store that does disk or socket I/O with a synchronous
  library runs it in a thread (see `disk.py`).
- Never raise for a missing key; `get` returns None. Raise only for real failures
  (connection, I/O); the engine turns those into misses and counts them.
- TTL is in seconds, None means "no expiry". An expired value must never be returned.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass


@dataclass(slots=True)
class StoreStats:
    entries: int = 0
    bytes: int = 0
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    # Shared backends (circuit breaker, see stores/circuit.py); always 0 for embedded ones.
    errors: int = 0          # operations that failed or timed out
    timeouts: int = 0        # of which timed out
    rejected: int = 0        # operations refused at once while the circuit was open
    circuit_opens: int = 0   # times the circuit opened


class ByteStore(ABC):
    """Async key -> bytes store with per-key TTL."""

    name: str = "store"

    @abstractmethod
    async def get(self, key: str) -> bytes | None:
        """Called on every lookup. Returns the value or None if absent/expired."""

    async def get_with_ttl(self, key: str) -> tuple[bytes | None, float | None]:
        """Called by the tiered store on an L1 miss: the value and its remaining TTL in
        seconds (None: no expiry, or the backend cannot tell). Override when the backend
        can answer both in one round trip."""
        return await self.get(key), None

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Called for batches (embedding inputs). Override when the backend can pipeline."""
        return [await self.get(key) for key in keys]

    @abstractmethod
    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Called after a cacheable upstream answer. Overwrites any existing value."""

    async def set_many(self, items: Sequence[tuple[str, bytes, float | None]]) -> None:
        for key, value, ttl in items:
            await self.set(key, value, ttl)

    @abstractmethod
    async def delete(self, key: str) -> bool:
        """Called for corrupt entries and by admin deletes. True if something was removed."""

    @abstractmethod
    def scan(self, prefix: str = "") -> AsyncIterator[str]:
        """Yields live keys starting with `prefix`. Admin and maintenance use only."""

    async def clear(self, prefix: str = "") -> int:
        """Deletes every key starting with `prefix` (only hitrate's keys: callers pass
        a `hitrate:` prefix). Returns how many were removed."""
        removed = 0
        keys = [key async for key in self.scan(prefix)]
        for key in keys:
            removed += bool(await self.delete(key))
        return removed

    async def ping(self) -> bool:
        """Admin health check: True if the backend answers. Embedded stores always do."""
        return True

    def failure(self) -> str | None:
        """Why the backend is failing right now, in words (shown by /cache/health and as
        `backend.up` in /cache/stats), or None. Must not do I/O."""
        return None

    def circuit_state(self) -> str | None:
        """"closed" | "open" | "half_open" for stores behind a circuit breaker, else None.
        Read by metrics and the admin API; must not do I/O."""
        return None

    def stats(self) -> StoreStats:
        """Cheap, in-process counters; no I/O."""
        return StoreStats()

    async def close(self) -> None:  # noqa: B027 - optional hook, most stores need nothing
        """Called once at shutdown."""
