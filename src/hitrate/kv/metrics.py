"""KV cache metrics: lookups, hit tokens per tier, bytes moved, latency, evictions, errors.

The engine and its tiers only bump plain counters (`EngineStats`, `TierStats`) and
`Timings` histograms; `KVCollector` turns every live engine of the process into
Prometheus families when scraped (prometheus_client is imported only then). Where
they show up:

- the gateway's `/metrics` (its registry includes this collector; no engine in the
  process, no series),
- any prometheus_client registry: `register()` (default: the global REGISTRY, which
  `prometheus_client.start_http_server` serves), or `serve(port)`,
- the vLLM connector: `kv_connector_extra_config: {"metrics_port": 9464}` serves them
  from each vLLM process that hosts the connector (the next free port when taken),
- `hitrate kv stats --metrics-url http://host:port/metrics` prints them.

Series are summed over engines with the same namespace and tier (label sets stay
bounded: a process has a handful of namespaces and tiers).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from hitrate.metrics import Histogram

if TYPE_CHECKING:
    from hitrate.kv.engine import KVEngine

log = logging.getLogger("hitrate.kv.metrics")

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LOAD_OPS = frozenset({"get"})
STORE_OPS = frozenset({"put", "promote"})

_engines: weakref.WeakSet[KVEngine] = weakref.WeakSet()
_lock = threading.Lock()
_served: dict[int, Any] = {}


class Timings:
    """Load and store latency per tier (seconds per tier call: one call moves all of a
    prompt's chunks that the tier is asked for)."""

    def __init__(self) -> None:
        self.load: dict[str, Histogram] = {}
        self.store: dict[str, Histogram] = {}

    def observe(self, tier: str, op: str, seconds: float) -> None:
        table = self.load if op in LOAD_OPS else self.store if op in STORE_OPS else None
        if table is None:
            return
        hist = table.get(tier)
        if hist is None:
            hist = table[tier] = Histogram(LATENCY_BUCKETS)
        hist.observe(seconds)


def track(engine: KVEngine) -> None:
    """Called by every `KVEngine` at construction; the set forgets closed-and-dropped ones."""
    with _lock:
        _engines.add(engine)


def engines() -> list[KVEngine]:
    with _lock:
        return list(_engines)


def _merge(into: Histogram | None, hist: Histogram) -> Histogram:
    if into is None:
        into = Histogram(hist.bounds)
    into.counts = [a + b for a, b in zip(into.counts, hist.counts, strict=True)]
    into.sum += hist.sum
    into.count += hist.count
    return into


class KVCollector:
    """A prometheus_client custom collector over every live KV engine in the process."""

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        live = engines()
        if not live:
            return
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        ns_labels, tier_labels = ["namespace"], ["namespace", "tier"]
        lookups = CounterMetricFamily("hitrate_kv_lookups", "KV prefix lookups (lookup: "
                                      "how many tokens are cached; retrieve: load them)",
                                      labels=["namespace", "op"])
        engine_counters = {
            "lookup_tokens": CounterMetricFamily(
                "hitrate_kv_lookup_tokens", "Prompt tokens looked up", labels=ns_labels),
            "hit_tokens": CounterMetricFamily(
                "hitrate_kv_lookup_hit_tokens", "Prompt tokens found cached by lookups",
                labels=ns_labels),
            "chunks_written": CounterMetricFamily(
                "hitrate_kv_chunks_stored", "Chunks written (write-behind)", labels=ns_labels),
            "write_errors": CounterMetricFamily(
                "hitrate_kv_store_errors", "Write-behind batches that failed", labels=ns_labels),
            "promotions": CounterMetricFamily(
                "hitrate_kv_promotions", "Chunks copied into a faster tier after a hit",
                labels=ns_labels),
        }
        tier_counters = {
            "hit_tokens": CounterMetricFamily(
                "hitrate_kv_hit_tokens", "Tokens whose KV was served from this tier",
                labels=tier_labels),
            "read_bytes": CounterMetricFamily(
                "hitrate_kv_loaded_bytes", "Bytes read from this tier (as stored: after serde)",
                labels=tier_labels),
            "put_bytes": CounterMetricFamily(
                "hitrate_kv_stored_bytes", "Bytes written to this tier (as stored: after serde)",
                labels=tier_labels),
            "hits": CounterMetricFamily("hitrate_kv_chunk_hits", "Chunks found in this tier",
                                        labels=tier_labels),
            "misses": CounterMetricFamily("hitrate_kv_chunk_misses", "Chunks looked for and "
                                          "not found in this tier", labels=tier_labels),
            "evictions": CounterMetricFamily("hitrate_kv_evictions", "Chunks evicted by this "
                                             "tier to make room", labels=tier_labels),
            "errors": CounterMetricFamily("hitrate_kv_errors", "Tier operations that failed "
                                          "(served as misses)", labels=tier_labels),
            "corrupt": CounterMetricFamily("hitrate_kv_corrupt_chunks", "Chunks that failed "
                                           "their check (deleted, served as misses)",
                                           labels=tier_labels),
        }
        gauges = {
            "entries": GaugeMetricFamily("hitrate_kv_tier_entries", "Chunks held (as the "
                                         "tier counts them)", labels=tier_labels),
            "bytes": GaugeMetricFamily("hitrate_kv_tier_bytes", "Bytes held (as the tier "
                                       "counts them)", labels=tier_labels),
        }
        sums: dict[tuple[str, ...], dict[str, float]] = {}
        tier_sums: dict[tuple[str, str], dict[str, float]] = {}
        load: dict[tuple[str, str], Histogram] = {}
        store: dict[tuple[str, str], Histogram] = {}
        for engine in live:
            ns = engine.namespace.id
            row = sums.setdefault((ns,), {})
            stats = engine.stats
            for name in ("lookups", "retrieves", *engine_counters):
                row[name] = row.get(name, 0) + getattr(stats, name)
            for tier in engine.tiers:
                t = tier.stats()
                trow = tier_sums.setdefault((ns, tier.name), {})
                for name in (*tier_counters, *gauges):
                    value = getattr(t, name)
                    if value is not None:
                        trow[name] = trow.get(name, 0) + value
            for table, out in ((engine.timings.load, load), (engine.timings.store, store)):
                for tier_name, hist in list(table.items()):
                    out[(ns, tier_name)] = _merge(out.get((ns, tier_name)), hist)
        for (ns,), row in sorted(sums.items()):
            lookups.add_metric([ns, "lookup"], row["lookups"])
            lookups.add_metric([ns, "retrieve"], row["retrieves"])
            for name, family in engine_counters.items():
                family.add_metric([ns], row[name])
        for labels, trow in sorted(tier_sums.items()):
            for name, family in (*tier_counters.items(), *gauges.items()):
                if name in trow:
                    family.add_metric(list(labels), trow[name])
        yield lookups
        yield from engine_counters.values()
        yield from tier_counters.values()
        yield from gauges.values()
        for name, doc, table in (
            ("hitrate_kv_load_duration_seconds", "Time of one tier read (a prompt's chunks)", load),
            ("hitrate_kv_store_duration_seconds", "Time of one tier write (a batch of chunks, "
             "serde included)", store),
        ):
            family = HistogramMetricFamily(name, doc, labels=tier_labels)
            for labels, hist in sorted(table.items()):
                family.add_metric(list(labels), hist.cumulative(), hist.sum)
            yield family


_collector = KVCollector()


def collector() -> KVCollector:
    """The process's collector (one object, so a registry never holds it twice)."""
    return _collector


def register(registry: Any = None) -> None:
    """Adds the KV series to `registry` (default: prometheus_client's global REGISTRY)."""
    if registry is None:
        from prometheus_client import REGISTRY as registry
    with contextlib.suppress(ValueError):  # already registered there
        registry.register(_collector)


def serve(port: int, host: str = "0.0.0.0", tries: int = 8) -> int | None:
    """Serves the KV series over HTTP (prometheus_client's exporter) on `port`, or the
    next free one of `tries` ports (vLLM runs one process per GPU). Once per process;
    returns the port, or None when none could be bound (logged)."""
    from prometheus_client import CollectorRegistry, start_http_server

    with _lock:
        if _served:
            return next(iter(_served))
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_collector)
        for candidate in range(port, port + tries):
            try:
                _served[candidate] = start_http_server(candidate, addr=host, registry=registry)
            except OSError:
                continue
            log.info("hitrate KV metrics on http://%s:%d/metrics", host, candidate)
            return candidate
    log.warning("hitrate KV metrics: ports %d-%d are all taken; not served", port, port + tries - 1)
    return None
