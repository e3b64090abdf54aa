"""Tiered L1 (memory) + L2 (Redis): two gateway replicas over one Redis share hits, see
each other's deletes and flushes (pub/sub invalidation), and never serve an L1 entry past
its L2 TTL or while the invalidation channel is down."""

from __future__ import annotations

import asyncio
import time

import pytest

from hitrate.stores.memory import MemoryStore
from hitrate.stores.redis import RedisStore
from hitrate.stores.tiered import TieredStore
from tests.backends.conftest import RELAXED
from tests.conftest import ask

FAST_RECOVERY = {"recovery_time": 0.2, "max_recovery_time": 0.5, **RELAXED}


def tiered(redis, ttl=60, l1_ttl=60):
    return {"type": "tiered", "ttl": ttl, "redis": {"url": redis.url},
            "tiered": {"l1_ttl": l1_ttl}, "circuit": FAST_RECOVERY}


def eventually(check, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not reached in {timeout}s"
        time.sleep(0.01)


def live_replica(backend_gateway, config):
    gateway = backend_gateway(config)
    ask(gateway.client(), "warm-up")  # the first store operation starts the subscription
    eventually(lambda: gateway.cache.store.l1_live(), what="invalidation channel")
    return gateway


def in_l1(gateway, key):
    return gateway.run(gateway.cache.store.l1.get(key)) is not None


def test_replicas_share_hits_and_see_deletes_and_flushes(redis_db, backend_gateway, upstream):
    a = live_replica(backend_gateway, tiered(redis_db))
    b = live_replica(backend_gateway, tiered(redis_db))
    headers, first = ask(a.client(), "shared question")
    key = headers["x-hitrate-cache-key"]
    assert headers["x-hitrate-cache"] == "miss" and in_l1(a, key)
    headers, second = ask(b.client(), "shared question")  # L2 hit, promoted into b's L1
    assert headers["x-hitrate-cache"] == "hit"
    assert second.choices[0].message.content == first.choices[0].message.content
    assert in_l1(b, key)
    l2_reads = b.cache.store.l2.stats().hits
    assert ask(b.client(), "shared question")[0]["x-hitrate-cache"] == "hit"
    assert b.cache.store.l2.stats().hits == l2_reads  # served by L1, Redis not asked
    calls = upstream.calls()

    # an admin delete on replica a reaches replica b's L1
    assert a.run(a.cache.delete(key)) is True
    eventually(lambda: not in_l1(b, key), timeout=1.0, what="b's L1 invalidated")
    assert ask(b.client(), "shared question")[0]["x-hitrate-cache"] == "miss"
    assert upstream.calls() == calls + 1

    # a flush of the namespace on b reaches a's L1
    assert ask(a.client(), "shared question")[0]["x-hitrate-cache"] == "hit"
    assert in_l1(a, key)
    assert b.run(b.cache.clear("default")) >= 1
    eventually(lambda: not in_l1(a, key), timeout=1.0, what="a's L1 flushed")
    assert ask(a.client(), "shared question")[0]["x-hitrate-cache"] == "miss"
    stats = a.cache.store.stats()
    assert stats.hits >= 1 and stats.errors == 0


def test_l1_never_outlives_the_l2_ttl(redis_db, backend_gateway, upstream):
    a = live_replica(backend_gateway, tiered(redis_db, ttl=1, l1_ttl=60))
    b = live_replica(backend_gateway, tiered(redis_db, ttl=1, l1_ttl=60))
    headers, _ = ask(a.client(), "short-lived")
    assert headers["x-hitrate-cache"] == "miss"
    time.sleep(0.3)
    assert ask(b.client(), "short-lived")[0]["x-hitrate-cache"] == "hit"  # promoted, ~0.7 s left
    time.sleep(1.0)
    key = headers["x-hitrate-cache-key"]
    assert not in_l1(a, key) and not in_l1(b, key)
    assert redis_db.cmd("EXISTS", key) == ":0"
    assert ask(b.client(), "short-lived")[0]["x-hitrate-cache"] == "miss"


async def test_promotion_uses_remaining_ttl_and_skips_raced_reads(redis_db):
    l2 = RedisStore(port=redis_db.port, **RELAXED)
    store = TieredStore(MemoryStore(), l2, l1_ttl=60)
    other = TieredStore(MemoryStore(), RedisStore(port=redis_db.port, **RELAXED), l1_ttl=60)
    try:
        await store.get("hitrate:v1:t:chat:warm")
        await other.get("hitrate:v1:t:chat:warm")
        for s in (store, other):
            for _ in range(200):
                if s.l1_live():
                    break
                await asyncio.sleep(0.01)
            assert s.l1_live()
        await l2.set("hitrate:v1:t:chat:k", b"v", ttl=0.4)
        assert await store.get("hitrate:v1:t:chat:k") == b"v"
        assert await store.l1.get("hitrate:v1:t:chat:k") == b"v"
        await asyncio.sleep(0.5)
        assert await store.l1.get("hitrate:v1:t:chat:k") is None  # L1 copy expired with L2's
        # an overwrite on another replica invalidates this replica's copy
        await l2.set("hitrate:v1:t:chat:w", b"old")
        assert await store.get("hitrate:v1:t:chat:w") == b"old"
        await other.set("hitrate:v1:t:chat:w", b"new")
        for _ in range(100):
            if await store.l1.get("hitrate:v1:t:chat:w") is None:
                break
            await asyncio.sleep(0.01)
        assert await store.get("hitrate:v1:t:chat:w") == b"new"
    finally:
        await store.close()
        await other.close()


@pytest.mark.slow
def test_l1_is_bypassed_while_the_channel_is_down(servers, backend_gateway, upstream):
    server = servers.redis()
    a = live_replica(backend_gateway, tiered(server))
    headers, _ = ask(a.client(), "cached in l1")
    key = headers["x-hitrate-cache-key"]
    assert in_l1(a, key)
    server.proc.pause()  # hung: no error, just silence; the channel's PINGs notice
    eventually(lambda: not a.cache.store.l1_live(), timeout=6.0, what="L1 bypassed")
    assert not in_l1(a, key)  # emptied: deletes made meanwhile elsewhere would be lost
    start = time.monotonic()
    headers, answer = ask(a.client(), "cached in l1")
    assert answer.choices[0].message.content and time.monotonic() - start < 1.5
    assert headers["x-hitrate-cache"] == "miss"
    server.proc.resume()
    eventually(lambda: a.cache.store.l1_live(), timeout=6.0, what="L1 back")
    eventually(lambda: ask(a.client(), "cached in l1")[0]["x-hitrate-cache"] == "hit",
               timeout=5.0, what="caching resumed")
