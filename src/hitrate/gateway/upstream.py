"""Calls to upstream APIs (OpenAI-compatible, Azure, Anthropic) over pooled httpx clients.

Each endpoint kind says its path and how the API key goes upstream; the gateway gives
every upstream origin a pool of its own, so one hung provider cannot take the
connections the others need.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from hitrate.errors import APIError

if TYPE_CHECKING:
    from hitrate.kinds import EndpointKind

# Response headers worth passing back to the client from the provider.
_FORWARDED_RESPONSE_HEADERS = ("x-request-id", "openai-processing-ms", "openai-version",
                               "retry-after", "x-ratelimit-remaining-requests",
                               "x-ratelimit-remaining-tokens", "request-id",
                               "anthropic-ratelimit-requests-remaining",
                               "anthropic-ratelimit-tokens-remaining")


NO_HEADERS: Mapping[str, str] = MappingProxyType({})


@dataclass(slots=True)
class UpstreamReply:
    status: int
    headers: dict[str, str]
    content: bytes
    latency_ms: float


@dataclass(slots=True)
class UpstreamStream:
    status: int
    headers: dict[str, str]
    chunks: AsyncIterator[bytes]
    started: float
    error_body: bytes = b""


class _NoCookies(DefaultCookiePolicy):
    """The pool is shared by every client of the gateway: a cookie an upstream sets for
    one request must never ride along on another client's request."""

    def set_ok(self, cookie: Any, request: Any) -> bool:
        return False

    def return_ok(self, cookie: Any, request: Any) -> bool:
        return False


def new_http_client(max_connections: int = 512) -> httpx.AsyncClient:
    # Timeouts are per request (from the deployment).
    return httpx.AsyncClient(
        cookies=CookieJar(policy=_NoCookies()),
        # Keep-alive expiry under uvicorn's (and most servers') 5 s idle timeout, so we
        # never send on a connection the upstream is closing (a spurious 502).
        limits=httpx.Limits(max_connections=max_connections,
                            max_keepalive_connections=max_connections, keepalive_expiry=4.0),
        timeout=httpx.Timeout(600.0, connect=10.0),
        follow_redirects=False,
    )


@dataclass
class HttpUpstream:
    """One OpenAI-compatible endpoint.

    `model` (if set) replaces the client's model name in the forwarded body, e.g. the
    config alias `fast` -> provider model `gpt-4o-mini`. `api_key` goes upstream the
    way each endpoint kind's API expects it (or as Azure's `api-key`).
    """

    client: httpx.AsyncClient
    base_url: str
    headers: dict[str, str] = field(default_factory=dict)
    model: str | None = None
    timeout: float = 600.0
    azure_api_version: str | None = None
    query: str = ""
    api_key: str | None = None
    # Calls in flight to this upstream's origin (shared by its deployments). Extra calls
    # wait here, at O(1) each, rather than inside httpcore's pool, whose bookkeeping
    # costs O(waiting x connections) per event and would stall the whole event loop
    # when a provider hangs with hundreds of requests queued on it.
    gate: asyncio.Semaphore | None = None

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        if self.gate is None:
            yield
            return
        try:
            async with asyncio.timeout(self.timeout):
                await self.gate.acquire()
        except TimeoutError:
            raise APIError(504, f"upstream {self.base_url} timed out after {self.timeout:g}s "
                           "(every connection to it busy)", "upstream_timeout",
                           "upstream_timeout") from None
        try:
            yield
        finally:
            self.gate.release()

    def auth_headers(self, kind: EndpointKind) -> dict[str, str]:
        headers = dict(kind.default_headers)
        if self.api_key:
            if self.azure_api_version:
                headers["api-key"] = self.api_key
            elif kind.auth == "x-api-key":
                headers["x-api-key"] = self.api_key
            else:
                headers["authorization"] = f"Bearer {self.api_key}"
        return headers

    def url(self, path: str, body: Mapping[str, Any]) -> str:
        base = self.base_url.rstrip("/")
        if self.azure_api_version:
            deployment = self.model or body.get("model", "")
            return (f"{base}/openai/deployments/{deployment}{path}"
                    f"?api-version={self.azure_api_version}")
        return f"{base}{path}?{self.query}" if self.query else base + path

    def _prepare(self, kind: EndpointKind, body: dict[str, Any],
                 extra: Mapping[str, str]) -> tuple[str, bytes, dict[str, str]]:
        if self.model:
            body = {**body, "model": self.model}
        headers = {"content-type": "application/json", "accept": "application/json",
                   **self.auth_headers(kind), **self.headers, **extra}
        return self.url(kind.upstream_path, body), orjson.dumps(body), headers

    def _timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0))

    def _fail(self, exc: httpx.HTTPError) -> APIError:
        if isinstance(exc, httpx.TimeoutException):
            return APIError(504, f"upstream {self.base_url} timed out after {self.timeout:g}s",
                            "upstream_timeout", "upstream_timeout")
        return APIError(502, f"upstream {self.base_url} unreachable: {type(exc).__name__}",
                        "upstream_error", "upstream_unreachable")

    async def post(self, kind: EndpointKind, body: dict[str, Any],
                   extra_headers: Mapping[str, str] = NO_HEADERS) -> UpstreamReply:
        url, content, headers = self._prepare(kind, body, extra_headers)
        return await self._send("POST", url, content, headers)

    async def forward(self, kind: EndpointKind, method: str, path: str, content: bytes,
                      extra_headers: Mapping[str, str], query: str = "") -> UpstreamReply:
        """An uncached call of the same API (`GET /responses/{id}`, `count_tokens`...):
        the body goes as it came, only the model name is mapped if the body has one."""
        if self.model and content:
            try:
                body = orjson.loads(content)
            except orjson.JSONDecodeError:
                body = None
            if isinstance(body, dict) and "model" in body:
                content = orjson.dumps({**body, "model": self.model})
        headers = {"accept": "application/json", **self.auth_headers(kind), **self.headers,
                   **extra_headers}
        if content:
            headers["content-type"] = "application/json"
        url = self.base_url.rstrip("/") + path + (f"?{query}" if query else "")
        return await self._send(method, url, content, headers)

    async def _send(self, method: str, url: str, content: bytes,
                    headers: dict[str, str]) -> UpstreamReply:
        started = time.perf_counter()
        async with self._slot():
            try:
                response = await self.client.request(method, url, content=content,
                                                     headers=headers, timeout=self._timeout())
            except httpx.HTTPError as exc:
                raise self._fail(exc) from None
        return UpstreamReply(response.status_code, _pick_headers(response.headers),
                             response.content, (time.perf_counter() - started) * 1000)

    @asynccontextmanager
    async def stream(self, kind: EndpointKind, body: dict[str, Any],
                     extra_headers: Mapping[str, str] = NO_HEADERS
                     ) -> AsyncIterator[UpstreamStream]:
        """Yields once headers arrive. Errors before that raise APIError; errors while
        iterating `chunks` surface as httpx exceptions to the consumer."""
        url, content, headers = self._prepare(kind, body, extra_headers)
        headers["accept"] = "text/event-stream"
        started = time.perf_counter()
        request = self.client.build_request("POST", url, content=content, headers=headers,
                                            timeout=self._timeout())
        async with self._slot():  # held until the stream is closed
            try:
                response = await self.client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise self._fail(exc) from None
            try:
                yield await self._opened(response, started)
            finally:
                await response.aclose()

    async def _opened(self, response: httpx.Response, started: float) -> UpstreamStream:
        error_body = b""
        if response.status_code != 200:
            try:
                error_body = await response.aread()
            except httpx.HTTPError as exc:
                raise self._fail(exc) from None
        return UpstreamStream(response.status_code, _pick_headers(response.headers),
                              response.aiter_raw(), started, error_body)


def _pick_headers(headers: httpx.Headers) -> dict[str, str]:
    out = {name: headers[name] for name in _FORWARDED_RESPONSE_HEADERS if name in headers}
    out["content-type"] = headers.get("content-type", "application/json")
    return out


class Router:
    """Public model name -> its deployments, round-robin."""

    def __init__(self, deployments: Mapping[str, list[HttpUpstream]]):
        self._deployments = dict(deployments)
        self._cycles = {name: itertools.cycle(items) for name, items in self._deployments.items()}

    def resolve(self, model: str) -> HttpUpstream | None:
        cycle = self._cycles.get(model)
        return next(cycle) if cycle is not None else None

    def models(self) -> list[str]:
        return list(self._deployments)

    def default(self) -> HttpUpstream | None:
        """The first deployment: where calls that name no model go (`GET /responses/{id}`)."""
        for name in self._deployments:
            return self.resolve(name)
        return None
