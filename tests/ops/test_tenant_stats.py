"""Per-tenant stats and metrics through the HTTP API with real keys: the admin sees every
tenant, a tenant's key sees its own numbers and nobody else's; the `tenant` metric label
is opt-in and bounded; namespace labels can be turned off; /metrics behind the key."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import ask
from tests.ops.conftest import KEY_A, KEY_B, MASTER, admin, scrape, total, value

SECRET_NAMESPACE = "acme-merger-with-initech"


def traffic(gateway) -> None:
    """A: 3 requests (1 hit) in its secret namespace; B: 4 requests (2 hits); B errs once."""
    a, b = gateway.client(api_key=KEY_A), gateway.client(api_key=KEY_B)
    secret = {"extra_body": {"cache": {"namespace": SECRET_NAMESPACE}}}
    ask(a, "merger plan", **secret)
    ask(a, "merger plan", **secret)
    ask(a, "other plan", **secret)
    for _ in range(3):
        ask(b, "weather?")
    ask(b, "news?")
    with pytest.raises(Exception):  # noqa: B017 - the SDK's 500 error
        ask(b, "boom [[error:500]]")


def test_a_tenant_key_sees_its_own_stats_only(tenant_gateway, upstream):
    gateway = tenant_gateway()
    traffic(gateway)
    mine = admin(gateway, "GET", "/cache/stats", key=KEY_A)
    assert mine.status_code == 200, mine.text
    a = mine.json()
    assert a["tenant"] == "a"
    assert a["requests"] == {"total": 3, "by_outcome": {"hit": 1, "miss": 2, "bypass": 0,
                                                        "error": 0}}
    assert a["hit_rate"] == pytest.approx(1 / 3)
    assert a["savings"]["hits"] == 1 and a["savings"]["tokens"] > 0
    assert [row["name"] for row in a["namespaces"]] == [SECRET_NAMESPACE]
    assert [row["name"] for row in a["models"]] == ["gpt-test"]
    assert a["cache"] is None and a["backend"] is None and "keys" not in a
    assert "tenants" not in a
    assert a["history"][-1]["requests"] == 3 and a["history"][-1]["hit"] == 1

    b = admin(gateway, "GET", "/cache/stats", key=KEY_B).json()
    assert b["tenant"] == "b"
    assert b["requests"]["by_outcome"] == {"hit": 2, "miss": 2, "bypass": 0, "error": 1}
    assert SECRET_NAMESPACE not in str(b)  # nothing of A's leaks into B's view
    assert [row["name"] for row in b["namespaces"]] == ["default"]

    # Another tenant's stats: refused; no key: 401.
    other = admin(gateway, "GET", "/cache/stats?tenant=a", key=KEY_B)
    assert other.status_code == 403 and other.json()["error"]["code"] == "other_tenant"
    own = admin(gateway, "GET", "/cache/stats?tenant=b", key=KEY_B).json()
    assert own["tenant"] == "b" and own["requests"] == b["requests"]
    assert admin(gateway, "GET", "/cache/stats", key=None).status_code == 401
    assert admin(gateway, "GET", "/cache/stats", key="sk-wrong-key-000").status_code == 401


def test_the_admin_compares_tenants_and_opens_one(tenant_gateway, upstream):
    gateway = tenant_gateway()
    traffic(gateway)
    full = admin(gateway, "GET", "/cache/stats").json()
    assert "tenant" not in full and full["requests"]["total"] == 8
    rows = {row["tenant"]: row for row in full["tenants"]}
    assert set(rows) == {"a", "b"}
    assert rows["a"]["requests"] == 3 and rows["a"]["hits"] == 1
    assert rows["b"]["requests"] == 5 and rows["b"]["hits"] == 2
    assert rows["b"]["hit_rate"] == pytest.approx(0.4)
    assert rows["a"]["tokens"] > 0 and rows["b"]["latency_seconds"] >= 0
    assert all("tenants" not in sample for sample in full["history"])
    one = admin(gateway, "GET", "/cache/stats?tenant=a").json()
    assert one["tenant"] == "a" and one["requests"]["total"] == 3
    assert one["namespaces"][0]["name"] == SECRET_NAMESPACE
    unknown = admin(gateway, "GET", "/cache/stats?tenant=nobody").json()
    assert unknown["requests"]["total"] == 0 and unknown["savings"] is None


def test_shared_keys_still_count_under_their_own_tenant(tenant_gateway, upstream):
    gateway = tenant_gateway(keys=[{"key": "sk-shared-c-0001", "tenant": "c", "shared": True},
                                   {"key": "sk-shared-d-0001", "tenant": "d", "shared": True}])
    ask(gateway.client(api_key="sk-shared-c-0001"), "public")
    ask(gateway.client(api_key="sk-shared-d-0001"), "public")
    d = admin(gateway, "GET", "/cache/stats", key="sk-shared-d-0001").json()
    assert d["requests"]["by_outcome"]["hit"] == 1 and d["savings"]["hits"] == 1
    c = admin(gateway, "GET", "/cache/stats", key="sk-shared-c-0001").json()
    assert c["requests"]["by_outcome"]["miss"] == 1 and c["savings"] is None


def test_embedding_hits_count_per_tenant(tenant_gateway, upstream):
    gateway = tenant_gateway()
    a = gateway.client(api_key=KEY_A)
    a.embeddings.create(model="gpt-test", input=["one", "two"])
    a.embeddings.create(model="gpt-test", input=["one", "two"])
    stats = admin(gateway, "GET", "/cache/stats", key=KEY_A).json()
    assert stats["requests"]["by_outcome"]["hit"] == 1
    assert stats["savings"]["hits"] == 2  # one per input item


def test_tenant_label_is_opt_in(tenant_gateway, upstream):
    gateway = tenant_gateway()
    traffic(gateway)
    metrics = scrape(gateway)
    assert not any(name.startswith("hitrate_tenant_") for name in metrics["families"])
    # Namespace labels are on by default.
    assert value(metrics, "hitrate_model_hits_total", model="gpt-test",
                 namespace=SECRET_NAMESPACE) == 1


def test_tenant_label_series_and_their_bound(tenant_gateway, upstream):
    gateway = tenant_gateway(metrics={"tenant_label": True, "tenant_label_limit": 1})
    traffic(gateway)  # A is seen first: it gets a series, B is summed into (other)
    metrics = scrape(gateway)
    assert metrics["families"]["hitrate_tenant_requests"] == "counter"
    assert value(metrics, "hitrate_tenant_requests_total", tenant="a", outcome="hit") == 1
    assert value(metrics, "hitrate_tenant_requests_total", tenant="a", outcome="miss") == 2
    assert value(metrics, "hitrate_tenant_requests_total", tenant="(other)", outcome="error") == 1
    assert total(metrics, "hitrate_tenant_requests_total", tenant="b") == 0
    assert total(metrics, "hitrate_tenant_requests_total") == 8
    assert value(metrics, "hitrate_tenant_tokens_saved_total", tenant="a", type="prompt") > 0
    assert value(metrics, "hitrate_tenant_cost_saved_usd_total", tenant="(other)") >= 0
    assert ("hitrate_tenant_latency_saved_seconds_total", (("tenant", "a"),)) \
        in metrics["samples"]

    roomy = tenant_gateway(metrics={"tenant_label": True})
    traffic(roomy)
    metrics = scrape(roomy)
    assert value(metrics, "hitrate_tenant_requests_total", tenant="b", outcome="hit") == 2


def test_namespace_labels_can_be_turned_off(tenant_gateway, upstream):
    gateway = tenant_gateway(metrics={"namespace_label": False})
    traffic(gateway)
    response = httpx.get(f"{gateway.url}/metrics", timeout=10)
    assert SECRET_NAMESPACE not in response.text
    metrics = scrape(gateway)
    assert value(metrics, "hitrate_model_hits_total", model="gpt-test") == 3
    assert value(metrics, "hitrate_tokens_saved_total", model="gpt-test", type="prompt") > 0
    assert all("namespace" not in dict(labels) for name, labels in metrics["samples"]
               if name.startswith(("hitrate_model_hits", "hitrate_cost_saved")))


def test_metrics_behind_the_master_key(tenant_gateway, upstream):
    gateway = tenant_gateway(metrics={"require_key": True, "tenant_label": True})
    traffic(gateway)
    assert httpx.get(f"{gateway.url}/metrics").status_code == 401
    tenant = httpx.get(f"{gateway.url}/metrics", headers={"authorization": f"Bearer {KEY_A}"})
    assert tenant.status_code == 403
    assert value(scrape(gateway, MASTER), "hitrate_tenant_requests_total", tenant="a",
                 outcome="hit") == 1
