"""The embedded byte stores behind the ByteStore protocol."""

from __future__ import annotations

import asyncio

import pytest

from hitrate.stores.disk import DiskStore
from hitrate.stores.memory import MemoryStore


@pytest.fixture(params=["memory", "disk"])
async def store(request, tmp_path):
    s = MemoryStore() if request.param == "memory" else DiskStore(tmp_path / "d")
    yield s
    await s.close()


async def test_protocol_basics(store):
    assert await store.get("hitrate:a") is None
    await store.set("hitrate:a", b"1")
    await store.set("hitrate:b", b"22", ttl=60)
    await store.set("other:c", b"3")
    assert await store.get("hitrate:a") == b"1"
    assert await store.get_many(["hitrate:a", "nope", "hitrate:b"]) == [b"1", None, b"22"]
    await store.set("hitrate:a", b"new")
    assert await store.get("hitrate:a") == b"new"
    assert sorted([k async for k in store.scan("hitrate:")]) == ["hitrate:a", "hitrate:b"]
    assert await store.delete("hitrate:a") is True
    assert await store.delete("hitrate:a") is False
    assert await store.clear("hitrate:") == 1
    assert await store.get("other:c") == b"3"  # clear only touched the prefix
    stats = store.stats()
    assert stats.entries == 1 and stats.bytes == 1


async def test_ttl(store):
    await store.set("hitrate:t", b"x", ttl=0.2)
    await store.set_many([("hitrate:u", b"y", 0.2), ("hitrate:v", b"z", None)])
    assert await store.get("hitrate:t") == b"x"
    await asyncio.sleep(0.3)
    assert await store.get("hitrate:t") is None
    assert await store.get("hitrate:u") is None
    assert await store.get("hitrate:v") == b"z"
    assert [k async for k in store.scan("hitrate:")] == ["hitrate:v"]


async def test_memory_lru_by_bytes():
    store = MemoryStore(max_bytes=1000)
    for i in range(5):
        await store.set(f"k{i}", bytes(300))
    assert store.stats().bytes <= 1000
    assert await store.get("k0") is None and await store.get("k4") is not None
    assert store.stats().evictions == 2
    # recency: reading k2 protects it from the next eviction
    await store.get("k2")
    await store.set("k5", bytes(300))
    assert await store.get("k2") is not None and await store.get("k3") is None
    await store.set("huge", bytes(2000))  # larger than the whole store: not kept
    assert await store.get("huge") is None


async def test_memory_max_entries():
    store = MemoryStore(max_entries=3)
    for i in range(5):
        await store.set(f"k{i}", b"v")
    assert store.stats().entries == 3
    assert await store.get("k1") is None


async def test_disk_persists_and_evicts(tmp_path):
    store = DiskStore(tmp_path / "d", max_bytes=10_000)
    await store.set("hitrate:keep", b"v" * 100)
    await store.close()
    reopened = DiskStore(tmp_path / "d", max_bytes=10_000)
    assert await reopened.get("hitrate:keep") == b"v" * 100
    assert reopened.stats().entries == 1
    for i in range(30):
        await reopened.set(f"hitrate:{i}", bytes(1000))
    assert reopened.stats().bytes <= 10_000
    assert reopened.stats().evictions > 0
    assert await reopened.get("hitrate:29") is not None
    assert await reopened.get("hitrate:keep") is None  # oldest went first
    await reopened.close()
