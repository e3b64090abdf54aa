"""Helpers for the ops tests: metrics scraping, admin calls, gateways with keys and prices.

The gateway and simulated upstream fixtures come from tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Gateway

MASTER = "sk-master-ops-0001"
KEY_A = "sk-tenant-a-0001"
KEY_B = "sk-tenant-b-0001"


def scrape(gateway: Gateway, key: str | None = None) -> dict[str, Any]:
    """/metrics parsed: {"families": {name: type}, "samples": {(name, labels): value}}."""
    headers = {"authorization": f"Bearer {key}"} if key else {}
    response = httpx.get(f"{gateway.url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    families: dict[str, str] = {}
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.text):
        families[family.name] = family.type
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return {"families": families, "samples": samples}


def value(metrics: dict[str, Any], name: str, **labels: str) -> float:
    """One sample's value (0 if absent, as Prometheus would treat a missing counter)."""
    return metrics["samples"].get((name, tuple(sorted(labels.items()))), 0.0)


def total(metrics: dict[str, Any], name: str, **labels: str) -> float:
    """Sum over every sample of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in metrics["samples"].items() if n == name and want <= set(ls))


def admin(gateway: Gateway, method: str, path: str, key: str | None = MASTER,
          **kwargs: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.request(method, f"{gateway.url}{path}", headers=headers, timeout=30, **kwargs)


@pytest.fixture
def tenant_gateway(make_gateway: Callable[..., Gateway], upstream) -> Callable[..., Gateway]:
    """A gateway with a master key and two tenants' keys (A, B); extra config via kwargs."""

    def make(**top: Any) -> Gateway:
        top.setdefault("master_key", MASTER)
        top.setdefault("keys", [{"key": KEY_A, "tenant": "a"}, {"key": KEY_B, "tenant": "b"}])
        return make_gateway(**top)

    return make
