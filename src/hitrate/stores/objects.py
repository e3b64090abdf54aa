"""What the object-storage stores (S3, GCS, Azure Blob) share: the object layout and the
expiry kept in object metadata.

Layout: `<prefix>/<namespace>/<key>`, e.g.
`hitrate/prod/hitrate:v1:prod:chat:0f3a...`. The namespace is a folder, so a namespace
is listed, measured or removed (`aws s3 rm --recursive`, a lifecycle rule) on its own.
Keys that are not response-cache keys go under `_`.

Object stores have no per-object TTL, so the expiry time (epoch seconds) is written
into the object's metadata and checked on every read: an expired object is a miss even
if nothing has deleted it yet. A bucket lifecycle rule can delete old objects; hitrate
does not need one to be correct.
"""

from __future__ import annotations

import time
from typing import Any

from hitrate.stores.remote import RemoteStore

EXPIRES_AT = "hitrate-expires-at"  # Azure metadata names must be identifiers: see azure_blob.py


class ObjectLayout:
    def __init__(self, prefix: str = "hitrate"):
        self.prefix = prefix.strip("/")
        self._head = f"{self.prefix}/" if self.prefix else ""

    @staticmethod
    def namespace(key: str) -> str:
        parts = key.split(":", 3)
        return parts[2] if len(parts) == 4 and parts[0] == "hitrate" and parts[2] else "_"

    def name(self, key: str) -> str:
        return f"{self._head}{self.namespace(key)}/{key}"

    def key(self, name: str) -> str | None:
        """The key an object name holds, or None for objects that are not ours."""
        if not name.startswith(self._head):
            return None
        _, sep, key = name[len(self._head):].partition("/")
        return key if sep else None

    def list_prefix(self, key_prefix: str) -> str:
        """The narrowest object-name prefix that holds every key starting with `key_prefix`;
        callers still filter listed keys with `startswith(key_prefix)`."""
        if key_prefix.count(":") >= 3:  # the namespace is spelled out: list that folder only
            return self.name(key_prefix)
        return self._head


def expires_at(ttl: float | None, now: float | None = None) -> str | None:
    return f"{(now or time.time()) + ttl:.3f}" if ttl else None


def remaining(value: str | None, now: float | None = None) -> float | None:
    """Seconds left before expiry (<= 0: expired); None when the object never expires or
    its metadata is unreadable (a foreign object: the entry layer decides)."""
    if not value:
        return None
    try:
        return float(value) - (now or time.time())
    except ValueError:
        return None


def unexpired(data: bytes, expiry: str | None) -> tuple[bytes | None, float | None]:
    """(data, seconds left) for a fetched object, or (None, None) once it has expired."""
    left = remaining(expiry)
    if left is not None and left <= 0:
        return None, None
    return data, left


class ObjectStore(RemoteStore):
    """Base of the object-storage stores: one object per key, expiry in its metadata;
    a backend implements `_get_with_ttl` (reads) and the other `RemoteStore` hooks."""

    default_timeout = 1.0

    def __init__(self, prefix: str = "hitrate", **guard: Any):
        super().__init__(**guard)
        self.layout = ObjectLayout(prefix)

    async def _get(self, key: str) -> bytes | None:
        return (await self._get_with_ttl(key))[0]
