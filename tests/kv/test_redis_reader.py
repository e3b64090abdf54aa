"""Bulk Redis reads for the KV remote tier (a real redis-server): values come back
byte for byte, split over parallel connections, missing keys are None, db and errors
are honoured, and the engine uses the reader for its remote tier."""

from __future__ import annotations

import asyncio
import os

import pytest

torch = pytest.importorskip("torch")
redis = pytest.importorskip("redis")

from hitrate.kv.chunking import KVNamespace  # noqa: E402
from hitrate.kv.engine import KVEngine  # noqa: E402
from hitrate.kv.redis_reader import RedisBulkReader, RedisError  # noqa: E402
from hitrate.kv.settings import build_tiers, resolve_settings  # noqa: E402

from .conftest import free_port  # noqa: E402


def test_values_come_back_exactly_over_parallel_connections(redis_url):
    client = redis.Redis.from_url(redis_url.replace("/0", "/3"))
    values = {f"hitrate:kv:test:{i}": os.urandom(300_000 + i) for i in range(12)}
    values["hitrate:kv:test:empty"] = b""
    client.mset(values)
    keys = [*values, "hitrate:kv:test:missing"]
    reader = RedisBulkReader(redis_url.replace("/0", "/3"), connections=3, min_split_bytes=1 << 20)
    try:
        first = asyncio.run(reader.get_many(keys))  # one MGET: no size estimate yet
        again = asyncio.run(reader.get_many(keys))  # split over 3 connections
        for got in (first, again):
            assert [bytes(v) if v is not None else None for v in got] == [*values.values(), None]
        assert 1 <= reader._idle.qsize() <= 3  # connections are pooled, never more than 3
        assert asyncio.run(reader.get_many([])) == []
    finally:
        reader.close()
        client.flushdb()


def test_errors_raise_and_a_dead_server_is_a_miss_for_the_engine(redis_url):
    with pytest.raises(RedisError, match="DB index is out of range"):
        asyncio.run(RedisBulkReader(redis_url.replace("/0", "/99")).get_many(["k"]))
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings = resolve_settings({"cpu_size_mb": 0, "remote_url": dead, "remote_timeout": 1}, {})
    ns = KVNamespace(model="reader-dead", dtype="float32", layout="hf:L2HTD")
    with KVEngine(ns, build_tiers(settings), token_axis=3, chunk_size=16) as engine:
        assert engine.lookup(list(range(40))) == 0
        assert engine.stats.tier_errors >= 1


def test_engine_remote_tier_reads_through_the_bulk_reader(redis_url):
    settings = resolve_settings({"cpu_size_mb": 0, "remote_url": redis_url, "chunk_size": 16}, {})
    (remote,) = build_tiers(settings)
    assert isinstance(remote.reader, RedisBulkReader)
    ns = KVNamespace(model="reader-engine", dtype="bfloat16", layout="hf:L2HTD")
    kv = torch.randn(2, 2, 2, 100, 8).to(torch.bfloat16)
    tokens = list(range(100))
    with KVEngine(ns, [remote], token_axis=3, chunk_size=16) as engine:
        engine.store(tokens, kv, wait=True)
        engine.flush()
    with KVEngine(ns, build_tiers(settings), token_axis=3, chunk_size=16) as engine:
        hit = engine.retrieve(tokens)
        assert hit.num_tokens == 100
        assert torch.equal(hit.kv.contiguous().view(torch.uint8), kv.view(torch.uint8))
        assert engine.tiers[0].stats().hits == 7 and engine.stats.corrupt_chunks == 0
        engine.clear()
