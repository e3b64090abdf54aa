"""Issue 11, items 5 and 7: the semantic path is bounded (length cap, deadline, batched
embedder calls) and the embedding cache says nothing about other tenants' questions."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hitrate.config import SemanticConfig
from hitrate.semantic.embedders import LocalEmbedder, e5
from hitrate.semantic.lookup import SemanticLayer, build_semantic
from hitrate.serving import BackgroundServer
from tests.conftest import ask

TENANTS = [{"key": "sk-tenant-a-123", "tenant": "a"}, {"key": "sk-tenant-b-123", "tenant": "b"}]


def test_long_prompts_skip_the_semantic_lookup(make_gateway, upstream):
    gateway = make_gateway(cache={"semantic": {"max_text_chars": 40}})
    client = gateway.client()
    long_question = "How do I learn Python? " + "Please be thorough. " * 5
    assert ask(client, long_question)[0]["x-hitrate-cache"] == "miss"
    paraphrase = long_question.replace("How do I", "How can I")
    assert ask(client, paraphrase)[0]["x-hitrate-cache"] == "miss"
    assert ask(client, long_question)[0]["x-hitrate-cache"] == "hit"  # exact still works
    assert upstream.calls("chat") == 2
    semantic = gateway.cache.semantic
    assert semantic.stats.too_long == 2
    assert semantic.stats.errors == 0
    # short prompts keep their semantic hits
    ask(client, "How do I learn Rust?")
    assert ask(client, "How can I learn Rust?")[0]["x-hitrate-cache"] == "hit"


@pytest.fixture
def hung_embedder() -> Iterator[BackgroundServer]:
    """An embeddings server that answers only once the test is over."""
    release = threading.Event()

    async def embeddings(request: Request) -> JSONResponse:
        body = await request.json()
        while not release.is_set():
            await asyncio.sleep(0.01)
        return JSONResponse({"object": "list", "data": [
            {"object": "embedding", "index": i, "embedding": [1.0, 0.0]}
            for i, _ in enumerate(body["input"])]})

    app = Starlette(routes=[Route("/v1/embeddings", embeddings, methods=["POST"])])
    with BackgroundServer(app) as server:
        yield server
        release.set()


def test_a_hung_embedder_costs_a_lookup_its_deadline_not_its_answer(make_gateway, upstream,
                                                                     hung_embedder):
    server = hung_embedder
    gateway = make_gateway(
        cache={"semantic": {"embedder": "upstream:embedder", "embed_timeout_ms": 50}},
        models=[{"name": "gpt-test", "api_base": upstream.api_base},
                {"name": "embedder", "api_base": f"{server.url}/v1"}])
    client = gateway.client()
    for question in ("How do I learn Python?", "How do I learn Rust?"):
        headers, reply = ask(client, question)
        assert headers["x-hitrate-cache"] == "miss"
        assert reply.choices[0].message.content
    assert upstream.calls("chat") == 2
    assert gateway.cache.semantic.stats.timeouts >= 2
    assert ask(client, "How do I learn Python?")[0]["x-hitrate-cache"] == "hit"


class GatedEmbedder(LocalEmbedder):
    """The real default embedder whose first call waits for the test (so the lookups
    that arrive meanwhile are deterministically queued)."""

    def __init__(self) -> None:
        inner = e5()
        super().__init__(inner.name, inner._load)
        self.gate = asyncio.Event()
        self.calls: list[list[str]] = []

    async def embed(self, texts):
        self.calls.append(list(texts))
        if len(self.calls) == 1:
            await self.gate.wait()
        return await super().embed(texts)


async def test_concurrent_lookups_share_one_embedder_call():
    embedder = GatedEmbedder()
    layer = SemanticLayer(embedder, build_semantic(SemanticConfig()).index,
                          build_semantic(SemanticConfig(embed_timeout_ms=None)).settings)
    first = asyncio.ensure_future(layer.vector("first question", "s"))
    while not embedder.calls:
        await asyncio.sleep(0)
    others = [asyncio.ensure_future(layer.vector(f"question {i}", "s")) for i in range(5)]
    await asyncio.sleep(0)
    embedder.gate.set()
    vectors = await asyncio.gather(first, *others)
    assert embedder.calls == [["first question"], [f"question {i}" for i in range(5)]]
    assert all(v is not None and v.shape == (384,) for v in vectors)
    assert layer.queue.batched == 5
    await layer.close()


def test_embedding_cache_is_per_tenant(make_gateway, upstream):
    gateway = make_gateway(cache={"semantic": {"embedder": "upstream:embedder"}}, models=[
        {"name": "gpt-test", "api_base": upstream.api_base},
        {"name": "embedder", "api_base": upstream.api_base}], keys=TENANTS,
        master_key="sk-master-123")
    a, b = gateway.client(api_key="sk-tenant-a-123"), gateway.client(api_key="sk-tenant-b-123")
    ask(a, "What did tenant A ask?", temperature=0.1)
    ask(a, "What did tenant A ask?", temperature=0.2)  # same tenant: its vector is reused
    assert upstream.calls("embedding") == 1
    ask(b, "What did tenant A ask?", temperature=0.1)  # another tenant: embedded anew
    assert upstream.calls("embedding") == 2
    assert upstream.calls("chat") == 3


@pytest.mark.slow
async def test_a_huge_prompt_does_not_hold_up_a_small_miss(make_gateway, upstream):
    """Issue 11's stress case: a 100 KB prompt (which used to keep the embedder busy for
    over a minute) sent together with small new questions. Asserts that everything
    completed and the small ones went upstream; prints the small misses' latency."""
    import time

    gateway = make_gateway(cache={"semantic": {}})
    client = gateway.async_client(timeout=120)
    await client.chat.completions.create(model="gpt-test", messages=[
        {"role": "user", "content": "warm up the embedder"}])

    async def timed(text: str) -> tuple[float, str]:
        started = time.perf_counter()
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-test", messages=[{"role": "user", "content": text}])
        return time.perf_counter() - started, raw.headers["x-hitrate-cache"]

    huge = "Summarise this. " + "lorem ipsum dolor sit amet " * 4000
    results = await asyncio.gather(timed(huge), *[timed(f"Small question {i}?")
                                                  for i in range(5)])
    await client.close()
    assert [status for _, status in results] == ["miss"] * 6
    assert upstream.calls("chat") == 7
    assert gateway.cache.semantic.stats.too_long == 1
    small = sorted(seconds for seconds, _ in results[1:])
    print(f"\nsmall misses beside a 100 KB prompt: p50 {small[2] * 1000:.0f} ms, "
          f"max {small[-1] * 1000:.0f} ms")
