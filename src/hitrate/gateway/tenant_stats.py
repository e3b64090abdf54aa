"""`GET /cache/stats` per tenant.

    master key                   the whole gateway, plus a `tenants` table
    master key, ?tenant=NAME     one tenant's view
    a tenant's key               that tenant's view, and nobody else's (?tenant=OTHER: 403)

A tenant's view has the same shape as the whole gateway's (requests by outcome, hit
rate, savings, top models and namespaces, hit-rate history) so the dashboard renders
either, but no gateway-wide facts: `cache` and `backend` are null and there is no key
count. Outcomes come from the proxy (`ProxyStats.tenants`), savings from the engine
(`CacheStats.tenants`), history from the samples `admin.counters` takes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from hitrate.errors import APIError
from hitrate.gateway.access import caller, error_response, unauthorized
from hitrate.gateway.state import state_of
from hitrate.metrics import OUTCOMES

if TYPE_CHECKING:
    from hitrate.costs.savings import Savings
    from hitrate.gateway.state import GatewayState

HISTORY_TENANTS = 100  # tenants whose hit rate is sampled for the charts


def history_sample(state: GatewayState) -> dict[str, list[int]]:
    """{tenant: [requests, hits]} for the periodic sample (first `HISTORY_TENANTS`)."""
    out: dict[str, list[int]] = {}
    for name, row in state.proxy.stats.tenants.by_tenant.items():
        if len(out) >= HISTORY_TENANTS:
            break
        out[name] = [sum(row.values()), row["hit"]]
    return out


def _savings_of(state: GatewayState, tenant: str) -> Savings | None:
    return state.cache.stats.tenants.by_tenant.get(tenant) if state.cache else None


def summaries(state: GatewayState) -> list[dict[str, Any]]:
    """One row per tenant seen, busiest first: requests, hit rate, savings."""
    rows = []
    names = set(state.proxy.stats.tenants.by_tenant)
    if state.cache is not None:
        names |= set(state.cache.stats.tenants.by_tenant)
    for name in names:
        outcomes = state.proxy.stats.tenants.by_tenant.get(name)
        requests = sum(outcomes.values()) if outcomes else 0
        savings = _savings_of(state, name)
        total = savings.totals() if savings is not None else None
        rows.append({"tenant": name, "requests": requests,
                     "hits": outcomes["hit"] if outcomes else 0,
                     "hit_rate": outcomes["hit"] / requests if outcomes and requests else 0.0,
                     "cost_usd": total.cost_usd if total else 0.0,
                     "tokens": total.prompt_tokens + total.completion_tokens if total else 0,
                     "latency_seconds": total.latency_ms / 1000 if total else 0.0})
    rows.sort(key=lambda r: (-r["requests"], -r["cost_usd"], r["tenant"]))
    return rows


def tenant_payload(state: GatewayState, tenant: str) -> dict[str, Any]:
    from hitrate.gateway.admin import _grouped, _prices_status, counters

    now = counters(state)
    outcomes = state.proxy.stats.tenants.by_tenant.get(tenant)
    by_outcome = {o: (outcomes[o] if outcomes else 0) for o in OUTCOMES}
    total_requests = sum(by_outcome.values())
    history = []
    for sample in state.history.series(now):
        requests, hits = sample.get("tenants", {}).get(tenant, (0, 0))
        history.append({"t": sample["t"], "requests": requests, "hit": hits})
    payload: dict[str, Any] = {
        "tenant": tenant, "time": now["t"], "started_at": state.started_at,
        "uptime_seconds": now["t"] - state.started_at,
        "requests": {"total": total_requests, "by_outcome": by_outcome},
        "hit_rate": by_outcome["hit"] / total_requests if total_requests else 0.0,
        "history": history, "history_interval": state.config.metrics.history_interval,
        "cache": None, "backend": None, "savings": None, "models": [], "namespaces": [],
        "prices": _prices_status(state),
    }
    savings = _savings_of(state, tenant)
    if savings is not None:
        total = savings.totals()
        payload["savings"] = {**total.as_dict(),
                              "tokens": total.prompt_tokens + total.completion_tokens}
        payload["models"] = _grouped(savings.rows, 0)
        payload["namespaces"] = _grouped(savings.rows, 1)
    return payload


async def stats(request: Request) -> Response:
    from hitrate.gateway.admin import json_response, stats_payload

    principal = caller(request)
    if principal is None:
        return error_response(unauthorized())
    state = state_of(request)
    asked = request.query_params.get("tenant")
    if principal.admin:
        if asked:
            return json_response(200, tenant_payload(state, asked))
        payload = stats_payload(state)
        payload["history"] = [{k: v for k, v in sample.items() if k != "tenants"}
                              for sample in payload["history"]]
        payload["tenants"] = summaries(state)
        return json_response(200, payload)
    if asked and asked != principal.tenant:
        return error_response(APIError(403, "a tenant's key sees its own stats only",
                                       "permission_error", "other_tenant"))
    return json_response(200, tenant_payload(state, principal.tenant))
