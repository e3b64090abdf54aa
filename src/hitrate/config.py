"""Configuration: hitrate's native schema, and LiteLLM-style `config.yaml` accepted as is.

Both load into `Config`. Any string `os.environ/NAME` is replaced by that environment
variable. A bad file raises `ConfigError` with one message naming the field.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from hitrate.keys import valid_namespace


class ConfigError(ValueError):
    """A config problem, phrased for the person who wrote the file."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Section):
    name: str = Field(min_length=1, description="model name clients send")
    model: str | None = Field(default=None, description="upstream model id (default: name)")
    api_base: str = "https://api.openai.com/v1"
    api_key: str | None = None
    provider: Literal["openai", "azure"] = "openai"
    api_version: str | None = None
    timeout: float = Field(default=600.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("api_base")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


# -- shared cache backends (issue 3; built by hitrate.stores.build_store) -------------

SharedStoreType = Literal["redis", "redis-cluster", "redis-sentinel", "s3", "gcs", "azure-blob"]


class CircuitConfig(_Section):
    """Failure behaviour of every shared backend (hitrate/stores/remote.py, circuit.py)."""

    timeout: float | None = Field(default=None, gt=0, description="seconds per operation; "
                                  "default 0.05 for Redis, 1 for object storage")
    failure_threshold: int = Field(default=1, ge=1, description="failures that open the circuit")
    recovery_time: float = Field(default=1.0, gt=0, description="first probe after (s), doubling")
    max_recovery_time: float = Field(default=30.0, gt=0)


def _node(value: Any) -> str:
    if isinstance(value, dict) and {"host", "port"} <= set(value):
        host, port = value["host"], value["port"]
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        host, port = value
    elif isinstance(value, str) and value.rpartition(":")[0]:
        host, _, port = value.rpartition(":")
    else:
        raise ValueError(f"{value!r}: use host:port, {{host, port}} or [host, port]")
    if not str(port).isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r}: bad port")
    return f"{host}:{int(port)}"


class RedisConfig(_Section):
    """Unset connection fields fall back to REDIS_URL / REDIS_HOST / REDIS_PORT /
    REDIS_PASSWORD / REDIS_USERNAME, then to 127.0.0.1:6379."""

    url: str | None = None  # redis://[user:pass@]host:port/db; rediss:// for TLS
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    db: int = Field(default=0, ge=0)
    ssl: bool = False
    ssl_ca_certs: str | None = None
    ssl_cert_reqs: Literal["required", "optional", "none"] = "required"
    startup_nodes: list[Any] = Field(default_factory=list, description="redis-cluster")
    sentinel_nodes: list[Any] = Field(default_factory=list, description="redis-sentinel")
    service_name: str | None = None
    sentinel_password: str | None = None
    max_connections: int | None = Field(default=None, gt=0)

    @field_validator("startup_nodes", "sentinel_nodes")
    @classmethod
    def _nodes(cls, value: list[Any]) -> list[str]:
        return [_node(v) for v in value]

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("use redis://, rediss:// or unix://")
        return value


class S3Config(_Section):
    bucket: str = Field(min_length=1)
    prefix: str = "hitrate"  # objects: <prefix>/<namespace>/<key>
    region: str | None = None
    endpoint_url: str | None = None  # S3-compatible stores (MinIO, R2, ...)
    access_key_id: str | None = None  # default: the AWS credential chain
    secret_access_key: str | None = None
    session_token: str | None = None
    max_connections: int = Field(default=64, gt=0)


class GCSConfig(_Section):
    bucket: str = Field(min_length=1)
    prefix: str = "hitrate"
    service_file: str | None = None  # default: Application Default Credentials
    api_root: str | None = None  # an emulator; STORAGE_EMULATOR_HOST works too


class AzureBlobConfig(_Section):
    container: str = Field(min_length=1)
    prefix: str = "hitrate"
    connection_string: str | None = None
    account_url: str | None = None  # https://<account>.blob.core.windows.net
    credential: str | None = None  # account key or SAS; default: DefaultAzureCredential


class TieredConfig(_Section):
    l2: SharedStoreType = "redis"
    l1_ttl: float | None = Field(default=None, gt=0, description="seconds; default 60 with "
                                 "Redis pub/sub invalidation, 5 without")
    l1_max_size_mb: float = Field(default=64, gt=0)
    invalidation: bool = True  # Redis pub/sub to every replica's L1 (Redis L2 only)


_SECTION_NEEDED = {"s3": "s3", "gcs": "gcs", "azure-blob": "azure_blob"}


class SemanticConfig(_Section):
    """Semantic lookup after an exact miss (see README, "Semantic cache")."""

    enabled: bool = True
    embedder: str = Field(default="e5", description="e5 | use | wordllama | "
                          "sentence-transformers:<path> | upstream:<model name>")
    index: Literal["embedded", "redis", "qdrant", "pgvector"] = "embedded"
    index_options: dict[str, Any] = Field(default_factory=dict)
    index_dir: str | None = Field(default=None, description="embedded index persistence")
    verifier: Literal["learned", "rules"] = Field(
        default="learned", description="learned: the calibrated model shipped in the "
        "package; rules: the hand-written vetoes of earlier versions")
    max_false_rate: float = Field(default=0.02, gt=0, lt=1, description="share of semantic "
                                  "hits allowed to be wrong (the learned verifier's budget)")
    similarity_threshold: float | None = Field(default=None, gt=0, le=1, description="lowest "
                                               "cosine considered; default: the verifier's own "
                                               "(0.84 learned, 0.93 rules)")
    rewording_similarity: float = Field(default=0.975, gt=0, le=1)
    top_k: int = Field(default=3, ge=1, le=50)
    max_text_chars: int = Field(default=512, ge=1, description="longer texts skip the "
                                "semantic lookup (counted)")
    embed_timeout_ms: float | None = Field(default=1000, gt=0, description="a lookup waits "
                                           "this long for its vector, then goes upstream")
    embed_batch: int = Field(default=32, ge=1, le=1024)
    embed_concurrency: int = Field(default=1, ge=1, le=64)


class CacheConfig(_Section):
    enabled: bool = True
    type: Literal["memory", "disk", "redis", "redis-cluster", "redis-sentinel", "s3", "gcs",
                  "azure-blob", "tiered"] = "memory"
    ttl: float | None = Field(default=None, gt=0, description="seconds; none = no expiry")
    namespace: str = "default"
    mode: Literal["default_on", "default_off"] = "default_on"
    max_cache_size_mb: float = Field(default=256, gt=0)
    max_entries: int | None = Field(default=None, gt=0)
    disk_cache_dir: str = ".hitrate/cache"
    disk_max_size_mb: float = Field(default=4096, gt=0)
    coalesce: bool = True
    semantic: SemanticConfig | None = None
    redis: RedisConfig = Field(default_factory=RedisConfig)
    s3: S3Config | None = None
    gcs: GCSConfig | None = None
    azure_blob: AzureBlobConfig | None = None
    tiered: TieredConfig = Field(default_factory=TieredConfig)
    circuit: CircuitConfig = Field(default_factory=CircuitConfig)

    @model_validator(mode="after")
    def _backend_section(self) -> CacheConfig:
        backend = self.tiered.l2 if self.type == "tiered" else self.type
        section = _SECTION_NEEDED.get(backend)
        if section and getattr(self, section) is None:
            raise PydanticCustomError("missing_section", f"type {backend} needs a "
                                      f"cache.{section} section (with its bucket/container)")
        if backend == "redis-cluster" and not self.redis.startup_nodes:
            raise PydanticCustomError("missing_nodes", "type redis-cluster needs "
                                      "cache.redis.startup_nodes")
        if backend == "redis-sentinel" and not (self.redis.sentinel_nodes and self.redis.service_name):
            raise PydanticCustomError("missing_nodes", "type redis-sentinel needs "
                                      "cache.redis.sentinel_nodes and cache.redis.service_name")
        if self.azure_blob and not (self.azure_blob.connection_string or self.azure_blob.account_url):
            raise PydanticCustomError("missing_account", "cache.azure_blob needs "
                                      "connection_string or account_url")
        return self

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not valid_namespace(value):
            raise ValueError("use 1-128 letters, digits, '_', '.', '-'")
        return value


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=4000, ge=0, le=65535)


# -- KV cache (issue 6) ----------------------------------------------------------------


class KVConfig(_Section):
    """KV cache tiers for self-hosted models (`hitrate.kv`). Each field can also be set
    by an environment variable, which wins over the file: HITRATE_KV_<FIELD upper>."""

    chunk_size: int = Field(default=256, gt=0, le=65536, description="tokens per chunk")
    store_partial: bool = True  # also store a prompt's final, shorter chunk
    gpu_size_mb: float = Field(default=0, ge=0, description="GPU tier (CUDA hosts); 0 = off")
    cpu_size_mb: float = Field(default=2048, ge=0, description="CPU memory tier; 0 = off")
    disk_dir: str | None = None  # local disk tier (SQLite, a DiskStore); none = off
    disk_size_mb: float = Field(default=16384, gt=0)
    remote_url: str | None = None  # redis://host:port/db, rediss://..., s3://bucket/prefix
    remote_ttl: float | None = Field(default=None, gt=0, description="seconds; none = no expiry")
    remote_timeout: float = Field(default=10.0, gt=0, description="per remote operation (s)")
    # Reuse of cached segments at any position (hitrate.kv.blend, HuggingFace path).
    blend: bool = False
    blend_ratio: float = Field(default=0.15, ge=0, le=1,
                               description="share of segment tokens recomputed (0 = none, 1 = all)")
    blend_check_layer: int = Field(default=2, ge=1, description="layer where tokens are selected")
    blend_separator: str | None = Field(default=None, min_length=1,
                                        description="cuts a string prompt into segments")

    @field_validator("remote_url")
    @classmethod
    def _remote(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://", "s3://")):
            raise ValueError("use redis://, rediss://, unix:// or s3://")
        return value or None


# -- keys, tenants, prices, metrics (issue 5) ------------------------------------------


class VirtualKeyConfig(_Section):
    key: str = Field(min_length=8, description="the API key clients send")
    tenant: str = Field(description="cache entries are isolated per tenant")
    shared: bool = Field(default=False, description="use the cross-tenant shared cache")
    name: str | None = None

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, value: str) -> str:
        if not valid_namespace(value):
            raise ValueError("use 1-128 letters, digits, '_', '.', '-'")
        return value


class ModelPriceConfig(_Section):
    input_cost_per_token: float = Field(default=0.0, ge=0, le=0.01)
    output_cost_per_token: float = Field(default=0.0, ge=0, le=0.01)
    cached_input_cost_per_token: float | None = Field(default=None, ge=0, le=0.01)
    max_input_tokens: int | None = Field(default=None, gt=0)
    max_output_tokens: int | None = Field(default=None, gt=0)


class PriceRefreshConfig(_Section):
    source: str = Field(min_length=1, description="URL (http/https) or file path")
    max_age: float = Field(default=86400.0, gt=0, description="refetch when older (s)")
    cache_file: str = ".hitrate/prices.json"
    timeout: float = Field(default=10.0, gt=0)


class CostsConfig(_Section):
    models: dict[str, ModelPriceConfig] = Field(default_factory=dict)
    refresh: PriceRefreshConfig | None = None  # off by default: bundled snapshot only


class MetricsConfig(_Section):
    enabled: bool = True
    require_key: bool = False  # /metrics open (like most exporters) unless set
    history_interval: float = Field(default=5.0, gt=0, description="dashboard sample period")


class Config(_Section):
    models: list[ModelConfig] = Field(default_factory=list)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    master_key: str | None = None
    kv: KVConfig = Field(default_factory=KVConfig)
    keys: list[VirtualKeyConfig] = Field(default_factory=list)
    keys_file: str | None = None  # where keys created via the admin API persist (digests)
    shared_namespaces: list[str] = Field(default_factory=list)
    costs: CostsConfig = Field(default_factory=CostsConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)

    @model_validator(mode="after")
    def _keys(self) -> Config:
        seen: set[str] = set()
        for i, item in enumerate(self.keys):
            if item.key in seen or item.key == self.master_key:
                raise ValueError(f"keys[{i}].key: duplicate key (keys must be unique and "
                                 "differ from master_key)")
            seen.add(item.key)
        if self.keys_file and not self.master_key:
            raise ValueError("keys_file: needs master_key (keys are created via the admin API)")
        return self


# -- loading ------------------------------------------------------------------------


def _resolve_env(value: Any, path: str) -> Any:
    if isinstance(value, str) and value.startswith("os.environ/"):
        name = value.removeprefix("os.environ/")
        if name not in os.environ:
            raise ConfigError(f"{path}: environment variable {name} is not set")
        return os.environ[name]
    if isinstance(value, dict):
        return {k: _resolve_env(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_env(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _format_validation(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    parts: list[str] = []
    for part in error["loc"]:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + str(part))
    field = "".join(parts)
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    return f"{field}: {message}" if field else message


def parse_config(data: Any) -> Config:
    """A parsed YAML/JSON document (native or LiteLLM-style) -> Config."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the config file must be a mapping at the top level")
    data = _resolve_env(data, "")
    if is_litellm(data):
        from hitrate.litellm_config import convert

        data = convert(data)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc)) from None
    return config


def is_litellm(data: dict[str, Any]) -> bool:
    return bool({"model_list", "litellm_settings", "general_settings", "router_settings"} & set(data))


def load_config(path: str | os.PathLike[str]) -> Config:
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None)
        raise ConfigError(f"{file} is not valid YAML{where}" + (f": {problem}" if problem else "")
                          ) from None
    return parse_config(data)
