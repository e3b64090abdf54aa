"""/metrics: Prometheus text, parsed with prometheus-client's own parser."""

from __future__ import annotations

import httpx
import openai
import pytest

from hitrate.config import parse_config
from hitrate.engine import ResponseCache
from hitrate.gateway.app import create_app
from hitrate.serving import BackgroundServer
from hitrate.stores.memory import MemoryStore
from tests.conftest import Gateway, ask
from tests.ops.conftest import MASTER, scrape, total, value


def test_metric_names_types_and_counts(make_gateway, upstream):
    gateway = make_gateway(cache={"max_entries": 2})
    client = gateway.client()
    ask(client, "one")                                        # miss, store
    ask(client, "one")                                        # hit
    ask(client, "one", extra_body={"cache": {"no-cache": True}})   # bypass, store again
    ask(client, "two")                                        # miss, store
    ask(client, "three")                                      # miss, store, evicts one
    ask(client, "cut short [[length]]")                       # miss, rejected: finish_reason_length
    with pytest.raises(openai.InternalServerError):
        ask(client, "boom [[error:500]]")                     # miss, upstream error
    client.embeddings.create(model="gpt-test", input="vector please")   # miss

    metrics = scrape(gateway)
    families = metrics["families"]
    for name, kind in {
        "hitrate_requests": "counter", "hitrate_cache_hits": "counter",
        "hitrate_cache_misses": "counter", "hitrate_cache_bypasses": "counter",
        "hitrate_cache_stores": "counter", "hitrate_cache_store_rejections": "counter",
        "hitrate_cache_evictions": "counter", "hitrate_backend_errors": "counter",
        "hitrate_cache_lookup_duration_seconds": "histogram",
        "hitrate_upstream_request_duration_seconds": "histogram",
        "hitrate_tokens_saved": "counter", "hitrate_cost_saved_usd": "counter",
        "hitrate_latency_saved_seconds": "counter", "hitrate_cache_entries": "gauge",
        "hitrate_cache_size_bytes": "gauge", "hitrate_backend_up": "gauge",
    }.items():
        assert families.get(name) == kind, name

    assert value(metrics, "hitrate_requests_total", endpoint="chat", outcome="hit") == 1
    assert value(metrics, "hitrate_requests_total", endpoint="chat", outcome="miss") == 4
    assert value(metrics, "hitrate_requests_total", endpoint="chat", outcome="bypass") == 1
    assert value(metrics, "hitrate_requests_total", endpoint="chat", outcome="error") == 1
    assert value(metrics, "hitrate_requests_total", endpoint="embedding", outcome="miss") == 1
    assert value(metrics, "hitrate_cache_hits_total", kind="exact") == 1
    assert ("hitrate_cache_hits_total", (("kind", "semantic"),)) in metrics["samples"]
    assert value(metrics, "hitrate_cache_misses_total") == 6  # 5 chat + 1 embedding item
    assert value(metrics, "hitrate_cache_bypasses_total") == 1
    assert value(metrics, "hitrate_cache_stores_total") == 5
    assert value(metrics, "hitrate_cache_store_rejections_total", reason="finish_reason_length") == 1
    assert value(metrics, "hitrate_cache_evictions_total", backend="memory") == 2  # 3rd and 4th
    assert value(metrics, "hitrate_cache_entries", backend="memory") == 2
    store_stats = gateway.cache.store.stats()
    assert value(metrics, "hitrate_cache_size_bytes", backend="memory") == store_stats.bytes > 0
    # One backend read per lookup (the bypass did none); one upstream call per non-hit.
    assert value(metrics, "hitrate_cache_lookup_duration_seconds_count") == 7
    assert value(metrics, "hitrate_cache_lookup_duration_seconds_bucket", le="+Inf") == 7
    assert total(metrics, "hitrate_upstream_request_duration_seconds_count") \
        == upstream.calls() == 7
    assert value(metrics, "hitrate_upstream_request_duration_seconds_sum", endpoint="chat") > 0
    assert value(metrics, "hitrate_backend_up", backend="memory") == 1


class BrokenStore(MemoryStore):
    """A backend that is down, behind an (always open) circuit breaker."""

    name = "broken"

    async def get(self, key):
        raise ConnectionError("backend down")

    async def set(self, key, value, ttl=None):
        raise ConnectionError("backend down")

    async def ping(self) -> bool:
        raise ConnectionError("backend down")

    def circuit_state(self) -> str | None:
        return "open"


def test_backend_errors_and_circuit_state(upstream):
    config = parse_config({"models": [{"name": "gpt-test", "api_base": upstream.api_base}]})
    with BackgroundServer(create_app(config, cache=ResponseCache(BrokenStore()))) as server:
        gateway = Gateway(server, None)
        for _ in range(3):
            assert ask(gateway.client(), "anyone there?")[0]["x-hitrate-cache"] == "miss"
        metrics = scrape(gateway)
    assert value(metrics, "hitrate_backend_errors_total", backend="broken", operation="get") == 3
    assert value(metrics, "hitrate_backend_errors_total", backend="broken", operation="set") == 3
    assert value(metrics, "hitrate_backend_up", backend="broken") == 0
    assert value(metrics, "hitrate_backend_circuit_state", backend="broken", state="open") == 1
    assert value(metrics, "hitrate_backend_circuit_state", backend="broken", state="closed") == 0


def test_each_gateway_has_its_own_registry(make_gateway):
    first, second = make_gateway(), make_gateway()
    ask(first.client(), "only the first one")
    ask(first.client(), "only the first one")
    assert value(scrape(first), "hitrate_cache_hits_total", kind="exact") == 1
    assert value(scrape(second), "hitrate_cache_hits_total", kind="exact") == 0
    assert total(scrape(second), "hitrate_requests_total") == 0


def test_metrics_can_require_the_master_key(make_gateway):
    gateway = make_gateway(master_key=MASTER, metrics={"require_key": True})
    assert httpx.get(f"{gateway.url}/metrics").status_code == 401
    assert scrape(gateway, key=MASTER)["families"]["hitrate_requests"] == "counter"
    open_gateway = make_gateway(master_key=MASTER)
    assert httpx.get(f"{open_gateway.url}/metrics").status_code == 200  # default: open


def test_metrics_can_be_turned_off(make_gateway):
    gateway = make_gateway(metrics={"enabled": False})
    assert httpx.get(f"{gateway.url}/metrics").status_code == 404


def test_label_cardinality_is_bounded(make_gateway):
    from hitrate.costs import savings

    gateway = make_gateway()
    client = gateway.client()
    for i in range(savings.MAX_ROWS + 5):
        namespace = {"cache": {"namespace": f"ns{i}"}}
        ask(client, "same", extra_body=namespace)
        ask(client, "same", extra_body=namespace)
    metrics = scrape(gateway)
    rows = [ls for (name, ls) in metrics["samples"] if name == "hitrate_model_hits_total"]
    assert len(rows) == savings.MAX_ROWS + 1  # the cap, plus ("other", "other")
    assert value(metrics, "hitrate_model_hits_total", model="other", namespace="other") == 5
    assert total(metrics, "hitrate_model_hits_total") == savings.MAX_ROWS + 5
