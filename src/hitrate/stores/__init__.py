"""Byte stores behind one async protocol (`ByteStore`). One module per backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hitrate.stores.base import ByteStore, StoreStats

if TYPE_CHECKING:
    from hitrate.config import CacheConfig

__all__ = ["ByteStore", "StoreStats", "build_store"]

MB = 1024 * 1024


def build_store(config: CacheConfig) -> ByteStore:
    """The store a cache config asks for. Backends import lazily: only what is used loads."""
    if config.type == "disk":
        from hitrate.stores.disk import DiskStore

        return DiskStore(config.disk_cache_dir, max_bytes=int(config.disk_max_size_mb * MB))
    from hitrate.stores.memory import MemoryStore

    return MemoryStore(max_bytes=int(config.max_cache_size_mb * MB),
                       max_entries=config.max_entries)
