"""Amazon S3 and S3-compatible object stores (MinIO, R2, Ceph...: set `endpoint_url`),
with aiobotocore's async client, so nothing blocks the event loop.

One object per key (`objects.py`: `<prefix>/<namespace>/<key>`), expiry in the object's
user metadata (`x-amz-meta-hitrate-expires-at`), returned by the same GET as the body:
a read is one round trip. Credentials: explicit keys, else the usual AWS chain
(environment, shared config, instance role).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from hitrate.stores.objects import EXPIRES_AT, ObjectStore, expires_at, unexpired

_MISSING = {"NoSuchKey", "404", "NotFound"}


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in _MISSING


class S3Store(ObjectStore):
    name = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "hitrate",
        region: str | None = None,
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        max_connections: int = 64,
        **guard: Any,
    ):
        super().__init__(prefix, **guard)
        self.bucket = bucket
        self._client_args = {
            "region_name": region, "endpoint_url": endpoint_url,
            "aws_access_key_id": access_key_id, "aws_secret_access_key": secret_access_key,
            "aws_session_token": session_token,
            "config": AioConfig(connect_timeout=self.timeout, read_timeout=self.timeout,
                                retries={"max_attempts": 1}, max_pool_connections=max_connections),
        }
        self._stack = contextlib.AsyncExitStack()
        self._s3: Any = None

    async def _prepare(self) -> None:
        self._s3 = await self._stack.enter_async_context(
            get_session().create_client("s3", **self._client_args))

    async def _get_with_ttl(self, key: str) -> tuple[bytes | None, float | None]:
        try:
            response = await self._s3.get_object(Bucket=self.bucket, Key=self.layout.name(key))
        except ClientError as exc:
            if _missing(exc):
                return None, None
            raise
        async with response["Body"] as body:
            data = await body.read()
        return unexpired(data, response.get("Metadata", {}).get(EXPIRES_AT))

    async def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        expiry = expires_at(ttl)
        await self._s3.put_object(Bucket=self.bucket, Key=self.layout.name(key), Body=value,
                                  ContentType="application/octet-stream",
                                  Metadata={EXPIRES_AT: expiry} if expiry else {})

    async def _delete(self, key: str) -> bool:
        name = self.layout.name(key)
        try:  # DeleteObject answers 204 either way; HEAD tells whether there was one
            await self._s3.head_object(Bucket=self.bucket, Key=name)
        except ClientError as exc:
            if _missing(exc):
                return False
            raise
        await self._s3.delete_object(Bucket=self.bucket, Key=name)
        return True

    async def _delete_many(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        response = await self._s3.delete_objects(Bucket=self.bucket, Delete={
            "Objects": [{"Key": self.layout.name(k)} for k in keys], "Quiet": True})
        return len(keys) - len(response.get("Errors", []))

    async def _scan(self, prefix: str) -> AsyncIterator[str]:
        """Lists keys; S3 listings carry no user metadata, so expired objects not yet
        deleted are listed too (reads never return them)."""
        paginator = self._s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket,
                                             Prefix=self.layout.list_prefix(prefix)):
            for item in page.get("Contents", []):
                key = self.layout.key(item["Key"])
                if key is not None and key.startswith(prefix):
                    yield key

    async def _ping(self) -> None:
        await self._s3.head_bucket(Bucket=self.bucket)

    async def _close(self) -> None:
        await self._stack.aclose()
