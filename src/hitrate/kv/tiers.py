"""KV tiers: where encoded chunks live, searched in order (fastest first).

A tier holds encoded chunks (see `codec.py`) under chunk keys. The engine owns every
tier and is the only caller; tiers never call each other. Host tiers are thin
adapters over the shared byte stores (`hitrate.stores`): the CPU tier is a
`MemoryStore` (LRU by bytes), the disk tier a `DiskStore`, the remote tiers the Redis
and S3 stores. There is no second Redis or disk layer here.

All tier methods run on the engine's I/O event loop thread (`KVEngine._loop`), one
coroutine at a time per call site. Implementations follow the byte-store rules: never
block that loop (a synchronous client runs in a thread), never raise for a missing
key, raise only for real failures, which the engine turns into misses.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hitrate.stores.base import ByteStore

if TYPE_CHECKING:
    import torch


@dataclass(slots=True)
class TierStats:
    name: str
    kind: str
    hits: int = 0
    misses: int = 0
    puts: int = 0
    put_bytes: int = 0
    read_bytes: int = 0
    corrupt: int = 0
    errors: int = 0
    hit_tokens: int = 0  # tokens whose KV `retrieve` served from this tier
    evictions: int = 0
    entries: int | None = None
    bytes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class KVTier(ABC):
    """One level of the KV cache.

    `verify`: whether chunks read from this tier must pass their checksum before use.
    True for anything that crossed a process boundary or touched a disk; False for
    tiers holding only chunks this process encoded or already verified.
    """

    name: str = "tier"
    kind: str = "tier"
    verify: bool = True
    #: True when values live in this process (a lookup costs no I/O); the engine
    #: checks such tiers first and promotes hits into them.
    local: bool = False

    @abstractmethod
    async def get_many(self, keys: Sequence[str]) -> list[Any | None]:
        """Called by the engine during `lookup` and `retrieve`, on the I/O loop, with
        the keys of one prompt's chunks still missing from the tiers above.
        Returns one value per key (encoded bytes, or a tier-specific object that
        `codec.decode`-style readers accept), None where absent or expired.
        Must not raise for missing keys, must not block the loop, must not copy the
        values of host tiers (the engine decodes them in place)."""

    async def contains_many(self, keys: Sequence[str]) -> list[bool]:
        """Called by `store` (on the I/O loop) to skip chunks the tier already holds.
        Default: a `get_many`. Override when the backend can answer without moving
        the value. Must not mutate recency in a way that evicts anything."""
        return [v is not None for v in await self.get_many(keys)]

    @abstractmethod
    async def put_many(self, items: Sequence[tuple[str, Any]]) -> None:
        """Called by the engine's writer (asynchronously, after `store` returned) and
        by promotion after a lower-tier hit. Overwrites. Must not block the loop, and
        must not keep references to caller tensors: values are immutable bytes."""

    @abstractmethod
    async def delete(self, key: str) -> bool:
        """Called when a chunk read from this tier failed its check. True if removed."""

    async def clear(self, prefix: str) -> int:
        """Called by admin/CLI (`hitrate kv clear`) and tests; `prefix` is always a
        `hitrate:kv:` key prefix. Returns how many chunks were removed."""
        return 0

    def stats(self) -> TierStats:
        """Cheap in-process counters for `hitrate kv stats` and metrics; no I/O."""
        return TierStats(self.name, self.kind)

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Called once by `KVEngine.close`, after pending writes were flushed."""


class StoreTier(KVTier):
    """A tier over any `ByteStore`: CPU memory, disk, Redis, S3, ...

    `serde` (`hitrate.kv.serde`): how chunks are written (default naive); reads accept
    every serde. Compression runs on a worker thread, never on the I/O loop. `reader`:
    an object whose `get_many` replaces the store's for reads (Redis bulk reads)."""

    def __init__(self, store: ByteStore, *, name: str | None = None, kind: str | None = None,
                 verify: bool = True, local: bool = False, ttl: float | None = None,
                 serde: str = "naive", reader: Any = None):
        from hitrate.kv import serde as serdes

        self.store = store
        self.reader = reader  # a faster bulk `get_many` (kv.redis_reader), or None
        self.name = name or store.name
        self.kind = kind or store.name
        self.verify = verify
        self.local = local
        self.ttl = ttl
        self.serde = serdes.get(serde)
        self._stats = TierStats(self.name, self.kind)

    async def get_many(self, keys: Sequence[str]) -> list[Any | None]:
        from hitrate.kv import serde

        values = await (self.reader or self.store).get_many(keys)
        hits = [v for v in values if v is not None]
        self._stats.hits += len(hits)
        self._stats.misses += len(values) - len(hits)
        self._stats.read_bytes += sum(len(v) for v in hits)
        if any(serde.is_wrapped(v) for v in hits):
            values = await asyncio.to_thread(serde.loads_many, values)
        return values

    async def contains_many(self, keys: Sequence[str]) -> list[bool]:
        exists = getattr(self.store, "exists_many", None)
        if exists is not None:
            return list(await exists(keys))
        return [v is not None for v in await self.store.get_many(keys)]

    async def put_many(self, items: Sequence[tuple[str, Any]]) -> None:
        if self.serde.name != "naive":
            from hitrate.kv.serde import dumps_many

            packed = await asyncio.to_thread(dumps_many, self.serde, [v for _, v in items])
            items = [(key, value) for (key, _), value in zip(items, packed, strict=True)]
        await self.store.set_many([(key, value, self.ttl) for key, value in items])
        self._stats.puts += len(items)
        self._stats.put_bytes += sum(len(v) for _, v in items)

    async def delete(self, key: str) -> bool:
        return await self.store.delete(key)

    async def clear(self, prefix: str) -> int:
        return await self.store.clear(prefix)

    def stats(self) -> TierStats:
        s = self.store.stats()
        self._stats.entries, self._stats.bytes = s.entries, s.bytes
        self._stats.extra["evictions"] = self._stats.evictions = s.evictions
        return self._stats

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
        await self.store.close()


class CPUTier(StoreTier):
    """Process memory, LRU by bytes (a `MemoryStore`). Holds only chunks this process
    encoded or verified, so reads skip the checksum."""

    def __init__(self, max_bytes: int):
        from hitrate.stores.memory import MemoryStore

        super().__init__(MemoryStore(max_bytes=max_bytes), name="cpu", kind="cpu",
                         verify=False, local=True)


class GPUTier(KVTier):
    """Decoded chunk tensors resident on a CUDA device, LRU by bytes.

    Values are `DeviceChunk`s, not bytes. Put copies host bytes into a pinned staging
    buffer and then to the device without blocking the loop's thread on the copy
    (non_blocking=True from pinned memory). Only built when `torch.cuda.is_available()`.
    """

    name = "gpu"
    kind = "gpu"
    verify = False
    local = True

    def __init__(self, max_bytes: int, device: str = "cuda"):
        self.max_bytes = max_bytes
        self.device = device
        self._data: OrderedDict[str, DeviceChunk] = OrderedDict()
        self._bytes = 0
        self._stats = TierStats(self.name, self.kind)

    async def get_many(self, keys: Sequence[str]) -> list[Any | None]:
        out: list[Any | None] = []
        for key in keys:
            value = self._data.get(key)
            if value is None:
                self._stats.misses += 1
            else:
                self._data.move_to_end(key)
                self._stats.hits += 1
            out.append(value)
        return out

    async def put_many(self, items: Sequence[tuple[str, Any]]) -> None:
        from hitrate.kv import codec

        for key, value in items:
            if isinstance(value, DeviceChunk):
                chunk = value
            else:
                header, host = codec.decode(value, check=False)
                staged = host.pin_memory()
                chunk = DeviceChunk(header, staged.to(self.device, non_blocking=True))
            size = chunk.header.payload_len
            if size > self.max_bytes:
                continue
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old.header.payload_len
            self._data[key] = chunk
            self._bytes += size
            self._stats.puts += 1
            self._stats.put_bytes += size
            while self._bytes > self.max_bytes:
                _, evicted = self._data.popitem(last=False)
                self._bytes -= evicted.header.payload_len
                self._stats.evictions += 1

    async def delete(self, key: str) -> bool:
        value = self._data.pop(key, None)
        if value is not None:
            self._bytes -= value.header.payload_len
        return value is not None

    async def clear(self, prefix: str) -> int:
        keys = [k for k in self._data if k.startswith(prefix)]
        for key in keys:
            await self.delete(key)
        return len(keys)

    def stats(self) -> TierStats:
        self._stats.entries, self._stats.bytes = len(self._data), self._bytes
        return self._stats


@dataclass(frozen=True, slots=True)
class DeviceChunk:
    """A decoded chunk living on a device (GPU tier values)."""

    header: Any  # codec.ChunkHeader
    tensor: torch.Tensor

    def to_bytes(self, key_digest: bytes) -> bytes:
        from hitrate.kv import codec

        return codec.encode(self.tensor, token_axis=self.header.token_axis,
                            layout=self.header.layout, key_digest=key_digest)
