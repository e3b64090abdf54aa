"""What the server-backed indexes (Redis, Qdrant, pgvector) share: a schema created on
first use, once, whose vector dimension comes from the first vector added.

A server index may be constructed without a dimension, before anything was embedded. Its
schema (RediSearch index, Qdrant collection, PostgreSQL table) is then created by the
first `add`; until then `search`, `delete`, `clear` and `count` find nothing and create
nothing. A schema that already exists on the server is reused with its own dimension.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

from hitrate.semantic.index import Match, VectorIndex


def stored_vector(value: Any) -> Any:
    """A search reply's stored vector as float32 numpy (None stays None): Redis sends
    raw bytes, pgvector a `Vector`, Qdrant a list."""
    import numpy as np

    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return np.frombuffer(value, dtype=np.float32)
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    return np.asarray(value, dtype=np.float32)


class ServerIndex(VectorIndex):
    dim: int | None = None
    where: str = "index"  # names the schema in errors

    def __init__(self, dim: int | None) -> None:
        import numpy  # noqa: F401 - a missing numpy fails at construction, not on a request

        self.dim = dim
        self._ready = False
        self._schema_lock = asyncio.Lock()

    async def _existing_dim(self) -> int | None:
        """The dimension of the schema on the server, None when there is none."""
        raise NotImplementedError

    async def _create(self, dim: int) -> None:
        """Create the schema; tolerate another process creating it at the same moment."""
        raise NotImplementedError

    async def _ensure(self, dim: int | None = None) -> bool:
        """True once the schema exists; False while it doesn't and no dimension is known."""
        if self._ready:
            return True
        async with self._schema_lock:
            if self._ready:
                return True
            existing = await self._existing_dim()
            if existing is None:
                existing = dim or self.dim
                if existing is None:
                    return False
                await self._create(existing)
            self.dim = existing
            self._ready = True
            return True

    async def _store(self, key: str, values: Any, *, scope: str, namespace: str, text: str,
                     expires_at: float | None) -> None:
        """Insert or replace one entry; `values` is float32 of the schema's dimension."""
        raise NotImplementedError

    async def _nearest(self, query: Any, *, scope: str, k: int, min_score: float) -> list[Match]:
        """The search itself, on a schema that exists; `query` is float32."""
        raise NotImplementedError

    async def add(self, key: str, vector: Any, *, scope: str, namespace: str, text: str,
                  expires_at: float | None) -> None:
        import numpy as np

        values = np.asarray(vector, dtype=np.float32)
        with self._recheck_schema_on_error():
            await self._ensure(int(values.shape[0]))
            if values.shape != (self.dim,):
                raise ValueError(f"vector has shape {values.shape}, {self.where} has dim {self.dim}")
            if expires_at is not None and expires_at <= time.time():
                await self.delete(key)  # already expired: nothing to store, and no old version
                return
            await self._store(key, values, scope=scope, namespace=namespace, text=text,
                              expires_at=expires_at)

    async def search(self, vector: Any, *, scope: str, k: int, min_score: float) -> list[Match]:
        import numpy as np

        if k <= 0:
            return []
        with self._recheck_schema_on_error():
            if not await self._ensure():
                return []
            return await self._nearest(np.asarray(vector, dtype=np.float32), scope=scope, k=k,
                                       min_score=min_score)

    @contextlib.contextmanager
    def _recheck_schema_on_error(self) -> Iterator[None]:
        # The schema may have gone (FLUSHALL, DROP TABLE, a deleted collection): after a
        # failure, the next call looks again and recreates it (the dimension is known).
        try:
            yield
        except Exception:
            self._ready = False
            raise
