"""Azure Blob Storage, with azure-storage-blob's asyncio client (aiohttp transport), so
nothing blocks the event loop.

One blob per key (`objects.py`: `<prefix>/<namespace>/<key>`), expiry in the blob's
metadata, returned with the body by one GET. Credentials: a connection string, or an
account URL with an account key / SAS token, else DefaultAzureCredential (needs the
`azure-identity` package).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob.aio import ContainerClient

from hitrate.stores.objects import ObjectStore, expires_at, remaining, unexpired

EXPIRES_AT = "hitrate_expires_at"  # Azure metadata names must be C# identifiers: no '-'


class AzureBlobStore(ObjectStore):
    name = "azure-blob"

    def __init__(self, container: str, *, prefix: str = "hitrate",
                 connection_string: str | None = None, account_url: str | None = None,
                 credential: str | None = None, **guard: Any):
        if not connection_string and not account_url:
            raise ValueError("azure-blob needs a connection_string or an account_url")
        super().__init__(prefix, **guard)
        self.container = container
        self._connection_string = connection_string
        self._account_url = account_url
        self._credential: Any = credential
        self._client: ContainerClient | None = None

    async def _prepare(self) -> None:
        options: dict[str, Any] = {"retry_total": 0, "connection_timeout": self.timeout,
                                   "read_timeout": self.timeout}
        if self._connection_string:
            self._client = ContainerClient.from_connection_string(
                self._connection_string, self.container, **options)
            return
        credential = self._credential
        if credential is None:
            from azure.identity.aio import DefaultAzureCredential

            credential = self._credential = DefaultAzureCredential()
        self._client = ContainerClient(self._account_url, self.container,  # type: ignore[arg-type]
                                       credential=credential, **options)

    @property
    def client(self) -> ContainerClient:
        assert self._client is not None
        return self._client

    async def _get_with_ttl(self, key: str) -> tuple[bytes | None, float | None]:
        try:
            download = await self.client.download_blob(self.layout.name(key))
            data = await download.readall()
        except ResourceNotFoundError:
            return None, None
        return unexpired(data, (download.properties.metadata or {}).get(EXPIRES_AT))

    async def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        expiry = expires_at(ttl)
        await self.client.upload_blob(self.layout.name(key), value, overwrite=True,
                                      metadata={EXPIRES_AT: expiry} if expiry else None)

    async def _delete(self, key: str) -> bool:
        try:
            await self.client.delete_blob(self.layout.name(key))
        except ResourceNotFoundError:
            return False
        return True

    async def _scan(self, prefix: str) -> AsyncIterator[str]:
        async for blob in self.client.list_blobs(name_starts_with=self.layout.list_prefix(prefix),
                                                 include=["metadata"]):
            key = self.layout.key(blob.name)
            left = remaining((blob.metadata or {}).get(EXPIRES_AT))
            if key is not None and key.startswith(prefix) and (left is None or left > 0):
                yield key

    async def _ping(self) -> None:
        await self.client.get_container_properties()

    async def _close(self) -> None:
        if self._client is not None:
            await self._client.close()
        close = getattr(self._credential, "close", None)
        if close is not None:
            await close()
