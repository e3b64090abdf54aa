"""N identical concurrent misses make one upstream call."""

from __future__ import annotations

import asyncio


def _messages(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def test_identical_concurrent_requests_share_one_call(gateway, upstream):
    upstream.state.latency = (0.3, 0.3)
    client = gateway.async_client()
    replies = await asyncio.gather(*[client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=_messages("together")) for _ in range(12)])
    await client.close()
    assert upstream.calls("chat") == 1
    contents = {r.parse().choices[0].message.content for r in replies}
    assert len(contents) == 1
    statuses = sorted(r.headers["x-hitrate-cache"] for r in replies)
    assert statuses.count("miss") == 1 and statuses.count("hit") == 11
    assert gateway.cache.stats.coalesced == 11


async def test_streaming_requests_coalesce_too(gateway, upstream):
    upstream.state.latency = (0.3, 0.3)
    client = gateway.async_client()

    async def one() -> str:
        stream = await client.chat.completions.create(
            model="gpt-test", messages=_messages("stream together"), stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    texts = await asyncio.gather(*[one() for _ in range(6)])
    await client.close()
    assert upstream.calls("chat") == 1
    assert len(set(texts)) == 1 and texts[0].startswith("Answer #")


async def test_failed_leader_does_not_poison_followers(gateway, upstream):
    """The leader gets an uncacheable answer; each follower then asks on its own."""
    upstream.state.latency = (0.2, 0.2)
    client = gateway.async_client()
    replies = await asyncio.gather(*[client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=_messages("cut short [[length]]")) for _ in range(4)])
    await client.close()
    assert all(r.status_code == 200 for r in replies)
    assert all(r.headers["x-hitrate-cache"] == "miss" for r in replies)
    assert upstream.calls("chat") == 4  # one leader + 3 followers going direct, not hanging


async def test_leader_error_releases_followers(gateway, upstream):
    import openai

    upstream.state.latency = (0.2, 0.2)
    client = gateway.async_client()
    results = await asyncio.gather(*[client.chat.completions.create(
        model="gpt-test", messages=_messages("fails [[error:500]]")) for _ in range(3)],
        return_exceptions=True)
    await client.close()
    assert all(isinstance(r, openai.InternalServerError) for r in results)


async def test_different_requests_do_not_coalesce(gateway, upstream):
    upstream.state.latency = (0.1, 0.1)
    client = gateway.async_client()
    await asyncio.gather(*[client.chat.completions.create(
        model="gpt-test", messages=_messages(f"q{i}")) for i in range(5)])
    await client.close()
    assert upstream.calls("chat") == 5
