"""A bad argument (a TTL Redis cannot represent) is the caller's problem, not the
backend's: it must never open the circuit and turn every tenant's hits into misses."""

from __future__ import annotations

import math

import pytest
import redis.exceptions

from hitrate.stores.redis import RedisStore
from tests.conftest import ask


@pytest.mark.parametrize("ttl", [1e16, 1e308, math.inf, math.nan])
async def test_unrepresentable_ttl_is_refused_without_touching_the_circuit(redis_db, ttl):
    store = RedisStore(port=redis_db.port, timeout=0.25)
    try:
        await store.set("hitrate:v1:other:chat:k", b"v", ttl=60)
        with pytest.raises(ValueError, match="ttl"):
            await store.set("hitrate:v1:a:chat:k", b"v", ttl=ttl)
        with pytest.raises(ValueError, match="ttl"):
            await store.set_many([("hitrate:v1:a:chat:k2", b"v", ttl)])
        assert store.circuit_state() == "closed"
        assert store.stats().errors == 0
        assert await store.get("hitrate:v1:other:chat:k") == b"v"
    finally:
        await store.close()


async def test_an_argument_error_from_redis_is_not_a_backend_failure(redis_db):
    """If one does reach Redis (`ERR invalid expire time`), Redis has answered: it is up."""
    store = RedisStore(port=redis_db.port, timeout=0.25)
    try:
        with pytest.raises(redis.exceptions.ResponseError, match="expire"):
            await store._guard(lambda: store.client.set("hitrate:v1:a:chat:k", b"v",
                                                        px=2**63 - 1))
        assert store.circuit_state() == "closed"
        assert store.stats().errors == 0
        await store.set("hitrate:v1:a:chat:k", b"v")
        assert await store.get("hitrate:v1:a:chat:k") == b"v"
    finally:
        await store.close()


def test_one_tenants_huge_ttl_does_not_switch_the_cache_off_for_another(redis_db,
                                                                         backend_gateway,
                                                                         upstream):
    gateway = backend_gateway(
        {"type": "redis", "redis": {"url": redis_db.url}, "circuit": {"timeout": 0.25}},
        keys=[{"key": "sk-tenant-a-0001", "tenant": "a"},
              {"key": "sk-tenant-b-0001", "tenant": "b"}])
    attacker = gateway.client(api_key="sk-tenant-a-0001")
    victim = gateway.client(api_key="sk-tenant-b-0001")
    assert ask(victim, "what is a cache?")[0]["x-hitrate-cache"] == "miss"
    for i in range(10):
        for ttl in (1e16, 1e308):
            response = attacker.chat.completions.with_raw_response
            with pytest.raises(Exception) as info:
                response.create(model="gpt-test", extra_body={"cache": {"ttl": ttl}},
                                messages=[{"role": "user", "content": f"attack {i}"}])
            assert getattr(info.value, "status_code", None) == 400
        assert ask(victim, "what is a cache?")[0]["x-hitrate-cache"] == "hit"
    assert gateway.cache.store.circuit_state() == "closed"
    assert gateway.cache.stats.backend_errors == 0
