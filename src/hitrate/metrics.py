"""Prometheus metrics for the gateway.

The request path only bumps plain Python counters and `Histogram`s (no locks, no label
lookups, no prometheus_client objects); the `Collector` below turns them, the engine's
`CacheStats` and the store's own counters into metric families when `/metrics` is
scraped. prometheus_client is imported only then (and per app: each gateway has its own
`CollectorRegistry`, so many gateways can live in one process).

Label sets are bounded: endpoint (one per kind in `hitrate.kinds`), outcome (4), hit
kind (2), rejection reason (a fixed set from `policy`), backend operation (a handful),
and (model, namespace) pairs capped in `costs.savings`.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hitrate.costs.prices import PriceMap
    from hitrate.costs.savings import SavingsRow
    from hitrate.engine import ResponseCache

LOOKUP_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                  0.25, 0.5, 1.0)
UPSTREAM_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
OUTCOMES = ("hit", "miss", "bypass", "error")
HIT_KINDS = ("exact", "semantic")
CIRCUIT_STATES = ("closed", "open", "half_open")


class Histogram:
    """A fixed-bucket histogram that costs one bisect and three additions per sample."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # last slot: above every bound (+Inf)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        out = []
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return out


class History:
    """Cumulative counters sampled every few seconds, for the dashboard's charts."""

    def __init__(self, maxlen: int = 720):
        self.samples: deque[dict[str, float]] = deque(maxlen=maxlen)

    def add(self, sample: dict[str, float]) -> None:
        self.samples.append(sample)

    def series(self, now_sample: dict[str, float] | None = None) -> list[dict[str, float]]:
        out = list(self.samples)
        if now_sample is not None:
            out.append(now_sample)
        return out


class Collector:
    """A prometheus_client custom collector over one gateway's state."""

    def __init__(self, state: Callable[[], Any]):
        self._state = state  # returns the GatewayState (or None before startup)

    def describe(self) -> list[Any]:
        return []  # families vary with config; skip registry-time collection

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        state = self._state()
        if state is None:
            return
        from hitrate import __version__

        info = GaugeMetricFamily("hitrate_build_info", "hitrate version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        uptime = GaugeMetricFamily("hitrate_uptime_seconds", "Seconds since the gateway started")
        uptime.add_metric([], time.time() - state.started_at)
        yield uptime

        proxy_stats = state.proxy.stats
        requests = CounterMetricFamily(
            "hitrate_requests", "OpenAI API requests by endpoint and cache outcome "
            "(error: the gateway answered with an error status)", labels=["endpoint", "outcome"])
        for (endpoint, outcome), n in sorted(proxy_stats.requests.items()):
            requests.add_metric([endpoint, outcome], n)
        yield requests
        upstream = HistogramMetricFamily(
            "hitrate_upstream_request_duration_seconds",
            "Upstream call duration (streams: until the last chunk)", labels=["endpoint"])
        for endpoint, hist in sorted(proxy_stats.upstream_seconds.items()):
            upstream.add_metric([endpoint], hist.cumulative(), hist.sum)
        yield upstream

        settings = state.config.metrics
        if state.cache is not None:
            yield from _cache_families(state.cache, CounterMetricFamily, GaugeMetricFamily,
                                       HistogramMetricFamily,
                                       namespace_label=settings.namespace_label)
        if settings.tenant_label:
            from hitrate.tenant_metrics import tenant_families

            yield from tenant_families(state, settings.tenant_label_limit,
                                       CounterMetricFamily)
        if state.prices is not None:
            yield from _price_families(state.prices, GaugeMetricFamily)


def _semantic_families(stats: Any, Counter: Any) -> Iterator[Any]:
    """The semantic layer: lookups, candidates the verifier refused (by reason, a fixed
    set), lookups skipped (text over the length cap, embedding past its deadline)."""
    lookups = Counter("hitrate_semantic_lookups", "Semantic lookups after an exact miss")
    lookups.add_metric([], stats.lookups)
    yield lookups
    refused = Counter("hitrate_semantic_rejected_candidates", "Candidates above the "
                      "similarity floor that the verifier refused, by reason", labels=["reason"])
    for reason, n in sorted(stats.rejected.items()):
        refused.add_metric([reason], n)
    yield refused
    skipped = Counter("hitrate_semantic_skipped", "Semantic lookups skipped: too_long "
                      "(over max_text_chars) or timeout (embedding past embed_timeout_ms)",
                      labels=["reason"])
    skipped.add_metric(["too_long"], stats.too_long)
    skipped.add_metric(["timeout"], stats.timeouts)
    yield skipped
    errors = Counter("hitrate_semantic_errors", "Semantic lookups or index writes that "
                     "failed (served as exact-only)")
    errors.add_metric([], stats.errors)
    yield errors


def _judge_families(judge: Any, Counter: Any) -> Iterator[Any]:
    """The optional judge (semantic.judge): its calls by outcome, verdicts reused from the
    pair cache, candidates not asked because every slot was busy, tokens and cost."""
    from hitrate.semantic.judge import OUTCOMES as JUDGE_OUTCOMES

    stats = judge.stats
    calls = Counter("hitrate_semantic_judge_calls", "Judge model calls by outcome (only "
                    "yes serves the candidate; error and timeout are misses)",
                    labels=["outcome"])
    for outcome in JUDGE_OUTCOMES:
        calls.add_metric([outcome], stats.calls[outcome])
    yield calls
    for name, value, doc in (
        ("hitrate_semantic_judge_reused", stats.reused, "Judge verdicts reused for a text "
         "pair already asked about (no call)"),
        ("hitrate_semantic_judge_busy", stats.busy, "Candidates not asked because "
         "max_concurrency judge calls were in flight (served as misses)"),
        ("hitrate_semantic_judge_cost_usd", stats.cost_usd, "What the judge's calls cost "
         "(usage x the price map); subtracted in hitrate_net_cost_saved_usd"),
    ):
        family = Counter(name, doc)
        family.add_metric([], value)
        yield family
    tokens = Counter("hitrate_semantic_judge_tokens", "Tokens the judge's calls used",
                     labels=["type"])
    tokens.add_metric(["prompt"], stats.prompt_tokens)
    tokens.add_metric(["completion"], stats.completion_tokens)
    yield tokens


def _explore_families(explorer: Any, Counter: Any, Gauge: Any) -> Iterator[Any]:
    """Per-entry thresholds (semantic.explore_rate): explored would-be hits by whether
    the fresh answer agreed, and how many entries learned a threshold of their own."""
    explored = Counter("hitrate_semantic_explorations", "Would-be semantic hits sent "
                       "upstream anyway and compared: agree, disagree, error",
                       labels=["outcome"])
    for outcome in ("agree", "disagree", "error"):
        explored.add_metric([outcome], explorer.stats.explored[outcome])
    yield explored
    entries = Gauge("hitrate_semantic_entry_thresholds", "Entries (in this process) whose "
                    "own learned threshold is above the global one")
    entries.add_metric([], sum(1 for r in explorer.entries.values() if r.threshold > float("-inf")))
    yield entries


def _cache_families(cache: ResponseCache, Counter: Any, Gauge: Any, Hist: Any, *,
                    namespace_label: bool = True) -> Iterator[Any]:
    stats = cache.stats
    store = cache.store
    hits = Counter("hitrate_cache_hits", "Cache hits by match kind (coalesced followers "
                   "included)", labels=["kind"])
    hits.add_metric(["exact"], stats.hits - stats.semantic_hits)
    hits.add_metric(["semantic"], stats.semantic_hits)
    yield hits
    for name, value, doc in (
        ("hitrate_cache_misses", stats.misses, "Cache lookups that found nothing usable"),
        ("hitrate_cache_bypasses", stats.bypasses, "Requests that skipped the lookup "
         "(no-cache, use-cache false, default_off mode)"),
        ("hitrate_cache_coalesced", stats.coalesced, "Requests answered by an identical "
         "in-flight request's upstream call"),
        ("hitrate_cache_stores", stats.stores, "Entries written"),
        ("hitrate_cache_corrupt_entries", stats.corrupt, "Stored values that failed "
         "validation (deleted, served as misses)"),
    ):
        family = Counter(name, doc)
        family.add_metric([], value)
        yield family
    if cache.semantic is not None:
        yield from _semantic_families(cache.semantic.stats, Counter)
        if cache.semantic.judge is not None:
            yield from _judge_families(cache.semantic.judge, Counter)
        if cache.semantic.explorer is not None:
            yield from _explore_families(cache.semantic.explorer, Counter, Gauge)
    rejected = Counter("hitrate_cache_store_rejections", "Responses not stored, by reason",
                       labels=["reason"])
    for reason, n in sorted(stats.rejected.items()):
        rejected.add_metric([reason], n)
    yield rejected
    errors = Counter("hitrate_backend_errors", "Cache backend operations that failed "
                     "(each served as a miss or a skipped store)", labels=["backend", "operation"])
    for op, n in sorted(stats.backend_errors_by_op.items()):
        errors.add_metric([store.name, op], n)
    yield errors
    failing = Gauge("hitrate_backend_up", "1 unless the last cache backend operation failed",
                    labels=["backend"])
    failing.add_metric([store.name], 0 if cache.backend_failing else 1)
    yield failing
    circuit = store.circuit_state()
    if circuit is not None:
        family = Gauge("hitrate_backend_circuit_state", "Cache backend circuit breaker: 1 for "
                       "the current state", labels=["backend", "state"])
        for name in CIRCUIT_STATES:
            family.add_metric([store.name, name], 1 if circuit == name else 0)
        yield family
    store_stats = store.stats()
    evictions = Counter("hitrate_cache_evictions", "Entries evicted by the backend to make room",
                        labels=["backend"])
    evictions.add_metric([store.name], store_stats.evictions)
    yield evictions
    entries = Gauge("hitrate_cache_entries", "Entries stored (as the backend counts them)",
                    labels=["backend"])
    entries.add_metric([store.name], store_stats.entries)
    yield entries
    size = Gauge("hitrate_cache_size_bytes", "Bytes stored (as the backend counts them)",
                 labels=["backend"])
    size.add_metric([store.name], store_stats.bytes)
    yield size
    lookup = Hist("hitrate_cache_lookup_duration_seconds", "Time to read the cache backend "
                  "for one lookup (or one batch of embedding inputs)")
    lookup.add_metric([], stats.lookup_seconds.cumulative(), stats.lookup_seconds.sum)
    yield lookup

    labels = ["model", "namespace"] if namespace_label else ["model"]
    tokens = Counter("hitrate_tokens_saved", "Tokens not sent to or generated by the upstream "
                     "thanks to cache hits", labels=[*labels, "type"])
    cost = Counter("hitrate_cost_saved_usd", "Upstream cost avoided by cache hits, in US "
                   "dollars (from the price map)", labels=labels)
    latency = Counter("hitrate_latency_saved_seconds", "Upstream latency avoided by cache hits "
                      "(the original call's duration)", labels=labels)
    model_hits = Counter("hitrate_model_hits", "Cache hits by model and namespace",
                         labels=labels)
    unpriced = Counter("hitrate_unpriced_hits", "Hits on models with no known price (their "
                       "cost saved counts as 0)", labels=labels)
    rows = stats.savings.rows if namespace_label else _by_model(stats.savings.rows)
    for names, row in sorted(rows.items()):
        values = list(names)
        tokens.add_metric([*values, "prompt"], row.prompt_tokens)
        tokens.add_metric([*values, "completion"], row.completion_tokens)
        cost.add_metric(values, row.cost_usd)
        latency.add_metric(values, row.latency_ms / 1000)
        model_hits.add_metric(values, row.hits)
        unpriced.add_metric(values, row.unpriced_hits)
    yield from (tokens, cost, latency, model_hits, unpriced)
    net = Gauge("hitrate_net_cost_saved_usd", "Upstream cost avoided by cache hits minus "
                "what the cache's own calls cost (the semantic judge), in US dollars")
    net.add_metric([], stats.savings.totals().cost_usd - stats.savings.spent_usd())
    yield net


def _by_model(rows: dict[tuple[str, str], SavingsRow]) -> dict[tuple[str, ...], SavingsRow]:
    """Savings rows summed over namespaces (`metrics.namespace_label: false`)."""
    from hitrate.costs.savings import SavingsRow

    out: dict[tuple[str, ...], SavingsRow] = {}
    for (model, _), row in rows.items():
        out[(model,)] = merged = out.get((model,)) or SavingsRow()
        merged.add(row)
    return out


def _price_families(prices: PriceMap, Gauge: Any) -> Iterator[Any]:
    base = prices.base
    family = Gauge("hitrate_price_map_models", "Models in the price map in use",
                   labels=["source"])
    family.add_metric([base.source.split(":", 1)[0]], base.distinct_models)
    yield family


def build_registry(state: Callable[[], Any]) -> Any:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector(state))
    from hitrate.kv.metrics import collector  # KV engines in this process, if any

    registry.register(collector())
    return registry


def render(registry: Any) -> tuple[bytes, str]:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(registry), CONTENT_TYPE_LATEST
