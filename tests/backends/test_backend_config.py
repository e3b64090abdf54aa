"""Config for the shared backends: native and LiteLLM-style, and the errors that name the
field. No servers: building a store does not connect."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hitrate.config import ConfigError, parse_config
from hitrate.stores import build_store


def litellm(cache_params: dict) -> dict:
    return {"model_list": [], "litellm_settings": {"cache": True, "cache_params": cache_params}}


@pytest.mark.parametrize(("cache", "name"), [
    ({"type": "redis", "redis": {"url": "redis://h:1/2"}}, "redis"),
    ({"type": "redis-cluster", "redis": {"startup_nodes": ["h:1", {"host": "h", "port": 2}]}},
     "redis-cluster"),
    ({"type": "redis-sentinel", "redis": {"sentinel_nodes": [["h", 1]], "service_name": "m"}},
     "redis-sentinel"),
    ({"type": "s3", "s3": {"bucket": "b", "endpoint_url": "http://h:1"}}, "s3"),
    ({"type": "gcs", "gcs": {"bucket": "b"}}, "gcs"),
    ({"type": "azure-blob", "azure_blob": {"container": "c", "account_url": "https://a"}},
     "azure-blob"),
    ({"type": "tiered"}, "tiered(redis)"),
    ({"type": "tiered", "tiered": {"l2": "s3"}, "s3": {"bucket": "b"}}, "tiered(s3)"),
])
def test_native_types(cache, name):
    store = build_store(parse_config({"cache": cache}).cache)
    assert store.name == name
    assert store.circuit_state() == "closed"


def test_defaults_and_overrides():
    store = build_store(parse_config({"cache": {"type": "redis"}}).cache)
    assert store.timeout == 0.05  # well under 100 ms
    store = build_store(parse_config({"cache": {"type": "s3", "s3": {"bucket": "b"}}}).cache)
    assert store.timeout == 1.0
    config = parse_config({"cache": {"type": "redis", "circuit": {
        "timeout": 0.02, "failure_threshold": 3, "recovery_time": 2, "max_recovery_time": 60}}})
    store = build_store(config.cache)
    assert (store.timeout, store.breaker.failure_threshold, store.breaker.recovery_time,
            store.breaker.max_recovery_time) == (0.02, 3, 2, 60)
    tiered = build_store(parse_config({"cache": {"type": "tiered"}}).cache)
    assert tiered.l1_ttl == 60 and tiered.bus is not None  # pub/sub invalidation on Redis
    tiered = build_store(parse_config({"cache": {"type": "tiered", "tiered": {"l2": "gcs"},
                                                 "gcs": {"bucket": "b"}}}).cache)
    assert tiered.l1_ttl == 5 and tiered.bus is None  # no channel: a short L1 TTL instead


def test_litellm_cache_params():
    c = parse_config(litellm({"type": "redis", "host": "h", "port": 6380, "password": "p",
                              "namespace": "prod", "ttl": 60, "socket_timeout": 0.1})).cache
    assert (c.type, c.redis.host, c.redis.port, c.redis.password, c.namespace, c.ttl,
            c.circuit.timeout) == ("redis", "h", 6380, "p", "prod", 60, 0.1)
    c = parse_config(litellm({"type": "redis", "redis_startup_nodes": [
        {"host": "127.0.0.1", "port": "7001"}]})).cache
    assert (c.type, c.redis.startup_nodes) == ("redis-cluster", ["127.0.0.1:7001"])
    c = parse_config(litellm({"type": "redis", "sentinel_nodes": [["localhost", 26379]],
                              "service_name": "mymaster", "sentinel_password": "x"})).cache
    assert (c.type, c.redis.sentinel_nodes, c.redis.service_name) == (
        "redis-sentinel", ["localhost:26379"], "mymaster")
    c = parse_config(litellm({"type": "s3", "s3_bucket_name": "b", "s3_region_name": "eu-west-1",
                              "s3_endpoint_url": "http://minio:9000", "s3_path": "cache"})).cache
    assert (c.type, c.s3.bucket, c.s3.region, c.s3.endpoint_url, c.s3.prefix) == (
        "s3", "b", "eu-west-1", "http://minio:9000", "cache")
    c = parse_config(litellm({"type": "gcs", "gcs_bucket_name": "g", "gcs_path": "p",
                              "gcs_path_service_account": "/sa.json"})).cache
    assert (c.type, c.gcs.bucket, c.gcs.prefix, c.gcs.service_file) == ("gcs", "g", "p", "/sa.json")
    c = parse_config(litellm({"type": "azure-blob", "azure_blob_container": "c",
                              "azure_account_url": "https://acct.blob.core.windows.net"})).cache
    assert (c.type, c.azure_blob.container, c.azure_blob.account_url) == (
        "azure-blob", "c", "https://acct.blob.core.windows.net")
    c = parse_config(litellm({"type": "redis", "default_in_memory_ttl": 10,
                              "default_in_redis_ttl": 600})).cache
    assert (c.type, c.tiered.l2, c.tiered.l1_ttl, c.ttl) == ("tiered", "redis", 10, 600)


def test_litellm_cluster_nodes_from_env(monkeypatch):
    monkeypatch.setenv("REDIS_CLUSTER_NODES", '[{"host": "127.0.0.1", "port": "7001"}]')
    c = parse_config(litellm({"type": "redis"})).cache
    assert (c.type, c.redis.startup_nodes) == ("redis-cluster", ["127.0.0.1:7001"])


@pytest.mark.parametrize(("data", "field"), [
    ({"cache": {"type": "s3"}}, "cache.s3"),
    ({"cache": {"type": "s3", "s3": {}}}, "cache.s3.bucket"),
    ({"cache": {"type": "redis-cluster"}}, "cache.redis.startup_nodes"),
    ({"cache": {"type": "redis-sentinel", "redis": {"sentinel_nodes": ["h:1"]}}},
     "cache.redis.sentinel_nodes and cache.redis.service_name"),
    ({"cache": {"type": "redis", "redis": {"startup_nodes": ["nope"]}}}, "cache.redis.startup_nodes"),
    ({"cache": {"type": "redis", "redis": {"url": "http://x"}}}, "cache.redis.url"),
    ({"cache": {"type": "redis", "redis": {"hots": "x"}}}, "cache.redis.hots: unknown field"),
    ({"cache": {"type": "tiered", "tiered": {"l2": "memory"}}}, "cache.tiered.l2"),
    ({"cache": {"type": "azure-blob", "azure_blob": {"container": "c"}}}, "connection_string"),
    ({"cache": {"type": "redis", "circuit": {"timeout": 0}}}, "cache.circuit.timeout"),
    (litellm({"type": "s3"}), "litellm_settings.cache_params.s3_bucket_name"),
    (litellm({"type": "gcs"}), "litellm_settings.cache_params.gcs_bucket_name"),
    (litellm({"type": "memcached"}), "litellm_settings.cache_params.type"),
])
def test_errors_name_the_field(data, field):
    with pytest.raises(ConfigError) as error:
        parse_config(data)
    assert field in str(error.value)


def test_backend_modules_import_lazily():
    code = ("import sys, hitrate, hitrate.config, hitrate.stores, hitrate.gateway.app; "
            "from hitrate.stores import build_store; "
            "print(sorted(m for m in ('redis', 'aiobotocore', 'botocore', 'gcloud', 'azure', "
            "'aiohttp') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
