"""Vector index on Redis with RediSearch (Redis Stack, Redis 8, or `--loadmodule redisearch.so`).

One hash per entry, `<prefix><cache key>`, with fields `vector` (FLOAT32 bytes), `scope`
and `namespace` (TAGs holding a digest of the value, so no tag escaping or separator can
go wrong and tags stay case-sensitive), `expires_at` (NUMERIC, epoch seconds), `key` and
`text` (returned, not indexed). A search is one `FT.SEARCH` KNN query pre-filtered by the
scope tag and `expires_at > now`; expired hashes also carry a Redis TTL so they vanish.

Talks to RediSearch with plain `FT.*` commands over redis-py's asyncio client rather than
through RedisVL: one round trip per call, no schema layer between us and the reply, and
nothing extra to install beside `redis`. The index is created on the first `add` (its
dimension comes from the first vector) unless `dim` is given; an existing index is reused.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

from hitrate.semantic.index import Match
from hitrate.semantic.server_index import ServerIndex, stored_vector

_NEVER = 2.0**62  # expires_at stored for entries without a TTL (NUMERIC has no NULL)
_BATCH = 1000


def _tag(value: str) -> str:
    return hashlib.blake2b(value.encode(), digest_size=16).hexdigest()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(value: Any) -> dict[str, Any]:
    """A RESP3 map or a RESP2 flat [name, value, ...] list -> {name: value}."""
    items = value.items() if isinstance(value, dict) else zip(value[::2], value[1::2], strict=False)
    return {_text(name): item for name, item in items}


def _search_rows(reply: Any) -> tuple[int, list[tuple[Any, dict[str, Any]]]]:
    """(total, [(document id, returned fields)]) from an FT.SEARCH reply, RESP2 or RESP3."""
    if isinstance(reply, dict):
        reply = _pairs(reply)
        rows = [(_pairs(row)["id"], _pairs(_pairs(row).get("extra_attributes", {})))
                for row in reply["results"]]
        return int(reply["total_results"]), rows
    if len(reply) > 2 and isinstance(reply[2], list):  # with content: id, fields, id, fields...
        return int(reply[0]), [(reply[i], _pairs(reply[i + 1])) for i in range(1, len(reply), 2)]
    return int(reply[0]), [(doc_id, {}) for doc_id in reply[1:]]  # NOCONTENT


class RedisIndex(ServerIndex):
    name = "redis"

    def __init__(self, url: str | None = None, *, host: str = "127.0.0.1", port: int = 6379,
                 db: int = 0, username: str | None = None, password: str | None = None,
                 ssl: bool = False, index_name: str = "hitrate-semantic",
                 prefix: str = "hitrate:vec:", dim: int | None = None, algorithm: str = "hnsw",
                 hnsw_m: int = 16, hnsw_ef_construction: int = 200, hnsw_ef_runtime: int = 64,
                 timeout: float = 5.0, client: Any = None, **client_options: Any):
        if algorithm.lower() not in ("hnsw", "flat"):
            raise ValueError(f"algorithm must be 'hnsw' or 'flat', not {algorithm!r}")
        super().__init__(dim)
        self.index_name = index_name
        self.where = f"RediSearch index {index_name!r}"
        self.prefix = prefix
        self.algorithm = algorithm.upper()
        self._hnsw = (hnsw_m, hnsw_ef_construction, hnsw_ef_runtime)
        self._owns_client = client is None
        if client is None:
            import redis.asyncio as aioredis

            options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout,
                                       **client_options}
            if url is not None:
                client = aioredis.Redis.from_url(url, **options)
            else:
                client = aioredis.Redis(host=host, port=port, db=db, username=username,
                                        password=password, ssl=ssl, **options)
        self.client = client

    # -- schema ---------------------------------------------------------------------

    async def _existing_dim(self) -> int | None:
        from redis.exceptions import ResponseError

        try:
            info = await self.client.execute_command("FT.INFO", self.index_name)
        except ResponseError as exc:
            message = str(exc).lower()
            if "unknown index" in message or "no such index" in message or "not found" in message:
                return None
            raise
        for attribute in _pairs(info).get("attributes", []):
            pairs = {name.lower(): value for name, value in _pairs(attribute).items()}
            if _text(pairs.get("type", "")).upper() == "VECTOR" and "dim" in pairs:
                return int(pairs["dim"])
        raise RuntimeError(f"RediSearch index {self.index_name!r} exists but has no vector field")

    async def _create(self, dim: int) -> None:
        from redis.exceptions import ResponseError

        vector_args: list[Any] = ["TYPE", "FLOAT32", "DIM", dim, "DISTANCE_METRIC", "COSINE"]
        if self.algorithm == "HNSW":
            m, ef_construction, ef_runtime = self._hnsw
            vector_args += ["M", m, "EF_CONSTRUCTION", ef_construction, "EF_RUNTIME", ef_runtime]
        try:
            await self.client.execute_command(
                "FT.CREATE", self.index_name, "ON", "HASH", "PREFIX", 1, self.prefix,
                "SCHEMA",
                "scope", "TAG", "CASESENSITIVE",
                "namespace", "TAG", "CASESENSITIVE",
                "expires_at", "NUMERIC",
                "vector", "VECTOR", self.algorithm, len(vector_args), *vector_args)
        except ResponseError as exc:
            if "already exists" not in str(exc).lower():
                raise

    # -- protocol -------------------------------------------------------------------

    async def _store(self, key: str, values: Any, *, scope: str, namespace: str, text: str,
                     expires_at: float | None) -> None:
        name = self.prefix + key
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(name, mapping={
                "vector": values.tobytes(), "scope": _tag(scope), "namespace": _tag(namespace),
                "expires_at": repr(_NEVER if expires_at is None else float(expires_at)),
                "key": key, "text": text,
            })
            if expires_at is None:
                pipe.persist(name)
            else:
                pipe.pexpireat(name, math.ceil(expires_at * 1000))
            await pipe.execute()

    async def _nearest(self, query: Any, *, scope: str, k: int, min_score: float) -> list[Match]:
        knn = (f"(@scope:{{{_tag(scope)}}} @expires_at:[({time.time():.6f} +inf])"
               f"=>[KNN {int(k)} @vector $vec AS __distance]")
        reply = await self.client.execute_command(
            "FT.SEARCH", self.index_name, knn, "PARAMS", 2, "vec", query.tobytes(),
            "SORTBY", "__distance", "ASC", "RETURN", 4, "key", "text", "vector", "__distance",
            "LIMIT", 0, int(k), "DIALECT", 2)
        found = []
        for _, values in _search_rows(reply)[1]:
            score = 1.0 - float(values["__distance"])
            if score >= min_score:
                found.append(Match(_text(values["key"]), min(score, 1.0), _text(values.get("text", b"")),
                                   stored_vector(values.get("vector"))))
        return found

    async def delete(self, key: str) -> bool:
        return bool(await self.client.delete(self.prefix + key))

    async def clear(self, namespace: str | None = None) -> int:
        if not await self._ensure():
            return 0
        query = "*" if namespace is None else f"@namespace:{{{_tag(namespace)}}}"
        removed = 0
        while True:
            reply = await self.client.execute_command(
                "FT.SEARCH", self.index_name, query, "NOCONTENT", "LIMIT", 0, _BATCH, "DIALECT", 2)
            names = [doc_id for doc_id, _ in _search_rows(reply)[1]]
            if not names:
                return removed
            deleted = await self.client.delete(*names)
            if not deleted:  # only already-expired hashes left; Redis drops them itself
                return removed
            removed += deleted

    async def count(self) -> int:
        if not await self._ensure():
            return 0
        live = f"@expires_at:[({time.time():.6f} +inf]"  # not the expired hashes Redis hasn't reaped
        reply = await self.client.execute_command(
            "FT.SEARCH", self.index_name, live, "NOCONTENT", "LIMIT", 0, 0, "DIALECT", 2)
        return _search_rows(reply)[0]

    async def close(self) -> None:
        if self._owns_client:
            await self.client.aclose()
