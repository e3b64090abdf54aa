"""Vector index on Qdrant, through qdrant-client's async client.

One collection (cosine distance), one point per entry. The point id is a UUID5 of the
cache key, so re-adding a key overwrites its point and `delete` needs no lookup table.
The payload holds `key`, `text`, `scope`, `namespace` and `expires_at` (epoch seconds);
a search filters on scope and `expires_at > now`. Qdrant has no TTL of its own, so
expired points are also deleted in bulk at most every `purge_interval` seconds.

`url` (or `host`/`port`) names a server, the production setup. `location=":memory:"` or
`path=DIR` run qdrant-client's local mode in process (brute force in numpy, no payload
indexes; good for tests and small caches; its compute runs on the event loop).
The collection is created on the first `add` (dimension from the first vector) unless
`dim` is given; an existing collection is reused.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from hitrate.semantic.index import Match
from hitrate.semantic.server_index import ServerIndex, stored_vector

_NEVER = 2.0**62  # expires_at stored for entries without a TTL, so one range filter fits all
_IDS = uuid.UUID("6f1c2a4e-9b1d-4c55-8d0e-7c3b5e2f9a10")  # UUID5 namespace for point ids


def point_id(key: str) -> str:
    return str(uuid.uuid5(_IDS, key))


class QdrantIndex(ServerIndex):
    name = "qdrant"

    def __init__(self, url: str | None = None, *, host: str | None = None, port: int | None = None,
                 api_key: str | None = None, location: str | None = None, path: str | None = None,
                 collection: str = "hitrate_semantic", dim: int | None = None,
                 purge_interval: float = 60.0, timeout: int = 5, client: Any = None,
                 quantization_config: str | None = None, **client_options: Any):
        super().__init__(dim)
        if quantization_config not in (None, *QUANTIZATIONS):
            raise ValueError(f"quantization_config must be one of {', '.join(QUANTIZATIONS)}")
        self.quantization = quantization_config
        self.collection = collection
        self.where = f"collection {collection!r}"
        self.purge_interval = purge_interval
        self.local = client is None and url is None and host is None and (
            path is not None or location == ":memory:")
        self._owns_client = client is None
        if client is None:
            from qdrant_client import AsyncQdrantClient

            if self.local:
                client = AsyncQdrantClient(location=location, path=path, **client_options)
            else:
                if url is None and host is None and location is None:
                    url = "http://127.0.0.1:6333"
                client = AsyncQdrantClient(location=location, url=url, host=host,
                                           port=port if port is not None else 6333,
                                           api_key=api_key, timeout=timeout, **client_options)
        self.client = client
        self._next_purge = time.monotonic() + purge_interval

    # -- schema ---------------------------------------------------------------------

    async def _existing_dim(self) -> int | None:
        if not await self.client.collection_exists(self.collection):
            return None
        info = await self.client.get_collection(self.collection)
        return int(info.config.params.vectors.size)

    async def _create(self, dim: int) -> None:
        from qdrant_client import models

        try:
            await self.client.create_collection(
                self.collection,
                vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
                quantization_config=_quantization(self.quantization))
        except Exception:
            if not await self.client.collection_exists(self.collection):
                raise
            return  # another process created it first
        if not self.local:  # local mode ignores payload indexes (and warns)
            for field, schema in (("scope", models.PayloadSchemaType.KEYWORD),
                                  ("namespace", models.PayloadSchemaType.KEYWORD),
                                  ("expires_at", models.PayloadSchemaType.FLOAT)):
                await self.client.create_payload_index(self.collection, field, schema)

    @staticmethod
    def _filter(*, scope: str | None = None, namespace: str | None = None,
                live_after: float | None = None, expired_at: float | None = None) -> Any:
        from qdrant_client import models

        must: list[Any] = []
        if scope is not None:
            must.append(models.FieldCondition(key="scope", match=models.MatchValue(value=scope)))
        if namespace is not None:
            must.append(models.FieldCondition(key="namespace", match=models.MatchValue(value=namespace)))
        if live_after is not None:
            must.append(models.FieldCondition(key="expires_at", range=models.Range(gt=live_after)))
        if expired_at is not None:
            must.append(models.FieldCondition(key="expires_at", range=models.Range(lte=expired_at)))
        return models.Filter(must=must)

    # -- protocol -------------------------------------------------------------------

    async def _store(self, key: str, values: Any, *, scope: str, namespace: str, text: str,
                     expires_at: float | None) -> None:
        from qdrant_client import models

        payload = {"key": key, "text": text, "scope": scope, "namespace": namespace,
                   "expires_at": _NEVER if expires_at is None else float(expires_at)}
        await self.client.upsert(self.collection, points=[
            models.PointStruct(id=point_id(key), vector=values.tolist(), payload=payload)])
        if time.monotonic() >= self._next_purge:
            await self.purge_expired()

    async def _nearest(self, query: Any, *, scope: str, k: int, min_score: float) -> list[Match]:
        found = await self.client.query_points(
            self.collection, query=query.tolist(), limit=k, score_threshold=min_score,
            query_filter=self._filter(scope=scope, live_after=time.time()),
            with_payload=["key", "text"], with_vectors=True)
        return [Match(str(point.payload["key"]), min(float(point.score), 1.0), str(point.payload["text"]),
                      stored_vector(point.vector)) for point in found.points]

    async def delete(self, key: str) -> bool:
        if not await self._ensure():
            return False
        pid = point_id(key)
        if not await self.client.retrieve(self.collection, ids=[pid], with_payload=False):
            return False
        await self.client.delete(self.collection, points_selector=[pid])
        return True

    async def clear(self, namespace: str | None = None) -> int:
        from qdrant_client import models

        if not await self._ensure():
            return 0
        selected = self._filter(namespace=namespace)
        removed = (await self.client.count(self.collection, count_filter=selected, exact=True)).count
        if removed:
            await self.client.delete(self.collection, points_selector=models.FilterSelector(filter=selected))
        return removed

    async def purge_expired(self) -> None:
        """Delete expired points in bulk (search already skips them)."""
        from qdrant_client import models

        self._next_purge = time.monotonic() + self.purge_interval
        if await self._ensure():
            await self.client.delete(
                self.collection, wait=False,
                points_selector=models.FilterSelector(filter=self._filter(expired_at=time.time())))

    async def count(self) -> int:
        if not await self._ensure():
            return 0
        live = self._filter(live_after=time.time())
        return (await self.client.count(self.collection, count_filter=live, exact=True)).count

    async def close(self) -> None:
        if self._owns_client:
            await self.client.close()


# LiteLLM's `qdrant_quantization_config` values, with the settings LiteLLM uses.
QUANTIZATIONS = ("binary", "scalar", "product")


def _quantization(name: str | None) -> Any:
    if name is None:
        return None
    from qdrant_client import models

    if name == "binary":
        return models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True))
    if name == "scalar":
        return models.ScalarQuantization(scalar=models.ScalarQuantizationConfig(
            type=models.ScalarType.INT8, always_ram=True))
    return models.ProductQuantization(product=models.ProductQuantizationConfig(
        compression=models.CompressionRatio.X16, always_ram=True))
