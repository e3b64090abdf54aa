"""In-process cost of a semantic lookup after the question is embedded: index search
plus verification of the candidates (the learned verifier's features, the differing
words' closeness, the model), on natural paraphrases.

    python benchmarks/semantic_verify_cost.py [--pairs TSV] [--n 120]

Each label-1 line (text_a stored, text_b asked) gets its own scope; both vectors are
computed before the clock starts, so the e5 forward pass is not counted. Prints one JSON
line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from semantic_split import read_pairs

from hitrate.config import SemanticConfig
from hitrate.semantic.lookup import build_semantic

DEFAULT = Path(__file__).parent / "pairs" / "en_questions_train.tsv"


async def measure(rows: list[tuple[str, str]]) -> dict[str, float | int]:
    layer = build_semantic(SemanticConfig())
    await layer.warm()
    times, hits = [], 0
    for n, (stored, asked) in enumerate(rows):
        scope = f"pair-{n}"
        await layer.remember(f"key-{n}", stored, await layer.vector(stored, scope), scope,
                             "default", None)
        vector = await layer.vector(asked, scope)
        started = time.perf_counter()
        found = await layer.scored_candidates(asked, scope, vector)
        times.append((time.perf_counter() - started) * 1000)
        hits += any(c.sure for c in found)
    t = np.array(times)
    return {"lookups": len(t), "hits": hits, "p50_ms": round(float(np.median(t)), 3),
            "p90_ms": round(float(np.percentile(t, 90)), 3),
            "mean_ms": round(float(t.mean()), 3)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=Path, default=DEFAULT)
    parser.add_argument("--n", type=int, default=120)
    args = parser.parse_args()
    rows = [(a, b) for a, b, y in read_pairs(args.pairs) if y == 1 and a != b][: args.n]
    print(json.dumps({"benchmark": "semantic_verify_cost", "pairs": args.pairs.name,
                      **asyncio.run(measure(rows))}))


if __name__ == "__main__":
    main()
