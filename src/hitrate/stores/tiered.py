"""Tiered store: a small process-memory L1 in front of a shared L2 (Redis, object storage).

A layer over two stores, not a new store. Reads try L1, then L2, and promote an L2 hit
into L1; writes go to L2 first, then L1. An L1 entry never outlives its L2 entry: it
is stored with `min(l1_ttl, remaining L2 TTL)` (the remaining TTL comes from
`get_with_ttl`, one round trip on Redis).

Why invalidation is pub/sub, with a short L1 TTL as the backstop
------------------------------------------------------------------
LiteLLM's in-process tier keeps serving an entry after it was deleted or flushed in
Redis, until its own TTL runs out. A short L1 TTL alone only bounds that window; it
does not close it, and a short enough TTL throws most of L1's hits away. So, when L2
offers a channel (`invalidation_bus`, the Redis stores do), every delete, flush and
overwrite is published on it, and every replica drops the key (or prefix) from its L1
as soon as Redis delivers the message (well under a millisecond on a LAN). Pub/sub is
fire-and-forget, so L1 is trusted only while the subscription is provably live:

- L1 is neither read nor written until the subscription is confirmed;
- when the subscription drops, or stops answering PING (a hung server never closes the
  socket), L1 is emptied and bypassed until a new subscription is confirmed, then
  emptied again, because messages sent in between are lost;
- an L2 read that raced with an invalidation is not promoted (an epoch counter bumps
  on every invalidation and connection change).

`l1_ttl` stays as the backstop for anything this misses. With an L2 that has no channel
(S3, GCS, Azure Blob), `l1_ttl` is the only bound: a delete reaches other replicas' L1
within `l1_ttl` seconds, so the default for them is short (see `config.py`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol

from hitrate.stores.base import ByteStore, StoreStats

log = logging.getLogger("hitrate.stores")

CHANNEL = "hitrate:invalidate"
_SEP = b"\x00"


class InvalidationBus(Protocol):
    async def publish(self, message: bytes) -> None: ...

    async def listen(self, on_message: Callable[[bytes], Awaitable[None]],
                     on_live: Callable[[bool], Awaitable[None]]) -> None: ...


class TieredStore(ByteStore):
    def __init__(self, l1: ByteStore, l2: ByteStore, *, l1_ttl: float = 60.0,
                 invalidation: bool = True, channel: str = CHANNEL):
        if l1_ttl <= 0:
            raise ValueError("l1_ttl must be positive")
        self.l1 = l1
        self.l2 = l2
        self.l1_ttl = l1_ttl
        self.name = f"tiered({l2.name})"
        make_bus = getattr(l2, "invalidation_bus", None) if invalidation else None
        self.bus: InvalidationBus | None = make_bus(channel) if make_bus else None
        self.origin = uuid.uuid4().hex.encode()
        self._live = self.bus is None
        self._epoch = 0
        self._listener: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._l1_hits = 0

    # -- invalidation ---------------------------------------------------------------------

    def _start(self) -> None:
        if self.bus is not None and self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(
                self.bus.listen(self._on_message, self._on_live), name="hitrate-l1-invalidation")

    async def _on_live(self, live: bool) -> None:
        if live != self._live:
            self._live = live
            self._epoch += 1
            await self.l1.clear()
            log.warning("%s: L1 %s", self.name, "enabled (invalidation channel live)" if live
                        else "emptied and bypassed (invalidation channel lost)")

    async def _on_message(self, message: bytes) -> None:
        origin, op, *args = message.split(_SEP)
        if origin == self.origin:
            return
        self._epoch += 1
        for arg in args:
            text = arg.decode("utf-8", "replace")
            if op == b"k":
                await self.l1.delete(text)
            else:
                await self.l1.clear(text)

    async def _publish(self, op: bytes, args: Sequence[str]) -> None:
        if self.bus is None:
            return
        try:
            await self.bus.publish(_SEP.join([self.origin, op, *(a.encode() for a in args)]))
        except Exception as exc:  # the L1 TTL still bounds what other replicas serve
            log.debug("%s: invalidation not published: %s", self.name, exc)

    def _publish_later(self, op: bytes, args: Sequence[str]) -> None:
        task = asyncio.get_running_loop().create_task(self._publish(op, args))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _l1_ttl(self, ttl: float | None) -> float:
        return min(ttl, self.l1_ttl) if ttl else self.l1_ttl

    # -- ByteStore ----------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        self._start()
        if self._live:
            value = await self.l1.get(key)
            if value is not None:
                self._l1_hits += 1
                return value
        epoch = self._epoch
        value, ttl = await self.l2.get_with_ttl(key)
        if value is not None and self._live and epoch == self._epoch:
            await self.l1.set(key, value, self._l1_ttl(ttl))
        return value

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Batches are not promoted: a plain multi-get cannot tell the L2 TTLs."""
        self._start()
        values = await self.l1.get_many(keys) if self._live else [None] * len(keys)
        missing = [i for i, v in enumerate(values) if v is None]
        self._l1_hits += len(keys) - len(missing)
        if missing:
            for i, value in zip(missing, await self.l2.get_many([keys[i] for i in missing]),
                                strict=True):
                values[i] = value
        return values

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self._start()
        await self.l2.set(key, value, ttl)
        if self._live:
            await self.l1.set(key, value, self._l1_ttl(ttl))
        self._publish_later(b"k", [key])  # other replicas may hold an older value

    async def set_many(self, items: Sequence[tuple[str, bytes, float | None]]) -> None:
        self._start()
        await self.l2.set_many(items)
        if self._live:
            await self.l1.set_many([(k, v, self._l1_ttl(t)) for k, v, t in items])
        self._publish_later(b"k", [k for k, _, _ in items])

    async def delete(self, key: str) -> bool:
        self._start()
        in_l1 = await self.l1.delete(key)
        removed = await self.l2.delete(key)
        await self._publish(b"k", [key])
        return removed or in_l1

    def scan(self, prefix: str = "") -> AsyncIterator[str]:
        return self.l2.scan(prefix)

    async def clear(self, prefix: str = "") -> int:
        self._start()
        await self.l1.clear(prefix)
        removed = await self.l2.clear(prefix)
        await self._publish(b"p", [prefix])
        return removed

    async def ping(self) -> bool:
        return await self.l2.ping()

    def circuit_state(self) -> str | None:
        return self.l2.circuit_state()

    def l1_live(self) -> bool:
        """Whether L1 is in use (always, without a channel; else while subscribed)."""
        return self._live

    def stats(self) -> StoreStats:
        """L2's counters, with L1 hits added to `hits`; entries/bytes are L1's (in-process)."""
        l1, l2 = self.l1.stats(), self.l2.stats()
        return StoreStats(entries=l1.entries, bytes=l1.bytes, hits=l2.hits + self._l1_hits,
                          misses=l2.misses, evictions=l1.evictions, errors=l2.errors,
                          timeouts=l2.timeouts, rejected=l2.rejected,
                          circuit_opens=l2.circuit_opens)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.l1.close()
        await self.l2.close()
