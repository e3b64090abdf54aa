"""The wire protocols in front of the response cache.

Framework-free: takes an endpoint kind (`hitrate.kinds`), raw request bytes and
headers, returns a `ProxyResponse` (status, headers, body or byte stream). The ASGI
app (`gateway/routes.py`) and the in-process client wrapper (`hitrate/client.py`) are
thin adapters over this. It speaks HTTP and SSE only: what is cached, and when, is the
engine's business (`lookup` -> hit, or a `Pending` this module settles once).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import orjson

from hitrate import kinds, tracing
from hitrate.controls import ControlError, Controls, parse_controls
from hitrate.engine import Pending, Plan, ResponseCache
from hitrate.entry import Entry
from hitrate.errors import APIError, bad_request, error_body
from hitrate.gateway import schemas
from hitrate.gateway.upstream import NO_HEADERS, UpstreamReply, UpstreamStream
from hitrate.key_settings import ControlForbidden, KeySettings
from hitrate.kinds import EndpointKind
from hitrate.metrics import UPSTREAM_BUCKETS, Histogram
from hitrate.tenants import TenantRequests

SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache",
               "x-accel-buffering": "no"}
JSON_HEADERS = {"content-type": "application/json"}


class Upstream(Protocol):
    async def post(self, kind: EndpointKind, body: dict[str, Any],
                   extra_headers: Mapping[str, str] = ...) -> UpstreamReply: ...

    def stream(
        self, kind: EndpointKind, body: dict[str, Any], extra_headers: Mapping[str, str] = ...
    ) -> contextlib.AbstractAsyncContextManager[UpstreamStream]: ...

    async def forward(self, kind: EndpointKind, method: str, path: str, content: bytes,
                      extra_headers: Mapping[str, str], query: str = "") -> UpstreamReply: ...


Resolver = Callable[[str], Upstream | None]


@dataclass(slots=True)
class ProxyResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    # Adapters must await this when the response is done or abandoned, even if the
    # stream was never started (a generator's own `finally` would not run then).
    on_close: Callable[[], Awaitable[None]] | None = None

    @classmethod
    def error(cls, exc: APIError, kind: EndpointKind | None = None) -> ProxyResponse:
        """`exc` in the shape of the API that was called."""
        body = kind.error_body(exc) if kind is not None else exc.body_bytes()
        return cls(exc.status, dict(JSON_HEADERS), body)


def cache_headers(status: str, key: str | None = None, age: float = 0.0) -> dict[str, str]:
    headers = {"x-hitrate-cache": status}
    if key:
        headers["x-hitrate-cache-key"] = key
        headers["x-litellm-cache-key"] = key
        headers["x-hitrate-cache-age"] = str(int(age))
    return headers


async def _aiter(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _error_event(message: str) -> bytes:
    return b"data: " + orjson.dumps(error_body(message, "upstream_error", "stream_broken")) + b"\n\n"


@dataclass(slots=True)
class ProxyStats:
    """Per-request counters (read by `hitrate.metrics`); plain ints, cheap to bump."""

    requests: Counter[tuple[str, str]] = field(default_factory=Counter)  # (kind, outcome)
    upstream_seconds: dict[str, Histogram] = field(default_factory=lambda: {
        name: Histogram(UPSTREAM_BUCKETS) for name in kinds.table()})
    tenants: TenantRequests = field(default_factory=TenantRequests)  # outcomes per tenant


class CachingProxy:
    def __init__(self, cache: ResponseCache | None):
        self.cache = cache
        self.stats = ProxyStats()

    async def handle(self, kind: EndpointKind, raw_body: bytes, headers: Mapping[str, str],
                     resolve: Resolver, *, scope: str = "",
                     settings: KeySettings | None = None,
                     tenant: str | None = None) -> ProxyResponse:
        """Never raises for bad input or upstream trouble: those become error responses.

        `scope` isolates cache entries (a tenant); requests in different scopes never
        share an entry or an in-flight upstream call. `settings` are the caller's key's
        cache settings, applied to the request's controls; `tenant` labels its stats."""
        try:
            body, controls, upstream = self._parse(kind, raw_body, headers, resolve)
            if settings is not None:
                controls = self._allowed(controls, settings)
            forwarded = _forwarded(kind, headers)
            if kind.batched:
                response = await self._batched(kind, body, controls, upstream, scope, tenant)
            else:
                response = await self._generate(kind, body, controls, upstream, scope,
                                                forwarded, tenant)
        except APIError as exc:
            response = ProxyResponse.error(exc, kind)
        outcome = "error" if response.status >= 400 else response.headers.get("x-hitrate-cache",
                                                                               "bypass")
        self.stats.requests[kind.name, outcome] += 1
        if tenant is not None:
            self.stats.tenants.count(tenant, outcome)
        return response

    def _parse(self, kind: EndpointKind, raw_body: bytes, headers: Mapping[str, str],
               resolve: Resolver) -> tuple[dict[str, Any], Controls, Upstream]:
        try:
            body = orjson.loads(raw_body)
        except orjson.JSONDecodeError as exc:
            raise bad_request(f"request body is not valid JSON: {exc}", code="invalid_json") from None
        schemas.validate(kind.schema, body, raw_body)
        try:
            controls = parse_controls(body.pop("cache", None), headers.get("cache-control"))
        except ControlError as exc:
            raise bad_request(str(exc), param="cache") from None
        upstream = resolve(body["model"])
        if upstream is None:
            raise APIError(404, f"The model `{body['model']}` does not exist or is not "
                           "configured on this gateway", "invalid_request_error",
                           "model_not_found", "model")
        return body, controls, upstream

    async def passthrough(self, kind: EndpointKind, method: str, path: str, query: str,
                          raw_body: bytes, headers: Mapping[str, str], resolve: Resolver,
                          default: Upstream | None) -> ProxyResponse:
        """An uncached route of a kind's API (`GET /v1/responses/{id}`, Anthropic's
        `count_tokens`): sent to the body's model's upstream (else `default`), as is."""
        upstream = default
        if raw_body:
            try:
                body = orjson.loads(raw_body)
            except orjson.JSONDecodeError:
                return ProxyResponse.error(bad_request("request body is not valid JSON",
                                                       code="invalid_json"), kind)
            model = body.get("model") if isinstance(body, dict) else None
            if isinstance(model, str):
                upstream = resolve(model)
        if upstream is None:
            return ProxyResponse.error(APIError(404, "no configured model serves this route",
                                                "invalid_request_error", "model_not_found",
                                                "model"), kind)
        forwarded = _forwarded(kind, headers)
        upstream_path = path.removeprefix("/v1")
        try:
            reply = await upstream.forward(kind, method, upstream_path, raw_body, forwarded, query)
        except APIError as exc:
            return ProxyResponse.error(exc, kind)
        return ProxyResponse(reply.status, {**reply.headers, **cache_headers("bypass")},
                             reply.content)

    def _allowed(self, controls: Controls, settings: KeySettings) -> Controls:
        cache = self.cache
        if cache is None:
            return controls
        try:
            return cache.allowed(controls, settings)
        except ControlForbidden as exc:
            raise APIError(403, str(exc), "permission_error", "cache_control_forbidden",
                           f"cache.{exc.control}") from None

    # -- one answer per request (chat, completions, ...) ---------------------------

    async def _generate(self, kind: EndpointKind, body: dict[str, Any], controls: Controls,
                        upstream: Upstream, scope: str,
                        forwarded: Mapping[str, str], tenant: str | None = None) -> ProxyResponse:
        streaming = body.get("stream") is True and kind.streams()
        cache = self.cache
        pending: Pending | None = None
        if cache is None or not cache.enabled_for(controls, kind):
            headers = cache_headers("bypass")
            if tracing.active():
                tracing.describe_request(kind.name, body)
        else:
            plan = cache.plan(kind, body, controls, scope=scope, headers=forwarded,
                              tenant=tenant)
            if tracing.active():
                tracing.describe_request(kind.name, body, plan.namespace, plan.key)
            found = await cache.lookup(plan)
            if found.entry is not None:
                return self._serve_hit(plan, found.entry, body, streaming, found.similarity)
            pending = found.pending
            headers = cache_headers(plan.status_if_not_hit, plan.key)
        if streaming:
            return await self._stream(kind, body, upstream, headers, pending, forwarded)
        return await self._fetch(kind, body, upstream, headers, pending, forwarded)

    def _serve_hit(self, plan: Plan, entry: Entry, body: dict[str, Any],
                   streaming: bool, similarity: float | None = None) -> ProxyResponse:
        headers = cache_headers("hit", entry.key, entry.age())
        headers["x-hitrate-cache-kind"] = "exact" if similarity is None else "semantic"
        if similarity is not None:
            score = f"{min(1.0, max(0.0, similarity)):.4f}"
            headers["x-hitrate-semantic-similarity"] = score
            headers["x-litellm-semantic-similarity"] = score  # what LiteLLM clients read
        if streaming and plan.kind.replay is not None:
            chunks = plan.kind.replay(entry.response, body)
            return ProxyResponse(200, {**SSE_HEADERS, **headers}, stream=_aiter(chunks))
        return ProxyResponse(200, {**JSON_HEADERS, **headers}, entry.body_bytes())

    async def _fetch(self, kind: EndpointKind, body: dict[str, Any], upstream: Upstream,
                     headers: dict[str, str], pending: Pending | None,
                     forwarded: Mapping[str, str] = NO_HEADERS) -> ProxyResponse:
        try:
            with tracing.span("hitrate.upstream", client=True):
                reply = await upstream.post(kind, body, forwarded)
                if tracing.active():
                    tracing.set_attributes({"http.response.status_code": reply.status})
        except BaseException:
            if pending is not None:
                pending.abandon()
            raise
        self.stats.upstream_seconds[kind.name].observe(reply.latency_ms / 1000)
        if pending is not None:
            response = _json_object(reply.content) if reply.status == 200 else None
            if response is None:
                pending.abandon()
            else:
                await pending.store(response, latency_ms=reply.latency_ms, model=body["model"],
                                    response_bytes=reply.content)
        return ProxyResponse(reply.status, {**reply.headers, **headers}, reply.content)

    async def _stream(self, kind: EndpointKind, body: dict[str, Any], upstream: Upstream,
                      headers: dict[str, str], pending: Pending | None,
                      forwarded: Mapping[str, str]) -> ProxyResponse:
        manager = upstream.stream(kind, body, forwarded)
        failure: BaseException | None = None
        with tracing.span("hitrate.upstream", client=True, end=False) as upstream_span:
            try:
                up = await manager.__aenter__()
            except BaseException as exc:
                failure = exc
        if failure is not None:
            tracing.finish(upstream_span, type(failure).__name__)
            if pending is not None:
                pending.abandon()
            raise failure
        if up.status != 200:
            tracing.finish(upstream_span, f"HTTP {up.status}")
            await manager.__aexit__(None, None, None)
            if pending is not None:
                pending.abandon()
            return ProxyResponse(up.status, {**up.headers, **headers}, up.error_body)

        closed = False

        async def close() -> None:
            nonlocal closed
            if not closed:
                closed = True
                self.stats.upstream_seconds[kind.name].observe(time.perf_counter() - up.started)
                tracing.finish(upstream_span)
            if pending is not None:
                pending.abandon()  # no-op once stored; releases waiters otherwise
            with contextlib.suppress(Exception):
                await manager.__aexit__(None, None, None)

        async def relay() -> AsyncIterator[bytes]:
            assert kind.capture is not None
            capture = kind.capture() if pending is not None else None
            try:
                async for chunk in up.chunks:
                    if capture is not None:
                        capture.feed(chunk)
                        if capture.done:
                            # Store before the last bytes go out: clients often stop
                            # reading at the end event and close, which would end us here.
                            await _settle(capture)
                            capture = None
                    yield chunk
            except httpx.HTTPError as exc:
                # Headers are gone already; tell the client in-band, store nothing.
                yield _error_event(f"upstream stream broke: {type(exc).__name__}")
            finally:
                await close()

        async def _settle(capture: kinds.StreamCapture) -> None:
            assert pending is not None
            if not capture.complete:
                pending.abandon()
                return
            latency = (time.perf_counter() - up.started) * 1000
            await pending.store(capture.response(), latency_ms=latency, model=body["model"])

        return ProxyResponse(200, {**SSE_HEADERS, **up.headers, **headers}, stream=relay(),
                             on_close=close)

    # -- one entry per input item (embeddings) -------------------------------------

    async def _batched(self, kind: EndpointKind, body: dict[str, Any], controls: Controls,
                       upstream: Upstream, scope: str,
                       tenant: str | None = None) -> ProxyResponse:
        cache = self.cache
        if cache is None or not cache.enabled_for(controls, kind):
            return await self._fetch(kind, body, upstream, cache_headers("bypass"), None)
        items, single = _split_input(body["input"])
        if tracing.active():
            tracing.describe_request(kind.name, body)
        batch = await cache.lookup_batch(kind, body, "input", items, controls, scope=scope,
                                         tenant=tenant)
        missing = batch.missing
        status, age = batch.status, batch.age()  # before `fill` completes the batch
        model = body["model"]
        extra_headers: dict[str, str] = {}
        if missing:
            sent = [items[i] for i in missing]
            request = {**body, "input": sent[0] if single else sent}
            with tracing.span("hitrate.upstream", client=True):
                reply = await upstream.post(kind, request)
            self.stats.upstream_seconds[kind.name].observe(reply.latency_ms / 1000)
            fresh = _parse_embeddings(reply, len(sent))
            if isinstance(fresh, ProxyResponse):
                fresh.headers.update(cache_headers(status))
                return fresh
            vectors, tokens, model = fresh
            weights = [len(item) if isinstance(item, str | list) else 1 for item in sent]
            await batch.fill([{"embedding": vector, "tokens": n_tokens} for vector, n_tokens
                              in zip(vectors, _split_tokens(tokens, weights), strict=True)],
                             latency_ms=reply.latency_ms, model=model)
            extra_headers = {k: v for k, v in reply.headers.items() if k != "content-type"}
        data = []
        total_tokens = 0
        for index, entry in enumerate(batch.entries):
            assert entry is not None
            data.append({"object": "embedding", "index": index,
                         "embedding": entry.response["embedding"]})
            total_tokens += int(entry.response.get("tokens", 0))
        response = {"object": "list", "data": data, "model": model,
                    "usage": {"prompt_tokens": total_tokens, "total_tokens": total_tokens}}
        plans = batch.plans
        key = ",".join(p.key for p in plans) if len(plans) <= 64 else None
        headers = {**JSON_HEADERS, **extra_headers, **cache_headers(status, key, age),
                   "x-hitrate-cache-items-hit": f"{len(items) - len(missing)}/{len(items)}"}
        return ProxyResponse(200, headers, orjson.dumps(response))


def _forwarded(kind: EndpointKind, headers: Mapping[str, str]) -> Mapping[str, str]:
    """The client headers this kind's API forwards upstream (and keys on)."""
    if not kind.forwarded_headers:
        return NO_HEADERS  # most kinds forward none
    return {name: headers[name] for name in kind.forwarded_headers if name in headers}


def _json_object(content: bytes) -> dict[str, Any] | None:
    with contextlib.suppress(orjson.JSONDecodeError):
        value = orjson.loads(content)
        if isinstance(value, dict):
            return value
    return None


def _split_input(value: Any) -> tuple[list[Any], bool]:
    """Embedding `input` -> (items, was_single). A flat token list is one item."""
    if isinstance(value, str):
        return [value], True
    if value and all(isinstance(x, int) for x in value):
        return [value], True
    return list(value), False


def _parse_embeddings(reply: UpstreamReply,
                      expected: int) -> ProxyResponse | tuple[list[Any], int, str]:
    if reply.status != 200:
        return ProxyResponse(reply.status, dict(reply.headers), reply.content)
    try:
        payload = orjson.loads(reply.content)
        data = sorted(payload["data"], key=lambda d: d.get("index", 0))
        vectors = [d["embedding"] for d in data]
        tokens = int((payload.get("usage") or {}).get("prompt_tokens", 0))
        model = str(payload.get("model", ""))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return ProxyResponse.error(APIError(502, "upstream returned a malformed embeddings "
                                            "response", "upstream_error", "bad_upstream_response"))
    if len(vectors) != expected:
        return ProxyResponse.error(APIError(
            502, f"upstream returned {len(vectors)} embeddings for {expected} inputs",
            "upstream_error", "bad_upstream_response"))
    return vectors, tokens, model


def _split_tokens(total: int, weights: list[int]) -> list[int]:
    """Share the batch's token count between items by length; the sum stays exact."""
    weight_sum = sum(weights) or 1
    shares = [total * w // weight_sum for w in weights]
    shares[-1] += total - sum(shares)
    return shares
