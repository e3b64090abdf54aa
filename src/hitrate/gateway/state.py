"""What a running gateway holds, and how it is built from a config.

One `GatewayState` per app, created by `create_app` and started/stopped by its
lifespan; routes, the admin API and the metrics collector all read it from
`request.app.state.gateway` (`state_of`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.requests import Request

from hitrate import tracing
from hitrate.config import Config
from hitrate.costs.prices import PriceMap, parse_entry
from hitrate.costs.refresh import PriceRefresher
from hitrate.engine import ResponseCache
from hitrate.gateway.auth import KeyRing
from hitrate.gateway.proxy import CachingProxy
from hitrate.gateway.upstream import HttpUpstream, Router, new_http_client
from hitrate.stores import build_store


def build_router(config: Config, pools: dict[str, httpx.AsyncClient]) -> Router:
    """Deployments by public model name. Each upstream origin gets its own connection
    pool (kept in `pools`): a provider that hangs fills only its own."""
    deployments: dict[str, list[HttpUpstream]] = {}
    gates: dict[str, asyncio.Semaphore] = {}
    for model in config.models:
        origin = str(httpx.URL(model.api_base).copy_with(path="/", query=None, fragment=None))
        pool = pools.get(origin)
        if pool is None:
            pool = pools[origin] = new_http_client(model.max_connections)
            gates[origin] = asyncio.Semaphore(model.max_connections)
        deployments.setdefault(model.name, []).append(HttpUpstream(
            pool, model.api_base, dict(model.headers), model.model or model.name,
            model.timeout, model.api_version if model.provider == "azure" else None,
            api_key=model.api_key, gate=gates[origin]))
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
                         shared_namespaces=config.shared_namespaces, semantic=semantic,
                         kinds=c.supported_kinds)


@dataclass
class GatewayState:
    """Built in two steps: `create_app` makes it (config, keys), `start()` opens what
    needs a running event loop (HTTP pool, cache backends, background tasks)."""

    config: Config
    keys: KeyRing
    shared_cache: ResponseCache | None = None  # an engine shared with in-process code
    cache: ResponseCache | None = None
    proxy: CachingProxy = field(default_factory=lambda: CachingProxy(None))
    router: Router = field(default_factory=lambda: Router({}))
    pools: dict[str, httpx.AsyncClient] = field(default_factory=dict)  # one per upstream origin
    prices: PriceMap = field(default_factory=PriceMap)
    started_at: float = field(default_factory=time.time)
    refresher: PriceRefresher | None = None
    history: Any = None  # metrics.History
    registry: Any = None  # prometheus_client.CollectorRegistry, built on first scrape
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def for_config(cls, config: Config, cache: ResponseCache | None = None) -> GatewayState:
        keys = KeyRing(config.master_key, [k.model_dump() for k in config.keys],
                       config.keys_file)
        return cls(config, keys, shared_cache=cache)

    async def start(self) -> None:
        from hitrate.gateway.admin import counters
        from hitrate.metrics import History

        config = self.config
        self.started_at = time.time()
        traced = tracing.configure(config.tracing)
        self.prices = build_prices(config)
        self.router = build_router(config, self.pools)
        if traced:
            for pool in self.pools.values():
                tracing.instrument(pool)  # upstream calls carry traceparent
        engine = self.shared_cache
        if engine is None:
            engine = build_cache(config, self.prices, self.router)
        if engine is not None:
            engine.stats.savings.aliases = {m.name: m.model for m in config.models if m.model}
        self.cache = engine
        self.proxy = CachingProxy(engine)
        self.history = History()
        refresh = config.costs.refresh
        if refresh is not None:
            self.refresher = PriceRefresher(self.prices, refresh.source, refresh.cache_file,
                                            refresh.max_age, refresh.timeout)
            await self.refresher.start()
        self.history.add(counters(self))  # the charts' zero point
        loop = asyncio.get_running_loop()
        self.tasks.append(loop.create_task(self._sample_history()))
        if engine is not None and engine.semantic is not None:
            # Before accepting requests (uvicorn listens once startup is done): a lookup
            # that arrived while the model loaded waited behind it and missed its deadline.
            await engine.semantic.warm()

    async def stop(self) -> None:
        tracing.shutdown()
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.refresher is not None:
            await self.refresher.stop()
        for pool in self.pools.values():
            await pool.aclose()
        if self.cache is not None and self.shared_cache is None:
            await self.cache.close()

    async def _sample_history(self) -> None:
        from hitrate.gateway.admin import counters

        while True:
            await asyncio.sleep(self.config.metrics.history_interval)
            self.history.add(counters(self))


def state_of(request: Request) -> GatewayState:
    return request.scope["app"].state.gateway
