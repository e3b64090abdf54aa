"""HTTP handlers: one per endpoint kind's routes, plus /v1/models, /health, /metrics.

They adapt HTTP to `CachingProxy` and nothing more: no caching logic lives here.
"""

from __future__ import annotations

import functools
import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hitrate import kinds, tracing
from hitrate.errors import APIError
from hitrate.gateway.access import admin_denied, caller, error_response, json_response, unauthorized
from hitrate.gateway.asgi import ProxyASGIResponse
from hitrate.gateway.proxy import ProxyResponse
from hitrate.gateway.state import state_of
from hitrate.kinds import EndpointKind

log = logging.getLogger("hitrate.gateway")


async def api_endpoint(request: Request, kind: EndpointKind) -> Response | ProxyASGIResponse:
    state = state_of(request)
    principal = caller(request, state)
    if principal is None:
        return ProxyASGIResponse(ProxyResponse.error(unauthorized(), kind))
    body = await request.body()
    traced = None
    if tracing.active():  # `request.url` builds a URL object: only pay for it when tracing
        traced = tracing.start_request("POST", request.scope["path"], request.headers,
                                       principal.tenant)
    try:
        response = await state.proxy.handle(kind, body, request.headers, state.router.resolve,
                                            scope=principal.scope,
                                            settings=principal.settings,
                                            tenant=principal.tenant)
    except Exception:
        log.exception("unexpected error handling %s", request.scope["path"])
        response = ProxyResponse.error(APIError(500, "internal gateway error", "server_error",
                                                "internal_error"), kind)
    except BaseException as exc:  # cancelled: the client went away
        if traced is not None:
            traced.abort(type(exc).__name__)
        raise
    if traced is not None:
        traced.close_with(response)
    return ProxyASGIResponse(response)


async def passthrough_endpoint(request: Request, kind: EndpointKind) -> ProxyASGIResponse:
    """An uncached route of a kind's API. Calls that carry no model in their body go to
    the deployment of `?model=` (or the `x-hitrate-model` header), else the first one."""
    if caller(request) is None:
        return ProxyASGIResponse(ProxyResponse.error(unauthorized(), kind))
    state = state_of(request)
    named = request.query_params.get("model") or request.headers.get("x-hitrate-model")
    default = state.router.resolve(named) if named else state.router.default()
    body = await request.body()
    response = await state.proxy.passthrough(kind, request.method, request.url.path,
                                             request.url.query, body, request.headers,
                                             state.router.resolve, default)
    return ProxyASGIResponse(response)


async def models(request: Request) -> Response:
    if caller(request) is None:
        return error_response(unauthorized())
    state = state_of(request)
    created = int(state.started_at)
    return json_response(200, {"object": "list", "data": [
        {"id": name, "object": "model", "created": created, "owned_by": "hitrate"}
        for name in state.router.models()]})


async def health(request: Request) -> Response:
    state = state_of(request)
    return json_response(200, {"status": "ok", "models": len(state.router.models()),
                               "cache": state.cache.store.name if state.cache else None})


async def metrics(request: Request) -> Response:
    state = state_of(request)
    if state.config.metrics.require_key:
        denied = admin_denied(request)
        if denied is not None:
            return denied
    from hitrate.metrics import build_registry, render

    if state.registry is None:
        app = request.app
        state.registry = build_registry(lambda: app.state.gateway)
    body, content_type = render(state.registry)
    return Response(body, 200, headers={"content-type": content_type})


async def not_found(request: Request, exc: Exception) -> Response:
    return error_response(APIError(404, f"no route {request.method} {request.url.path}",
                                   "invalid_request_error", "not_found"))


async def method_not_allowed(request: Request, exc: Exception) -> Response:
    return error_response(APIError(405, f"method {request.method} not allowed on "
                                   f"{request.url.path}", "invalid_request_error",
                                   "method_not_allowed"))


def api_routes() -> list[Route]:
    """POST routes of every endpoint kind in the table, and their uncached neighbours."""
    routes = []
    for kind in kinds.table().values():
        endpoint = functools.partial(api_endpoint, kind=kind)
        routes += [Route(path, endpoint, methods=["POST"]) for path in kind.routes]
        forward = functools.partial(passthrough_endpoint, kind=kind)
        routes += [Route(path, forward, methods=list(methods)) for path, methods in kind.passthrough]
    return routes
