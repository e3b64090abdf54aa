"""End-to-end semantic hit latency through the gateway (CPU, default embedder).

    python benchmarks/semantic_latency.py [--n 100] [--paraphrase "TEMPLATE {}" | --pairs TSV]

Starts the simulated upstream and `hitrate serve` (memory store + semantic layer with the
embedded index) as separate processes, stores N questions ("How do I learn X?"), then
asks their paraphrases ("How can I learn X?") and times each answer with a keep-alive
client. `cold`: the paraphrase is new text, so its embedding is computed inside the
request; `warm`: the same paraphrase asked again (exact miss, cached embedding, index
search and verification). Also reports exact-hit and miss latency for comparison.
`--paraphrase`: the asked question's template. The default ("How can I learn {}?") is
decided by the rules (the same opening); "What is the best way to learn {}?" goes to
the model. `--pairs`: natural paraphrases instead, the label-1 lines of a pair file
(text_a stored, text_b asked; each words its question its own way, so nothing about
the differing words is cached from one lookup to the next); `cold_lookup_p50_ms` is
then over every asked text, hit or not. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from gateway import PY, Processes, free_port, hitrate_argv, wait_health

TOPICS = [f"{w} {k}" for w in ("Python", "Rust", "Go", "Haskell", "Kotlin", "Swift", "Java",
                               "Scala", "Elixir", "Julia") for k in
          ("basics", "testing", "packaging", "concurrency", "profiling", "debugging",
           "networking", "logging", "typing", "deployment")]


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(len(values) * p / 100))] * 1000, 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--paraphrase", default="How can I learn {}?")
    parser.add_argument("--pairs", type=Path, help="a pair file: its label-1 lines")
    args = parser.parse_args()
    if args.pairs:
        from semantic_split import read_pairs

        lines = [(a, b) for a, b, y in read_pairs(args.pairs) if y == 1 and a != b]
        lines = list(dict((a, (a, b)) for a, b in lines).values())[: args.n]
        stored, asked = [a for a, _ in lines], [b for _, b in lines]
    else:
        topics = TOPICS[: args.n]
        stored = [f"How do I learn {t}?" for t in topics]
        asked = [args.paraphrase.format(t) for t in topics]
    with tempfile.TemporaryDirectory() as tmp:
        procs = Processes(Path(tmp), pin=False)
        try:
            up_port, gw_port = free_port(), free_port()
            upstream = procs.start("upstream", [PY, str(Path(__file__).with_name("gateway.py")),
                                                "_upstream", str(up_port)])
            wait_health(up_port, upstream, "/_stats", procs)
            config = Path(tmp) / "config.yaml"
            config.write_text(json.dumps({
                "models": [{"name": "m", "api_base": f"http://127.0.0.1:{up_port}/v1"}],
                "cache": {"semantic": {}}}))
            gateway = procs.start("gateway", [*hitrate_argv(), "serve", "--config", str(config),
                                              "--port", str(gw_port)])
            wait_health(gw_port, gateway, "/health", procs, timeout=60)
            url = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
            with httpx.Client(timeout=30) as client:
                def ask(text: str) -> tuple[float, str]:
                    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
                    t0 = time.perf_counter()
                    response = client.post(url, json=body)
                    elapsed = time.perf_counter() - t0
                    kind = response.headers.get("x-hitrate-cache-kind") or response.headers[
                        "x-hitrate-cache"]
                    return elapsed, kind

                ask("warm up the embedder")
                time.sleep(1.0)
                miss = [ask(text)[0] for text in stored]
                exact = [ask(text)[0] for text in stored]
                cold = [ask(text) for text in asked]
                warm = [ask(text) for text in asked]
                # Lookups that gave up on their embedding (a miss by design): should be 0.
                metrics = client.get(f"http://127.0.0.1:{gw_port}/metrics").text
                timeouts = next((float(line.split()[-1]) for line in metrics.splitlines()
                                 if line.startswith('hitrate_semantic_skipped_total{reason="timeout"}')),
                                None)
        finally:
            procs.stop_all()
    semantic_cold = [s for s, kind in cold if kind == "semantic"]
    semantic_warm = [s for s, kind in warm if kind == "semantic"]
    print(json.dumps({
        "benchmark": "semantic_latency", "n": len(stored),
        "paraphrase": str(args.pairs) if args.pairs else args.paraphrase,
        "embedder": "multilingual-e5-small",
        "semantic_hits_cold": len(semantic_cold), "semantic_hits_warm": len(semantic_warm),
        "semantic_hit_cold_p50_ms": pct(semantic_cold, 50) if semantic_cold else None,
        "semantic_hit_cold_p99_ms": pct(semantic_cold, 99) if semantic_cold else None,
        "semantic_hit_warm_p50_ms": pct(semantic_warm, 50) if semantic_warm else None,
        "cold_lookup_p50_ms": pct([s for s, _ in cold], 50),
        "cold_lookup_p90_ms": pct([s for s, _ in cold], 90),
        "exact_hit_p50_ms": pct(exact, 50), "miss_p50_ms": pct(miss, 50),
        "miss_mean_ms": round(statistics.fmean(miss) * 1000, 2),
        "lookup_timeouts": timeouts,
        "cpu_count": os.cpu_count(),
        "note": "client, gateway and upstream share the machine; miss includes embedding the "
                "question (lookup) and indexing it",
    }))


if __name__ == "__main__":
    main()
