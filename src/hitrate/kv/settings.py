"""KV settings (the `kv:` config section plus HITRATE_KV_* environment variables) ->
tiers, in search order: GPU, CPU memory, local disk, remote.

Environment variables win over the file, one per field: HITRATE_KV_CHUNK_SIZE,
HITRATE_KV_STORE_PARTIAL, HITRATE_KV_GPU_SIZE_MB, HITRATE_KV_CPU_SIZE_MB,
HITRATE_KV_DISK_DIR, HITRATE_KV_DISK_SIZE_MB, HITRATE_KV_REMOTE_URL,
HITRATE_KV_REMOTE_TTL, HITRATE_KV_REMOTE_TIMEOUT.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hitrate.config import KVConfig
    from hitrate.kv.tiers import KVTier
    from hitrate.stores.base import ByteStore

ENV_PREFIX = "HITRATE_KV_"
MB = 1024 * 1024


def resolve_settings(base: KVConfig | Mapping[str, Any] | None = None,
                     env: Mapping[str, str] | None = None) -> KVConfig:
    """The config's `kv` section (or defaults) with HITRATE_KV_* overrides applied.
    Raises ConfigError naming the field or variable."""
    from pydantic import ValidationError

    from hitrate.config import ConfigError, KVConfig

    env = os.environ if env is None else env
    data = dict(base.model_dump() if isinstance(base, KVConfig) else (base or {}))
    names: dict[str, str] = {}
    for field in KVConfig.model_fields:
        var = ENV_PREFIX + field.upper()
        if var in env:
            value: Any = env[var]
            if value.strip().lower() in ("", "none", "null"):
                value = None
            data[field] = value
            names[field] = var
    try:
        return KVConfig.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        where = names.get(field, f"kv.{field}")
        raise ConfigError(f"{where}: {error['msg']}") from None


def remote_store(url: str, timeout: float = 10.0) -> ByteStore:
    """The shared byte store behind a remote URL (redis://, rediss://, unix://, s3://)."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        from hitrate.stores.redis import RedisStore

        return RedisStore(url=url, timeout=timeout)
    if url.startswith("s3://"):
        # s3://bucket/prefix[?endpoint_url=http://host:port&region=...] (credentials: the
        # usual AWS environment variables / config files).
        from urllib.parse import parse_qs, urlparse

        from hitrate.stores import s3

        parsed = urlparse(url)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        return s3.S3Store(parsed.netloc, prefix=parsed.path.strip("/") or "hitrate",
                          endpoint_url=query.get("endpoint_url"), region=query.get("region"),
                          timeout=timeout)
    raise ValueError(f"unsupported KV remote URL {url!r}")


def build_tiers(settings: KVConfig, *, remote: ByteStore | None = None) -> list[KVTier]:
    """Tiers in search order. `remote` overrides `settings.remote_url` (tests, or a store
    the application already built)."""
    from hitrate.kv.tiers import CPUTier, GPUTier, StoreTier

    tiers: list[KVTier] = []
    if settings.gpu_size_mb > 0:
        import torch

        if torch.cuda.is_available():
            tiers.append(GPUTier(int(settings.gpu_size_mb * MB)))
    if settings.cpu_size_mb > 0:
        tiers.append(CPUTier(int(settings.cpu_size_mb * MB)))
    if settings.disk_dir:
        from hitrate.stores.disk import DiskStore

        tiers.append(StoreTier(DiskStore(settings.disk_dir, max_bytes=int(settings.disk_size_mb * MB)),
                               name="disk", kind="disk"))
    if remote is None and settings.remote_url:
        remote = remote_store(settings.remote_url, settings.remote_timeout)
    if remote is not None:
        tiers.append(StoreTier(remote, name="remote", kind=remote.name, ttl=settings.remote_ttl))
    if not tiers:
        raise ValueError("no KV tier is configured (all sizes 0, no disk_dir, no remote_url)")
    return tiers
