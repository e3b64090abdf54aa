"""LiteLLM proxy `config.yaml` -> hitrate's native config dict.

A LiteLLM user points hitrate at the file they already have. Settings that have no
meaning for a cache (router retries, callbacks, budgets, ...) are ignored; settings
that would silently change behaviour if ignored (an unsupported provider or cache
type) are errors that name the field.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from hitrate.providers import KEY_ALIASES, PROVIDERS

log = logging.getLogger("hitrate.config")
# Spellings that would only clutter the list of supported providers in an error.
_HIDDEN = {"text-completion-openai", "openai_compatible", "custom_openai", "ollama_chat", "vllm"}

_CACHE_TYPES = {"local": "memory", "memory": "memory", "in-memory": "memory", "disk": "disk",
                "redis": "redis", "s3": "s3", "gcs": "gcs", "azure-blob": "azure-blob",
                "azure_blob": "azure-blob"}
_CACHE_PARAMS = {"ttl", "namespace", "mode", "disk_cache_dir", "max_cache_size_mb",
                 "max_entries", "type"}
_IGNORED_CACHE_PARAMS = {"supported_call_types", "default_in_redis_ttl", "redis_flush_size",
                         "default_in_memory_ttl"}  # (supported_call_types: converted apart)
# LiteLLM call types -> hitrate endpoint kinds (`cache.supported_kinds`).
_CALL_TYPES = {"completion": "chat", "acompletion": "chat",
               "text_completion": "completion", "atext_completion": "completion",
               "embedding": "embedding", "aembedding": "embedding",
               "responses": "responses", "aresponses": "responses",
               "anthropic_messages": "messages"}
# Call types LiteLLM can cache that hitrate has no endpoint for: ignored, with a warning.
_UNCACHED_CALL_TYPES = {"transcription", "atranscription", "rerank", "arerank", "speech",
                        "aspeech", "image_generation", "aimage_generation", "moderation",
                        "amoderation"}
# Shared backends: LiteLLM cache_params name -> (native section, field). Only the section
# of the chosen type is used; `socket_timeout` is the per-operation timeout of any of them.
_BACKEND_PARAMS = {
    "host": ("redis", "host"), "port": ("redis", "port"), "password": ("redis", "password"),
    "username": ("redis", "username"), "url": ("redis", "url"), "redis_url": ("redis", "url"),
    "db": ("redis", "db"), "ssl": ("redis", "ssl"), "ssl_ca_certs": ("redis", "ssl_ca_certs"),
    "ssl_cert_reqs": ("redis", "ssl_cert_reqs"), "max_connections": ("redis", "max_connections"),
    "redis_startup_nodes": ("redis", "startup_nodes"), "startup_nodes": ("redis", "startup_nodes"),
    "sentinel_nodes": ("redis", "sentinel_nodes"), "service_name": ("redis", "service_name"),
    "sentinel_password": ("redis", "sentinel_password"),
    "s3_bucket_name": ("s3", "bucket"), "s3_region_name": ("s3", "region"),
    "s3_endpoint_url": ("s3", "endpoint_url"), "s3_path": ("s3", "prefix"),
    "s3_aws_access_key_id": ("s3", "access_key_id"),
    "s3_aws_secret_access_key": ("s3", "secret_access_key"),
    "s3_aws_session_token": ("s3", "session_token"),
    "gcs_bucket_name": ("gcs", "bucket"), "gcs_path": ("gcs", "prefix"),
    "gcs_path_service_account": ("gcs", "service_file"),
    "azure_blob_container": ("azure_blob", "container"), "azure_container": ("azure_blob", "container"),
    "azure_account_url": ("azure_blob", "account_url"),
    "azure_connection_string": ("azure_blob", "connection_string"),
    "azure_credential": ("azure_blob", "credential"),
    "socket_timeout": ("circuit", "timeout"),
}
_REQUIRED = {"s3": "s3_bucket_name", "gcs": "gcs_bucket_name", "azure-blob": "azure_blob_container"}


def _field(i: int, name: str) -> str:
    return f"model_list[{i}].litellm_params.{name}"


def _convert_model(i: int, item: Any) -> dict[str, Any]:
    from hitrate.config import ConfigError

    if not isinstance(item, dict):
        raise ConfigError(f"model_list[{i}]: must be a mapping")
    name = item.get("model_name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"model_list[{i}].model_name: a model name is required")
    params = item.get("litellm_params")
    if not isinstance(params, dict):
        raise ConfigError(f"model_list[{i}].litellm_params: required mapping")
    target = params.get("model")
    if not isinstance(target, str) or not target:
        raise ConfigError(f"{_field(i, 'model')}: required, e.g. openai/gpt-4o-mini")
    provider, _, upstream_model = target.partition("/")
    if not upstream_model:
        provider, upstream_model = "openai", target
    out: dict[str, Any] = {"name": name, "model": upstream_model}
    api_base = params.get("api_base") or params.get("base_url")
    api_key = params.get("api_key")
    if provider == "azure":
        if not api_base:
            raise ConfigError(f"{_field(i, 'api_base')}: required for azure/ models")
        out.update(provider="azure", api_base=api_base,
                   api_version=params.get("api_version") or "2024-10-21")
        api_key = api_key or os.environ.get("AZURE_API_KEY")
    elif provider in PROVIDERS:
        known = PROVIDERS[provider]
        if provider in ("ollama", "ollama_chat") and api_base:
            api_base = api_base.rstrip("/") + "/v1"  # LiteLLM takes Ollama's root URL
        if api_base or known.api_base:
            out["api_base"] = api_base or known.api_base
        if not api_key and known.key_env:
            api_key = (os.environ.get(known.key_env)
                       or os.environ.get(KEY_ALIASES.get(known.key_env, ""), ""))
    else:
        raise ConfigError(
            f"{_field(i, 'model')}: provider {provider!r} is not supported (it needs request "
            "signing or its own protocol); supported: azure, "
            + ", ".join(sorted(p for p in PROVIDERS if p not in _HIDDEN)))
    if api_key:
        out["api_key"] = api_key
    timeout = params.get("timeout", params.get("request_timeout"))
    if timeout is not None:
        out["timeout"] = timeout
    if isinstance(params.get("extra_headers"), dict):
        out["headers"] = params["extra_headers"]
    return out


def _convert_cache(settings: dict[str, Any]) -> dict[str, Any]:
    from hitrate.config import ConfigError

    if not settings.get("cache"):
        return {"enabled": False}
    params = settings.get("cache_params") or {}
    if not isinstance(params, dict):
        raise ConfigError("litellm_settings.cache_params: must be a mapping")
    kind = params.get("type", "local")
    semantic = _convert_semantic(params) if kind in _SEMANTIC_TYPES else None
    if semantic is not None:
        kind = _SEMANTIC_TYPES[kind]  # where the answers themselves are stored
    if kind not in _CACHE_TYPES:
        raise ConfigError(
            f"litellm_settings.cache_params.type: {kind!r} is not available in this version "
            f"(use one of: {', '.join(sorted(_CACHE_TYPES))})"
        )
    out: dict[str, Any] = {"enabled": True, "type": _CACHE_TYPES[kind]}
    for name in _CACHE_PARAMS - {"type"}:
        if params.get(name) is not None:
            out[name] = params[name]
    _convert_backend(params, out)
    if params.get("supported_call_types") is not None:
        out["supported_kinds"] = _supported_kinds(params["supported_call_types"])
    if semantic is not None:
        out["semantic"] = semantic
    ignored = (set(params) - _CACHE_PARAMS - _IGNORED_CACHE_PARAMS - set(_BACKEND_PARAMS)
               - _SEMANTIC_PARAMS)
    if ignored:
        log.warning("ignoring LiteLLM cache_params with no effect here: %s",
                    ", ".join(sorted(ignored)))
    return out


def _supported_kinds(call_types: Any) -> list[str]:
    from hitrate.config import ConfigError

    field = "litellm_settings.cache_params.supported_call_types"
    if not isinstance(call_types, list) or not all(isinstance(c, str) for c in call_types):
        raise ConfigError(f"{field}: must be a list of call types, e.g. [acompletion, aembedding]")
    kinds: list[str] = []
    for call_type in call_types:
        if call_type in _UNCACHED_CALL_TYPES:
            log.warning("%s: %s is not an endpoint hitrate caches; ignored", field, call_type)
        elif call_type not in _CALL_TYPES:
            raise ConfigError(f"{field}: unknown call type {call_type!r} (known: "
                              f"{', '.join(sorted(_CALL_TYPES))})")
        elif _CALL_TYPES[call_type] not in kinds:
            kinds.append(_CALL_TYPES[call_type])
    return kinds


# LiteLLM semantic cache types -> where the answers live (the vectors go to the index).
_SEMANTIC_TYPES = {"redis-semantic": "redis", "qdrant-semantic": "local", "semantic": "local"}
_SEMANTIC_PARAMS = {"similarity_threshold", "redis_semantic_cache_embedding_model",
                    "redis_semantic_cache_index_name", "qdrant_semantic_cache_embedding_model",
                    "qdrant_api_base", "qdrant_api_key", "qdrant_collection_name",
                    "qdrant_quantization_config", "embedding_model", "embedder"}


def _convert_semantic(params: dict[str, Any]) -> dict[str, Any]:
    """LiteLLM's redis-semantic / qdrant-semantic params -> `cache.semantic`.

    Their embedding model names a model of the model list; we call it through the
    upstream (`upstream:<name>`). Without one we use the offline default embedder.
    """
    kind = params["type"]
    out: dict[str, Any] = {"enabled": True}
    model = (params.get("redis_semantic_cache_embedding_model")
             or params.get("qdrant_semantic_cache_embedding_model") or params.get("embedding_model"))
    if params.get("embedder"):
        out["embedder"] = params["embedder"]
    elif model:
        out["embedder"] = f"upstream:{model}"
    if params.get("similarity_threshold") is not None:
        out["similarity_threshold"] = params["similarity_threshold"]
    if kind == "redis-semantic":
        options: dict[str, Any] = {}
        if params.get("url") or params.get("redis_url"):
            options["url"] = params.get("url") or params.get("redis_url")
        for name in ("host", "port", "password", "username", "db"):
            if params.get(name) is not None:
                options[name] = params[name]
        if params.get("redis_semantic_cache_index_name"):
            options["index_name"] = params["redis_semantic_cache_index_name"]
        out.update(index="redis", index_options=options)
    elif kind == "qdrant-semantic":
        options = {"url": params.get("qdrant_api_base")} if params.get("qdrant_api_base") else {}
        if params.get("qdrant_api_key"):
            options["api_key"] = params["qdrant_api_key"]
        if params.get("qdrant_collection_name"):
            options["collection"] = params["qdrant_collection_name"]
        quantization = _qdrant_quantization(params.get("qdrant_quantization_config"))
        if quantization is not None:
            options["quantization_config"] = quantization
        out.update(index="qdrant", index_options=options)
    return out


_QUANTIZATIONS = ("binary", "scalar", "product")


def _qdrant_quantization(value: Any) -> str | None:
    """LiteLLM's `qdrant_quantization_config`, validated; passed to the Qdrant index when
    it takes one (never dropped silently)."""
    from hitrate.config import ConfigError

    if value is None:
        return None
    if value not in _QUANTIZATIONS:
        raise ConfigError(f"litellm_settings.cache_params.qdrant_quantization_config: "
                          f"{value!r} is not one of {', '.join(_QUANTIZATIONS)}")
    return value


def _convert_backend(params: dict[str, Any], out: dict[str, Any]) -> None:
    """Redis / S3 / GCS / Azure Blob params into the native `cache` sections."""
    from hitrate.config import ConfigError

    kind = out["type"]
    section_of = {"redis": "redis", "s3": "s3", "gcs": "gcs", "azure-blob": "azure_blob"}
    if kind not in section_of:
        return
    if params.get("ttl") is None and params.get("default_in_redis_ttl") is not None:
        out["ttl"] = params["default_in_redis_ttl"]
    required = _REQUIRED.get(kind)
    if required and not params.get(required):
        raise ConfigError(f"litellm_settings.cache_params.{required}: required for type {kind}")
    for name, (section, field) in _BACKEND_PARAMS.items():
        if params.get(name) is not None and section in (section_of[kind], "circuit"):
            out.setdefault(section, {})[field] = params[name]
    if kind == "redis":
        redis = out.setdefault("redis", {})
        cluster_env = os.environ.get("REDIS_CLUSTER_NODES")
        if not redis.get("startup_nodes") and cluster_env:  # LiteLLM reads this one too
            try:
                redis["startup_nodes"] = json.loads(cluster_env)
            except ValueError:
                raise ConfigError("REDIS_CLUSTER_NODES: not a JSON list of {host, port}") from None
        if redis.get("startup_nodes"):
            out["type"] = "redis-cluster"
        elif redis.get("sentinel_nodes"):
            out["type"] = "redis-sentinel"
    if params.get("default_in_memory_ttl") is not None:  # LiteLLM's in-memory + Redis tier
        out["tiered"] = {"l2": out["type"], "l1_ttl": params["default_in_memory_ttl"]}
        out["type"] = "tiered"


_PRICE_FIELDS = {"input_cost_per_token": "input_cost_per_token",
                 "output_cost_per_token": "output_cost_per_token",
                 "cache_read_input_token_cost": "cached_input_cost_per_token",
                 "max_input_tokens": "max_input_tokens", "max_output_tokens": "max_output_tokens"}


def _convert_prices(model_list: list[Any]) -> dict[str, Any]:
    """Custom prices LiteLLM reads from `model_info` or `litellm_params`."""
    prices: dict[str, Any] = {}
    for item in model_list:
        if not isinstance(item, dict):
            continue
        fields: dict[str, Any] = {}
        for source in (item.get("model_info"), item.get("litellm_params")):  # params win
            if isinstance(source, dict):
                fields.update({ours: source[theirs] for theirs, ours in _PRICE_FIELDS.items()
                               if source.get(theirs) is not None})
        if fields:
            prices[item["model_name"]] = fields
    return prices


def convert(data: dict[str, Any]) -> dict[str, Any]:
    from hitrate.config import ConfigError

    model_list = data.get("model_list") or []
    if not isinstance(model_list, list):
        raise ConfigError("model_list: must be a list")
    settings = data.get("litellm_settings") or {}
    general = data.get("general_settings") or {}
    if not isinstance(settings, dict):
        raise ConfigError("litellm_settings: must be a mapping")
    if not isinstance(general, dict):
        raise ConfigError("general_settings: must be a mapping")
    out: dict[str, Any] = {
        "models": [_convert_model(i, item) for i, item in enumerate(model_list)],
        "cache": _convert_cache(settings),
    }
    if general.get("master_key"):
        out["master_key"] = general["master_key"]
    if general.get("max_request_size_mb") is not None:
        out["server"] = {"max_request_body_mb": general["max_request_size_mb"]}
    prices = _convert_prices(model_list)
    if prices:
        out["costs"] = {"models": prices}
    return out
