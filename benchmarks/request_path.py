"""The request path in process, without HTTP: µs per cache hit (and per miss) through
`CachingProxy.handle`, the code the gateway runs per request, with tracing off and on.

Small differences (a few hundred ns) are lost in benchmarks/gateway.py's HTTP noise on a
shared 2-core box; this isolates them. Prints one JSON line.

    python benchmarks/request_path.py [--n 20000] [--rounds 5]
    PYTHONPATH=<another checkout>/src python benchmarks/request_path.py   # compare trees

Modes: `off` (no tracing configured: the module-level no-ops), `on` (an OpenTelemetry
SDK TracerProvider with a BatchSpanProcessor feeding an exporter that drops everything:
the cost of creating, timing and queueing the spans, not of the network). A tree without
`hitrate.tracing` runs `off` only. Each figure is the median (and the minimum) over rounds of the mean of
`n` calls, in process CPU time (so other load on the machine does not count; the
span processor's export thread does); misses use a stub upstream that answers at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import orjson

from hitrate import kinds
from hitrate.engine import ResponseCache
from hitrate.gateway.proxy import CachingProxy
from hitrate.gateway.upstream import UpstreamReply

ANSWER = orjson.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                       "choices": [{"index": 0, "finish_reason": "stop", "message": {
                           "role": "assistant", "content": "Paris."}}],
                       "usage": {"prompt_tokens": 9, "completion_tokens": 2,
                                 "total_tokens": 11}})


class StubUpstream:
    async def post(self, path: str, body: dict[str, Any]) -> UpstreamReply:
        return UpstreamReply(200, {"content-type": "application/json"}, ANSWER, 0.0)


def request(i: int | None = None) -> bytes:
    text = "What is the capital of France?" if i is None else f"question {i}"
    return orjson.dumps({"model": "gpt-bench", "messages": [{"role": "user", "content": text}]})


async def measure(n: int, rounds: int, tenant: str | None) -> dict[str, float]:
    proxy = CachingProxy(ResponseCache())
    kind = kinds.get("chat")
    upstream = StubUpstream()

    def resolve(model: str) -> StubUpstream:
        return upstream

    headers: dict[str, str] = {}
    extra = {"tenant": tenant} if tenant is not None else {}
    try:  # as gateway/routes.py does: a request span around handle() (None when off)
        from hitrate.tracing import start_request
    except ImportError:
        def start_request(*args: Any) -> None:
            return None

    async def handle(body: bytes) -> Any:
        traced = start_request("POST", "/v1/chat/completions", headers, tenant)
        response = await proxy.handle(kind, body, headers, resolve, **extra)
        if traced is not None:
            traced.close_with(response)
        return response

    hit = request()
    await handle(hit)  # store it
    hits, misses = [], []
    counter = 0
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(n):
            response = await handle(hit)
        hits.append((time.process_time() - t0) / n * 1e6)
        assert response.headers["x-hitrate-cache"] == "hit"
        t0 = time.process_time()
        for _ in range(n // 10):
            counter += 1
            response = await handle(request(counter))
        misses.append((time.process_time() - t0) / (n // 10) * 1e6)
        assert response.headers["x-hitrate-cache"] == "miss"
    return {"hit_us": round(statistics.median(hits), 2),
            "miss_us": round(statistics.median(misses), 2),
            # The least disturbed round: the steadiest figure on a shared machine.
            "hit_us_min": round(min(hits), 2), "miss_us_min": round(min(misses), 2)}


def tracing_on() -> bool:
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        from hitrate import tracing
    except ImportError:
        return False

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    tracing.use_provider(provider)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        import hitrate.tenants  # noqa: F401 - trees with per-tenant stats take `tenant`

        tenant: str | None = "default"
    except ImportError:
        tenant = None
    result: dict[str, Any] = {"benchmark": "request_path", "n": args.n, "rounds": args.rounds,
                              "tenant_kwarg": tenant is not None}
    result["off"] = asyncio.run(measure(args.n, args.rounds, tenant))
    if tracing_on():
        result["on"] = asyncio.run(measure(args.n, args.rounds, tenant))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
