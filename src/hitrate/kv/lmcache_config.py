"""LMCache's configuration, read as is: field names, units and files -> hitrate's `kv:` fields.

An LMCache user keeps their YAML (`LMCACHE_CONFIG_FILE`), their `LMCACHE_<FIELD>`
variables and their vLLM `kv_connector_extra_config`; each LMCache field either maps
onto a hitrate field (`MAPPED`), is accepted because its value asks for nothing hitrate
does not do (`ACCEPTED`: LMCache's default, or a feature left off), or is an error
naming it. Nothing is dropped silently. Torch-free and pydantic-free: `translate` only
renames and converts; `KVConfig` validates the result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

GB_IN_MB = 1024.0  # LMCache sizes are GB of 2**30 bytes; hitrate's are MB of 2**20
ENV_PREFIX = "LMCACHE_"
CONFIG_FILE_VARS = ("HITRATE_KV_CONFIG_FILE", "LMCACHE_CONFIG_FILE")  # first set one wins


class LMCacheFieldError(ValueError):
    """An LMCache (or unknown) field that hitrate cannot honour."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _float(value: Any) -> float:
    return float(value)


def _one(value: Any, kind: Callable[[Any], Any]) -> Any:
    """LMCache lists (`blend_recompute_ratios: [0.15]`) that hitrate takes as one value."""
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if isinstance(value, list | tuple):
        if len(value) != 1:
            raise ValueError(f"hitrate takes one value, got {len(value)}")
        value = value[0]
    return kind(value)


def _disk_dir(value: Any) -> str | None:
    text = str(value or "").strip()
    if not text or text.lower() in ("none", "null"):
        return None
    return text.removeprefix("file://") or None


SERDE_NAMES = {"naive": "naive", "cachegen": "int8"}  # LMCache remote_serde -> hitrate serde


def _serde(value: Any) -> str:
    text = str(value).strip().lower()
    return SERDE_NAMES.get(text, text)  # hitrate's own names pass through to validation


# LMCache field -> (hitrate field, converter, how it maps: the README table's last column)
MAPPED: dict[str, tuple[str, Callable[[Any], Any], str]] = {
    "chunk_size": ("chunk_size", int, "same (tokens)"),
    "local_cpu": ("cpu_size_mb", _bool, "false turns the CPU tier off (cpu_size_mb 0)"),
    "max_local_cpu_size": ("cpu_size_mb", lambda v: _float(v) * GB_IN_MB, "GB -> MB (x1024)"),
    "local_disk": ("disk_dir", _disk_dir, "`file:///path/` or a path -> the directory"),
    "max_local_disk_size": ("disk_size_mb", lambda v: _float(v) * GB_IN_MB, "GB -> MB (x1024)"),
    "remote_url": ("remote_url", str, "same; redis://, rediss://, unix:// (and hitrate's s3://)"),
    "remote_serde": ("remote_serde", _serde, "naive -> naive; cachegen -> int8 (hitrate's "
                     "CacheGen-style per-channel int8; not CacheGen's bitstream)"),
    "save_decode_cache": ("save_decode_cache", _bool, "same"),
    "save_unfull_chunk": ("store_partial", _bool, "same meaning (LMCache's default is false, "
                          "hitrate's true)"),
    "enable_blending": ("blend", _bool, "same"),
    "blend_special_str": ("blend_separator", str, "same"),
    "blend_recompute_ratio": ("blend_ratio", lambda v: _one(v, float), "same"),
    "blend_recompute_ratios": ("blend_ratio", lambda v: _one(v, float), "a one-element list"),
    "blend_check_layers": ("blend_check_layer", lambda v: _one(v, int), "a one-element list"),
    "blocking_timeout_secs": ("remote_timeout", _float, "seconds per remote operation"),
}

# LMCache fields accepted with these values only (each asks for no behaviour hitrate
# lacks); any other value is an error. `None` is always accepted (unset).
ACCEPTED: dict[str, tuple[tuple[Any, ...], str]] = {
    "use_layerwise": ((False,), "hitrate loads a prompt's KV before the forward pass, not per layer"),
    "enable_async_loading": ((False,), "hitrate's vLLM loads are synchronous"),
    "local_cpu_use_hugepages": ((False,), "the CPU tier is ordinary process memory"),
    "reserve_local_cpu_size": ((0, 0.0), "no reserved CPU memory"),
    "cache_policy": (("LRU", "lru"), "every hitrate tier evicts least-recently-used"),
    "local_disk_path_sharding": (("by_gpu",), "one directory; the namespace carries the TP rank"),
    "pre_caching_hash_algorithm": (("builtin", "sha256", "sha256_cbor", "sha256_cbor_64bit"),
                                   "hitrate's chunk keys are always BLAKE2b chains"),
    "blend_thresholds": ((), "hitrate selects a fixed share of tokens (blend_ratio)"),
    "blend_min_tokens": ((), "hitrate blends segments of any length"),
    "min_retrieve_tokens": ((0,), "every hit is used"),
    "enable_p2p": ((False,), "no peer-to-peer transfer"),
    "enable_controller": ((False,), "no LMCache controller"),
    "enable_pd": ((False,), "no prefill/decode disaggregation"),
    "enable_kv_events": ((False,), "no KV events"),
    "enable_chunk_statistics": ((False,), "no chunk statistics (see hitrate kv stats)"),
    "enable_hidden_state_cache": ((False,), "no hidden-state cache"),
    "enable_lazy_memory_allocator": ((False,), "no lazy allocator"),
    "enable_scheduler_bypass_lookup": ((False,), "the scheduler always looks up"),
    "internal_api_server_enabled": ((False,), "no internal API server"),
    "use_gds": ((True, False), "only meaningful with gds_path"),
    "py_enable_gc": ((True,), "the Python garbage collector stays on"),
    "extra_config": (({},), "no LMCache extra_config"),
    "retrieve_locations": ((), "every configured tier is searched"),
    "store_location": ((), "chunks are stored in every configured tier"),
    "storage_plugins": (([],), "no storage plugins"),
    "remote_storage_plugins": (([],), "no storage plugins"),
    "runtime_plugin_locations": (([],), "no runtime plugins"),
    "gds_path": ((), "no GPU Direct Storage tier"),
    "maru_path": ((), "no CXL tier"),
    "numa_mode": ((), "no NUMA placement"),
    "priority_limit": ((), "no request priorities"),
    "external_lookup_client": ((), "lookups are in-process"),
    "transfer_channel": ((), "no transfer channel"),
    "nixl_backends": ((), "no NIXL"),
    "pd_role": ((), "no prefill/decode disaggregation"),
    "p2p_host": ((), "no peer-to-peer transfer"),
    "controller_pull_url": ((), "no LMCache controller"),
    "controller_reply_url": ((), "no LMCache controller"),
    "lmcache_instance_id": ((), "no LMCache controller"),
    "remote_config_url": ((), "hitrate reads no remote configuration"),
    "audit_actual_remote_url": ((), "no audit backend"),
}


def translate(data: Mapping[str, Any], hitrate_fields: Iterable[str], *,
              allow_unknown: bool = False) -> dict[str, Any]:
    """A mapping of hitrate and/or LMCache field names -> hitrate field names only.

    Hitrate's own fields pass through untouched (values are validated by `KVConfig`).
    `local_cpu: false` wins over `max_local_cpu_size`. Raises LMCacheFieldError naming
    the first field that cannot be honoured, or that neither knows (unless
    `allow_unknown`: then such keys pass through for the caller to reject)."""
    own = set(hitrate_fields)
    out: dict[str, Any] = {}
    cpu_off = False
    for raw_key, value in data.items():
        key = str(raw_key).removeprefix("lmcache.")
        if key in own and key not in MAPPED:
            out[key] = value
            continue
        if key in MAPPED:
            target, convert, _ = MAPPED[key]
            if value is None and key not in ("local_disk", "remote_url"):
                continue  # LMCache's "unset"
            try:
                converted = convert(value) if value is not None else None
            except (TypeError, ValueError) as exc:
                raise LMCacheFieldError(key, str(exc)) from None
            if key == "local_cpu":
                cpu_off = cpu_off or not converted
                continue
            out[target] = converted
            continue
        if key in ACCEPTED:
            allowed, reason = ACCEPTED[key]
            if value is None or _allowed(value, allowed):
                continue
            raise LMCacheFieldError(key, f"{value!r} cannot be honoured ({reason})")
        if allow_unknown:
            out[raw_key] = value
            continue
        raise LMCacheFieldError(key, "unknown field (neither a hitrate kv field nor an LMCache "
                                     "field hitrate knows)")
    if cpu_off:
        out["cpu_size_mb"] = 0
    if out.get("disk_size_mb") == 0 and "disk_dir" not in out:
        del out["disk_size_mb"]  # LMCache's default 0.0 with no local_disk: nothing to size
    return out


def _allowed(value: Any, allowed: tuple[Any, ...]) -> bool:
    for option in allowed:
        if isinstance(option, bool):
            try:
                if _bool(value) is option:
                    return True
            except ValueError:
                pass
        elif isinstance(option, int | float) and not isinstance(value, bool):
            try:
                if float(value) == option:
                    return True
            except (TypeError, ValueError):
                pass
        elif value == option:
            return True
    return False


def env_overrides(env: Mapping[str, str], hitrate_fields: Iterable[str]
                  ) -> tuple[dict[str, Any], dict[str, str]]:
    """`LMCACHE_<FIELD>` variables for the LMCache fields of the tables above, translated;
    and hitrate field -> the variable it came from (for error messages). Other
    LMCACHE_* variables (LMCACHE_LOG_LEVEL, LMCACHE_CONFIG_FILE, ...) are not fields."""
    raw: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for field in (*MAPPED, *ACCEPTED):
        var = ENV_PREFIX + field.upper()
        if var in env:
            raw[field] = env[var]
            origin[field] = var
    try:
        out = translate(raw, hitrate_fields)
    except LMCacheFieldError as exc:
        raise LMCacheFieldError(origin[exc.field], str(exc).split(": ", 1)[1]) from None
    names = {MAPPED[f][0]: var for f, var in origin.items() if f in MAPPED}
    return out, names


def config_file(env: Mapping[str, str]) -> tuple[str, str] | None:
    """(variable, path) of the KV config file named by the environment, if any."""
    for var in CONFIG_FILE_VARS:
        path = env.get(var, "").strip()
        if path:
            return var, path
    return None


def read_file(path: str) -> dict[str, Any]:
    """A YAML file of LMCache and/or hitrate kv fields (a top-level `kv:` mapping, if
    present, is used: a hitrate config file works too)."""
    import yaml

    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError("must be a mapping of fields")
    if isinstance(data.get("kv"), dict):
        data = data["kv"]
    return data


def table() -> list[tuple[str, str, str]]:
    """(LMCache field, hitrate field, how) rows, for the README and `hitrate kv stats`."""
    rows = [(name, target, how) for name, (target, _, how) in MAPPED.items()]
    for name, (allowed, reason) in ACCEPTED.items():
        values = ", ".join(repr(v) for v in allowed) or "unset"
        rows.append((name, "-", f"accepted when {values}; otherwise an error ({reason})"))
    return rows
