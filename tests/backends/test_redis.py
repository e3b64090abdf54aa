"""Redis standalone: the protocol against a real redis-server, config and env vars, TLS."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from hitrate.config import parse_config
from hitrate.stores import build_store
from hitrate.stores.redis import RedisStore
from tests.backends.conftest import RELAXED
from tests.backends.contract import check_batch, check_protocol, check_ttl
from tests.conftest import ask


def redis_store(server, **kwargs) -> RedisStore:
    return RedisStore(host="127.0.0.1", port=server.port, **RELAXED, **kwargs)


async def test_protocol(redis_db):
    store = redis_store(redis_db)
    try:
        await check_protocol(store)
        await check_ttl(store)
        await check_batch(store)
        assert await store.ping() is True
        assert store.circuit_state() == "closed"
        stats = store.stats()
        assert stats.hits > 0 and stats.misses > 0 and stats.errors == 0
    finally:
        await store.close()


async def test_keys_are_plain_and_expire_in_redis(redis_db):
    store = redis_store(redis_db)
    try:
        await store.set("hitrate:v1:ns:chat:k", b"v", ttl=30)
        assert redis_db.cmd("GET", "hitrate:v1:ns:chat:k") == "v"
        assert 29_000 < int(redis_db.cmd("PTTL", "hitrate:v1:ns:chat:k")[1:]) <= 30_000
        # glob characters in a prefix are literal
        await store.set("hitrate:v1:n*:chat:k", b"v")
        assert [k async for k in store.scan("hitrate:v1:n*")] == ["hitrate:v1:n*:chat:k"]
    finally:
        await store.close()


async def test_config_url_db_and_env(redis_db, monkeypatch):
    # url with a db number
    config = parse_config({"cache": {"type": "redis", "redis": {"url": f"redis://127.0.0.1:{redis_db.port}/3"}}})
    store = build_store(config.cache)
    await store.set("hitrate:v1:x:chat:k", b"in db 3")
    await store.close()
    assert redis_db.cmd("SELECT", "3") == "+OK"
    assert redis_cmd_db(redis_db.port, 3, "GET", "hitrate:v1:x:chat:k") == "in db 3"
    # REDIS_URL, then REDIS_HOST / REDIS_PORT, when the file names no server
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{redis_db.port}/3")
    store = build_store(parse_config({"cache": {"type": "redis"}}).cache)
    assert await store.get("hitrate:v1:x:chat:k") == b"in db 3"
    await store.close()
    monkeypatch.delenv("REDIS_URL")
    monkeypatch.setenv("REDIS_HOST", "127.0.0.1")
    monkeypatch.setenv("REDIS_PORT", str(redis_db.port))
    store = build_store(parse_config({"cache": {"type": "redis"}}).cache)
    assert await store.ping()
    await store.close()


def redis_cmd_db(port: int, db: int, *args: str) -> str:
    out = subprocess.run(["redis-cli", "-p", str(port), "-n", str(db), *args],
                         capture_output=True, text=True, timeout=5)
    return out.stdout.strip()


async def test_password_from_config_and_env(servers, monkeypatch):
    server = servers.redis("--requirepass", "s3cret")
    wrong = redis_store(server)
    assert await wrong.ping() is False
    await wrong.close()
    store = redis_store(server, password="s3cret")
    await store.set("hitrate:v1:p:chat:k", b"v")
    await store.close()
    monkeypatch.setenv("REDIS_PASSWORD", "s3cret")
    litellm = parse_config({"model_list": [], "litellm_settings": {"cache": True, "cache_params": {
        "type": "redis", "host": "127.0.0.1", "port": server.port}}})
    store = build_store(litellm.cache)
    assert await store.get("hitrate:v1:p:chat:k") == b"v"
    await store.close()


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl CLI needed to make a test certificate")
async def test_tls_rediss_url(servers, tmp_path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True, timeout=60)
    from tests.backends.conftest import free_port

    tls_port = free_port()
    servers.redis("--tls-port", str(tls_port), "--tls-cert-file", str(tmp_path / "cert.pem"),
                  "--tls-key-file", str(tmp_path / "key.pem"), "--tls-auth-clients", "no")
    # A generous operation timeout: a TLS handshake on a busy 2-core machine can take
    # longer than the default 50 ms budget (connect: 200 ms), which is about failure
    # detection, not about what this test checks.
    config = parse_config({"cache": {"type": "redis", "circuit": {"timeout": 5}, "redis": {
        "url": f"rediss://127.0.0.1:{tls_port}/0", "ssl_ca_certs": str(tmp_path / "cert.pem")}}})
    store = build_store(config.cache)
    try:
        await store.set("hitrate:v1:tls:chat:k", b"secret", ttl=10)
        assert await store.get("hitrate:v1:tls:chat:k") == b"secret"
    finally:
        await store.close()


def test_gateway_over_redis_shares_entries_between_replicas(redis_db, backend_gateway, upstream):
    cache = {"type": "redis", "redis": {"url": redis_db.url}, "ttl": 60, "circuit": RELAXED}
    one, two = backend_gateway(cache), backend_gateway(cache)
    headers, first = ask(one.client(), "hello redis")
    assert headers["x-hitrate-cache"] == "miss"
    headers, second = ask(two.client(), "hello redis")
    assert headers["x-hitrate-cache"] == "hit"
    assert second.choices[0].message.content == first.choices[0].message.content
    assert upstream.calls() == 1
    # a foreign value under the key is a miss (and gets replaced), never a crash
    key = headers["x-hitrate-cache-key"]
    redis_db.cmd("SET", key, "garbage")
    headers, _ = ask(two.client(), "hello redis")
    assert headers["x-hitrate-cache"] == "miss"
    # the engine's background delete of the bad value may land after the good one was
    # stored: then one more miss stores it again
    statuses = [ask(one.client(), "hello redis")[0]["x-hitrate-cache"] for _ in range(3)]
    assert statuses[-1] == "hit" and statuses.count("miss") <= 1, statuses
