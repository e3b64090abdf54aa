"""One behaviour contract for every VectorIndex: the embedded index, Redis (RediSearch),
Qdrant (local mode) and pgvector, each against its real engine or server.

Each test gets storage of its own (a fresh directory, RediSearch index + key prefix,
Qdrant path, or PostgreSQL table); `restart()` closes the index, restarts the server where
there is one (Redis with AOF, PostgreSQL), and opens a new index over the same storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hitrate.semantic.index import VectorIndex
from hitrate.semantic.indexes import build_index

KINDS = ["embedded", "redis", "qdrant", "pgvector"]


def unit(seed: int, dim: int = 32) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def near(seed: int, noise: float, dim: int = 32) -> np.ndarray:
    v = unit(seed, dim) + noise * unit(seed + 10_000, dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


class Backend:
    def __init__(self, kind: str, request: pytest.FixtureRequest, tmp_path: Path):
        self.kind = kind
        self.request = request
        self.tag = uuid.uuid4().hex[:12]
        self.tmp_path = tmp_path
        self.server: Any = None
        self.opened: list[VectorIndex] = []
        if kind == "redis":
            self.server = request.getfixturevalue("redis_search")
        elif kind == "pgvector":
            self.server = request.getfixturevalue("postgres")

    def options(self) -> dict[str, Any]:
        if self.kind == "embedded":
            return {"directory": self.tmp_path / "vectors", "hnsw_above": 16}
        if self.kind == "redis":
            return {"url": self.server.url, "index_name": f"t-{self.tag}", "prefix": f"t:{self.tag}:"}
        if self.kind == "qdrant":
            return {"path": str(self.tmp_path / "qdrant"), "collection": f"t_{self.tag}"}
        return {"dsn": self.server.dsn, "table": f"t_{self.tag}"}

    def open(self) -> VectorIndex:
        index = build_index(self.kind, **self.options())
        self.opened.append(index)
        return index

    async def close_all(self) -> None:
        for index in self.opened:
            await index.close()
        self.opened.clear()

    async def restart(self) -> VectorIndex:
        await self.close_all()
        if self.server is not None:
            await asyncio.to_thread(self.server.restart)
        return self.open()

    async def drop(self) -> None:
        await self.close_all()
        if self.kind == "redis":
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(self.server.url)
            with contextlib.suppress(Exception):  # never created
                await client.execute_command("FT.DROPINDEX", f"t-{self.tag}", "DD")
            await client.aclose()
        elif self.kind == "pgvector":
            import psycopg

            async with await psycopg.AsyncConnection.connect(self.server.dsn, autocommit=True) as conn:
                await conn.execute(f"DROP TABLE IF EXISTS t_{self.tag}")


@pytest.fixture(params=KINDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path):
    owned = Backend(request.param, request, tmp_path)
    try:
        yield owned
    finally:
        await owned.drop()


async def fill(index: VectorIndex, n: int = 40) -> None:
    await asyncio.gather(*(
        index.add(f"k{i}", unit(i), scope="s1" if i < 30 else "s2",
                  namespace="n1" if i % 2 else "n2", text=f"text {i}", expires_at=None)
        for i in range(n)))


async def test_empty_index(backend: Backend):
    index = backend.open()
    assert await index.search(unit(1), scope="s1", k=3, min_score=-1.0) == []
    assert await index.delete("nothing") is False
    assert await index.clear() == 0
    assert await index.clear("n1") == 0
    assert await index.count() == 0


async def test_search_is_scoped_ranked_and_thresholded(backend: Backend):
    index = backend.open()
    await fill(index)
    assert await index.count() == 40
    if hasattr(index, "analyze"):  # pgvector: fresh statistics, the planner's choice may change
        await index.analyze()

    found = await index.search(unit(3), scope="s1", k=5, min_score=-1.0)
    assert [m.key for m in found][:1] == ["k3"] and found[0].text == "text 3"
    assert found[0].score == pytest.approx(1.0, abs=1e-4)
    assert len(found) == 5
    assert all(m.key in {f"k{i}" for i in range(30)} for m in found)
    scores = [m.score for m in found]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 for s in scores)
    brute = sorted((float(unit(i) @ unit(3)) for i in range(30)), reverse=True)[:5]
    assert scores == pytest.approx(brute, abs=1e-4)
    # each match carries its stored vector (the learned verifier's vector model reads it)
    for match in found:
        assert np.asarray(match.vector).shape == (32,)
        np.testing.assert_allclose(match.vector, unit(int(match.key[1:])), atol=1e-6)

    # another scope's vector, even an identical one, is never a candidate
    assert await index.search(unit(35), scope="s1", k=5, min_score=0.9) == []
    assert [m.key for m in await index.search(unit(35), scope="s2", k=1, min_score=0.99)] == ["k35"]
    assert await index.search(unit(3), scope="nope", k=5, min_score=-1.0) == []

    # min_score cuts; a paraphrase-like neighbour scores between the two thresholds
    await index.add("para", near(3, 0.3), scope="s1", namespace="n1", text="close to 3",
                    expires_at=None)
    score = float(near(3, 0.3) @ unit(3))
    hits = await index.search(unit(3), scope="s1", k=3, min_score=score - 0.01)
    assert [m.key for m in hits] == ["k3", "para"]
    assert hits[1].score == pytest.approx(score, abs=1e-4)
    np.testing.assert_allclose(hits[1].vector, near(3, 0.3), atol=1e-6)
    assert [m.key for m in await index.search(unit(3), scope="s1", k=3, min_score=score + 0.01)] == ["k3"]


async def test_scopes_are_exact_strings(backend: Backend):
    index = backend.open()
    scopes = ["Tenant-A:{x}", "tenant-a:{x}", "a,b|c d", "范围"]
    for i, scope in enumerate(scopes):
        await index.add(f"key-{i}", unit(7), scope=scope, namespace="Alice, Inc.",
                        text=f"问题 {i}", expires_at=None)
    for i, scope in enumerate(scopes):
        found = await index.search(unit(7), scope=scope, k=10, min_score=0.5)
        assert [(m.key, m.text) for m in found] == [(f"key-{i}", f"问题 {i}")]
    assert await index.clear("alice, inc.") == 0  # namespaces are case-sensitive too
    assert await index.clear("Alice, Inc.") == 4


async def test_delete_removes_the_vector(backend: Backend):
    index = backend.open()
    await fill(index)
    assert await index.delete("k3") is True
    assert await index.delete("k3") is False
    assert all(m.key != "k3" for m in await index.search(unit(3), scope="s1", k=30, min_score=-1.0))
    await asyncio.gather(*(index.delete(f"k{i}") for i in range(0, 30, 2)))
    for i in range(1, 30, 2):
        if i != 3:
            assert [m.key for m in await index.search(unit(i), scope="s1", k=1, min_score=0.99)] == [f"k{i}"]
    assert await index.count() == 40 - 15 - 1


async def test_re_adding_a_key_replaces_it(backend: Backend):
    index = backend.open()
    await index.add("k", unit(1), scope="s1", namespace="n1", text="old", expires_at=time.time() + 0.5)
    await index.add("k", unit(2), scope="s2", namespace="n2", text="new", expires_at=None)
    assert await index.count() == 1
    assert await index.search(unit(1), scope="s1", k=5, min_score=-1.0) == []
    await asyncio.sleep(0.7)  # the first add's TTL must not apply to the replacement
    found = await index.search(unit(2), scope="s2", k=5, min_score=-1.0)
    assert [(m.key, m.text) for m in found] == [("k", "new")]
    assert await index.clear("n1") == 0 and await index.count() == 1


async def test_ttl_expiry(backend: Backend):
    index = backend.open()
    await index.add("long", unit(1), scope="s", namespace="n", text="long", expires_at=time.time() + 3600)
    await index.add("short", unit(2), scope="s", namespace="n", text="short", expires_at=time.time() + 0.4)
    await index.add("past", unit(3), scope="s", namespace="n", text="past", expires_at=time.time() - 1)
    assert [m.key for m in await index.search(unit(2), scope="s", k=1, min_score=0.99)] == ["short"]
    assert await index.search(unit(3), scope="s", k=1, min_score=0.99) == []
    await asyncio.sleep(0.6)
    assert await index.search(unit(2), scope="s", k=1, min_score=0.99) == []
    assert [m.key for m in await index.search(unit(2), scope="s", k=5, min_score=-1.0)] == ["long"]
    if backend.kind != "embedded":  # the server indexes count live entries only
        assert await index.count() == 1


async def test_clear_by_namespace(backend: Backend):
    index = backend.open()
    await fill(index)
    assert await index.clear("n1") == 20
    assert await index.count() == 20
    assert await index.search(unit(3), scope="s1", k=1, min_score=0.99) == []
    assert [m.key for m in await index.search(unit(4), scope="s1", k=1, min_score=0.99)] == ["k4"]
    assert await index.clear("n1") == 0
    assert await index.clear() == 20
    assert await index.count() == 0
    assert await index.search(unit(4), scope="s1", k=1, min_score=-1.0) == []
    await index.add("again", unit(4), scope="s1", namespace="n1", text="t", expires_at=None)
    assert [m.key for m in await index.search(unit(4), scope="s1", k=1, min_score=0.99)] == ["again"]


async def test_dimension_mismatch_is_an_error(backend: Backend):
    index = backend.open()
    await index.add("a", unit(1), scope="s", namespace="n", text="t", expires_at=None)
    with pytest.raises(ValueError):
        await index.add("b", unit(1, dim=16), scope="s", namespace="n", text="t", expires_at=None)
    assert await index.count() == 1


async def test_survives_restart(backend: Backend):
    index = backend.open()
    await fill(index, 20)
    await index.add("gone", unit(50), scope="s1", namespace="n1", text="x", expires_at=None)
    await index.delete("gone")
    reopened = await backend.restart()
    assert await reopened.count() == 20
    found = await reopened.search(unit(7), scope="s1", k=2, min_score=-1.0)
    assert found[0].key == "k7" and found[0].text == "text 7"
    assert await reopened.search(unit(50), scope="s1", k=1, min_score=0.99) == []
    assert await reopened.clear("n1") == 10
    await reopened.add("new", unit(60), scope="s1", namespace="n2", text="n", expires_at=None)
    again = await backend.restart()
    assert await again.count() == 11


async def test_concurrent_adds_and_searches(backend: Backend):
    index = backend.open()  # first calls race on creating the schema
    adds = [index.add(f"c{i}", unit(i, 64), scope=f"s{i % 4}", namespace="n", text=str(i),
                      expires_at=None) for i in range(60)]
    await asyncio.gather(*adds)
    found = await asyncio.gather(*(index.search(unit(i, 64), scope=f"s{i % 4}", k=1, min_score=0.99)
                                   for i in range(60)))
    assert [[m.key for m in f] for f in found] == [[f"c{i}"] for i in range(60)]


@pytest.mark.parametrize("kind", ["redis", "qdrant", "pgvector"])
async def test_expired_entries_leave_the_server(kind: str, request: pytest.FixtureRequest,
                                                tmp_path: Path):
    """Search skips expired entries (above); here they are also deleted from storage:
    by a Redis key TTL, or by the periodic bulk purge (due at every add with interval 0)."""
    owned = Backend(kind, request, tmp_path)
    options = owned.options() if kind == "redis" else {**owned.options(), "purge_interval": 0}
    index = build_index(kind, **options)
    owned.opened.append(index)
    try:
        await index.add("short", unit(1), scope="s", namespace="n", text="t",
                        expires_at=time.time() + 0.3)
        if kind == "redis":
            ttl_ms = await index.client.pttl(f"t:{owned.tag}:short")
            assert 0 < ttl_ms <= 300
        await asyncio.sleep(0.5)
        await index.add("long", unit(2), scope="s", namespace="n", text="t", expires_at=None)
        if kind == "redis":
            assert await index.client.exists(f"t:{owned.tag}:short") == 0
            stored = await index.client.keys(f"t:{owned.tag}:*")
            assert stored == [f"t:{owned.tag}:long".encode()]
        elif kind == "qdrant":
            assert (await index.client.count(index.collection, exact=True)).count == 1
        else:
            async with index._pool.connection() as conn:
                rows = await (await conn.execute(f"SELECT key FROM {index.table}")).fetchall()
            assert rows == [("long",)]
    finally:
        await owned.drop()


def test_build_index_names_and_errors(tmp_path: Path):
    from hitrate.semantic.embedded_index import EmbeddedIndex
    from hitrate.semantic.pgvector_index import PgvectorIndex

    assert isinstance(build_index("embedded", directory=tmp_path), EmbeddedIndex)
    assert isinstance(build_index("PostgreSQL", dsn="postgresql://127.0.0.1:1/x"), PgvectorIndex)
    with pytest.raises(ValueError, match=r"unknown vector index 'faiss'.*embedded, redis"):
        build_index("faiss")
    with pytest.raises(ValueError, match=r"redis vector index: .*colour"):
        build_index("redis", colour="blue")
    with pytest.raises(ValueError, match="plain SQL identifier"):
        build_index("pgvector", table="x; DROP TABLE y")


def test_backend_modules_import_lazily():
    import subprocess
    import sys

    code = ("import sys, hitrate, hitrate.semantic.indexes, hitrate.semantic.redis_index, "
            "hitrate.semantic.qdrant_index, hitrate.semantic.pgvector_index\n"
            "heavy = {'numpy', 'redis', 'qdrant_client', 'psycopg', 'psycopg_pool', 'pgvector'}\n"
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("kind", ["redis", "qdrant", "pgvector"])
async def test_schema_dropped_behind_its_back_is_recreated(kind: str, request: pytest.FixtureRequest,
                                                           tmp_path: Path):
    """FLUSHALL / DROP TABLE / a deleted collection: a call fails (the engine counts a
    miss), then the index recreates its schema and works again."""
    owned = Backend(kind, request, tmp_path)
    index = owned.open()
    try:
        await index.add("a", unit(1), scope="s", namespace="n", text="t", expires_at=None)
        if kind == "redis":
            await index.client.flushall()
        elif kind == "qdrant":
            await index.client.delete_collection(index.collection)
        else:
            async with index._pool.connection() as conn:
                await conn.execute(f"DROP TABLE {index.table}")
        with contextlib.suppress(Exception):
            assert await index.search(unit(1), scope="s", k=1, min_score=0.5) == []
        await index.add("b", unit(2), scope="s", namespace="n", text="t", expires_at=None)
        deadline = time.monotonic() + 5
        while not (found := await index.search(unit(2), scope="s", k=1, min_score=0.99)):
            assert time.monotonic() < deadline  # RediSearch indexes existing hashes in the background
            await asyncio.sleep(0.05)
        assert [m.key for m in found] == ["b"]
    finally:
        await owned.drop()
