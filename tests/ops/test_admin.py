"""Admin API: master key only (401 without a valid key, 403 for tenants' keys); entries,
namespaces, flush of hitrate's own keys only, backend health; `hitrate stats | flush`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from hitrate.config import parse_config
from hitrate.engine import ResponseCache
from hitrate.gateway.app import create_app
from hitrate.serving import BackgroundServer
from tests.conftest import Gateway, ask
from tests.ops.conftest import KEY_A, MASTER, admin
from tests.ops.test_metrics import BrokenStore

KEY = "hitrate:v1:default:chat:00000000000000000000000000000000"
# GET /cache/stats is not here: a tenant's key reads its own (tests/ops/test_tenant_stats.py).
ADMIN_ROUTES = [("GET", f"/cache/entries/{KEY}"),
                ("DELETE", f"/cache/entries/{KEY}"), ("POST", "/cache/delete"),
                ("DELETE", "/cache/namespaces/default"), ("POST", "/cache/flush"),
                ("POST", "/cache/flushall"), ("GET", "/cache/health"), ("GET", "/cache/ping"),
                ("GET", "/keys"), ("POST", "/keys"), ("DELETE", "/keys/key_0"),
                ("GET", "/costs"), ("GET", "/costs/models/gpt-4o"), ("POST", "/costs/refresh")]


def test_admin_routes_need_the_master_key(tenant_gateway):
    gateway = tenant_gateway()
    for method, path in ADMIN_ROUTES:
        for key, status in ((None, 401), ("sk-not-a-key-at-all", 401), (KEY_A, 403)):
            response = admin(gateway, method, path, key=key)
            assert response.status_code == status, (method, path, key)
            assert response.json()["error"]["type"] in ("authentication_error",
                                                        "permission_error")
        assert admin(gateway, method, path).status_code not in (401, 403), (method, path)


def test_look_up_and_delete_an_entry(tenant_gateway, upstream):
    gateway = tenant_gateway()
    client = gateway.client(api_key=MASTER)
    headers, answer = ask(client, "remember me")
    key = headers["x-hitrate-cache-key"]
    entry = admin(gateway, "GET", f"/cache/entries/{key}").json()
    assert entry["key"] == key and entry["kind"] == "chat" and entry["model"] == "gpt-test"
    assert entry["namespace"] == "default"
    assert entry["response"]["choices"][0]["message"]["content"] \
        == answer.choices[0].message.content
    assert admin(gateway, "DELETE", f"/cache/entries/{key}").json() == {"deleted": True}
    assert admin(gateway, "GET", f"/cache/entries/{key}").status_code == 404
    assert admin(gateway, "DELETE", f"/cache/entries/{key}").json() == {"deleted": False}
    assert ask(client, "remember me")[0]["x-hitrate-cache"] == "miss"
    # Only hitrate's keys can be read or deleted through the admin API.
    assert admin(gateway, "GET", "/cache/entries/session:1234").status_code == 400
    # LiteLLM's bulk delete route.
    key2 = ask(client, "and me")[0]["x-hitrate-cache-key"]
    deleted = admin(gateway, "POST", "/cache/delete", json={"keys": [key, key2]})
    assert deleted.json() == {"deleted": 2}


def test_delete_a_namespace_and_flush_only_hitrate_keys(tenant_gateway):
    gateway = tenant_gateway()
    client = gateway.client(api_key=MASTER)
    for namespace in ("keep", "drop"):
        for text in ("one", "two"):
            ask(client, text, extra_body={"cache": {"namespace": namespace}})
    store = gateway.cache.store  # a memory store: never awaits, safe to use from here
    asyncio.run(store.set("someone-elses:key", b"not ours"))
    assert admin(gateway, "DELETE", "/cache/namespaces/drop").json()["deleted"] == 2
    keep = {"cache": {"namespace": "keep"}}
    drop = {"cache": {"namespace": "drop"}}
    assert ask(client, "one", extra_body=keep)[0]["x-hitrate-cache"] == "hit"
    assert ask(client, "one", extra_body=drop)[0]["x-hitrate-cache"] == "miss"
    assert admin(gateway, "DELETE", "/cache/namespaces/bad%20name").status_code == 400

    flushed = admin(gateway, "POST", "/cache/flush").json()
    assert flushed == {"deleted": 3, "prefix": "hitrate:"}
    assert asyncio.run(store.get("someone-elses:key")) == b"not ours"  # never FLUSHALL
    assert ask(client, "one", extra_body=keep)[0]["x-hitrate-cache"] == "miss"


def test_backend_health(tenant_gateway, upstream):
    healthy = admin(tenant_gateway(), "GET", "/cache/health")
    assert healthy.status_code == 200
    assert healthy.json()["status"] == "healthy" and healthy.json()["backend"] == "memory"

    config = parse_config({"models": [{"name": "gpt-test", "api_base": upstream.api_base}],
                           "master_key": MASTER})
    with BackgroundServer(create_app(config, cache=ResponseCache(BrokenStore()))) as server:
        broken = admin(Gateway(server, None), "GET", "/cache/ping")
    assert broken.status_code == 503
    assert broken.json()["status"] == "unhealthy"
    assert broken.json()["circuit_state"] == "open"
    assert "ConnectionError" in broken.json()["error"]


def test_stats_document(tenant_gateway):
    gateway = tenant_gateway()
    client = gateway.client(api_key=KEY_A)
    ask(client, "stats please")
    ask(client, "stats please")
    stats = admin(gateway, "GET", "/cache/stats").json()
    assert stats["requests"]["total"] == 2
    assert stats["requests"]["by_outcome"] == {"hit": 1, "miss": 1, "bypass": 0, "error": 0}
    assert stats["hit_rate"] == 0.5
    assert stats["cache"]["entries"] == 1 and stats["cache"]["stores"] == 1
    assert stats["backend"] == {"name": "memory", "up": True, "circuit_state": None,
                                "errors": 0, "errors_by_operation": {}}
    assert stats["keys"] == {"virtual": 2, "tenants": 2}
    assert stats["history"][-1]["requests"] == 2
    assert stats["prices"]["source"] == "bundled" and stats["prices"]["models"] > 40


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hitrate.cli", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def test_cli_stats_and_flush(tenant_gateway):
    gateway = tenant_gateway()
    client = gateway.client(api_key=KEY_A)
    ask(client, "cli question")
    ask(client, "cli question")
    result = _cli("stats", "--url", gateway.url, "--key", MASTER, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["requests"]["by_outcome"]["hit"] == 1
    table = _cli("stats", "--url", gateway.url, env={"HITRATE_MASTER_KEY": MASTER})
    assert table.returncode == 0 and "hit rate" in table.stdout and "50.0%" in table.stdout
    own = _cli("stats", "--url", gateway.url, "--key", KEY_A, "--json")  # a tenant's own view
    assert own.returncode == 0 and json.loads(own.stdout)["tenant"] == "a"
    denied = _cli("stats", "--url", gateway.url, "--key", KEY_A, "--tenant", "b")
    assert denied.returncode == 2 and "403" in denied.stderr
    one = _cli("stats", "--url", gateway.url, "--key", MASTER, "--tenant", "a")
    assert one.returncode == 0 and "tenant a" in one.stdout and "50.0%" in one.stdout

    flushed = _cli("flush", "--url", gateway.url, "--key", MASTER, "--yes")
    assert flushed.returncode == 0, flushed.stderr
    assert "deleted 1 entries" in flushed.stdout
    assert ask(client, "cli question")[0]["x-hitrate-cache"] == "miss"
    namespace = _cli("flush", "--url", gateway.url, "--key", MASTER, "--yes",
                     "--namespace", "default")
    assert namespace.returncode == 0 and "deleted 1 entries" in namespace.stdout


@pytest.mark.parametrize("args", [("stats",), ("flush", "--yes")])
def test_cli_reports_an_unreachable_gateway(args):
    result = _cli(*args, "--url", "http://127.0.0.1:9", "--key", MASTER)
    assert result.returncode == 2 and "cannot reach" in result.stderr
    assert "Traceback" not in result.stderr
