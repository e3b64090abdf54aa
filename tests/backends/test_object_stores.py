"""S3 (moto server), GCS (fake-gcs-server) and Azure Blob (Azurite): the protocol, the
object layout and expiry metadata, the gateway on top, foreign objects, and a dead or
hung endpoint."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest

from hitrate.config import parse_config
from hitrate.stores import build_store
from hitrate.stores.memory import MemoryStore
from hitrate.stores.tiered import TieredStore
from tests.backends.contract import FOREIGN, check_batch, check_protocol, check_ttl
from tests.conftest import ask

BUCKET = "hitrate-test"
BACKENDS = ["s3", "gcs", "azure-blob"]


@pytest.fixture(scope="module")
def s3_bucket(s3_server):
    import boto3

    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(Bucket=BUCKET)
    return s3_server


@pytest.fixture(scope="module")
def gcs_bucket(gcs_server):
    httpx.post(f"{gcs_server}/storage/v1/b?project=test", json={"name": BUCKET}).raise_for_status()
    return gcs_server


@pytest.fixture(scope="module")
def azure_container(azurite):
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(azurite) as service:
        service.create_container(BUCKET)
    return azurite


def section(kind: str, endpoint: str, **extra) -> dict:
    if kind == "s3":
        return {"s3": {"bucket": BUCKET, "endpoint_url": endpoint, "region": "us-east-1",
                       "access_key_id": "test", "secret_access_key": "test", **extra}}
    if kind == "gcs":
        return {"gcs": {"bucket": BUCKET, "api_root": endpoint, **extra}}
    return {"azure_blob": {"container": BUCKET, "connection_string": endpoint, **extra}}


@pytest.fixture(params=BACKENDS)
def cache_config(request) -> dict:
    """A `cache` config section for one object store, its server started."""
    kind = request.param
    endpoint = request.getfixturevalue({"s3": "s3_bucket", "gcs": "gcs_bucket",
                                        "azure-blob": "azure_container"}[kind])
    # Emulators on a busy shared machine can be slow: these tests are not about timeouts.
    return {"type": kind, **section(kind, endpoint, prefix=f"t{time.monotonic_ns()}"),
            "circuit": {"timeout": 5}}


def store_for(cache: dict):
    return build_store(parse_config({"cache": cache}).cache)


async def test_protocol(cache_config):
    store = store_for(cache_config)
    try:
        await check_protocol(store)
        await check_ttl(store)
        await check_batch(store, n=20)
        assert await store.ping() is True and store.circuit_state() == "closed"
    finally:
        await store.close()


async def raw_object(store, name: str) -> tuple[bytes, dict]:
    """The object as the provider's own client sees it: (body, user metadata)."""
    if store.name == "s3":
        response = await store._s3.get_object(Bucket=BUCKET, Key=name)
        async with response["Body"] as body:
            return await body.read(), response["Metadata"]
    if store.name == "gcs":
        meta = await store.storage.download_metadata(BUCKET, name)
        return await store.storage.download(BUCKET, name), meta.get("metadata", {})
    download = await store.client.download_blob(name)
    return await download.readall(), download.properties.metadata


async def test_layout_and_expiry_metadata(cache_config):
    store = store_for(cache_config)
    prefix = cache_config[next(k for k in cache_config if k not in ("type", "circuit"))]["prefix"]
    try:
        before = time.time()
        await store.set("hitrate:v1:team-a:chat:abc", FOREIGN, ttl=100)
        await store.set("kv:chunk:1", b"raw")  # not a response-cache key: `_` folder
        body, meta = await raw_object(store, f"{prefix}/team-a/hitrate:v1:team-a:chat:abc")
        assert body == FOREIGN
        expires = float(next(v for k, v in meta.items() if "expires" in k))
        assert before + 99 < expires < time.time() + 101
        assert (await raw_object(store, f"{prefix}/_/kv:chunk:1"))[0] == b"raw"
        assert sorted([k async for k in store.scan("")]) == ["hitrate:v1:team-a:chat:abc",
                                                              "kv:chunk:1"]
        await store.clear("")
    finally:
        await store.close()


def test_gateway_hits_and_foreign_objects(cache_config, backend_gateway, upstream):
    gateway = backend_gateway({**cache_config, "ttl": 120})
    client = gateway.client()
    headers, first = ask(client, "object storage")
    assert headers["x-hitrate-cache"] == "miss"
    headers, second = ask(client, "object storage")
    assert headers["x-hitrate-cache"] == "hit"
    assert second.choices[0].message.content == first.choices[0].message.content
    # someone else's bytes under our key: a miss (never an error), and caching goes on.
    # (The engine deletes the bad value in the background while the miss stores a good
    # one; if the delete lands last, one more miss re-stores it: hence "within 3".)
    gateway.run(gateway.cache.store.set(headers["x-hitrate-cache-key"], FOREIGN))
    assert ask(client, "object storage")[0]["x-hitrate-cache"] == "miss"
    statuses = [ask(client, "object storage")[0]["x-hitrate-cache"] for _ in range(3)]
    assert statuses[-1] == "hit" and statuses.count("miss") <= 1, statuses
    assert gateway.cache.stats.corrupt == 1 and gateway.cache.stats.backend_errors == 0


@pytest.fixture
def black_hole():
    """A port that accepts connections and never answers (a hung server)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize("kind", BACKENDS)
def test_hung_endpoint_costs_one_timeout(kind, black_hole, backend_gateway, upstream):
    endpoint = (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
                f"BlobEndpoint=http://{black_hole}/devstoreaccount1;" if kind == "azure-blob"
                else f"http://{black_hole}")
    gateway = backend_gateway({"type": kind, **section(kind, endpoint),
                               "circuit": {"timeout": 0.3, "recovery_time": 30}})
    client = gateway.client(timeout=30)
    for i in range(10):
        start = time.monotonic()
        headers, answer = ask(client, f"hung {i}")
        assert answer.choices[0].message.content and headers["x-hitrate-cache"] == "miss"
        assert time.monotonic() - start < 1.5
    store = gateway.cache.store
    assert store.circuit_state() == "open"
    stats = store.stats()
    assert stats.timeouts == 1 and stats.rejected >= 18  # 9 gets + 10 sets never sent


async def test_tiered_over_object_storage_bounds_staleness_by_l1_ttl(s3_bucket):
    """Without a pub/sub channel the L1 TTL is the bound on serving a deleted entry."""
    cache = {"type": "s3", **section("s3", s3_bucket, prefix="tiered"), "circuit": {"timeout": 5}}
    one = TieredStore(MemoryStore(), store_for(cache), l1_ttl=0.5)
    two = TieredStore(MemoryStore(), store_for(cache), l1_ttl=0.5)
    try:
        await one.set("hitrate:v1:t:chat:k", b"v", ttl=60)
        assert await two.get("hitrate:v1:t:chat:k") == b"v"  # promoted into two's L1
        assert await one.delete("hitrate:v1:t:chat:k") is True
        await asyncio.sleep(0.6)
        assert await two.get("hitrate:v1:t:chat:k") is None
    finally:
        await one.close()
        await two.close()
