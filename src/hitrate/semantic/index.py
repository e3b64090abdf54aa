"""The vector index protocol every semantic backend implements.

An index maps an entry's cache key to the embedding of its last user turn, inside a
*scope*: a digest of everything in the request except that turn (model, parameters,
system prompt, earlier turns, namespace, tenant). Only same-scope entries are ever
candidates, so a semantic hit can never cross a system prompt, a model, or a tenant.

Callers are coroutines on the event loop. Rules for implementers:
- Never block the event loop; run synchronous client libraries in a thread.
- `search` never returns expired items, items of another scope, or items below
  `min_score`. Scores are cosine similarities in [-1, 1] (vectors are unit length).
- Raise only for real backend failures; the engine turns them into misses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True, frozen=True)
class Match:
    key: str  # the cache key of the stored entry
    score: float  # cosine similarity
    text: str  # the embedded text (the entry's last user turn), for verification
    # The stored unit vector (float32) where the index returns it: the learned verifier
    # reads both vectors (`learned.py`), and without it falls back to re-embedding `text`.
    vector: Any = None


class VectorIndex(ABC):
    name: str = "index"

    @abstractmethod
    async def add(self, key: str, vector: Any, *, scope: str, namespace: str, text: str,
                  expires_at: float | None) -> None:
        """Called after an entry is stored. `vector` is a unit-length float32 numpy array.
        Re-adding a key replaces it."""

    @abstractmethod
    async def search(self, vector: Any, *, scope: str, k: int, min_score: float) -> list[Match]:
        """Called on an exact miss. Best first, at most k, all in `scope`, unexpired."""

    @abstractmethod
    async def delete(self, key: str) -> bool:
        """Called when an entry is deleted, found corrupt or expired."""

    @abstractmethod
    async def clear(self, namespace: str | None = None) -> int:
        """Admin: drop every vector (of one namespace). Returns how many."""

    async def count(self) -> int:
        return 0

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Called once at shutdown."""
