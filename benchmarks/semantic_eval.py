"""Semantic cache accuracy on labelled pairs, through the real engine.

    python benchmarks/semantic_eval.py PAIRS.tsv [--protocol full|pair] [--part test]
                                       [--config cache.yaml] [--limit N] [--show-false N]

PAIRS.tsv: `text_a <TAB> text_b <TAB> label` (1 = same meaning). Each text_a is stored
with an answer of its own, then each text_b is looked up as a chat request with the
same model and parameters:

- `full` (default): every text_a in one scope, every text_b looked up against all of
  them. A hit on another line's entry is correct only if the file labels that pair
  (served text, text_b) a paraphrase, or the two texts are identical.
- `pair`: each line in its own scope (its own tenant), so text_b can only find its own
  line's text_a; a hit is correct iff the line is labelled 1 (or the texts are equal).

Prints one JSON line: `semantic_correct` / `semantic_false` judge semantic hits only
(exact hits are counted apart); `recall_semantic` = correct semantic hits on label-1
lines / label-1 lines whose two texts differ; `false_share` = semantic_false /
semantic_hits. Lookups are timed cold: text_b's embedding is computed inside its lookup.
`lost` says why each label-1 line with different texts got no correct semantic hit:
an exact or a false hit instead, the embedding deadline, its text_a below the index's similarity floor, not in
the top k, or vetoed by the verifier (by reason).
`--part fit|calibrate|test` keeps one part of the split in `semantic_split.py` (the
verifier is fitted and calibrated on the other two; report on `test`).
`--config` takes a YAML file with a native `cache.semantic` section (or the section
itself); default settings otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hitrate.config import SemanticConfig
from hitrate.controls import Controls
from hitrate.engine import Lookup, Plan, ResponseCache
from hitrate.entry import Entry
from hitrate.semantic.lookup import SemanticLayer, build_semantic
from hitrate.stores.memory import MemoryStore

sys.path.insert(0, str(Path(__file__).parent))
from semantic_split import Row, read_pairs, split

MODEL = "eval-model"
CONTROLS = Controls()


async def look_up(cache: ResponseCache, plan: Plan, store: Entry | None = None) -> Lookup:
    """The one place this script drives the engine's lookup lifecycle: look `plan` up;
    on a miss store `store` (if given) as its answer, else release the pending lookup."""
    found = await cache.lookup(plan)
    if found.pending is not None:
        if store is not None:
            await found.pending.store(store.response)
        else:
            found.pending.abandon()
    return found


def load_settings(path: str | None) -> SemanticConfig:
    if not path:
        return SemanticConfig()
    data: Any = yaml.safe_load(Path(path).read_text()) or {}
    if "cache" in data:
        data = data["cache"]
    if "semantic" in data:
        data = data["semantic"]
    return SemanticConfig.model_validate(data)


def request(text: str) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}]}


def answer(index: int) -> dict[str, Any]:
    return {"id": f"a{index}", "object": "chat.completion", "created": 0, "model": MODEL,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": f"answer {index}"}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}}


def plan_for(cache: ResponseCache, text: str, line: int, protocol: str) -> Plan:
    # `pair`: each line is its own tenant, hence its own semantic scope.
    return cache.plan("chat", request(text), CONTROLS,
                      scope=f"line{line}" if protocol == "pair" else "")


async def load(cache: ResponseCache, semantic: SemanticLayer, rows: list[Row],
               protocol: str) -> tuple[dict[str, str], dict[int, Plan]]:
    """Stores the text_a answers. Returns answer -> stored text, line -> text_a's plan."""
    owner: dict[str, str] = {}
    plans: dict[int, Plan] = {}
    stored: dict[str, Plan] = {}
    lines = [(n, a) for n, (a, _, _) in enumerate(rows)]
    plans_all = {n: plan_for(cache, a, n, protocol) for n, a in lines}
    # Embed text_a in batches first: faster loads (queries stay cold).
    await semantic.prefetch([(p.semantic_text or "", p.semantic_scope or "")
                             for p in plans_all.values()])
    for n, a in lines:
        if protocol == "full" and a in stored:
            plans[n] = stored[a]
            continue
        plan = plans_all[n]
        entry = Entry(plan.key, "chat", answer(n))
        owner[f"answer {n}"] = a
        found = await look_up(cache, plan, entry)
        if found.entry is not None:
            # A paraphrase already answers this text; store it under its own key too so
            # its exact queries resolve to its own answer.
            await cache.put(plan, entry)
            assert plan.semantic_scope is not None
            vector = await semantic.vector(a, plan.semantic_scope)
            await semantic.remember(plan.key, a, vector, plan.semantic_scope, plan.namespace,
                                    None)
        plans[n] = stored[a] = plan
    return owner, plans


async def why_lost(semantic: SemanticLayer, b_plan: Plan, a_plan: Plan) -> str:
    """Why text_b did not find its own text_a (after the timed lookup)."""
    scope = b_plan.semantic_scope or ""
    text_b, text_a = b_plan.semantic_text or "", a_plan.semantic_text or ""
    vb = await semantic.vector(text_b, scope)
    va = await semantic.vector(text_a, a_plan.semantic_scope or "")
    if vb is None or va is None:
        return "not_embedded"
    score = float(np.dot(vb, va))
    if score < semantic.search_floor:
        return "below_threshold"
    matches = await semantic.index.search(vb, scope=scope, k=semantic.settings.top_k,
                                          min_score=semantic.search_floor)
    match = next((m for m in matches if m.key == a_plan.key), None)
    if match is None:
        return "not_in_top_k"
    return "vetoed:" + semantic.verdict(text_b, text_a, match.score, (vb, match.vector)).reason


def preload_vectors(cache: ResponseCache, semantic: SemanticLayer, path: Path,
                    rows: list[Row], protocol: str) -> None:
    """`--vectors`: every text's vector from an .npz of e5 vectors (the default
    embedder's; `semantic_train.py` writes one), computing and adding missing ones.
    Lookups are then warm, so no latency is reported."""
    from semantic_train import Embeddings

    store = Embeddings(path)
    texts = list(dict.fromkeys(t for a, b, _ in rows for t in (a, b)))
    by_text = dict(zip(texts, store.get(texts), strict=True))
    store.save()
    for n, (a, b, _) in enumerate(rows):
        for text in (a, b):
            plan = plan_for(cache, text, n, protocol)
            semantic.prefill(text, plan.semantic_scope or "", by_text[text])


async def evaluate(rows: list[Row], settings: SemanticConfig, protocol: str,
                   show_false: int = 0, vectors: Path | None = None) -> dict[str, Any]:
    semantic = build_semantic(settings)
    cache = ResponseCache(MemoryStore(max_bytes=2 * 1024**3), semantic=semantic)
    if vectors is not None:
        preload_vectors(cache, semantic, vectors, rows, protocol)
    labels: dict[tuple[str, str], int] = {}
    for a, b, y in rows:
        labels[(a, b)] = max(labels.get((a, b), 0), y)

    started = time.perf_counter()
    owner, a_plans = await load(cache, semantic, rows, protocol)
    load_seconds = time.perf_counter() - started
    rejected_at_load = Counter(semantic.stats.rejected)

    hits = exact_hits = semantic_hits = semantic_correct = semantic_false = 0
    recalled = 0
    lost: Counter[str] = Counter()
    latencies = []
    for n, (a, b, y) in enumerate(rows):
        plan = plan_for(cache, b, n, protocol)
        timeouts = semantic.stats.timeouts
        t0 = time.perf_counter()
        found = await look_up(cache, plan)
        latencies.append((time.perf_counter() - t0) * 1000)
        gave_up = semantic.stats.timeouts > timeouts
        wanted = y == 1 and a != b
        outcome = "miss"
        if found.entry is not None:
            hits += 1
            served = owner[found.entry.response["choices"][0]["message"]["content"]]
            if found.similarity is None:
                exact_hits += 1
                outcome = "exact_hit"
            else:
                semantic_hits += 1
                right = served == b or (labels.get((served, b)) == 1 if protocol == "full"
                                        else y == 1)
                if right:
                    semantic_correct += 1
                    outcome = "correct"
                else:
                    semantic_false += 1
                    outcome = "false_hit"
                    if semantic_false <= show_false:
                        print(f"false hit ({found.similarity:.3f}): {b!r} <- {served!r}",
                              file=sys.stderr)
        if wanted:
            if outcome == "correct":
                recalled += 1
            elif outcome == "miss":
                lost["deadline" if gave_up else await why_lost(semantic, plan, a_plans[n])] += 1
            else:
                lost[outcome] += 1
    wanted_total = sum(1 for a, b, y in rows if y == 1 and a != b)
    latencies.sort()
    result = {
        "protocol": protocol,
        "pairs": len(rows),
        "positives": sum(y for _, _, y in rows),
        "positives_differing": wanted_total,
        "hits": hits,
        "exact_hits": exact_hits,
        "semantic_hits": semantic_hits,
        "semantic_correct": semantic_correct,
        "semantic_false": semantic_false,
        "false_share": round(semantic_false / semantic_hits, 4) if semantic_hits else None,
        "recall_semantic": round(recalled / wanted_total, 4) if wanted_total else None,
        "lookup_p50_ms": None if vectors else round(statistics.median(latencies), 2),
        "lookup_p99_ms": None if vectors else round(
            latencies[max(0, int(len(latencies) * 0.99) - 1)], 2),
        "lost": dict(lost.most_common()),
        "rejected": dict((semantic.stats.rejected - rejected_at_load).most_common()),
        "skipped": semantic.stats.skipped(),
        "entries": len(owner),
        "load_seconds": round(load_seconds, 1),
        "embedder": semantic.embedder.name,
        "settings": settings.model_dump(),
    }
    await cache.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", type=Path)
    parser.add_argument("--protocol", choices=("full", "pair"), default="full")
    parser.add_argument("--part", choices=("all", "fit", "calibrate", "test"), default="all",
                        help="one part of the split in semantic_split.py (default all)")
    parser.add_argument("--config", help="YAML with a cache.semantic section")
    parser.add_argument("--no-deadline", action="store_true",
                        help="embed_timeout_ms: null (accuracy on an overloaded machine)")
    parser.add_argument("--vectors", type=Path, metavar="NPZ",
                        help="take e5 vectors from (and add them to) this file: fast, "
                             "warm lookups, no latency figures")
    parser.add_argument("--limit", type=int, help="only the first N pairs (after --part)")
    parser.add_argument("--show-false", type=int, default=0, metavar="N",
                        help="print the first N false semantic hits to stderr")
    parser.add_argument("--model", type=Path, metavar="JSON",
                        help="another verifier model file (semantic_train.py --out) instead "
                             "of the shipped one")
    args = parser.parse_args()
    if args.model is not None:
        from hitrate.semantic import learned

        learned.MODEL_PATH = args.model
    rows = split(read_pairs(args.pairs), args.part)
    rows = rows[: args.limit] if args.limit else rows
    settings = load_settings(args.config)
    if args.no_deadline:
        settings = settings.model_copy(update={"embed_timeout_ms": None})
    result = asyncio.run(evaluate(rows, settings, args.protocol, args.show_false,
                                  args.vectors))
    print(json.dumps({"file": args.pairs.name, "part": args.part, **result},
                     ensure_ascii=False))


if __name__ == "__main__":
    main()
