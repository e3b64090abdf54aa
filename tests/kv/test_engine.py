"""The engine over real tiers: prefix lookup, write-only-missing, promotion, integrity,
failures as misses. Synthetic tensors; the model-level checks are in test_hf.py."""

from __future__ import annotations

import asyncio

import pytest

torch = pytest.importorskip("torch")

from hitrate.kv.chunking import KVNamespace  # noqa: E402
from hitrate.kv.engine import KVEngine  # noqa: E402
from hitrate.kv.tiers import CPUTier, StoreTier  # noqa: E402
from hitrate.stores.base import ByteStore  # noqa: E402
from hitrate.stores.disk import DiskStore  # noqa: E402
from hitrate.stores.memory import MemoryStore  # noqa: E402

NS = KVNamespace(model="synthetic", dtype="float32", layout="hf:L2HTD")
CHUNK = 16


def kv_for(tokens: list[int]) -> torch.Tensor:
    """A [L=2, 2, H=2, T, D=4] tensor whose values encode (token, position)."""
    t = torch.tensor(tokens, dtype=torch.float32)
    pos = torch.arange(len(tokens), dtype=torch.float32)
    base = (t * 1000 + pos).view(1, 1, 1, -1, 1)
    return base.expand(2, 2, 2, len(tokens), 4) + torch.arange(4.0)


def engine(tiers, **kw) -> KVEngine:
    return KVEngine(NS, tiers, token_axis=3, chunk_size=CHUNK, **kw)


@pytest.fixture
def cpu_engine():
    e = engine([CPUTier(64 << 20)])
    yield e
    e.close()


def test_lookup_store_retrieve_longest_prefix(cpu_engine):
    tokens = list(range(40))  # 2 full chunks + 8
    assert cpu_engine.lookup(tokens) == 0
    assert cpu_engine.retrieve(tokens).num_tokens == 0
    assert cpu_engine.store(tokens, kv_for(tokens), wait=True) == 3
    assert cpu_engine.lookup(tokens) == 40
    hit = cpu_engine.retrieve(tokens)
    assert hit.num_tokens == 40 and torch.equal(hit.kv, kv_for(tokens))
    # A longer prompt with the same start: the full chunks hit, the old partial one cannot.
    longer = tokens + [7] * 10
    assert cpu_engine.lookup(longer) == 32
    assert torch.equal(cpu_engine.retrieve(longer).kv, kv_for(tokens)[:, :, :, :32])
    # A different token in chunk 1 ends the hit at chunk 0.
    other = [*tokens[:20], 999, *tokens[21:]]
    assert cpu_engine.lookup(other) == 16


def test_store_writes_only_missing_chunks():
    tier = CPUTier(64 << 20)
    e = engine([tier])
    try:
        a = list(range(48))
        assert e.store(a, kv_for(a), wait=True) == 3
        b = a + list(range(100, 120))  # 3 cached chunks + 1 full new + 4 partial
        assert e.store(b, kv_for(b), wait=True) == 2
        assert e.store(b, kv_for(b), wait=True) == 0
        assert tier.stats().puts == 5
        assert e.stats.chunks_skipped == 3 + 5
    finally:
        e.close()


def test_store_is_write_behind_and_flush_waits(cpu_engine):
    tokens = list(range(64))
    gate = __import__("threading").Event()

    def slow_kv(start: int, end: int) -> torch.Tensor:
        gate.wait(5)
        return kv_for(tokens)[:, :, :, start:end]

    assert cpu_engine.store(tokens, slow_kv) == 4  # returns before any chunk is encoded
    assert cpu_engine.lookup(tokens) == 0
    gate.set()
    cpu_engine.flush()
    assert cpu_engine.lookup(tokens) == 64


def test_partial_chunks_can_be_turned_off():
    e = engine([CPUTier(64 << 20)], store_partial=False)
    try:
        tokens = list(range(40))
        assert e.store(tokens, kv_for(tokens), wait=True) == 2
        assert e.lookup(tokens) == 32
    finally:
        e.close()


def test_cpu_tier_is_lru_by_bytes():
    one_chunk = kv_for(list(range(CHUNK))).numel() * 4
    tier = CPUTier(int(one_chunk * 2.5))
    e = engine([tier])
    try:
        tokens = list(range(4 * CHUNK))
        e.store(tokens, kv_for(tokens), wait=True)
        assert tier.stats().entries == 2 and tier.stats().extra["evictions"] == 2
        assert e.lookup(tokens) == 0  # chunk 0 was evicted: no prefix
    finally:
        e.close()


def test_disk_tier_hit_is_promoted_to_cpu(tmp_path):
    tokens = list(range(50))
    first = engine([CPUTier(64 << 20), StoreTier(DiskStore(tmp_path), name="disk")])
    first.store(tokens, kv_for(tokens), wait=True)
    first.close()
    # A new process (fresh CPU tier) over the same disk directory.
    cpu = CPUTier(64 << 20)
    second = engine([cpu, StoreTier(DiskStore(tmp_path), name="disk")])
    try:
        assert second.lookup(tokens) == 50
        hit = second.retrieve(tokens)
        assert hit.tiers == {"cpu": 4} and torch.equal(hit.kv, kv_for(tokens))
        assert second.stats.promotions == 4 and cpu.stats().entries == 4
    finally:
        second.close()


def test_corrupt_chunk_is_a_miss_and_is_deleted(tmp_path):
    disk = StoreTier(DiskStore(tmp_path), name="disk")
    e = engine([disk])
    try:
        tokens = list(range(48))
        e.store(tokens, kv_for(tokens), wait=True)
        key = e.keyer.keys(tokens)[1]

        async def damage() -> None:
            value = bytearray(await disk.store.get(key))
            value[-5] ^= 0xFF
            await disk.store.set(key, bytes(value))

        e._run(damage())
        assert e.lookup(tokens) == 16
        assert e.stats.corrupt_chunks == 1
        e.flush()
        assert e._run(disk.store.get(key)) is None
        # Rewritten by the next store, then whole again.
        e.store(tokens, kv_for(tokens), wait=True)
        assert e.lookup(tokens) == 48
    finally:
        e.close()


def test_value_under_the_wrong_key_is_a_miss(tmp_path):
    disk = StoreTier(DiskStore(tmp_path), name="disk")
    e = engine([disk])
    try:
        a, b = list(range(16)), list(range(100, 116))
        e.store(a, kv_for(a), wait=True)
        ka, kb = e.keyer.keys(a)[0], e.keyer.keys(b)[0]
        e._run(disk.store.set(kb, e._run(disk.store.get(ka))))
        assert e.lookup(b) == 0 and e.stats.corrupt_chunks == 1
    finally:
        e.close()


class BrokenStore(ByteStore):
    name = "broken"

    async def get(self, key):
        raise ConnectionError("down")

    async def get_many(self, keys):
        raise ConnectionError("down")

    async def set(self, key, value, ttl=None):
        raise ConnectionError("down")

    async def delete(self, key):
        raise ConnectionError("down")

    async def scan(self, prefix=""):
        raise ConnectionError("down")
        yield  # pragma: no cover


def test_a_failing_tier_is_a_miss_not_an_error(caplog):
    cpu = CPUTier(64 << 20)
    e = engine([cpu, StoreTier(BrokenStore(), name="remote")])
    try:
        tokens = list(range(32))
        assert e.lookup(tokens) == 0
        e.store(tokens, kv_for(tokens), wait=True)  # the CPU tier still gets it
        assert e.lookup(tokens) == 32
        e.lookup(list(range(500, 532)))
        assert e.stats.tier_errors >= 3 and e.stats.write_errors == 0
        assert sum("KV tier remote failed" in r.message for r in caplog.records) == 1  # once
    finally:
        e.close()


def test_remote_like_store_is_verified_and_shared_between_engines():
    shared = MemoryStore(max_bytes=64 << 20)  # stands in for Redis: verify=True, not local
    writer = engine([CPUTier(64 << 20), StoreTier(shared, name="remote")])
    reader = engine([CPUTier(64 << 20), StoreTier(shared, name="remote")])
    try:
        tokens = list(range(40))
        writer.store(tokens, kv_for(tokens), wait=True)
        hit = reader.retrieve(tokens)
        assert hit.num_tokens == 40 and hit.tiers == {"remote": 3}
        assert torch.equal(hit.kv, kv_for(tokens))
        assert reader.retrieve(tokens).tiers == {"cpu": 3}  # promoted
    finally:
        writer.close()
        reader.close()


def test_clear_and_stats(cpu_engine):
    tokens = list(range(40))
    cpu_engine.store(tokens, kv_for(tokens), wait=True)
    stats = cpu_engine.stats_dict()
    assert stats["tiers"][0]["entries"] == 3 and stats["engine"]["chunks_written"] == 3
    assert cpu_engine.clear() == 3
    assert cpu_engine.lookup(tokens) == 0


async def test_async_callers(cpu_engine):
    tokens = list(range(20))
    await cpu_engine.astore(tokens, kv_for(tokens))
    await asyncio.to_thread(cpu_engine.flush)
    assert await cpu_engine.alookup(tokens) == 20
    assert (await cpu_engine.aretrieve(tokens)).num_tokens == 20


class GatedStore(MemoryStore):
    """A remote-like store whose every call waits until the test opens the gate."""

    def __init__(self):
        super().__init__(max_bytes=64 << 20)
        self.gate = asyncio.Event()

    async def get_many(self, keys):
        await self.gate.wait()
        return await super().get_many(keys)

    async def set_many(self, items):
        await self.gate.wait()
        await super().set_many(items)


def test_store_with_a_remote_top_tier_never_waits_on_it():
    store = GatedStore()
    e = engine([StoreTier(store, name="remote")])  # no CPU tier: the remote one is on top
    try:
        tokens = list(range(40))
        assert e.store(tokens, kv_for(tokens)) == 3  # returned with the gate still closed
        assert store.stats().entries == 0
        e._loop.call_soon_threadsafe(store.gate.set)
        e.flush()
        assert store.stats().entries == 4  # 3 chunks + the namespace manifest
        assert e.store(tokens, kv_for(tokens), wait=True) == 3  # queued, then skipped by the writer
        assert e.stats.chunks_written == 3 and e.stats.chunks_skipped == 3
    finally:
        e.close()
