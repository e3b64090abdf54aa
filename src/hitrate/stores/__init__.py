"""Byte stores behind one async protocol (`ByteStore`). One module per backend."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hitrate.stores.base import ByteStore, StoreStats

if TYPE_CHECKING:
    from hitrate.config import CacheConfig

__all__ = ["ByteStore", "StoreStats", "build_store"]

MB = 1024 * 1024

_REDIS_MODES = {"redis": "standalone", "redis-cluster": "cluster", "redis-sentinel": "sentinel"}


def build_store(config: CacheConfig) -> ByteStore:
    """The store a cache config asks for. Backends import lazily: only what is used loads."""
    if config.type == "tiered":
        return _tiered(config)
    if config.type in _REDIS_MODES or config.type in ("s3", "gcs", "azure-blob"):
        return _shared(config, config.type)
    if config.type == "disk":
        from hitrate.stores.disk import DiskStore

        return DiskStore(config.disk_cache_dir, max_bytes=int(config.disk_max_size_mb * MB))
    from hitrate.stores.memory import MemoryStore

    return MemoryStore(max_bytes=int(config.max_cache_size_mb * MB),
                       max_entries=config.max_entries)


def _shared(config: CacheConfig, kind: str) -> ByteStore:
    from hitrate.extras import require_store

    require_store(kind)  # one clear line naming the extra, not an import traceback
    c = config.circuit
    guard: dict[str, Any] = {"failure_threshold": c.failure_threshold,
                             "recovery_time": c.recovery_time,
                             "max_recovery_time": max(c.max_recovery_time, c.recovery_time)}
    if c.timeout is not None:
        guard["timeout"] = c.timeout
    if kind in _REDIS_MODES:
        from hitrate.stores.redis import from_config

        return from_config(config.redis, _REDIS_MODES[kind], guard)  # type: ignore[arg-type]
    if kind == "s3":
        from hitrate.stores.s3 import S3Store

        assert config.s3 is not None
        return S3Store(**config.s3.model_dump(), **guard)
    if kind == "gcs":
        from hitrate.stores.gcs import GCSStore

        assert config.gcs is not None
        return GCSStore(**config.gcs.model_dump(), **guard)
    from hitrate.stores.azure_blob import AzureBlobStore

    assert config.azure_blob is not None
    return AzureBlobStore(**config.azure_blob.model_dump(), **guard)


def _tiered(config: CacheConfig) -> ByteStore:
    from hitrate.stores.memory import MemoryStore
    from hitrate.stores.tiered import TieredStore

    t = config.tiered
    pubsub = t.invalidation and t.l2 in _REDIS_MODES
    l1_ttl = t.l1_ttl or (60.0 if pubsub else 5.0)
    return TieredStore(MemoryStore(max_bytes=int(t.l1_max_size_mb * MB)), _shared(config, t.l2),
                       l1_ttl=l1_ttl, invalidation=pubsub)
