"""The baseline issue 13 asks us to beat: a static cosine threshold, as LiteLLM, GPTCache
and RedisVL use, with the threshold chosen *on the scored data itself* (an oracle: the
most recall any single threshold gets at the false-hit budget there).

    python benchmarks/semantic_baseline.py PAIRS.tsv [--part test] [--budget 0.02]
                                           [--vectors /tmp/hitrate-e5-vectors.npz]
                                           [--tune-part calibrate]

`--tune-part calibrate`: the threshold is chosen on that part (per protocol) and applied
to `--part`: a fair baseline, not an oracle. `--tune-file OTHER.tsv` takes that part
from another file (a held-out file scored with a threshold tuned on its training twin).

Same protocols and counting as `semantic_eval.py`, with the default embedder's (e5)
vectors: `full` looks each text_b up against every text_a (identical text is an exact
hit, not judged); `pair` against its own line's text_a only. A semantic hit is correct
if it served text_b itself or a text_a the file pairs with text_b as a paraphrase;
recall = correct semantic hits on label-1 lines whose texts differ / those lines.
Prints one JSON line per protocol: the oracle threshold and its hits / false / recall.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from semantic_split import Row, read_pairs, split
from semantic_train import Embeddings


def nearest(rows: list[Row], vectors: dict[str, np.ndarray], protocol: str
            ) -> list[tuple[str | None, float]]:
    """For each line, the stored text its text_b would find first and the cosine (None:
    an exact hit, which no threshold decides)."""
    stored = list(dict.fromkeys(a for a, _, _ in rows))
    matrix = np.stack([vectors[a] for a in stored])
    exact = set(stored)
    out: list[tuple[str | None, float]] = []
    for a, b, _ in rows:
        if protocol == "pair":
            out.append((None, 1.0) if a == b else (a, float(vectors[a] @ vectors[b])))
            continue
        if b in exact:
            out.append((None, 1.0))
            continue
        scores = matrix @ vectors[b]
        best = int(np.argmax(scores))
        out.append((stored[best], float(scores[best])))
    return out


def score_at(rows: list[Row], found: list[tuple[str | None, float]], threshold: float
             ) -> dict[str, float | int | None]:
    labels = {(a, b) for a, b, y in rows if y == 1}
    wanted = sum(1 for a, b, y in rows if y == 1 and a != b)
    hits = false = recalled = 0
    for (a, b, y), (served, score) in zip(rows, found, strict=True):
        if served is None or score < threshold:
            continue
        correct = served == b or (served, b) in labels
        hits += 1
        false += not correct
        recalled += y == 1 and a != b and correct
    return {"threshold": round(threshold, 4), "semantic_hits": hits, "semantic_false": false,
            "recall_semantic": round(recalled / max(wanted, 1), 4)}


def oracle(rows: list[Row], found: list[tuple[str | None, float]], budget: float
           ) -> dict[str, float | int | None]:
    labels = {(a, b) for a, b, y in rows if y == 1}
    wanted = sum(1 for a, b, y in rows if y == 1 and a != b)
    scored = []
    for (a, b, y), (served, score) in zip(rows, found, strict=True):
        if served is None:
            continue
        correct = served == b or (served, b) in labels
        scored.append((score, correct, y == 1 and a != b and correct))
    scored.sort(key=lambda s: -s[0])
    best: dict[str, float | int | None] = {"threshold": None, "semantic_hits": 0,
                                           "semantic_false": 0, "recall_semantic": 0.0}
    hits = false = recalled = 0
    for i, (score, correct, counts) in enumerate(scored):
        hits += 1
        false += not correct
        recalled += counts
        if i + 1 < len(scored) and scored[i + 1][0] == score:
            continue  # a threshold takes all ties
        if false / hits <= budget and recalled / max(wanted, 1) > best["recall_semantic"]:
            best = {"threshold": round(score, 4), "semantic_hits": hits,
                    "semantic_false": false, "recall_semantic": round(recalled / max(wanted, 1), 4)}
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", type=Path)
    parser.add_argument("--part", choices=["fit", "calibrate", "test"])
    parser.add_argument("--budget", type=float, default=0.02)
    parser.add_argument("--vectors", type=Path, default=Path("/tmp/hitrate-e5-vectors.npz"))
    parser.add_argument("--tune-part", choices=["fit", "calibrate", "test"])
    parser.add_argument("--tune-file", type=Path, help="take --tune-part from this file")
    args = parser.parse_args()
    every = read_pairs(args.pairs)
    rows = split(every, args.part) if args.part else every
    tuning = read_pairs(args.tune_file) if args.tune_file else every
    tune = split(tuning, args.tune_part) if args.tune_part else None
    store = Embeddings(args.vectors, fold=False)  # as those caches embed: as written
    texts = list(dict.fromkeys(t for a, b, _ in rows + (tune or []) for t in (a, b)))
    vectors = dict(zip(texts, store.get(texts), strict=True))
    for protocol in ("full", "pair"):
        found = nearest(rows, vectors, protocol)
        if tune is None:
            result = oracle(rows, found, args.budget)
        else:
            chosen = oracle(tune, nearest(tune, vectors, protocol), args.budget)["threshold"]
            result = score_at(rows, found, 2.0 if chosen is None else float(chosen))
        print(json.dumps({"benchmark": "semantic_baseline", "set": args.pairs.name,
                          "part": args.part, "tuned_on": args.tune_part or args.part,
                          "tune_file": args.tune_file.name if args.tune_file else None,
                          "protocol": protocol, "budget": args.budget,
                          "pairs": len(rows), **result}))


if __name__ == "__main__":
    main()
