"""What every shared store must do, checked against each real server."""

from __future__ import annotations

import asyncio

from hitrate.stores.base import ByteStore

FOREIGN = b"\x00\xff not ours \xfe"


async def check_protocol(store: ByteStore, ns: str = "contract") -> None:
    a, b, c = (f"hitrate:v1:{ns}:chat:{x}" for x in "abc")
    other = f"hitrate:v1:{ns}-other:chat:z"
    assert await store.get(a) is None
    assert await store.get_with_ttl(a) == (None, None)
    await store.set(a, b"1")
    await store.set(b, FOREIGN, ttl=60)
    await store.set(other, b"3")
    assert await store.get(a) == b"1"
    assert await store.get(b) == FOREIGN  # bytes come back untouched, whatever they are
    value, ttl = await store.get_with_ttl(b)
    assert value == FOREIGN and ttl is not None and 55 < ttl <= 60
    assert await store.get_with_ttl(a) == (b"1", None)  # no expiry
    assert await store.get_many([a, c, b]) == [b"1", None, FOREIGN]
    await store.set(a, b"new")
    assert await store.get(a) == b"new"
    assert sorted([k async for k in store.scan(f"hitrate:v1:{ns}:")]) == [a, b]
    assert await store.delete(a) is True
    assert await store.delete(a) is False
    assert await store.clear(f"hitrate:v1:{ns}:") == 1
    assert await store.get(b) is None
    assert await store.get(other) == b"3"  # clear touched only its namespace
    assert await store.clear("hitrate:") == 1


async def check_ttl(store: ByteStore, ns: str = "ttl") -> None:
    t, u, v = (f"hitrate:v1:{ns}:chat:{x}" for x in "tuv")
    await store.set(t, b"x", ttl=0.5)
    await store.set_many([(u, b"y", 0.5), (v, b"z", None)])
    assert await store.get_many([t, u, v]) == [b"x", b"y", b"z"]
    await asyncio.sleep(0.7)
    assert await store.get(t) is None
    assert await store.get_with_ttl(u) == (None, None)
    assert await store.get_many([t, u, v]) == [None, None, b"z"]
    await store.clear(f"hitrate:v1:{ns}:")


async def check_batch(store: ByteStore, n: int = 50, ns: str = "batch") -> None:
    """Keys spread over many hash slots / objects: batch ops must not care."""
    keys = [f"hitrate:v1:{ns}:embedding:{i:04d}" for i in range(n)]
    await store.set_many([(k, k.encode(), 60) for k in keys[::2]])
    values = await store.get_many(keys)
    assert values == [k.encode() if i % 2 == 0 else None for i, k in enumerate(keys)]
    assert await store.clear(f"hitrate:v1:{ns}:") == n // 2
    assert await store.get_many(keys[:4]) == [None] * 4
