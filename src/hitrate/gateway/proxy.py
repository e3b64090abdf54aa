"""The OpenAI wire protocol in front of the response cache.

Framework-free: takes raw request bytes and headers, returns a `ProxyResponse`
(status, headers, body or byte stream). The ASGI app (`gateway/app.py`) and the
in-process client wrapper (`hitrate/client.py`) are thin adapters over this.
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

from hitrate.controls import ControlError, Controls, parse_controls
from hitrate.engine import Flight, Plan, ResponseCache
from hitrate.entry import Entry
from hitrate.errors import APIError, bad_request, error_body
from hitrate.gateway import schemas
from hitrate.gateway.sse import StreamCapture, replay
from hitrate.gateway.upstream import UpstreamReply, UpstreamStream
from hitrate.keys import canonical_request
from hitrate.metrics import UPSTREAM_BUCKETS, Histogram

PATHS = {"chat": "/chat/completions", "completion": "/completions", "embedding": "/embeddings"}
SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache",
               "x-accel-buffering": "no"}
JSON_HEADERS = {"content-type": "application/json"}


class Upstream(Protocol):
    async def post(self, path: str, body: dict[str, Any]) -> UpstreamReply: ...

    def stream(
        self, path: str, body: dict[str, Any]
    ) -> contextlib.AbstractAsyncContextManager[UpstreamStream]: ...


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
    def error(cls, exc: APIError) -> ProxyResponse:
        return cls(exc.status, dict(JSON_HEADERS), exc.body_bytes())


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
        kind: Histogram(UPSTREAM_BUCKETS) for kind in PATHS})


class CachingProxy:
    def __init__(self, cache: ResponseCache | None):
        self.cache = cache
        self.stats = ProxyStats()

    async def handle(self, kind: str, raw_body: bytes, headers: Mapping[str, str],
                     resolve: Resolver, *, scope: str = "") -> ProxyResponse:
        """Never raises for bad input or upstream trouble: those become error responses.

        `scope` isolates cache entries (a tenant); requests in different scopes never
        share an entry or an in-flight upstream call."""
        try:
            body, controls, upstream = self._parse(kind, raw_body, headers, resolve)
            if kind == "embedding":
                response = await self._embeddings(body, controls, upstream, scope)
            else:
                response = await self._generate(kind, body, controls, upstream, scope)
        except APIError as exc:
            response = ProxyResponse.error(exc)
        outcome = "error" if response.status >= 400 else response.headers.get("x-hitrate-cache",
                                                                               "bypass")
        self.stats.requests[kind, outcome] += 1
        return response

    def _parse(self, kind: str, raw_body: bytes, headers: Mapping[str, str],
               resolve: Resolver) -> tuple[dict[str, Any], Controls, Upstream]:
        try:
            body = orjson.loads(raw_body)
        except orjson.JSONDecodeError as exc:
            raise bad_request(f"request body is not valid JSON: {exc}", code="invalid_json") from None
        schemas.validate(kind, body)
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

    # -- chat and completions ------------------------------------------------------

    async def _generate(self, kind: str, body: dict[str, Any], controls: Controls,
                        upstream: Upstream, scope: str) -> ProxyResponse:
        streaming = body.get("stream") is True
        cache = self.cache
        if cache is None or not cache.enabled_for(controls):
            if streaming:
                return await self._stream(kind, body, upstream, cache_headers("bypass"))
            return await self._fetch(kind, body, upstream, cache_headers("bypass"))
        plan = cache.plan(kind, body, controls, scope=scope)
        found = await cache.lookup(plan)
        if found.entry is not None:
            return self._serve_hit(plan, found.entry, body, streaming, found.similarity)
        headers = cache_headers(plan.status_if_not_hit, plan.key)
        if streaming:
            return await self._stream(kind, body, upstream, headers, plan, found.flight)
        return await self._fetch(kind, body, upstream, headers, plan, found.flight)

    def _serve_hit(self, plan: Plan, entry: Entry, body: dict[str, Any],
                   streaming: bool, similarity: float | None = None) -> ProxyResponse:
        headers = cache_headers("hit", entry.key, entry.age())
        headers["x-hitrate-cache-kind"] = "exact" if similarity is None else "semantic"
        if similarity is not None:
            headers["x-hitrate-semantic-similarity"] = f"{min(1.0, max(0.0, similarity)):.4f}"
        if streaming:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            chunks = replay(plan.kind, entry.response, include_usage)
            return ProxyResponse(200, {**SSE_HEADERS, **headers}, stream=_aiter(chunks))
        return ProxyResponse(200, {**JSON_HEADERS, **headers}, entry.body_bytes())

    async def _fetch(self, kind: str, body: dict[str, Any], upstream: Upstream,
                     headers: dict[str, str], plan: Plan | None = None,
                     flight: Flight | None = None) -> ProxyResponse:
        try:
            reply = await upstream.post(PATHS[kind], body)
        except BaseException:
            if self.cache is not None:
                self.cache.abandon(flight)
            raise
        self.stats.upstream_seconds[kind].observe(reply.latency_ms / 1000)
        if plan is not None and self.cache is not None:
            entry = None
            if reply.status == 200:
                with contextlib.suppress(orjson.JSONDecodeError):
                    response = orjson.loads(reply.content)
                    if isinstance(response, dict):
                        entry = Entry(plan.key, kind, response,
                                      upstream_latency_ms=reply.latency_ms,
                                      model=body["model"], response_bytes=reply.content)
            await self.cache.finish(plan, flight, entry)
        return ProxyResponse(reply.status, {**reply.headers, **headers}, reply.content)

    async def _stream(self, kind: str, body: dict[str, Any], upstream: Upstream,
                      headers: dict[str, str], plan: Plan | None = None,
                      flight: Flight | None = None) -> ProxyResponse:
        cache = self.cache
        manager = upstream.stream(PATHS[kind], body)
        try:
            up = await manager.__aenter__()
        except BaseException:
            if cache is not None:
                cache.abandon(flight)
            raise
        if up.status != 200:
            await manager.__aexit__(None, None, None)
            if cache is not None:
                cache.abandon(flight)
            return ProxyResponse(up.status, {**up.headers, **headers}, up.error_body)

        closed = False

        async def close() -> None:
            nonlocal closed
            if not closed:
                closed = True
                self.stats.upstream_seconds[kind].observe(time.perf_counter() - up.started)
            if cache is not None:
                cache.abandon(flight)  # no-op after finish(); releases waiters otherwise
            with contextlib.suppress(Exception):
                await manager.__aexit__(None, None, None)

        async def settle(capture: StreamCapture) -> None:
            assert cache is not None and plan is not None
            entry = None
            if capture.complete:
                latency = (time.perf_counter() - up.started) * 1000
                entry = Entry(plan.key, kind, capture.response(), upstream_latency_ms=latency,
                              model=body["model"])
            await cache.finish(plan, flight, entry)

        async def relay() -> AsyncIterator[bytes]:
            capture = StreamCapture(kind) if plan is not None and cache is not None else None
            try:
                async for chunk in up.chunks:
                    if capture is not None:
                        capture.feed(chunk)
                        if capture.done:
                            # Store before the last bytes go out: clients often stop
                            # reading at [DONE] and close, which would end us here.
                            await settle(capture)
                            capture = None
                    yield chunk
            except httpx.HTTPError as exc:
                # Headers are gone already; tell the client in-band, store nothing.
                yield _error_event(f"upstream stream broke: {type(exc).__name__}")
            finally:
                await close()

        return ProxyResponse(200, {**SSE_HEADERS, **up.headers, **headers}, stream=relay(),
                             on_close=close)

    # -- embeddings ----------------------------------------------------------------

    async def _embeddings(self, body: dict[str, Any], controls: Controls, upstream: Upstream,
                          scope: str) -> ProxyResponse:
        cache = self.cache
        if cache is None or not cache.enabled_for(controls):
            return await self._fetch("embedding", body, upstream, cache_headers("bypass"))
        items, single = _split_input(body["input"])
        base = {k: v for k, v in body.items() if k != "input"}
        canonical_base = canonical_request(base)
        plans = [cache.plan_canonical("embedding", {**canonical_base, "input": item}, base,
                                      controls, scope=scope) for item in items]
        entries: list[Entry | None] = (await cache.get_many(plans) if controls.no_cache is False
                                       else [None] * len(plans))
        missing = [i for i, entry in enumerate(entries) if entry is None]
        cache.count_batch(plans, entries, bypassed=controls.no_cache)
        model = body["model"]
        extra_headers: dict[str, str] = {}
        if missing:
            sent = [items[i] for i in missing]
            request = {**base, "input": sent[0] if single else sent}
            reply = await upstream.post(PATHS["embedding"], request)
            self.stats.upstream_seconds["embedding"].observe(reply.latency_ms / 1000)
            fresh = _parse_embeddings(reply, len(sent))
            if isinstance(fresh, ProxyResponse):
                fresh.headers.update(cache_headers(plans[0].status_if_not_hit))
                return fresh
            vectors, tokens, model = fresh
            weights = [len(item) if isinstance(item, str | list) else 1 for item in sent]
            new_pairs = []
            for slot, vector, n_tokens in zip(missing, vectors, _split_tokens(tokens, weights),
                                              strict=True):
                entry = Entry(plans[slot].key, "embedding",
                              {"embedding": vector, "tokens": n_tokens},
                              upstream_latency_ms=reply.latency_ms, model=model)
                entries[slot] = entry
                new_pairs.append((plans[slot], entry))
            await cache.put_many(new_pairs)
            extra_headers = {k: v for k, v in reply.headers.items() if k != "content-type"}
        data = []
        total_tokens = 0
        for index, entry in enumerate(entries):
            assert entry is not None
            data.append({"object": "embedding", "index": index,
                         "embedding": entry.response["embedding"]})
            total_tokens += int(entry.response.get("tokens", 0))
        response = {"object": "list", "data": data, "model": model,
                    "usage": {"prompt_tokens": total_tokens, "total_tokens": total_tokens}}
        status = "hit" if not missing else plans[0].status_if_not_hit
        key = ",".join(p.key for p in plans) if len(plans) <= 64 else None
        age = max((e.age() for i, e in enumerate(entries) if e and i not in missing), default=0)
        headers = {**JSON_HEADERS, **extra_headers, **cache_headers(status, key, age),
                   "x-hitrate-cache-items-hit": f"{len(items) - len(missing)}/{len(items)}"}
        return ProxyResponse(200, headers, orjson.dumps(response))


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
