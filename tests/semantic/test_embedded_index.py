"""The embedded vector index: scope isolation, TTL, deletes, persistence, HNSW path."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from hitrate.semantic.embedded_index import EmbeddedIndex


def unit(seed: int, dim: int = 32) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.mark.parametrize("hnsw_above", [10_000, 5])
async def test_search_scope_ttl_delete(hnsw_above):
    index = EmbeddedIndex(hnsw_above=hnsw_above)
    for i in range(40):
        await index.add(f"k{i}", unit(i), scope="s1" if i < 30 else "s2", namespace="default",
                        text=f"text {i}", expires_at=None)
    found = await index.search(unit(3), scope="s1", k=3, min_score=0.0)
    assert found[0].key == "k3" and found[0].text == "text 3"
    assert found[0].score == pytest.approx(1.0, abs=1e-5)
    assert all(m.key in {f"k{i}" for i in range(30)} for m in found)
    assert not [m for m in await index.search(unit(35), scope="s1", k=5, min_score=0.99)]
    assert (await index.search(unit(35), scope="s2", k=1, min_score=0.99))[0].key == "k35"
    assert await index.delete("k3") is True and await index.delete("k3") is False
    assert all(m.key != "k3" for m in await index.search(unit(3), scope="s1", k=30, min_score=-1))
    # row bookkeeping survives swap-removes
    for i in range(0, 30, 2):
        await index.delete(f"k{i}")
    for i in (1, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29):  # k3 is gone already
        assert (await index.search(unit(i), scope="s1", k=1, min_score=0.99))[0].key == f"k{i}"
    await index.add("short", unit(99), scope="s1", namespace="default", text="t",
                    expires_at=__import__("time").time() + 0.2)
    assert (await index.search(unit(99), scope="s1", k=1, min_score=0.99))[0].key == "short"
    await asyncio.sleep(0.3)
    assert not await index.search(unit(99), scope="s1", k=1, min_score=0.99)


async def test_persistence_and_namespace_clear(tmp_path):
    index = EmbeddedIndex(directory=tmp_path)
    await index.add("a", unit(1), scope="s", namespace="n1", text="alpha", expires_at=None)
    await index.add("b", unit(2), scope="s", namespace="n2", text="beta", expires_at=None)
    await index.close()
    reopened = EmbeddedIndex(directory=tmp_path)
    assert await reopened.count() == 2
    assert (await reopened.search(unit(2), scope="s", k=1, min_score=0.9))[0].text == "beta"
    assert await reopened.clear("n1") == 1
    await reopened.close()
    again = EmbeddedIndex(directory=tmp_path)
    assert await again.count() == 1
    await again.close()
