"""The ASGI app: OpenAI routes over `CachingProxy`, plus /health, /v1/models, /metrics,
the admin API (`admin.py`) and the dashboard (`dashboard.py`).

Route handlers only adapt HTTP to the proxy; no caching logic lives here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from hitrate.config import Config
from hitrate.costs.prices import PriceMap, parse_entry
from hitrate.costs.refresh import PriceRefresher
from hitrate.engine import ResponseCache
from hitrate.errors import APIError
from hitrate.gateway import admin, dashboard
from hitrate.gateway.auth import KeyRing, Principal, token_from
from hitrate.gateway.proxy import CachingProxy, ProxyResponse
from hitrate.gateway.upstream import HttpUpstream, Router, new_http_client
from hitrate.stores import build_store

log = logging.getLogger("hitrate.gateway")


@dataclass
class GatewayState:
    config: Config
    cache: ResponseCache | None
    proxy: CachingProxy
    router: Router
    http: httpx.AsyncClient
    started_at: float
    keys: KeyRing
    prices: PriceMap
    refresher: PriceRefresher | None = None
    history: Any = None  # metrics.History
    registry: Any = None  # prometheus_client.CollectorRegistry, built on first scrape
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class ProxyASGIResponse:
    """Sends a ProxyResponse; always runs its on_close, even if the client went away."""

    def __init__(self, response: ProxyResponse):
        self.response = response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = self.response
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()]
        try:
            if response.stream is None:
                headers.append((b"content-length", str(len(response.body)).encode()))
                await send({"type": "http.response.start", "status": response.status,
                            "headers": headers})
                await send({"type": "http.response.body", "body": response.body})
                return
            await send({"type": "http.response.start", "status": response.status,
                        "headers": headers})
            async for chunk in response.stream:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except OSError:
            pass  # client disconnected mid-response
        finally:
            if response.stream is not None:
                await response.stream.aclose()  # type: ignore[attr-defined]
            if response.on_close is not None:
                await response.on_close()


def _json(status: int, payload: object, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status, headers, media_type="application/json")


def _error(exc: APIError) -> Response:
    return Response(exc.body_bytes(), exc.status, media_type="application/json")


def build_router(config: Config, http: httpx.AsyncClient) -> Router:
    deployments: dict[str, list[HttpUpstream]] = {}
    for model in config.models:
        headers = dict(model.headers)
        if model.api_key:
            if model.provider == "azure":
                headers["api-key"] = model.api_key
            else:
                headers["authorization"] = f"Bearer {model.api_key}"
        deployments.setdefault(model.name, []).append(HttpUpstream(
            http, model.api_base, headers, model.model or model.name, model.timeout,
            model.api_version if model.provider == "azure" else None))
    return Router(deployments)


def build_prices(config: Config) -> PriceMap:
    overrides = {}
    for name, item in config.costs.models.items():
        price = parse_entry(name, item.model_dump(exclude_none=True))
        if price is not None:
            overrides[name] = price
    return PriceMap(overrides)


def build_cache(config: Config, prices: PriceMap | None = None,
                router: Router | None = None) -> ResponseCache | None:
    if not config.cache.enabled:
        return None
    c = config.cache
    semantic = None
    if c.semantic is not None and c.semantic.enabled:
        from hitrate.semantic.lookup import build_semantic

        settings = c.semantic
        if c.type == "disk" and settings.index == "embedded" and settings.index_dir is None:
            # Vectors persist beside the answers, so paraphrases still hit after a restart.
            settings = settings.model_copy(update={"index_dir": c.disk_cache_dir})
        semantic = build_semantic(settings, router.resolve if router else None)
    return ResponseCache(build_store(c), ttl=c.ttl, namespace=c.namespace, mode=c.mode,
                         coalesce=c.coalesce, prices=prices,
                         shared_namespaces=config.shared_namespaces, semantic=semantic)


async def _sample_history(state: GatewayState) -> None:
    while True:
        await asyncio.sleep(state.config.metrics.history_interval)
        state.history.add(admin.counters(state))


def create_app(config: Config, cache: ResponseCache | None = None) -> Starlette:
    """The gateway for `config`. Pass `cache` to share an engine with in-process code."""
    state_box: dict[str, GatewayState] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        from hitrate.metrics import History

        http = new_http_client()
        prices = build_prices(config)
        router = build_router(config, http)
        engine = cache if cache is not None else build_cache(config, prices, router)
        if engine is not None:
            engine.stats.savings.aliases = {m.name: m.model for m in config.models if m.model}
        state = GatewayState(config, engine, CachingProxy(engine), router,
                             http, time.time(), keyring, prices, history=History())
        refresh = config.costs.refresh
        if refresh is not None:
            state.refresher = PriceRefresher(prices, refresh.source, refresh.cache_file,
                                             refresh.max_age, refresh.timeout)
            await state.refresher.start()
        state.history.add(admin.counters(state))  # the charts' zero point
        state.tasks.append(asyncio.get_running_loop().create_task(_sample_history(state)))
        if engine is not None and engine.semantic is not None:
            state.tasks.append(asyncio.get_running_loop().create_task(engine.semantic.warm()))
        state_box["state"] = state
        app.state.gateway = state
        try:
            yield
        finally:
            for task in state.tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if state.refresher is not None:
                await state.refresher.stop()
            await http.aclose()
            if engine is not None and cache is None:
                await engine.close()

    keyring = KeyRing(config.master_key, [k.model_dump() for k in config.keys],
                      config.keys_file)

    def caller(request: Request) -> Principal | None:
        return keyring.authenticate(token_from(request.headers))

    def unauthorized() -> Response:
        return _error(APIError(401, "Invalid or missing API key. Send `Authorization: Bearer "
                               "<key>`.", "authentication_error", "invalid_api_key"))

    def admin_guard(request: Request) -> Response | None:
        principal = caller(request)
        if principal is None:
            return unauthorized()
        if not principal.admin:
            return _error(APIError(403, "This route needs the master key.",
                                   "permission_error", "admin_only"))
        return None

    def openai_route(kind: str):
        async def endpoint(request: Request) -> Response | ProxyASGIResponse:
            principal = caller(request)
            if principal is None:
                return unauthorized()
            state = state_box["state"]
            body = await request.body()
            try:
                response = await state.proxy.handle(kind, body, request.headers,
                                                    state.router.resolve, scope=principal.scope)
            except Exception:
                log.exception("unexpected error handling %s", request.url.path)
                return _error(APIError(500, "internal gateway error", "server_error",
                                       "internal_error"))
            return ProxyASGIResponse(response)

        return endpoint

    async def models(request: Request) -> Response:
        if caller(request) is None:
            return unauthorized()
        state = state_box["state"]
        created = int(state.started_at)
        return _json(200, {"object": "list", "data": [
            {"id": name, "object": "model", "created": created, "owned_by": "hitrate"}
            for name in state.router.models()]})

    async def health(request: Request) -> Response:
        state = state_box["state"]
        return _json(200, {"status": "ok", "models": len(state.router.models()),
                           "cache": state.cache.store.name if state.cache else None})

    async def metrics(request: Request) -> Response:
        if config.metrics.require_key:
            denied = admin_guard(request)
            if denied is not None:
                return denied
        from hitrate.metrics import build_registry, render

        state = state_box["state"]
        if state.registry is None:
            state.registry = build_registry(lambda: state_box.get("state"))
        body, content_type = render(state.registry)
        return Response(body, 200, headers={"content-type": content_type})

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(APIError(404, f"no route {request.method} {request.url.path}",
                               "invalid_request_error", "not_found"))

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        return _error(APIError(405, f"method {request.method} not allowed on "
                               f"{request.url.path}", "invalid_request_error",
                               "method_not_allowed"))

    routes = []
    for kind, paths in {"chat": ("/v1/chat/completions", "/chat/completions"),
                        "completion": ("/v1/completions", "/completions"),
                        "embedding": ("/v1/embeddings", "/embeddings")}.items():
        endpoint = openai_route(kind)
        routes += [Route(path, endpoint, methods=["POST"]) for path in paths]
    routes += [Route("/v1/models", models, methods=["GET"]),
               Route("/models", models, methods=["GET"]),
               Route("/health", health, methods=["GET"]),
               Route("/dashboard", dashboard.page, methods=["GET"])]
    if config.metrics.enabled:
        routes.append(Route("/metrics", metrics, methods=["GET"]))
    routes += admin.admin_routes(lambda: state_box["state"], admin_guard)
    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={404: not_found, 405: method_not_allowed})
