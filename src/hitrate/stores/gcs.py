"""Google Cloud Storage, with gcloud-aio-storage (aiohttp), so nothing blocks the event loop.

One object per key (`objects.py`: `<prefix>/<namespace>/<key>`), expiry in the object's
custom metadata. The JSON API returns the body (`alt=media`) and the metadata
(`alt=json`) in separate requests; a read sends both at once, so it still waits for one
round trip. Credentials: `service_file`, else Application Default Credentials. An
emulator (fake-gcs-server) is used with `api_root` or `STORAGE_EMULATOR_HOST`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from gcloud.aio.storage import Storage

from hitrate.stores.objects import EXPIRES_AT, ObjectStore, expires_at, remaining, unexpired


def _not_found(result: Any) -> bool:
    return isinstance(result, aiohttp.ClientResponseError) and result.status == 404


class GCSStore(ObjectStore):
    name = "gcs"

    def __init__(self, bucket: str, *, prefix: str = "hitrate", service_file: str | None = None,
                 api_root: str | None = None, **guard: Any):
        super().__init__(prefix, **guard)
        self.bucket = bucket
        self._service_file = service_file
        self._api_root = api_root
        self._storage: Storage | None = None
        self._http_timeout = max(1, int(self.timeout + 1))  # ints only; asyncio.timeout bounds it

    async def _prepare(self) -> None:
        self._storage = Storage(service_file=self._service_file, api_root=self._api_root)

    @property
    def storage(self) -> Storage:
        assert self._storage is not None
        return self._storage

    async def _get_with_ttl(self, key: str) -> tuple[bytes | None, float | None]:
        name = self.layout.name(key)
        meta, data = await asyncio.gather(
            self.storage.download_metadata(self.bucket, name, timeout=self._http_timeout),
            self.storage.download(self.bucket, name, timeout=self._http_timeout),
            return_exceptions=True)
        if _not_found(meta) or _not_found(data):
            return None, None
        for result in (meta, data):
            if isinstance(result, BaseException):
                raise result
        return unexpired(data, (meta.get("metadata") or {}).get(EXPIRES_AT))  # type: ignore

    async def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        expiry = expires_at(ttl)
        await self.storage.upload(self.bucket, self.layout.name(key), value,
                                  content_type="application/octet-stream",
                                  metadata={"metadata": {EXPIRES_AT: expiry}} if expiry else None,
                                  timeout=self._http_timeout)

    async def _delete(self, key: str) -> bool:
        try:
            await self.storage.delete(self.bucket, self.layout.name(key), timeout=self._http_timeout)
        except aiohttp.ClientResponseError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def _scan(self, prefix: str) -> AsyncIterator[str]:
        params = {"prefix": self.layout.list_prefix(prefix), "fields": "items(name,metadata),nextPageToken"}
        while True:
            page = await self.storage.list_objects(self.bucket, params=params,
                                                   timeout=self._http_timeout)
            for item in page.get("items", []):
                key = self.layout.key(item["name"])
                left = remaining((item.get("metadata") or {}).get(EXPIRES_AT))
                if key is not None and key.startswith(prefix) and (left is None or left > 0):
                    yield key
            if not page.get("nextPageToken"):
                return
            params["pageToken"] = page["nextPageToken"]

    async def _ping(self) -> None:
        await self.storage.list_objects(self.bucket, params={"maxResults": "1"},
                                        timeout=self._http_timeout)

    async def _close(self) -> None:
        if self._storage is not None:
            await self._storage.close()
