"""Base class for network backends (Redis, S3, GCS, Azure Blob).

A backend module subclasses `RemoteStore` and implements the `_get`, `_set`, ...
coroutines with its client library; this class wraps every one of them in the same
failure behaviour, so no backend can get it wrong:

- a per-operation timeout (`timeout`, small for Redis, larger for object storage;
  admin scans and clears get `admin_timeout`). A backend whose client enforces
  `timeout` itself, per socket read (Redis), sets a larger `deadline` here as the hard
  bound of a whole operation, connection setup included;
- the circuit breaker (`stores/circuit.py`): after a failure the backend is not called
  again until a single probe shows it is back,
- counters (`stats()`) and the breaker state (`circuit_state()`) for metrics.

Failures still raise (the engine turns them into misses, counts and logs them); an
open circuit raises `CircuitOpen` immediately. A bad argument (a TTL the backend cannot
represent: `ValueError` before any call; or the backend's own "bad argument" reply,
`_answered_bad_argument`) raises too but says nothing about the backend's health: the
circuit never opens for it, so one client's absurd TTL cannot switch the cache off for
everyone. Values are returned byte for byte as
stored: validation happens in the entry layer, above the store.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from hitrate.stores.base import ByteStore, StoreStats
from hitrate.stores.circuit import CircuitBreaker, CircuitOpen

__all__ = ["BackendTimeout", "CircuitOpen", "RemoteStore"]

T = TypeVar("T")
Item = tuple[str, bytes, float | None]


class BackendTimeout(TimeoutError):
    """A backend operation did not finish within its timeout."""


class RemoteStore(ByteStore):
    name = "remote"
    default_timeout = 1.0
    max_ttl = math.inf  # seconds; a backend with a bounded expiry lowers it

    def __init__(
        self,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
        admin_timeout: float = 30.0,
        failure_threshold: int = 1,
        recovery_time: float = 1.0,
        max_recovery_time: float = 30.0,
        clock: Callable[[], float] | None = None,
    ):
        self.timeout = timeout if timeout is not None else self.default_timeout
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        self.deadline = max(deadline or 0.0, self.timeout)
        self.admin_timeout = max(admin_timeout, self.deadline)
        self.breaker = CircuitBreaker(self.name, failure_threshold=failure_threshold,
                                      recovery_time=recovery_time,
                                      max_recovery_time=max_recovery_time,
                                      **({"clock": clock} if clock is not None else {}))
        self._stats = StoreStats()
        self._prepared = False
        self._preparing: asyncio.Future[None] | None = None

    # -- what a backend implements -------------------------------------------------

    async def _get(self, key: str) -> bytes | None:
        raise NotImplementedError

    async def _get_with_ttl(self, key: str) -> tuple[bytes | None, float | None]:
        return await self._get(key), None

    async def _get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return list(await asyncio.gather(*(self._get(k) for k in keys)))

    async def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        raise NotImplementedError

    async def _set_many(self, items: Sequence[Item]) -> None:
        await asyncio.gather(*(self._set(*item) for item in items))

    async def _delete(self, key: str) -> bool:
        raise NotImplementedError

    def _scan(self, prefix: str) -> AsyncIterator[str]:
        raise NotImplementedError

    async def _delete_many(self, keys: Sequence[str]) -> int:
        return sum(await asyncio.gather(*(self._delete(k) for k in keys)))

    async def _ping(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        return None

    async def _prepare(self) -> None:
        """One-time client setup, run before the first operation and outside its timeout
        (an SDK may spend a while loading its data files; that is not the backend's fault)."""

    # -- the guard -------------------------------------------------------------------

    async def _ensure_prepared(self) -> None:
        if self._prepared:
            return
        if self._preparing is None:  # concurrent first calls share one setup
            self._preparing = asyncio.ensure_future(self._prepare())
        try:
            await asyncio.shield(self._preparing)
        except Exception:
            self._preparing = None
            raise
        self._prepared = True

    async def _guard(self, op: Callable[[], Awaitable[T]], timeout: float | None = None) -> T:
        probe = self.breaker.before()
        try:
            await self._ensure_prepared()
            async with asyncio.timeout(timeout or self.deadline):
                result = await op()
        except asyncio.CancelledError:
            self.breaker.abandoned(probe)
            raise
        except TimeoutError as exc:
            self.breaker.failure(probe, exc, timeout=True)
            raise BackendTimeout(f"{self.name}: no answer within {timeout or self.deadline:g}s"
                                 ) from None
        except Exception as exc:
            if self._answered_bad_argument(exc):
                self.breaker.success(probe)  # the backend answered: it is up
            else:
                self.breaker.failure(probe, exc, timeout=self._is_timeout(exc))
            raise
        self.breaker.success(probe)
        return result

    def _is_timeout(self, exc: Exception) -> bool:
        """Whether a client library's own exception means "timed out"."""
        return False

    def _answered_bad_argument(self, exc: Exception) -> bool:
        """Whether a client library's exception is the backend refusing this request's
        arguments (it answered, so it is healthy) rather than the backend failing."""
        return False

    def _count(self, values: Sequence[Any]) -> None:
        hits = sum(v is not None for v in values)
        self._stats.hits += hits
        self._stats.misses += len(values) - hits

    # -- ByteStore ----------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        value = await self._guard(lambda: self._get(key))
        self._count((value,))
        return value

    async def get_with_ttl(self, key: str) -> tuple[bytes | None, float | None]:
        value, ttl = await self._guard(lambda: self._get_with_ttl(key))
        self._count((value,))
        return value, ttl

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        values = await self._guard(lambda: self._get_many(list(keys)))
        self._count(values)
        return values

    def _check_ttl(self, ttl: float | None) -> None:
        """Refuse, before the circuit breaker sees it, a TTL this backend cannot store."""
        if ttl is not None and not (math.isfinite(ttl) and ttl <= self.max_ttl):
            raise ValueError(f"ttl {ttl!r} is out of range for {self.name} "
                             f"(at most {self.max_ttl:g} s)")

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self._check_ttl(ttl)
        await self._guard(lambda: self._set(key, value, ttl))

    async def set_many(self, items: Sequence[Item]) -> None:
        for _, _, ttl in items:
            self._check_ttl(ttl)
        if items:
            await self._guard(lambda: self._set_many(list(items)))

    async def delete(self, key: str) -> bool:
        return await self._guard(lambda: self._delete(key))

    async def scan(self, prefix: str = "") -> AsyncIterator[str]:
        keys = self._scan(prefix)

        async def _next() -> str | None:
            try:
                return await keys.__anext__()
            except StopAsyncIteration:
                return None

        while (key := await self._guard(_next, self.admin_timeout)) is not None:
            yield key

    async def clear(self, prefix: str = "") -> int:
        async def _clear() -> int:
            keys = [key async for key in self._scan(prefix)]
            removed = 0
            for start in range(0, len(keys), 500):
                removed += await self._delete_many(keys[start:start + 500])
            return removed

        return await self._guard(_clear, self.admin_timeout)

    async def ping(self) -> bool:
        """A real round trip whatever the circuit says; its verdict moves the circuit."""
        try:
            await self._ensure_prepared()
            async with asyncio.timeout(self.deadline):
                await self._ping()
        except Exception as exc:
            self.breaker.force(False, exc)
            return False
        self.breaker.force(True)
        return True

    def circuit_state(self) -> str:
        return self.breaker.state

    def stats(self) -> StoreStats:
        s, c = self._stats, self.breaker.stats
        s.errors, s.timeouts, s.rejected, s.circuit_opens = c.failures, c.timeouts, c.rejected, c.opens
        return s

    async def close(self) -> None:
        await self._close()
