"""The bounded way from a text to its vector: length cap, per-tenant cache, batching,
one embedder call at a time, and a deadline.

Why each bound (issue 11): a 100 KB prompt kept the embedder busy for a minute while
every other miss queued behind it, and an embedding cache shared by all tenants told
tenant B, by its miss latency, whether tenant A had already sent a text.

- Texts longer than `max_chars` are never embedded (the lookup is skipped, counted).
- The cache is keyed by (tenant, text): one tenant's cached vectors never speed up
  another tenant's miss.
- Lookups that arrive while the embedder is busy are queued and sent together as one
  batch when it frees up; at most `concurrency` embedder calls run at once.
- A lookup waits at most `timeout` seconds; then it gives up (its request goes
  upstream as a plain miss) and, if its text was not picked up yet, it leaves the queue.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hitrate.semantic.embedders import Embedder


@dataclass(frozen=True, slots=True)
class EmbedLimits:
    max_chars: int = 512
    timeout: float | None = 1.0  # seconds a lookup waits for its vector
    max_batch: int = 32
    concurrency: int = 1
    cache_items: int = 20_000


class VectorCache:
    """LRU of recent vectors keyed by (tenant, text)."""

    def __init__(self, max_items: int):
        self.max_items = max_items
        self._items: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, tenant: str, text: str) -> np.ndarray | None:
        vector = self._items.get((tenant, text))
        if vector is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end((tenant, text))
        return vector

    def put(self, tenant: str, text: str, vector: np.ndarray) -> None:
        self._items[(tenant, text)] = vector
        self._items.move_to_end((tenant, text))
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)


class EmbedQueue:
    """Batches concurrent requests for vectors into embedder calls, `concurrency` at a
    time. Must be used from one event loop."""

    def __init__(self, embedder: Embedder, max_batch: int = 32, concurrency: int = 1):
        self.embedder = embedder
        self.max_batch = max_batch
        self.concurrency = concurrency
        self._pending: list[tuple[str, asyncio.Future[np.ndarray]]] = []
        self._workers = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.calls = 0
        self.batched = 0  # texts embedded together with at least one other

    def embed(self, text: str) -> asyncio.Future[np.ndarray]:
        """A future for `text`'s vector. Cancel it to give up: a text not yet sent to
        the embedder is then dropped from the queue."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        self._pending.append((text, future))
        if self._workers < self.concurrency:
            self._workers += 1
            task = loop.create_task(self._drain())
            self._tasks.add(task)  # asyncio keeps only weak references
            task.add_done_callback(self._tasks.discard)
        return future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = [(t, f) for t, f in self._pending[: self.max_batch] if not f.done()]
                del self._pending[: self.max_batch]
                if not batch:
                    continue
                texts = list(dict.fromkeys(t for t, _ in batch))
                self.calls += 1
                self.batched += len(batch) if len(batch) > 1 else 0
                try:
                    vectors = await self.embedder.embed(texts)
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                by_text = dict(zip(texts, vectors, strict=True))
                for text, future in batch:
                    if not future.done():
                        future.set_result(by_text[text])
        finally:
            self._workers -= 1

    async def embed_many(self, texts: Sequence[str]) -> np.ndarray:
        """All of `texts`, no deadline (loading, background indexing)."""
        futures = [self.embed(t) for t in texts]
        return np.stack([await f for f in futures])
