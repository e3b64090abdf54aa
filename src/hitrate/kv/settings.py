"""KV settings (the `kv:` config section plus HITRATE_KV_* environment variables) ->
tiers, in search order: GPU, CPU memory, local disk, remote.

Environment variables win over the file, one per field: HITRATE_KV_CHUNK_SIZE,
HITRATE_KV_STORE_PARTIAL, HITRATE_KV_GPU_SIZE_MB, HITRATE_KV_CPU_SIZE_MB,
HITRATE_KV_DISK_DIR, HITRATE_KV_DISK_SIZE_MB, HITRATE_KV_REMOTE_URL,
HITRATE_KV_REMOTE_TTL, HITRATE_KV_REMOTE_TIMEOUT, HITRATE_KV_REMOTE_SERDE,
HITRATE_KV_DISK_SERDE, HITRATE_KV_SAVE_DECODE_CACHE, ... LMCache's own names work too:
`LMCACHE_CONFIG_FILE` (or HITRATE_KV_CONFIG_FILE) and `LMCACHE_<FIELD>` variables, see
`hitrate.kv.lmcache_config`.
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
    """The config's `kv` section (or defaults), then, each layer winning over the one
    before: the YAML file named by HITRATE_KV_CONFIG_FILE or LMCACHE_CONFIG_FILE,
    LMCache's `LMCACHE_<FIELD>` variables, hitrate's HITRATE_KV_* variables. Every layer
    takes hitrate's or LMCache's field names (`hitrate.kv.lmcache_config`).
    Raises ConfigError naming the field, file or variable."""
    from pydantic import ValidationError

    from hitrate.config import ConfigError, KVConfig
    from hitrate.kv import lmcache_config

    env = os.environ if env is None else env
    fields = KVConfig.model_fields
    names: dict[str, str] = {}
    try:
        data = lmcache_config.translate(base.model_dump() if isinstance(base, KVConfig) else (base or {}),
                                        fields)
    except lmcache_config.LMCacheFieldError as exc:
        raise ConfigError(f"kv.{exc}") from None
    named = lmcache_config.config_file(env)
    if named is not None:
        var, path = named
        try:
            layer = lmcache_config.translate(lmcache_config.read_file(path), fields)
        except lmcache_config.LMCacheFieldError as exc:
            raise ConfigError(f"{var} ({path}): {exc}") from None
        except (OSError, ValueError) as exc:  # unreadable file, bad YAML, not a mapping
            raise ConfigError(f"{var} ({path}): {exc}") from None
        data.update(layer)
        names.update({field: f"{var} ({path})" for field in layer})
    try:
        layer, origin = lmcache_config.env_overrides(env, fields)
    except lmcache_config.LMCacheFieldError as exc:
        raise ConfigError(str(exc)) from None
    data.update(layer)
    names.update(origin)
    for field in fields:
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
        where = names.get(field, f"kv.{field}" if field else "kv")
        raise ConfigError(f"{where}: {error['msg']}") from None


CONNECTOR_KEYS = ("config", "model_id", "metrics_port")  # kv_connector_extra_config only


def connector_settings(extra: Mapping[str, Any], env: Mapping[str, str] | None = None) -> KVConfig:
    """Settings from vLLM's `kv_connector_extra_config`: `config` (a hitrate config file
    whose `kv:` section is the base), then the other keys (hitrate or LMCache fields,
    also as `lmcache.<field>`), then the environment as in `resolve_settings`. Keys in
    CONNECTOR_KEYS are the connector's own; any other unknown key is an error naming it."""
    from hitrate.config import ConfigError, KVConfig, load_config
    from hitrate.kv import lmcache_config

    base: dict[str, Any] = {}
    if extra.get("config"):
        base = load_config(extra["config"]).kv.model_dump()
    fields = {k: v for k, v in extra.items() if k not in CONNECTOR_KEYS}
    try:
        base.update(lmcache_config.translate(fields, KVConfig.model_fields))
    except lmcache_config.LMCacheFieldError as exc:
        raise ConfigError(f"kv_connector_extra_config.{exc}") from None
    return resolve_settings(base, env)


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
                               name="disk", kind="disk", serde=settings.disk_serde))
    reader = None
    if remote is None and settings.remote_url:
        remote = remote_store(settings.remote_url, settings.remote_timeout)
        from hitrate.kv import redis_reader

        if redis_reader.supports(settings.remote_url):
            reader = redis_reader.RedisBulkReader(settings.remote_url, timeout=settings.remote_timeout)
    if remote is not None:
        tiers.append(StoreTier(remote, name="remote", kind=remote.name, ttl=settings.remote_ttl,
                               serde=settings.remote_serde, reader=reader))
    if not tiers:
        raise ValueError("no KV tier is configured (all sizes 0, no disk_dir, no remote_url)")
    return tiers
