"""The opt-in `tenant` label (`metrics.tenant_label: true`): `hitrate_tenant_*` families.

Separate families rather than a label added to the existing ones, so turning it on
changes no existing series (dashboards and alerts keep working). Cardinality is
bounded twice: tenants are only ever named by keys (never by requests), and only the
first `limit` tenants seen get their own series; the rest are summed under `(other)`.
A tenant keeps its series for the life of the process, so counters never jump.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from hitrate.costs.savings import SavingsRow
from hitrate.metrics import OUTCOMES
from hitrate.tenants import OTHER


def _fold(names: list[str], limit: int) -> dict[str, str]:
    """tenant -> its label value."""
    return {name: name if i < limit and name != OTHER else OTHER for i, name in enumerate(names)}


def tenant_families(state: Any, limit: int, Counter_: Any) -> Iterator[Any]:
    by_requests = state.proxy.stats.tenants.by_tenant
    by_savings = state.cache.stats.tenants.by_tenant if state.cache is not None else {}
    names = list(by_requests) + [n for n in by_savings if n not in by_requests]
    label = _fold(names, limit)

    outcomes: dict[str, Counter[str]] = {}
    for name, row in by_requests.items():
        outcomes.setdefault(label[name], Counter()).update(row)
    saved: dict[str, SavingsRow] = {}
    for name, savings in by_savings.items():
        saved.setdefault(label[name], SavingsRow()).add(savings.totals())

    requests = Counter_("hitrate_tenant_requests", "API requests by tenant and cache outcome",
                        labels=["tenant", "outcome"])
    for tenant, row in sorted(outcomes.items()):
        for outcome in OUTCOMES:
            requests.add_metric([tenant, outcome], row[outcome])
    tokens = Counter_("hitrate_tenant_tokens_saved", "Tokens saved by cache hits, by tenant",
                      labels=["tenant", "type"])
    cost = Counter_("hitrate_tenant_cost_saved_usd", "Upstream cost avoided by cache hits, "
                    "by tenant (US dollars)", labels=["tenant"])
    latency = Counter_("hitrate_tenant_latency_saved_seconds", "Upstream latency avoided by "
                       "cache hits, by tenant", labels=["tenant"])
    for tenant, row in sorted(saved.items()):
        tokens.add_metric([tenant, "prompt"], row.prompt_tokens)
        tokens.add_metric([tenant, "completion"], row.completion_tokens)
        cost.add_metric([tenant], row.cost_usd)
        latency.add_metric([tenant], row.latency_ms / 1000)
    yield from (requests, tokens, cost, latency)
