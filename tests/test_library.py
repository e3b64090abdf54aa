"""The same engine in process: `hitrate.cached_client` around the official SDK."""

from __future__ import annotations

import openai

import hitrate


def test_sync_client_caches(upstream):
    cache = hitrate.Cache(ttl=60)
    client = hitrate.cached_client(openai.OpenAI(base_url=upstream.api_base, api_key="k"), cache)
    first = client.chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "library"}])
    second = client.chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "library"}])
    assert first.headers["x-hitrate-cache"] == "miss"
    assert second.headers["x-hitrate-cache"] == "hit"
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "library"}], stream=True) if c.choices)
    assert text == first.parse().choices[0].message.content
    assert upstream.calls("chat") == 1
    assert cache.stats.hits == 2


def test_controls_and_embeddings_through_the_wrapper(upstream):
    client = hitrate.cached_client(openai.OpenAI(base_url=upstream.api_base, api_key="k"))
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}],
                                   extra_body={"cache": {"no-store": True}})
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert upstream.calls("chat") == 2
    client.embeddings.create(model="e", input=["a", "b"])
    client.embeddings.create(model="e", input=["b", "c"])
    assert upstream.state.embedding_inputs == 3
    assert [m.id for m in client.models.list()] == ["sim-model"]  # not intercepted


async def test_async_client_streams_and_caches(upstream, tmp_path):
    cache = hitrate.Cache(hitrate.DiskStore(tmp_path / "c"))
    client = hitrate.cached_client(openai.AsyncOpenAI(base_url=upstream.api_base, api_key="k"),
                                   cache)

    async def streamed() -> str:
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "async lib"}], stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    first, second = await streamed(), await streamed()
    assert first == second and first.startswith("Answer #1")
    assert upstream.calls("chat") == 1
    await client.close()
    await cache.close()


def test_import_is_lazy():
    import subprocess
    import sys

    code = ("import sys, hitrate; heavy = [m for m in ('openai', 'starlette', 'httpx', 'uvicorn',"
            " 'pydantic') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
