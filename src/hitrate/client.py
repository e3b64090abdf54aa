"""Make an OpenAI or Anthropic SDK client cache-aware, in process.

    cache = hitrate.Cache(ttl=3600)
    client = hitrate.cached_client(openai.OpenAI(), cache)    # or AsyncOpenAI,
    claude = hitrate.cached_client(anthropic.Anthropic(), cache)   # AsyncAnthropic

The wrapper swaps the client's HTTP transport for one that sends every call of a
cached endpoint kind (`hitrate.kinds`: chat, completions, embeddings, responses,
messages) through the same `CachingProxy` the gateway uses: same keys, same rules,
same per-request controls (`extra_body={"cache": {...}}`). Everything else (files,
models, ...) goes to the provider untouched.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

import httpx

from hitrate import kinds
from hitrate.engine import ResponseCache
from hitrate.gateway.proxy import CachingProxy, ProxyResponse
from hitrate.gateway.upstream import HttpUpstream, new_http_client
from hitrate.kinds import EndpointKind

C = TypeVar("C")
_DROPPED_HEADERS = {"host", "content-length", "content-type", "accept", "accept-encoding",
                    "connection", "transfer-encoding"}


def _kind(request: Any) -> EndpointKind | None:
    """The cached endpoint kind a request is for, or None (pass it through)."""
    return kinds.for_upstream_path(request.url.path) if request.method == "POST" else None


def _httpx_module(client: Any) -> Any:
    """The httpx flavour the client's SDK is built on (httpx, or httpx2 in newer ones)."""
    import importlib

    package = type(client).__module__.split(".")[0]  # "openai" / "anthropic"
    base = importlib.import_module(f"{package}._base_client")
    return getattr(base, "httpx2", None) or base.httpx


class _Core:
    """Shared by the sync and async transports: one proxy, one pooled upstream client."""

    def __init__(self, cache: ResponseCache):
        self.proxy = CachingProxy(cache)
        self._http: httpx.AsyncClient | None = None

    async def handle(self, request: Any, kind: EndpointKind) -> ProxyResponse:
        if self._http is None:
            self._http = new_http_client(max_connections=100)
        url = str(request.url)
        path_end = url.split("?", 1)[0]
        base = path_end[: -len(kind.upstream_path)]
        query = url.split("?", 1)[1] if "?" in url else ""
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROPPED_HEADERS}
        timeout = (request.extensions.get("timeout") or {}).get("read") or 600.0
        upstream = HttpUpstream(self._http, base, headers, timeout=timeout, query=query)
        lowered = {k.lower(): v for k, v in request.headers.items()}
        return await self.proxy.handle(kind, request.content, lowered, lambda _model: upstream)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


def cached_client(client: C, cache: ResponseCache | None = None) -> C:
    """A copy of `client` (an OpenAI or Anthropic SDK client, sync or async) whose calls
    of cached endpoint kinds go through `cache`."""
    cache = cache if cache is not None else ResponseCache()
    hx = _httpx_module(client)
    core = _Core(cache)
    if isinstance(getattr(client, "_client", None), hx.AsyncClient):
        transport = _async_transport(hx, core)
        return client.with_options(http_client=hx.AsyncClient(transport=transport))  # type: ignore[attr-defined]
    transport = _sync_transport(hx, core)
    return client.with_options(http_client=hx.Client(transport=transport))  # type: ignore[attr-defined]


def _async_transport(hx: Any, core: _Core) -> Any:
    class AsyncCachingTransport(hx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.inner = hx.AsyncHTTPTransport()

        async def handle_async_request(self, request: Any) -> Any:
            kind = _kind(request)
            if kind is None:
                return await self.inner.handle_async_request(request)
            await request.aread()
            response = await core.handle(request, kind)
            if response.stream is None:
                return hx.Response(response.status, headers=response.headers,
                                   content=response.body)
            return hx.Response(response.status, headers=response.headers,
                               stream=_AsyncBody(hx, response))

        async def aclose(self) -> None:
            await self.inner.aclose()
            await core.aclose()

    return AsyncCachingTransport()


def _AsyncBody(hx: Any, response: ProxyResponse) -> Any:
    class AsyncBody(hx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            assert response.stream is not None
            async for chunk in response.stream:
                yield chunk

        async def aclose(self) -> None:
            if response.on_close is not None:
                await response.on_close()

    return AsyncBody()


class _LoopThread:
    """A private event loop on a daemon thread, so the sync client can use the async core."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True,
                         name="hitrate-client-loop").start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()


def _sync_transport(hx: Any, core: _Core) -> Any:
    runner = _LoopThread()

    class CachingTransport(hx.BaseTransport):
        def __init__(self) -> None:
            self.inner = hx.HTTPTransport()

        def handle_request(self, request: Any) -> Any:
            kind = _kind(request)
            if kind is None:
                return self.inner.handle_request(request)
            request.read()
            response = runner.run(core.handle(request, kind))
            if response.stream is None:
                return hx.Response(response.status, headers=response.headers,
                                   content=response.body)
            return hx.Response(response.status, headers=response.headers,
                               stream=_sync_body(hx, runner, response))

        def close(self) -> None:
            self.inner.close()
            runner.run(core.aclose())

    return CachingTransport()


def _sync_body(hx: Any, runner: _LoopThread, response: ProxyResponse) -> Any:
    class SyncBody(hx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            stream = response.stream
            assert stream is not None
            while True:
                try:
                    yield runner.run(stream.__anext__())
                except StopAsyncIteration:
                    return

        def close(self) -> None:
            if response.on_close is not None:
                runner.run(response.on_close())

    return SyncBody()
