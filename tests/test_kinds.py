"""The endpoint-kind table and the engine's in-flight lifecycle (`Pending`)."""

from __future__ import annotations

import asyncio

import pytest

from hitrate import kinds
from hitrate.controls import Controls
from hitrate.engine import ResponseCache


def _answer(text: str, finish: str = "stop") -> dict:
    return {"id": "x", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "finish_reason": finish,
                         "message": {"role": "assistant", "content": text}}]}


def _chat(text: str) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": text}]}


async def _joined(cache: ResponseCache, key: str) -> None:
    """Until a follower waits on the flight for `key` (event-driven, no clock)."""
    for _ in range(10_000):
        flight = cache._inflight.get(key)
        if flight is not None and flight.waiters:
            return
        await asyncio.sleep(0)
    raise AssertionError("the follower never joined the flight")


def test_unknown_kind_is_an_error_naming_the_known_ones():
    with pytest.raises(KeyError, match=r"unknown endpoint kind 'speech'.*chat"):
        kinds.get("speech")
    with pytest.raises(KeyError):
        ResponseCache().plan("speech", _chat("hi"), Controls())


def test_upstream_paths_resolve_to_the_longest_match():
    assert kinds.for_upstream_path("/v1/chat/completions").name == "chat"
    assert kinds.for_upstream_path("/v1/completions").name == "completion"
    assert kinds.for_upstream_path("/v1/embeddings").name == "embedding"
    assert kinds.for_upstream_path("/v1/files") is None


def test_every_kind_route_is_served(gateway):
    """Each path in the table reaches the proxy: a bad body is the kind's 400, not a 404."""
    for kind in kinds.table().values():
        for path in kind.routes:
            reply = gateway.post(path, content=b"{not json")
            assert reply.status_code == 400, (path, reply.text)


async def test_pending_settles_once():
    cache = ResponseCache()
    plan = cache.plan("chat", _chat("once"), Controls())
    found = await cache.lookup(plan)
    assert found.entry is None and found.pending is not None
    assert await found.pending.store(_answer("first")) is True
    assert await found.pending.store(_answer("second")) is False  # already settled
    found.pending.abandon()  # no-op after store
    again = await cache.lookup(cache.plan("chat", _chat("once"), Controls()))
    assert again.entry is not None
    assert again.entry.response["choices"][0]["message"]["content"] == "first"


async def test_abandon_releases_coalesced_followers_without_storing():
    cache = ResponseCache()
    leader = await cache.lookup(cache.plan("chat", _chat("shared"), Controls()))
    assert leader.pending is not None
    follower = asyncio.ensure_future(cache.lookup(cache.plan("chat", _chat("shared"), Controls())))
    await _joined(cache, leader.pending.plan.key)
    leader.pending.abandon()
    result = await asyncio.wait_for(follower, timeout=10)
    assert result.entry is None and result.pending is not None  # goes upstream itself
    result.pending.abandon()
    assert cache.stats.stores == 0


async def test_rejected_answer_is_not_stored_nor_given_to_followers():
    cache = ResponseCache()
    leader = await cache.lookup(cache.plan("chat", _chat("cut"), Controls()))
    follower = asyncio.ensure_future(cache.lookup(cache.plan("chat", _chat("cut"), Controls())))
    assert leader.pending is not None
    await _joined(cache, leader.pending.plan.key)
    assert await leader.pending.store(_answer("partial", finish="length")) is False
    result = await asyncio.wait_for(follower, timeout=10)
    assert result.entry is None
    assert cache.stats.rejected["finish_reason_length"] == 1


async def test_batch_lookup_fills_only_the_missing_items():
    cache = ResponseCache()
    kind = kinds.get("embedding")
    request = {"model": "e", "input": ["a", "b"]}
    first = await cache.lookup_batch(kind, request, "input", ["a", "b"], Controls())
    assert first.missing == [0, 1] and first.status == "miss"
    stored = await first.fill([{"embedding": [0.1], "tokens": 1},
                               {"embedding": [0.2], "tokens": 1}], model="e")
    assert stored == 2
    second = await cache.lookup_batch(kind, request, "input", ["b", "c"], Controls())
    assert second.missing == [1]
    assert second.entries[0] is not None and second.entries[0].response["embedding"] == [0.2]
    with pytest.raises(ValueError):
        await second.fill([])
