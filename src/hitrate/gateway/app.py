"""The ASGI app: OpenAI routes over `CachingProxy`, plus /health and /v1/models.

Route handlers only adapt HTTP to the proxy; no caching logic lives here.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from hitrate.config import Config
from hitrate.engine import ResponseCache
from hitrate.errors import APIError
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


def build_cache(config: Config) -> ResponseCache | None:
    if not config.cache.enabled:
        return None
    c = config.cache
    return ResponseCache(build_store(c), ttl=c.ttl, namespace=c.namespace, mode=c.mode,
                         coalesce=c.coalesce)


def create_app(config: Config, cache: ResponseCache | None = None) -> Starlette:
    """The gateway for `config`. Pass `cache` to share an engine with in-process code."""
    state_box: dict[str, GatewayState] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        http = new_http_client()
        engine = cache if cache is not None else build_cache(config)
        state = GatewayState(config, engine, CachingProxy(engine), build_router(config, http),
                             http, time.time())
        state_box["state"] = state
        app.state.gateway = state
        try:
            yield
        finally:
            await http.aclose()
            if engine is not None and cache is None:
                await engine.close()

    master_key = config.master_key.encode() if config.master_key else None

    def authorized(request: Request) -> bool:
        if master_key is None:
            return True
        header = request.headers.get("authorization", "")
        token = header[7:] if header[:7].lower() == "bearer " else request.headers.get("api-key", "")
        return hmac.compare_digest(token.encode(), master_key)

    def unauthorized() -> Response:
        return _error(APIError(401, "Invalid or missing API key. Send `Authorization: Bearer "
                               "<key>`.", "authentication_error", "invalid_api_key"))

    def openai_route(kind: str):
        async def endpoint(request: Request) -> Response | ProxyASGIResponse:
            if not authorized(request):
                return unauthorized()
            state = state_box["state"]
            body = await request.body()
            try:
                response = await state.proxy.handle(kind, body, request.headers,
                                                    state.router.resolve)
            except Exception:
                log.exception("unexpected error handling %s", request.url.path)
                return _error(APIError(500, "internal gateway error", "server_error",
                                       "internal_error"))
            return ProxyASGIResponse(response)

        return endpoint

    async def models(request: Request) -> Response:
        if not authorized(request):
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
               Route("/health", health, methods=["GET"])]
    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={404: not_found, 405: method_not_allowed})
