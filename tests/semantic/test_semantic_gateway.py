"""The semantic cache through the real gateway with the openai SDK (default offline
embedder, embedded index)."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import NO_DEADLINE, ask, stream_text

SEMANTIC = {"semantic": {**NO_DEADLINE}}


@pytest.fixture
def semantic_gateway(make_gateway):
    return make_gateway(cache=SEMANTIC)


def _chat(client, messages, **kwargs):
    kwargs.setdefault("model", "gpt-test")
    raw = client.chat.completions.with_raw_response.create(messages=messages, **kwargs)
    return raw.headers, raw.parse()


def test_seed_paraphrase_hits_and_near_miss_does_not(semantic_gateway, upstream):
    client = semantic_gateway.client()
    _, first = ask(client, "什么是人工智能？")
    headers, second = ask(client, "AI 是什么？")
    assert headers["x-hitrate-cache"] == "hit"
    assert headers["x-hitrate-cache-kind"] == "semantic"
    similarity = float(headers["x-hitrate-semantic-similarity"])
    assert 0.9 < similarity <= 1.0
    assert second.choices[0].message.content == first.choices[0].message.content
    assert headers["x-hitrate-cache-key"] != ""  # the key of the entry that answered

    ask(client, "What is the capital of France?")
    headers, germany = ask(client, "What is the capital of Germany?")
    assert headers["x-hitrate-cache"] == "miss"
    assert "Germany" in germany.choices[0].message.content
    headers, _ = ask(client, "Does the dog chase the cat?")
    headers, _ = ask(client, "Does the cat chase the dog?")
    assert headers["x-hitrate-cache"] == "miss"
    assert upstream.calls("chat") == 5  # everything but the paraphrase went upstream


def test_exact_hits_say_exact(semantic_gateway, upstream):
    client = semantic_gateway.client()
    ask(client, "How do I learn Python?")
    headers, _ = ask(client, "How do I learn Python?")
    assert headers["x-hitrate-cache-kind"] == "exact"
    assert "x-hitrate-semantic-similarity" not in headers
    headers, _ = ask(client, "How can I learn Python?")
    assert headers["x-hitrate-cache-kind"] == "semantic"


@pytest.mark.parametrize("change", [
    {"system": "You are a pirate."},
    {"model": "gpt-other"},
    {"temperature": 0.9},
    {"namespace": "elsewhere"},
    {"history": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
])
def test_semantic_hits_stay_inside_their_scope(make_gateway, upstream, change):
    gateway = make_gateway(cache=SEMANTIC, models=[
        {"name": name, "api_base": upstream.api_base} for name in ("gpt-test", "gpt-other")])
    client = gateway.client()
    _chat(client, [{"role": "user", "content": "How do I learn Python?"}])
    messages = [*change.get("history", []), {"role": "user", "content": "How can I learn Python?"}]
    if "system" in change:
        messages.insert(0, {"role": "system", "content": change["system"]})
    kwargs = {}
    if "model" in change:
        kwargs["model"] = change["model"]
    if "temperature" in change:
        kwargs["temperature"] = change["temperature"]
    if "namespace" in change:
        kwargs["extra_body"] = {"cache": {"namespace": change["namespace"]}}
    headers, _ = _chat(client, messages, **kwargs)
    assert headers["x-hitrate-cache"] == "miss"
    # and the same change on both sides does hit
    headers, _ = _chat(client, [*messages[:-1], {"role": "user",
                                                 "content": "How do I learn Python?"}], **kwargs)
    headers, _ = _chat(client, messages, **kwargs)
    assert headers["x-hitrate-cache"] == "hit"


def test_tenants_never_share_semantic_hits(make_gateway, upstream):
    gateway = make_gateway(cache=SEMANTIC, keys=[
        {"key": "sk-tenant-a-123", "tenant": "a"}, {"key": "sk-tenant-b-123", "tenant": "b"}],
        master_key="sk-master-123")
    a, b = gateway.client(api_key="sk-tenant-a-123"), gateway.client(api_key="sk-tenant-b-123")
    ask(a, "How do I learn Python?")
    assert ask(b, "How can I learn Python?")[0]["x-hitrate-cache"] == "miss"
    assert ask(a, "How can I learn Python?")[0]["x-hitrate-cache"] == "hit"


def test_streaming_paraphrase_replays_a_stream(semantic_gateway, upstream):
    client = semantic_gateway.client()
    _, answer = ask(client, "How do I learn Python?")
    headers, text, _ = stream_text(client, "How can I learn Python?")
    assert headers["x-hitrate-cache-kind"] == "semantic"
    assert text == answer.choices[0].message.content


def test_ttl_expiry_removes_semantic_candidates(semantic_gateway, upstream):
    client = semantic_gateway.client()
    # A TTL long enough for the paraphrase to be asked on a busy machine; then poll for
    # the expiry with a generous deadline instead of racing a fixed sleep.
    stored_at = time.monotonic()
    ask(client, "How do I learn Rust?", extra_body={"cache": {"ttl": 8}})
    assert ask(client, "How can I learn Rust?")[0]["x-hitrate-cache"] == "hit"
    time.sleep(max(0.0, 8.1 - (time.monotonic() - stored_at)))
    deadline = time.monotonic() + 30
    while ask(client, "How can I learn Rust?",
              extra_body={"cache": {"no-store": True}})[0]["x-hitrate-cache"] != "miss":
        assert time.monotonic() < deadline, "the expired entry kept answering"
        time.sleep(0.2)


def test_admin_delete_removes_the_vector(make_gateway, upstream):
    gateway = make_gateway(cache=SEMANTIC, master_key="sk-master-123")
    client = gateway.client(api_key="sk-master-123")
    headers, _ = ask(client, "How do I learn Go?")
    key = headers["x-hitrate-cache-key"]
    index = gateway.cache.semantic.index
    for _ in range(100):  # a lookup past its embedding deadline is indexed in the background
        if key in index._rows:
            break
        time.sleep(0.05)
    assert key in index._rows
    deleted = httpx.delete(f"{gateway.url}/cache/entries/{key}",
                           headers={"authorization": "Bearer sk-master-123"})
    assert deleted.status_code == 200
    assert key not in index._rows
    assert ask(client, "How can I learn Go?")[0]["x-hitrate-cache"] == "miss"


def test_no_cache_answers_are_indexed_too(semantic_gateway, upstream):
    client = semantic_gateway.client()
    ask(client, "How do I learn Haskell?", extra_body={"cache": {"no-cache": True}})
    for _ in range(50):  # indexed in the background: no embedding on the miss path
        if ask(client, "How can I learn Haskell?")[0]["x-hitrate-cache"] == "hit":
            break
        time.sleep(0.05)
    else:
        pytest.fail("the no-cache answer never became a semantic candidate")


def test_embedder_failure_degrades_to_exact_only(make_gateway, upstream):
    gateway = make_gateway(cache={"semantic": {**NO_DEADLINE, "embedder": "upstream:broken"}}, models=[
        {"name": "gpt-test", "api_base": upstream.api_base},
        {"name": "broken", "api_base": upstream.url + "/nowhere"}])
    client = gateway.client()
    ask(client, "How do I learn Python?")
    assert ask(client, "How can I learn Python?")[0]["x-hitrate-cache"] == "miss"
    assert ask(client, "How do I learn Python?")[0]["x-hitrate-cache"] == "hit"
    assert gateway.cache.semantic.stats.errors >= 1


def test_upstream_embedder_and_embedding_cache(make_gateway, upstream):
    gateway = make_gateway(cache={"semantic": {**NO_DEADLINE, "embedder": "upstream:embedder"}}, models=[
        {"name": "gpt-test", "api_base": upstream.api_base},
        {"name": "embedder", "api_base": upstream.api_base}])
    client = gateway.client()
    ask(client, "How do I learn Python?", temperature=0.1)
    ask(client, "How do I learn Python?", temperature=0.2)  # same text: embedded once
    assert upstream.calls("embedding") == 1
    assert upstream.calls("chat") == 2


def test_bad_semantic_config_is_one_clear_error():
    from hitrate.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"cache\.semantic\.similarity_threshold"):
        parse_config({"cache": {"semantic": {"similarity_threshold": 3}}})
    litellm = parse_config({"model_list": [], "litellm_settings": {"cache": True, "cache_params": {
        "type": "qdrant-semantic", "qdrant_api_base": "http://127.0.0.1:6333",
        "qdrant_collection_name": "c", "similarity_threshold": 0.9,
        "qdrant_semantic_cache_embedding_model": "text-embedding-3-small"}}})
    semantic = litellm.cache.semantic
    assert semantic is not None and semantic.index == "qdrant"
    assert semantic.embedder == "upstream:text-embedding-3-small"
    assert semantic.index_options == {"url": "http://127.0.0.1:6333", "collection": "c"}
    assert semantic.similarity_threshold == 0.9


def test_metrics_count_semantic_hits(semantic_gateway, upstream):
    client = semantic_gateway.client()
    ask(client, "How do I learn Python?")
    ask(client, "How can I learn Python?")
    text = httpx.get(f"{semantic_gateway.url}/metrics").text
    assert 'kind="semantic"' in text


def test_semantic_candidates_survive_a_restart_on_disk(make_gateway, upstream, tmp_path):
    cache = {"type": "disk", "disk_cache_dir": str(tmp_path / "cache"),
             "semantic": {**NO_DEADLINE}}
    first = make_gateway(cache=cache)
    ask(first.client(), "How do I learn Python?")
    first.server.stop()
    second = make_gateway(cache=cache)
    headers, _ = ask(second.client(), "How can I learn Python?")
    assert headers["x-hitrate-cache-kind"] == "semantic"
    assert upstream.calls("chat") == 1


async def test_identical_requests_coalesce_while_the_leader_embeds(semantic_gateway, upstream):
    import asyncio

    upstream.state.latency = (0.2, 0.2)
    client = semantic_gateway.async_client()
    replies = await asyncio.gather(*[client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=[{"role": "user", "content": "Burst question?"}])
        for i in range(8)])
    await client.close()
    assert upstream.calls("chat") == 1
    assert sorted(r.headers["x-hitrate-cache"] for r in replies).count("hit") == 7


def test_cache_stats_say_why_paraphrases_hit_or_not(make_gateway):
    gateway = make_gateway(cache={"semantic": {**NO_DEADLINE, "max_text_chars": 60}})
    client = gateway.client()
    ask(client, "什么是人工智能？")
    ask(client, "AI 是什么？")  # a semantic hit
    ask(client, "What is the capital of France?")
    ask(client, "What is the capital of Germany?")  # its candidate is refused
    ask(client, "x" * 100)  # too long to embed: the lookup is skipped
    stats = httpx.get(f"{gateway.url}/cache/stats", timeout=30).json()["cache"]["semantic"]
    assert stats["embedder"] == "multilingual-e5-small"
    assert stats["verifier"] == "learned"
    assert stats["hits"] == 1
    assert stats["lookups"] == 5  # every exact miss, the skipped one included
    assert stats["skipped"] == {"too_long": 1, "timeouts": 0}
    assert sum(stats["rejected_candidates"].values()) >= 1


def test_cache_stats_have_no_semantic_section_when_it_is_off(gateway):
    ask(gateway.client(), "hello")
    assert httpx.get(f"{gateway.url}/cache/stats", timeout=30).json()["cache"]["semantic"] is None
