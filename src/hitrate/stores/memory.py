"""Process-memory store: LRU bounded by total bytes and by entry count, with TTL."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterator

from hitrate.stores.base import ByteStore, StoreStats


class MemoryStore(ByteStore):
    name = "memory"

    def __init__(self, max_bytes: int = 256 * 1024 * 1024, max_entries: int | None = None):
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        # key -> (value, expires_at or None); order = recency, oldest first.
        self._data: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self._bytes = 0
        self._stats = StoreStats()

    def _get_now(self, key: str, now: float) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            self._stats.misses += 1
            return None
        value, expires_at = item
        if expires_at is not None and now >= expires_at:
            self._remove(key)
            self._stats.misses += 1
            return None
        self._data.move_to_end(key)
        self._stats.hits += 1
        return value

    async def get(self, key: str) -> bytes | None:
        return self._get_now(key, time.time())

    async def get_many(self, keys):  # type: ignore[override]
        now = time.time()
        return [self._get_now(key, now) for key in keys]

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        size = len(value)
        if size > self.max_bytes:
            return  # would evict everything and still not fit
        if key in self._data:
            self._remove(key)
        self._data[key] = (value, time.time() + ttl if ttl else None)
        self._bytes += size
        self._evict()

    def _remove(self, key: str) -> None:
        value, _ = self._data.pop(key)
        self._bytes -= len(value)

    def _evict(self) -> None:
        while self._bytes > self.max_bytes or (
            self.max_entries is not None and len(self._data) > self.max_entries
        ):
            _, (value, _) = self._data.popitem(last=False)
            self._bytes -= len(value)
            self._stats.evictions += 1

    async def delete(self, key: str) -> bool:
        if key in self._data:
            self._remove(key)
            return True
        return False

    async def scan(self, prefix: str = "") -> AsyncIterator[str]:
        now = time.time()
        for key, (_, expires_at) in list(self._data.items()):
            if key.startswith(prefix) and (expires_at is None or now < expires_at):
                yield key

    def stats(self) -> StoreStats:
        self._stats.entries = len(self._data)
        self._stats.bytes = self._bytes
        return self._stats
