"""What the server-backed indexes (Redis, Qdrant, pgvector) share: a schema created on
first use, once, whose vector dimension comes from the first vector added.

A server index may be constructed without a dimension, before anything was embedded. Its
schema (RediSearch index, Qdrant collection, PostgreSQL table) is then created by the
first `add`; until then `search`, `delete`, `clear` and `count` find nothing and create
nothing. A schema that already exists on the server is reused with its own dimension.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from hitrate.semantic.index import VectorIndex


class ServerIndex(VectorIndex):
    dim: int | None = None
    where: str = "index"  # names the schema in errors

    def __init__(self, dim: int | None) -> None:
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

    async def _vector_to_add(self, vector: Any, expires_at: float | None) -> Any:
        """`vector` as float32, with the schema ready for it; None when the entry has
        already expired (nothing to store)."""
        import numpy as np

        values = np.asarray(vector, dtype=np.float32)
        await self._ensure(int(values.shape[0]))
        if values.shape != (self.dim,):
            raise ValueError(f"vector has shape {values.shape}, {self.where} has dim {self.dim}")
        if expires_at is not None and expires_at <= time.time():
            return None
        return values
