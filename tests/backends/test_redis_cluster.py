"""Redis Cluster (3 masters, `redis-cli --cluster create`): the protocol, and multi-key
operations spanning hash slots without CROSSSLOT errors, also through the gateway."""

from __future__ import annotations

from hitrate.config import parse_config
from hitrate.stores import build_store
from tests.backends.conftest import RELAXED, redis_cmd
from tests.backends.contract import check_batch, check_protocol, check_ttl


def cluster_config(redis_cluster, **extra):
    return {"type": "redis-cluster", "redis": {"startup_nodes": redis_cluster.startup_nodes},
            "circuit": RELAXED, **extra}


async def test_protocol_across_slots(redis_cluster):
    store = build_store(parse_config({"cache": cluster_config(redis_cluster)}).cache)
    try:
        assert store.name == "redis-cluster"
        await check_protocol(store)
        await check_ttl(store)
        await check_batch(store, n=200)  # 200 keys land on every master
        # the batch really was spread: each master held some of it
        await store.set_many([(f"hitrate:v1:spread:chat:{i}", b"x", 60) for i in range(60)])
        counts = [int(redis_cmd(node.port, "DBSIZE")[1:]) for node in redis_cluster.nodes]
        assert all(c > 0 for c in counts), counts
        assert await store.clear("hitrate:v1:spread:") == 60
        assert await store.ping()
    finally:
        await store.close()


async def test_litellm_startup_nodes(redis_cluster):
    nodes = [{"host": "127.0.0.1", "port": str(n.port)} for n in redis_cluster.nodes[:1]]
    config = parse_config({"model_list": [], "litellm_settings": {"cache": True, "cache_params": {
        "type": "redis", "redis_startup_nodes": nodes, "socket_timeout": 0.25}}})
    assert config.cache.type == "redis-cluster"
    store = build_store(config.cache)  # one startup node is enough to find the others
    try:
        keys = [f"hitrate:v1:lite:chat:{i}" for i in range(30)]
        await store.set_many([(k, b"v", 30) for k in keys])
        assert await store.get_many(keys) == [b"v"] * 30
    finally:
        await store.clear("hitrate:")
        await store.close()


def test_gateway_batch_embeddings_on_cluster(redis_cluster, backend_gateway, upstream):
    gateway = backend_gateway(cluster_config(redis_cluster, ttl=60))
    client = gateway.client()
    words = [f"word {i}" for i in range(40)]
    first = client.embeddings.with_raw_response.create(model="gpt-test", input=words[:20])
    assert first.headers["x-hitrate-cache-items-hit"] == "0/20"
    second = client.embeddings.with_raw_response.create(model="gpt-test", input=words)
    assert second.headers["x-hitrate-cache-items-hit"] == "20/40"
    third = client.embeddings.with_raw_response.create(model="gpt-test", input=words)
    assert third.headers["x-hitrate-cache-items-hit"] == "40/40"
    assert [d.embedding for d in third.parse().data][:20] == [d.embedding for d in first.parse().data]
    assert gateway.cache.stats.backend_errors == 0
    assert gateway.run(gateway.cache.clear()) == 40
