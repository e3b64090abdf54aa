"""The ASGI app: every endpoint kind's routes over `CachingProxy` (`routes.py`), plus
/health, /v1/models, /metrics, the admin API (`admin.py`) and the dashboard
(`dashboard.py`). Its state is one `GatewayState` (`state.py`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import Route

from hitrate.config import Config
from hitrate.engine import ResponseCache
from hitrate.gateway import admin, dashboard, limits, routes
from hitrate.gateway.state import GatewayState, build_cache, build_prices, build_router

__all__ = ["build_cache", "build_prices", "build_router", "create_app"]


def create_app(config: Config, cache: ResponseCache | None = None) -> Starlette:
    """The gateway for `config`. Pass `cache` to share an engine with in-process code."""
    state = GatewayState.for_config(config, cache)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    table = routes.api_routes()
    table += [Route("/v1/models", routes.models, methods=["GET"]),
              Route("/models", routes.models, methods=["GET"]),
              Route("/health", routes.health, methods=["GET"]),
              Route("/dashboard", dashboard.page, methods=["GET"])]
    if config.metrics.enabled:
        table.append(Route("/metrics", routes.metrics, methods=["GET"]))
    table += admin.admin_routes()
    app = Starlette(routes=table, lifespan=lifespan, middleware=[limits.middleware(config.server)],
                    exception_handlers={404: routes.not_found, 405: routes.method_not_allowed})
    app.state.gateway = state
    return app
