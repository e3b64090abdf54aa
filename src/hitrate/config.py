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

from hitrate.controls import MAX_SECONDS
from hitrate.keys import NAMESPACE_RULE, valid_namespace


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
    # Connections to this model's upstream origin (deployments on one origin share them).
    max_connections: int = Field(default=256, ge=1, le=10_000)

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
    """Unset connection fields fall back to REDIS_URL (then LiteLLM's LLM_REDIS_URL) /
    REDIS_HOST / REDIS_PORT / REDIS_PASSWORD / REDIS_USERNAME, then to 127.0.0.1:6379."""

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
    l1_ttl: float | None = Field(default=None, gt=0, le=MAX_SECONDS,
                                 description="seconds; default 60 with "
                                 "Redis pub/sub invalidation, 5 without")
    l1_max_size_mb: float = Field(default=64, gt=0)
    invalidation: bool = True  # Redis pub/sub to every replica's L1 (Redis L2 only)


_SECTION_NEEDED = {"s3": "s3", "gcs": "gcs", "azure-blob": "azure_blob"}


class JudgeConfig(_Section):
    """A cheap chat model asked about candidates in an uncertain band (README, "Judge")."""

    model: str = Field(min_length=1, description="a model name from the config's models")
    band: tuple[float, float] | None = Field(default=None, description="[low, high] verifier "
                                             "scores asked about; default [0.5, the learned "
                                             "verifier's threshold]")
    timeout_ms: float = Field(default=2000, gt=0, description="then the candidate is a miss")
    max_concurrency: int = Field(default=8, ge=1, le=1024, description="judge calls in "
                                 "flight; beyond it candidates are misses")
    max_tokens: int = Field(default=2, ge=1, le=16)

    @field_validator("band")
    @classmethod
    def _band(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not 0 <= value[0] <= value[1] <= 1:
            raise ValueError("use [low, high] with 0 <= low <= high <= 1")
        return value


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
    judge: JudgeConfig | None = None  # off by default
    # vCache-style per-entry thresholds (hitrate/semantic/explore.py); 0 = off.
    explore_rate: float = Field(default=0.0, ge=0, le=1, description="share of would-be "
                                "semantic hits sent upstream anyway to check the entry")
    explore_answer_similarity: float | None = Field(
        default=None, gt=0, le=1, description="answers whose embeddings' cosine reaches "
        "this agree; default: only the same answer (normalised) agrees")
    explore_seed: int | None = None  # fixed: a reproducible sequence of explorations


class CacheConfig(_Section):
    enabled: bool = True
    type: Literal["memory", "disk", "redis", "redis-cluster", "redis-sentinel", "s3", "gcs",
                  "azure-blob", "tiered"] = "memory"
    ttl: float | None = Field(default=None, gt=0, le=MAX_SECONDS,
                              description="seconds (at most 10 years); none = no expiry")
    namespace: str = "default"
    mode: Literal["default_on", "default_off"] = "default_on"
    max_cache_size_mb: float = Field(default=256, gt=0)
    max_entries: int | None = Field(default=None, gt=0)
    disk_cache_dir: str = ".hitrate/cache"
    disk_max_size_mb: float = Field(default=4096, gt=0)
    coalesce: bool = True
    # Endpoint kinds the cache serves (LiteLLM: supported_call_types); none = all of them.
    supported_kinds: set[str] | None = None
    semantic: SemanticConfig | None = None
    redis: RedisConfig = Field(default_factory=RedisConfig)
    s3: S3Config | None = None
    gcs: GCSConfig | None = None
    azure_blob: AzureBlobConfig | None = None
    tiered: TieredConfig = Field(default_factory=TieredConfig)
    circuit: CircuitConfig = Field(default_factory=CircuitConfig)

    @field_validator("supported_kinds")
    @classmethod
    def _known_kinds(cls, value: set[str] | None) -> set[str] | None:
        from hitrate import kinds

        unknown = sorted(set(value or ()) - set(kinds.table()))
        if unknown:
            raise ValueError(f"unknown endpoint kind {unknown[0]!r} (known: "
                             f"{', '.join(kinds.table())})")
        return value

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
            raise ValueError(f"use {NAMESPACE_RULE}")
        return value


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=4000, ge=0, le=65535)
    # Larger bodies get a 413 (gateway/limits.py); LiteLLM: general_settings.max_request_size_mb
    max_request_body_mb: float = Field(default=32.0, gt=0, le=4096)
    body_timeout: float = Field(default=120.0, gt=0, description="s for a request body to "
                                "arrive after its headers; then 408")
    # Slow clients (hitrate/http_protocol.py): headers must arrive within header_timeout s;
    # idle keep-alive connections close after keep_alive_timeout s; connections beyond
    # max_connections get a 503 and are closed.
    header_timeout: float = Field(default=15.0, gt=0)
    keep_alive_timeout: float = Field(default=5.0, gt=0)
    max_connections: int = Field(default=4096, ge=1)


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
    remote_ttl: float | None = Field(default=None, gt=0, le=MAX_SECONDS,
                                     description="seconds (at most 10 years); none = no expiry")
    remote_timeout: float = Field(default=10.0, gt=0, description="per remote operation (s)")
    # Reuse of cached segments at any position (hitrate.kv.blend, HuggingFace path).
    blend: bool = False
    blend_ratio: float = Field(default=0.10, ge=0, le=1,
                               description="share of segment tokens recomputed (0 = none, 1 = all)")
    blend_check_layer: int = Field(default=2, ge=1, description="layer where tokens are selected")
    blend_separator: str | None = Field(default=None, min_length=1,
                                        description="cuts a string prompt into segments")
    # How chunks are written to the disk and remote tiers (hitrate.kv.serde); any tier
    # reads all of them. naive: raw; zstd: lossless; int8: lossy, opt-in.
    remote_serde: Literal["naive", "zstd", "int8"] = "naive"
    disk_serde: Literal["naive", "zstd", "int8"] = "naive"
    save_decode_cache: bool = False  # also store generated tokens' KV (next chat turn hits)

    @model_validator(mode="before")
    @classmethod
    def _lmcache_fields(cls, data: Any) -> Any:
        """LMCache's field names and units are accepted as is (hitrate.kv.lmcache_config)."""
        if not isinstance(data, dict) or not data:
            return data
        from hitrate.kv.lmcache_config import LMCacheFieldError, translate

        try:
            return translate(data, cls.model_fields, allow_unknown=True)  # extra=forbid names them
        except LMCacheFieldError as exc:
            raise PydanticCustomError("lmcache_field", str(exc)) from None

    @field_validator("remote_url")
    @classmethod
    def _remote(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://", "s3://")):
            raise ValueError("use redis://, rediss://, unix:// or s3://")
        return value or None


# -- keys, tenants, prices, metrics (issue 5) ------------------------------------------


class KeyCacheConfig(_Section):
    """Per-key cache settings (`hitrate.key_settings`); unset fields follow the gateway."""

    mode: Literal["on", "off", "default_off"] | None = None
    ttl: float | None = Field(default=None, gt=0, description="default TTL (s) of its answers")
    max_ttl: float | None = Field(default=None, gt=0, description="largest ttl a request may ask")
    allow_no_cache: bool = True
    allow_no_store: bool = True
    shared_read: list[str] | None = None  # shared namespaces it may read; None: all
    shared_write: list[str] | None = None  # ... and write; None: all

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_on_off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `on` / `off` as a boolean.
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("shared_read", "shared_write")
    @classmethod
    def _namespaces(cls, value: list[str] | None) -> list[str] | None:
        for name in value or ():
            if not valid_namespace(name):
                raise ValueError(f"{name!r}: use 1-128 letters, digits, '_', '.', '-'")
        return value

    @model_validator(mode="after")
    def _ttls(self) -> KeyCacheConfig:
        if self.ttl is not None and self.max_ttl is not None and self.ttl > self.max_ttl:
            raise PydanticCustomError("ttl_above_max", "ttl must not exceed max_ttl")
        return self


class VirtualKeyConfig(_Section):
    key: str = Field(min_length=8, description="the API key clients send")
    tenant: str = Field(description="cache entries are isolated per tenant")
    shared: bool = Field(default=False, description="use the cross-tenant shared cache")
    name: str | None = None
    cache: KeyCacheConfig | None = None  # per-key cache settings

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, value: str) -> str:
        if not valid_namespace(value):
            raise ValueError(f"use {NAMESPACE_RULE}")
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
    tenant_label: bool = False  # hitrate_tenant_* series, one per tenant (bounded below)
    tenant_label_limit: int = Field(default=50, ge=1, le=1000, description="tenants with "
                                    "their own series; the rest are summed as (other)")
    namespace_label: bool = True  # false: savings series by model only (namespaces are
    #                               chosen by clients and may say more than they should)


class TracingConfig(_Section):
    """OpenTelemetry traces (`hitrate.tracing`; needs the `otel` extra). Unset fields
    follow the standard OTEL_* environment variables."""

    enabled: bool | None = None  # None: on if OTEL_TRACES_EXPORTER / _OTLP_ENDPOINT say so
    exporter: Literal["otlp", "console", "none"] | None = None  # default OTEL_TRACES_EXPORTER
    protocol: Literal["http/protobuf", "grpc"] | None = None  # default OTEL_EXPORTER_OTLP_PROTOCOL
    endpoint: str | None = None  # default OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT
    service_name: str | None = None  # default OTEL_SERVICE_NAME, then "hitrate"
    sample_ratio: float = Field(default=1.0, ge=0, le=1, description="of new traces (a "
                                "client's sampled traceparent is always followed)")
    capture_prompts: bool = False  # add the request body (truncated) to the request span

    @field_validator("endpoint")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


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
    tracing: TracingConfig | None = None

    @model_validator(mode="after")
    def _keys(self) -> Config:
        seen: set[str] = set()
        for i, item in enumerate(self.keys):
            if item.key in seen or item.key == self.master_key:
                raise ValueError(f"keys[{i}].key: duplicate key (keys must be unique and "
                                 "differ from master_key)")
            seen.add(item.key)
        semantic = self.cache.semantic
        if semantic is not None and semantic.judge is not None and \
                semantic.judge.model not in {m.name for m in self.models}:
            raise PydanticCustomError("unknown_model", "cache.semantic.judge.model: "
                                      f"{semantic.judge.model!r} is not in models")
        if self.keys_file and not self.master_key:
            raise ValueError("keys_file: needs master_key (keys are created via the admin API)")
        shared = set(self.shared_namespaces)
        for i, item in enumerate(self.keys):
            for field in ("shared_read", "shared_write"):
                unknown = set(getattr(item.cache, field, None) or ()) - shared
                if unknown:
                    raise ValueError(f"keys[{i}].cache.{field}: {sorted(unknown)[0]!r} is not "
                                     "in shared_namespaces")
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
