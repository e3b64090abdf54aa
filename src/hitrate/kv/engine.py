"""The KV cache engine: chunk keys, tier search with promotion, write-behind stores.

    engine = KVEngine(namespace, tiers=[CPUTier(2 << 30), StoreTier(DiskStore(dir))])
    n = engine.lookup(tokens)            # longest cached prefix, in tokens
    hit = engine.retrieve(tokens)        # hit.kv: tensor of the first hit.num_tokens tokens
    engine.store(tokens, kv)             # returns at once; chunks are written behind

The engine is synchronous to its callers (HF generation, vLLM's worker and scheduler
run plain threads), and asynchronous inside: every tier call runs on one private
event loop thread, so the shared async byte stores are used exactly as the response
cache uses them. Reads wait for that loop; writes never make the caller wait (they are
encoded and written by a writer thread, and `flush()` waits for them).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from hitrate.kv import codec, metrics
from hitrate.kv.chunking import KEY_PREFIX, Chunk, ChunkKeyer, KVNamespace
from hitrate.kv.tiers import DeviceChunk, KVTier

if TYPE_CHECKING:
    import torch

log = logging.getLogger("hitrate.kv")
T = TypeVar("T")

KVSource = Any  # torch.Tensor with the token axis at `token_axis`, or fn(start, end) -> Tensor


@dataclass(slots=True)
class KVHit:
    """What `retrieve` found: the KV of tokens [0, num_tokens)."""

    num_tokens: int
    kv: torch.Tensor | None  # concatenated along the token axis; None when num_tokens == 0
    chunks: int = 0
    tiers: dict[str, int] = field(default_factory=dict)  # chunks served per tier


@dataclass(slots=True)
class EngineStats:
    lookups: int = 0
    lookup_tokens: int = 0
    hit_tokens: int = 0
    retrieves: int = 0
    retrieved_bytes: int = 0
    stores: int = 0
    chunks_written: int = 0
    chunks_skipped: int = 0  # already present: `store` does not rewrite them
    bytes_written: int = 0
    corrupt_chunks: int = 0
    tier_errors: int = 0
    write_errors: int = 0
    promotions: int = 0


def manifest_key(namespace: KVNamespace) -> str:
    return f"{KEY_PREFIX}ns:{namespace.id}"


class KVEngine:
    def __init__(self, namespace: KVNamespace, tiers: Sequence[KVTier], *, token_axis: int,
                 chunk_size: int = 256, store_partial: bool = True, max_pending_writes: int = 16):
        if not tiers:
            raise ValueError("a KV engine needs at least one tier")
        self.namespace = namespace
        self.keyer = ChunkKeyer(namespace, chunk_size)
        self.chunk_size = chunk_size
        self.tiers = list(tiers)
        self.token_axis = token_axis
        self.store_partial = store_partial
        self.stats = EngineStats()
        self.settings: Any = None  # the KVConfig the engine was built from, when it was
        self.timings = metrics.Timings()
        self._failing: set[str] = set()
        self._queued: set[str] = set()
        self._queued_lock = threading.Lock()
        self._pending: set[Future[Any]] = set()
        self._slots = threading.BoundedSemaphore(max_pending_writes)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hitrate-kv-io",
                                        daemon=True)
        self._thread.start()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hitrate-kv-write")
        self._write_manifest()
        metrics.track(self)

    # -- plumbing -----------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("KVEngine's sync API was called from its own I/O loop")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _call(self, tier: KVTier, what: str, coro: Coroutine[Any, Any, T]) -> T | None:
        """A tier call whose failure is a miss: counted, logged once per episode. Reads
        and writes are timed (`hitrate.kv.metrics`)."""
        started = time.perf_counter()
        try:
            result = await coro
            self.timings.observe(tier.name, what, time.perf_counter() - started)
        except Exception as exc:  # any backend failure degrades to a miss
            self.stats.tier_errors += 1
            tier.stats().errors += 1
            if tier.name not in self._failing:
                self._failing.add(tier.name)
                log.warning("KV tier %s failed (%s: %s); treating it as a miss until it recovers",
                            tier.name, what, exc)
            return None
        if tier.name in self._failing:
            self._failing.discard(tier.name)
            log.warning("KV tier %s recovered", tier.name)
        return result

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _write_manifest(self) -> None:
        """Names this namespace in persistent tiers, for `hitrate kv stats`."""
        body = orjson.dumps({**self.namespace.to_dict(), "chunk_size": self.chunk_size})

        async def write() -> None:
            for tier in self.tiers:
                if not tier.local:
                    await self._call(tier, "manifest", tier.put_many([(manifest_key(self.namespace),
                                                                        body)]))

        self._loop.call_soon_threadsafe(self._spawn, write())

    # -- reads --------------------------------------------------------------------

    def _decode(self, value: Any, chunk: Chunk, tier: KVTier) -> torch.Tensor | None:
        if isinstance(value, DeviceChunk):
            return value.tensor
        try:
            _, tensor = codec.decode(value, key_digest=chunk.digest, check=tier.verify,
                                     layout=self.namespace.layout)
        except codec.CorruptChunk as exc:
            self.stats.corrupt_chunks += 1
            tier.stats().corrupt += 1
            log.warning("KV chunk %s in tier %s is corrupt (%s): treated as a miss", chunk.key,
                        tier.name, exc)
            self._spawn(self._call(tier, "delete", tier.delete(chunk.key)))
            return None
        return tensor

    async def _fetch(self, chunks: Sequence[Chunk]) -> list[tuple[torch.Tensor, str]]:
        """The longest prefix of `chunks` found in any tier, searching tiers in order
        and promoting hits into every tier above the one that had them."""
        n = len(chunks)
        found: list[tuple[Any, torch.Tensor, int] | None] = [None] * n
        for t, tier in enumerate(self.tiers):
            wanted = [i for i in range(n) if found[i] is None]
            if not wanted:
                break
            values = await self._call(tier, "get", tier.get_many([chunks[i].key for i in wanted]))
            if values is None:
                continue
            for i, value in zip(wanted, values, strict=True):
                if value is not None:
                    tensor = self._decode(value, chunks[i], tier)
                    if tensor is not None:
                        found[i] = (value, tensor, t)
        prefix: list[tuple[torch.Tensor, str]] = []
        promote: dict[int, list[tuple[str, Any]]] = {}
        for i in range(n):
            item = found[i]
            if item is None:
                break
            value, tensor, t = item
            prefix.append((tensor, self.tiers[t].name))
            for upper in range(t):
                promote.setdefault(upper, []).append((chunks[i].key, value))
        for upper, items in promote.items():
            tier = self.tiers[upper]
            self.stats.promotions += len(items)
            if tier.local:  # cheap: do it now, so the retrieve after a lookup stays local
                await self._call(tier, "promote", tier.put_many(items))
            else:
                self._spawn(self._call(tier, "promote", tier.put_many(items)))
        return prefix

    def lookup(self, tokens: Any, *, seed: bytes | None = None) -> int:
        """How many leading tokens of `tokens` have cached KV (0..len(tokens)).

        Called by integrations before prefill. Hits found in slower tiers are promoted
        into faster ones, so the `retrieve` that usually follows is local. `seed`: a
        chain start other than the namespace's (`keyer.segment_seed`, for segments)."""
        chunks = self.keyer.chunks(tokens, partial=True, seed=seed)
        found = self._run(self._fetch(chunks))
        num = chunks[len(found) - 1].end if found else 0
        self.stats.lookups += 1
        self.stats.lookup_tokens += chunks[-1].end if chunks else 0
        self.stats.hit_tokens += num
        return num

    def retrieve(self, tokens: Any, device: Any = None, *, seed: bytes | None = None) -> KVHit:
        """The cached KV of the longest cached prefix of `tokens`, as one tensor
        concatenated along the token axis (a fresh tensor; the caller owns it), on
        `device` (default: where the first chunk is; GPU-tier chunks are on the GPU)."""
        import torch

        chunks = self.keyer.chunks(tokens, partial=True, seed=seed)
        found = self._run(self._fetch(chunks))
        self.stats.retrieves += 1
        if not found:
            return KVHit(0, None)
        target = torch.device(device) if device is not None else found[0][0].device
        tensors = [t if t.device == target else t.to(target) for t, _ in found]
        kv = torch.cat(tensors, dim=self.token_axis)
        per_tier: dict[str, int] = {}
        tokens: dict[str, int] = {}
        for chunk, (_, name) in zip(chunks, found, strict=False):
            per_tier[name] = per_tier.get(name, 0) + 1
            tokens[name] = tokens.get(name, 0) + chunk.num_tokens
        for tier in self.tiers:
            if tier.name in tokens:
                tier.stats().hit_tokens += tokens[tier.name]
        self.stats.retrieved_bytes += kv.numel() * kv.element_size()
        return KVHit(chunks[len(found) - 1].end, kv, len(found), per_tier)

    # -- writes -------------------------------------------------------------------

    def store(self, tokens: Any, kv: KVSource, *, start: int = 0, wait: bool = False,
              seed: bytes | None = None, partial: bool | None = None) -> int:
        """Queues the chunks of `tokens` that are not cached yet; returns how many (when
        the top tier is not local, chunks it already holds are counted here and skipped
        by the writer: `store` never waits on a remote round trip).

        `kv` holds the KV of tokens[start:]: a tensor whose `token_axis` has
        len(tokens) - start entries, or a function (start, end) -> tensor of that token
        range (absolute positions). `start` (a multiple of chunk_size) says the caller
        knows the chunks before it are cached, or has no KV for them: they are skipped.
        The engine reads `kv` later, on its writer thread: the caller must not modify it
        in place afterwards (pass a copy if it will). `wait=True` waits for the writes.
        `seed`: as for `lookup`; `partial`: overrides the engine's `store_partial`."""
        if self._closed:
            raise RuntimeError("KVEngine is closed")
        if start % self.chunk_size:
            raise ValueError(f"start={start} is not a multiple of chunk_size={self.chunk_size}")
        partial = self.store_partial if partial is None else partial
        chunks = [c for c in self.keyer.chunks(tokens, partial=partial, seed=seed) if c.start >= start]
        self.stats.stores += 1
        if not chunks:
            return 0
        top = self.tiers[0]
        present: list[bool] | None = [False] * len(chunks)
        if top.local:  # cheap; a remote top tier is asked on the writer thread instead
            present = self._run(self._call(top, "contains", top.contains_many([c.key for c in chunks])))
        present = present or [False] * len(chunks)
        with self._queued_lock:
            todo = [c for c, p in zip(chunks, present, strict=True) if not p and c.key not in self._queued]
            self._queued.update(c.key for c in todo)
        self.stats.chunks_skipped += len(chunks) - len(todo)
        if not todo:
            return 0
        slicer = kv if callable(kv) else _slicer(kv, self.token_axis, start)
        self._slots.acquire()
        future = self._writer.submit(self._write, todo, slicer, top.local)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        if wait:
            future.result()
        return len(todo)

    def _write(self, chunks: list[Chunk], slicer: Callable[[int, int], torch.Tensor],
               checked: bool) -> None:
        try:
            todo = chunks
            if not checked:  # the top tier is remote: skip what it has before encoding
                top = self.tiers[0]
                have = self._run(self._call(top, "contains", top.contains_many([c.key for c in chunks])))
                if have is not None:
                    todo = [c for c, h in zip(chunks, have, strict=True) if not h]
                    self.stats.chunks_skipped += len(chunks) - len(todo)
            items = []
            for chunk in todo:
                tensor = slicer(chunk.start, chunk.end)
                items.append((chunk.key, codec.encode(tensor, token_axis=self.token_axis,
                                                      layout=self.namespace.layout,
                                                      key_digest=chunk.digest)))
            if items:
                self._run(self._put_all(items))
            self.stats.chunks_written += len(items)
            self.stats.bytes_written += sum(len(v) for _, v in items)
        except Exception:
            self.stats.write_errors += 1
            log.exception("KV store failed")
        finally:
            with self._queued_lock:
                self._queued.difference_update(c.key for c in chunks)
            self._slots.release()

    async def _put_all(self, items: list[tuple[str, bytes]]) -> None:
        keys = [k for k, _ in items]
        for i, tier in enumerate(self.tiers):
            todo = items
            if i > 0:  # the first tier was checked by `store`; lower ones may have them
                have = await self._call(tier, "contains", tier.contains_many(keys))
                if have is not None:
                    todo = [item for item, h in zip(items, have, strict=True) if not h]
            if todo:
                await self._call(tier, "put", tier.put_many(todo))

    # -- lifecycle ----------------------------------------------------------------

    def flush(self, timeout: float | None = 60.0) -> None:
        """Waits until every queued write and promotion reached its tiers."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for future in list(self._pending):
            future.result(None if deadline is None else max(0.0, deadline - time.monotonic()))

        async def drain() -> None:
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)

        self._run(drain())

    def clear(self) -> int:
        """Removes this namespace's chunks from every tier. Returns how many."""
        self.flush()

        async def clear_all() -> int:
            total = 0
            for tier in self.tiers:
                total += await self._call(tier, "clear", tier.clear(self.keyer.prefix)) or 0
            return total

        return self._run(clear_all())

    def stats_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {
            "namespace": {**self.namespace.to_dict(), "id": self.namespace.id},
            "chunk_size": self.chunk_size,
            "engine": asdict(self.stats),
            "tiers": [asdict(t.stats()) for t in self.tiers],
        }

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        self._closed = True
        self._writer.shutdown(wait=True)

        async def close_tiers() -> None:
            for tier in self.tiers:
                await self._call(tier, "close", tier.close())

        self._run(close_tiers())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> KVEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- async callers ------------------------------------------------------------

    async def alookup(self, tokens: Any) -> int:
        return await asyncio.to_thread(self.lookup, tokens)

    async def aretrieve(self, tokens: Any) -> KVHit:
        return await asyncio.to_thread(self.retrieve, tokens)

    async def astore(self, tokens: Any, kv: KVSource) -> int:
        return await asyncio.to_thread(self.store, tokens, kv)


def _slicer(kv: torch.Tensor, axis: int, offset: int) -> Callable[[int, int], torch.Tensor]:
    def cut(start: int, end: int) -> torch.Tensor:
        return kv.narrow(axis, start - offset, end - start)

    return cut
