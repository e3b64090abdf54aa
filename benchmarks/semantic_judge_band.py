"""What the optional judge (semantic.judge) could add, and what it would cost, on labelled pairs.

    python benchmarks/semantic_judge_band.py PAIRS.tsv [--part test] [--vectors F.npz]
                                             [--band LOW HIGH] [--max-false-rate 0.02]

Pair protocol (each line alone: text_b against its own text_a), default learned
verifier. Each line whose texts differ and whose cosine reaches the index floor is a
candidate: `served` (the verifier alone serves it: score at or above the band),
`asked` (inside the band: the judge is called), or `refused`. No model is called here:
the figures say how many lookups would pay a judge call, and the recall and false
share if the judge were always right (`perfect_judge`) or always said yes
(`yes_judge`, the worst case) - the bounds between which a real judge lands.

Vectors come from an .npz of e5 vectors (`semantic_train.py` writes one); texts
missing from it are embedded with the default embedder (slow on a busy CPU).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from hitrate.config import SemanticConfig
from hitrate.semantic.learned import Verdict
from hitrate.semantic.lookup import SemanticLayer, build_semantic

sys.path.insert(0, str(Path(__file__).parent))
from semantic_split import read_pairs, split


async def vectors_for(layer: SemanticLayer, texts: list[str], npz: Path | None) -> dict:
    known: dict[str, np.ndarray] = {}
    if npz is not None and npz.exists():
        data = np.load(npz, allow_pickle=False)
        wanted = set(texts)
        known = {t: v for t, v in zip(data["texts"].tolist(), data["vectors"], strict=True)
                 if t in wanted}
    todo = [t for t in dict.fromkeys(texts) if t not in known]
    for i in range(0, len(todo), 64):
        chunk = todo[i:i + 64]
        known.update(zip(chunk, await layer.embedder.embed(chunk), strict=True))
    return known


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("pairs", type=Path)
    parser.add_argument("--part", default="test")
    parser.add_argument("--vectors", type=Path, default=None)
    parser.add_argument("--band", type=float, nargs=2, default=None)
    parser.add_argument("--max-false-rate", type=float, default=0.02)
    args = parser.parse_args()

    rows = split(read_pairs(args.pairs), args.part)
    judge = {"model": "judge"} if args.band is None else {"model": "judge", "band": args.band}
    config = SemanticConfig(max_false_rate=args.max_false_rate, judge=judge)
    layer = build_semantic(config, lambda name: object())
    vectors = await vectors_for(layer, [t for a, b, _ in rows for t in (a, b)], args.vectors)

    counts: Counter[str] = Counter()
    positives = 0
    for a, b, label in rows:
        if a == b:
            continue
        positives += label
        cosine = float(np.dot(vectors[a], vectors[b]))
        if cosine < layer.search_floor:
            counts["below_floor"] += 1
            continue
        pair = layer.pair_vectors((vectors[b], vectors[a]))
        verdict: Verdict = layer.verdict(b, a, cosine, pair)
        decision = layer._banded(b, a, verdict, pair)
        what = {True: "served", False: "asked", None: "refused"}[decision]
        counts[f"{what}_{'pos' if label else 'neg'}"] += 1

    served = counts["served_pos"] + counts["served_neg"]
    asked = counts["asked_pos"] + counts["asked_neg"]
    lines = sum(1 for a, b, _ in rows if a != b)

    def outcome(hits_pos: int, hits_neg: int) -> dict:
        hits = hits_pos + hits_neg
        return {"recall": round(hits_pos / positives, 4) if positives else None,
                "false_share": round(hits_neg / hits, 4) if hits else 0.0}

    low, high = layer.judge.band.bounds(float("nan"), 0.5)  # type: ignore[union-attr]
    print(json.dumps({
        "pairs": args.pairs.name, "part": args.part, "lines": lines, "positives": positives,
        "band": [low, "threshold" if high != high else high],
        "threshold": layer.settings.learned.thresholds,  # type: ignore[union-attr]
        **{k: counts[k] for k in sorted(counts)},
        "judge_calls_per_lookup": round(asked / lines, 4) if lines else 0.0,
        "verifier_alone": outcome(counts["served_pos"], counts["served_neg"]),
        "perfect_judge": outcome(counts["served_pos"] + counts["asked_pos"],
                                 counts["served_neg"]),
        "yes_judge": outcome(counts["served_pos"] + counts["asked_pos"],
                             counts["served_neg"] + counts["asked_neg"]),
        "served": served,
    }))


if __name__ == "__main__":
    asyncio.run(main())
