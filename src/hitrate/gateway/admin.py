"""Admin API (master key only): stats, entries, namespaces, flush, backend health,
virtual keys, price map. Thin handlers over the engine, the key ring and the price map.

    GET    /cache/stats                  everything the dashboard and `hitrate stats` show
                                         (a tenant's key: its own numbers, tenant_stats.py)
    GET    /cache/entries/{key}          one entry (metadata + response)
    DELETE /cache/entries/{key}
    POST   /cache/delete   {"keys": []}  (LiteLLM's route)
    DELETE /cache/namespaces/{namespace}
    POST   /cache/flush                  only hitrate's own keys (`hitrate:`), never FLUSHALL
    POST   /cache/flushall               (LiteLLM's route; same safe flush)
    GET    /cache/health, /cache/ping    backend ping; 503 when it fails
    GET    /keys   POST /keys   PATCH /keys/{id} {"cache": ...}   DELETE /keys/{id}
    GET    /costs  GET /costs/models/{model}  POST /costs/refresh
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hitrate import keys as cache_keys
from hitrate.errors import APIError, bad_request
from hitrate.gateway import tenant_stats
from hitrate.gateway.access import admin_denied
from hitrate.gateway.state import state_of
from hitrate.key_settings import KeySettings
from hitrate.metrics import OUTCOMES

if TYPE_CHECKING:
    from hitrate.gateway.state import GatewayState

PING_TIMEOUT = 5.0
TOP_N = 10


def json_response(status: int, payload: object) -> Response:
    return Response(orjson.dumps(payload), status, media_type="application/json",
                    headers={"cache-control": "no-store"})


def error_response(exc: APIError) -> Response:
    return Response(exc.body_bytes(), exc.status, media_type="application/json")


# -- the stats document ---------------------------------------------------------------


def counters(state: GatewayState) -> dict[str, Any]:
    """Cumulative numbers, sampled for the dashboard's time series (`tenants`: the
    per-tenant ones, see `tenant_stats`)."""
    from hitrate.gateway.tenant_stats import history_sample

    by_outcome = dict.fromkeys(OUTCOMES, 0)
    for (_, outcome), n in state.proxy.stats.requests.items():
        by_outcome[outcome] = by_outcome.get(outcome, 0) + n
    sample: dict[str, Any] = {"t": time.time(), "requests": sum(by_outcome.values()),
                              **by_outcome, "cost_usd": 0.0, "latency_seconds": 0.0,
                              "tokens": 0, "tenants": history_sample(state)}
    if state.cache is not None:
        total = state.cache.stats.savings.totals()
        sample.update(cost_usd=total.cost_usd, latency_seconds=total.latency_ms / 1000,
                      tokens=total.prompt_tokens + total.completion_tokens)
    return sample


def _top(rows: dict[str, Any]) -> list[dict[str, Any]]:
    ranked = sorted(rows.items(), key=lambda kv: (-kv[1]["cost_usd"], -kv[1]["hits"], kv[0]))
    return [{"name": name, **row} for name, row in ranked[:TOP_N]]


def _grouped(rows: dict[tuple[str, str], Any], index: int) -> list[dict[str, Any]]:
    grouped: dict[str, dict[str, Any]] = {}
    for key, row in rows.items():
        slot = grouped.setdefault(key[index], {"hits": 0, "prompt_tokens": 0,
                                               "completion_tokens": 0, "cost_usd": 0.0,
                                               "latency_seconds": 0.0})
        slot["hits"] += row.hits
        slot["prompt_tokens"] += row.prompt_tokens
        slot["completion_tokens"] += row.completion_tokens
        slot["cost_usd"] += row.cost_usd
        slot["latency_seconds"] += row.latency_ms / 1000
    return _top(grouped)


def stats_payload(state: GatewayState) -> dict[str, Any]:
    now = counters(state)
    requests = {"total": int(now["requests"]),
                "by_outcome": {o: int(now[o]) for o in OUTCOMES},
                "by_endpoint": {}}
    for (endpoint, outcome), n in sorted(state.proxy.stats.requests.items()):
        requests["by_endpoint"].setdefault(endpoint, {})[outcome] = n
    payload: dict[str, Any] = {
        "time": now["t"], "started_at": state.started_at,
        "uptime_seconds": now["t"] - state.started_at,
        "requests": requests,
        "hit_rate": now["hit"] / now["requests"] if now["requests"] else 0.0,
        "history": state.history.series(now),
        "history_interval": state.config.metrics.history_interval,
        "cache": None, "backend": None, "savings": None, "models": [], "namespaces": [],
        "prices": _prices_status(state),
        "keys": {"virtual": len(state.keys.list()), "tenants": len(state.keys.tenants())},
    }
    cache = state.cache
    if cache is None:
        return payload
    stats = cache.stats
    store = cache.store
    store_stats = store.stats()
    payload["cache"] = {
        "namespace": cache.namespace, "mode": cache.mode,
        "hits": {"exact": stats.hits - stats.semantic_hits, "semantic": stats.semantic_hits},
        "misses": stats.misses, "bypasses": stats.bypasses, "coalesced": stats.coalesced,
        "stores": stats.stores, "rejected": dict(stats.rejected), "corrupt": stats.corrupt,
        "entries": store_stats.entries, "bytes": store_stats.bytes,
        "evictions": store_stats.evictions,
    }
    semantic = cache.semantic
    payload["cache"]["semantic"] = None if semantic is None else {
        # Why paraphrases do or do not hit: lookups after an exact miss, the ones skipped
        # (too long, embedding past its deadline), candidates refused by reason.
        "embedder": semantic.embedder.name,
        "verifier": "rules" if semantic.settings.learned is None else "learned",
        "lookups": semantic.stats.lookups, "hits": semantic.stats.hits,
        "skipped": semantic.stats.skipped(), "errors": semantic.stats.errors,
        "rejected_candidates": dict(semantic.stats.rejected)}
    payload["backend"] = {"name": store.name,
                          "up": not cache.backend_failing and store.failure() is None,
                          "circuit_state": store.circuit_state(),
                          "errors": stats.backend_errors,
                          "errors_by_operation": dict(stats.backend_errors_by_op)}
    total = stats.savings.totals()
    spent = stats.savings.spent_usd()
    payload["savings"] = {**total.as_dict(),
                          "tokens": total.prompt_tokens + total.completion_tokens,
                          # what the cache's own calls (the semantic judge) cost
                          "spent": {purpose: {"calls": row.calls, "cost_usd": row.cost_usd,
                                              "prompt_tokens": row.prompt_tokens,
                                              "completion_tokens": row.completion_tokens}
                                    for purpose, row in stats.savings.spent.items()},
                          "net_cost_usd": total.cost_usd - spent}
    payload["models"] = _grouped(stats.savings.rows, 0)
    payload["namespaces"] = _grouped(stats.savings.rows, 1)
    return payload


def _prices_status(state: GatewayState) -> dict[str, Any]:
    base = state.prices.base
    return {"source": base.source, "models": base.distinct_models, "updated": base.updated,
            "overrides": sorted(state.prices.overrides),
            "refresh": state.refresher.status() if state.refresher else None}


# -- routes ---------------------------------------------------------------------------


def admin_routes() -> list[Route]:
    """The admin API; every route needs the master key."""

    def admin(handler: Callable[[Request, GatewayState], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            denied = admin_denied(request)
            if denied is not None:
                return denied
            try:
                return await handler(request, state_of(request))
            except APIError as exc:
                return error_response(exc)

        return endpoint

    def need_cache(state: GatewayState):
        if state.cache is None:
            raise APIError(409, "caching is disabled on this gateway", "invalid_request_error",
                           "cache_disabled")
        return state.cache

    def own_key(key: str) -> str:
        if not key.startswith(cache_keys.ALL_KEYS_PREFIX):
            raise bad_request("not a hitrate cache key (they start with `hitrate:`)", "key")
        return key

    async def get_entry(request: Request, state: GatewayState) -> Response:
        key = own_key(request.path_params["key"])
        entry = await need_cache(state).inspect(key)
        if entry is None:
            raise APIError(404, "no entry under that key", "invalid_request_error", "not_found")
        namespace = cache_keys.namespace_of(key)
        return json_response(200, {
            "key": entry.key, "kind": entry.kind, "model": entry.model, "namespace": namespace,
            "created_at": entry.created_at, "expires_at": entry.expires_at,
            "age_seconds": entry.age(), "upstream_latency_ms": entry.upstream_latency_ms,
            "size_bytes": len(entry.body_bytes()), "response": entry.response})

    async def delete_entry(request: Request, state: GatewayState) -> Response:
        key = own_key(request.path_params["key"])
        return json_response(200, {"deleted": await need_cache(state).delete(key)})

    async def delete_many(request: Request, state: GatewayState) -> Response:
        body = _json_body(await request.body())
        items = body.get("keys")
        if not isinstance(items, list) or not all(isinstance(k, str) for k in items):
            raise bad_request("`keys` must be a list of cache keys", "keys")
        cache = need_cache(state)
        deleted = 0
        for key in items:
            deleted += bool(await cache.delete(own_key(key)))
        return json_response(200, {"deleted": deleted})

    async def delete_namespace(request: Request, state: GatewayState) -> Response:
        namespace = request.path_params["namespace"]
        if not cache_keys.valid_namespace(namespace):
            raise bad_request(f"invalid namespace: use {cache_keys.NAMESPACE_RULE}", "namespace")
        return json_response(200, {"deleted": await need_cache(state).clear(namespace),
                                   "namespace": namespace})

    async def flush(request: Request, state: GatewayState) -> Response:
        return json_response(200, {"deleted": await need_cache(state).clear(),
                                   "prefix": cache_keys.ALL_KEYS_PREFIX})

    async def health(request: Request, state: GatewayState) -> Response:
        cache = state.cache
        if cache is None:
            return json_response(200, {"status": "healthy", "backend": None,
                                       "cache": "disabled"})
        started = time.perf_counter()
        try:
            ok = await asyncio.wait_for(cache.store.ping(), PING_TIMEOUT)
            error = None if ok else cache.store.failure() or "ping returned false"
        except Exception as exc:
            ok, error = False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        payload = {"status": "healthy" if ok else "unhealthy", "backend": cache.store.name,
                   "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                   "circuit_state": cache.store.circuit_state(), "error": error}
        return json_response(200 if ok else 503, payload)

    async def list_keys(request: Request, state: GatewayState) -> Response:
        return json_response(200, {"keys": state.keys.list()})

    async def create_key(request: Request, state: GatewayState) -> Response:
        body = _json_body(await request.body())
        tenant = body.get("tenant")
        if not isinstance(tenant, str) or not cache_keys.valid_namespace(tenant):
            raise bad_request(f"`tenant` is required: {cache_keys.NAMESPACE_RULE}", "tenant")
        shared = body.get("shared", False)
        name = body.get("name")
        key = body.get("key")
        if not isinstance(shared, bool):
            raise bad_request("`shared` must be a boolean", "shared")
        if name is not None and not isinstance(name, str):
            raise bad_request("`name` must be a string", "name")
        if key is not None and (not isinstance(key, str) or len(key) < 8):
            raise bad_request("`key` must be a string of at least 8 characters", "key")
        settings = _key_settings(body.get("cache"), state.config.shared_namespaces)
        try:
            secret, record = state.keys.create(tenant, shared, name, key, settings)
        except ValueError as exc:
            raise APIError(409, str(exc), "invalid_request_error", "key_exists") from None
        return json_response(201, {"key": secret, **record.public()})

    async def update_key(request: Request, state: GatewayState) -> Response:
        body = _json_body(await request.body())
        if set(body) != {"cache"}:
            raise bad_request("send {\"cache\": {...}} (or null to clear the settings)", "cache")
        settings = _key_settings(body["cache"], state.config.shared_namespaces)
        try:
            record = state.keys.update_settings(request.path_params["key_id"], settings)
        except ValueError as exc:
            raise APIError(409, str(exc), "invalid_request_error", "config_key") from None
        if record is None:
            raise APIError(404, "no such key id", "invalid_request_error", "not_found")
        return json_response(200, record.public())

    async def delete_key(request: Request, state: GatewayState) -> Response:
        if not state.keys.delete(request.path_params["key_id"]):
            raise APIError(404, "no such key id", "invalid_request_error", "not_found")
        return json_response(200, {"deleted": True})

    async def costs(request: Request, state: GatewayState) -> Response:
        return json_response(200, _prices_status(state))

    async def cost_of_model(request: Request, state: GatewayState) -> Response:
        price = state.prices.get(request.path_params["model"])
        if price is None:
            raise APIError(404, "no price known for that model", "invalid_request_error",
                           "not_found")
        return json_response(200, price.as_dict())

    async def refresh_prices(request: Request, state: GatewayState) -> Response:
        if state.refresher is None:
            raise APIError(409, "price refresh is not configured (costs.refresh)",
                           "invalid_request_error", "refresh_disabled")
        result = await state.refresher.refresh_once()
        return json_response(200 if result.ok else 502, result.as_dict())

    return [
        Route("/cache/stats", tenant_stats.stats, methods=["GET"]),  # tenants: their own
        Route("/cache/entries/{key}", admin(get_entry), methods=["GET"]),
        Route("/cache/entries/{key}", admin(delete_entry), methods=["DELETE"]),
        Route("/cache/delete", admin(delete_many), methods=["POST"]),
        Route("/cache/namespaces/{namespace:path}", admin(delete_namespace), methods=["DELETE"]),
        Route("/cache/flush", admin(flush), methods=["POST"]),
        Route("/cache/flushall", admin(flush), methods=["POST"]),
        Route("/cache/health", admin(health), methods=["GET"]),
        Route("/cache/ping", admin(health), methods=["GET"]),
        Route("/keys", admin(list_keys), methods=["GET"]),
        Route("/keys", admin(create_key), methods=["POST"]),
        Route("/keys/{key_id}", admin(update_key), methods=["PATCH"]),
        Route("/keys/{key_id}", admin(delete_key), methods=["DELETE"]),
        Route("/costs", admin(costs), methods=["GET"]),
        Route("/costs/models/{model:path}", admin(cost_of_model), methods=["GET"]),
        Route("/costs/refresh", admin(refresh_prices), methods=["POST"]),
    ]


def _key_settings(value: Any, shared_namespaces: list[str]) -> KeySettings | None:
    """`POST /keys`'s `cache` object, checked like the config's `keys[].cache`."""
    if value is None:
        return None
    from pydantic import ValidationError

    from hitrate.config import KeyCacheConfig

    try:
        parsed = KeyCacheConfig.model_validate(value)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in error["loc"])
        message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
        raise bad_request(f"cache{'.' + where if where else ''}: {message}",
                          "cache" + (f".{where}" if where else "")) from None
    for field in ("shared_read", "shared_write"):
        unknown = set(getattr(parsed, field) or ()) - set(shared_namespaces)
        if unknown:
            raise bad_request(f"cache.{field}: {sorted(unknown)[0]!r} is not a shared namespace",
                              f"cache.{field}")
    return KeySettings.from_mapping(parsed.model_dump())


def _json_body(raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request("request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    return body
