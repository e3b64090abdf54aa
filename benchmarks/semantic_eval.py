"""Semantic cache accuracy on labelled pairs, through the real engine.

    python benchmarks/semantic_eval.py PAIRS.tsv [--config cache.yaml] [--limit N]

PAIRS.tsv: `text_a <TAB> text_b <TAB> label` (1 = same meaning). Every distinct text_a
is stored in a fresh cache (memory store + the configured semantic layer) with an
answer of its own; then every text_b is looked up as a chat request with the same
model and parameters. Prints one JSON line.

A hit is judged by the pair (served text_a, text_b): correct if the file labels that
pair 1 - its own pair, or another pair with the same texts (some files repeat a text_b
as the positive of one pair and the negative of another) - or if the two texts are
identical; false if labelled 0 or not labelled at all. Lookups are timed cold: each
text_b is embedded inside its lookup (text_a embeddings are batched while loading).
`false_hits_strict` follows the narrower reading: any hit for a label-0 line, or a hit
on an entry other than the line's own text_a.
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
from pathlib import Path
from typing import Any

import yaml

from hitrate.config import SemanticConfig
from hitrate.controls import Controls
from hitrate.engine import ResponseCache
from hitrate.entry import Entry
from hitrate.semantic.lookup import build_semantic
from hitrate.stores.memory import MemoryStore

MODEL = "eval-model"


def read_pairs(path: Path, limit: int | None) -> list[tuple[str, str, int]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3 or parts[2].strip() not in ("0", "1"):
            sys.exit(f"{path}:{number}: expected text_a<TAB>text_b<TAB>0|1")
        rows.append((parts[0], parts[1], int(parts[2])))
    return rows[:limit] if limit else rows


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


async def evaluate(rows: list[tuple[str, str, int]], settings: SemanticConfig,
                   show_false: int = 0) -> dict[str, Any]:
    cache = ResponseCache(MemoryStore(max_bytes=2 * 1024**3), semantic=build_semantic(settings))
    controls = Controls()
    texts_a = list(dict.fromkeys(a for a, _, _ in rows))
    owner = {f"answer {i}": text for i, text in enumerate(texts_a)}
    labels: dict[tuple[str, str], int] = {}
    for a, b, y in rows:
        labels[(a, b)] = max(labels.get((a, b), 0), y)

    started = time.perf_counter()
    assert cache.semantic is not None
    for i in range(0, len(texts_a), 64):  # warm the embedding cache in batches: faster loads
        await cache.semantic.embedder.embed(texts_a[i:i + 64])
    for i, text in enumerate(texts_a):
        plan = cache.plan("chat", request(text), controls)
        found = await cache.lookup(plan)  # embeds, and may hit an earlier paraphrase
        if found.pending is not None:
            await found.pending.store(answer(i))
        else:
            # A paraphrase already answers this text; store it under its own key too so
            # its exact queries still resolve to its own answer.
            await cache.put(plan, Entry(plan.key, plan.kind.name, answer(i)))
            semantic = cache.semantic
            assert semantic is not None and plan.semantic_scope is not None
            await semantic.remember(plan.key, text, await semantic.vector(text),
                                    plan.semantic_scope, plan.namespace, None)
    load_seconds = time.perf_counter() - started

    hits = correct = false = false_strict = semantic_hits = 0
    latencies = []
    for a, b, y in rows:
        plan = cache.plan("chat", request(b), controls)
        t0 = time.perf_counter()
        found = await cache.lookup(plan)
        latencies.append((time.perf_counter() - t0) * 1000)
        if found.pending is not None:
            found.pending.abandon()
        if found.entry is None:
            continue
        hits += 1
        semantic_hits += found.similarity is not None
        served = owner[found.entry.response["choices"][0]["message"]["content"]]
        if served == b or labels.get((served, b)) == 1:  # identical text: same meaning
            correct += 1
        else:
            false += 1
            if false <= show_false:
                print(f"false hit ({found.similarity}): {b!r} <- {served!r}", file=sys.stderr)
        if y != 1 or served != a:
            false_strict += 1
    positives = sum(y for _, _, y in rows)
    latencies.sort()
    assert cache.semantic is not None
    result = {
        "pairs": len(rows),
        "positives": positives,
        "hits": hits,
        "correct_hits": correct,
        "false_hits": false,
        "precision": round(correct / hits, 4) if hits else None,
        "recall": round(correct / positives, 4) if positives else None,
        "lookup_p50_ms": round(statistics.median(latencies), 2),
        "lookup_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 2),
        "false_hits_strict": false_strict,
        "semantic_hits": semantic_hits,
        "exact_hits": hits - semantic_hits,
        "entries": len(texts_a),
        "load_seconds": round(load_seconds, 1),
        "rejected": dict(cache.semantic.stats.rejected.most_common()),
        "embedder": cache.semantic.embedder.name,
        "settings": settings.model_dump(),
    }
    await cache.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", type=Path)
    parser.add_argument("--config", help="YAML with a cache.semantic section")
    parser.add_argument("--limit", type=int, help="only the first N pairs")
    parser.add_argument("--show-false", type=int, default=0, metavar="N",
                        help="print the first N false hits to stderr")
    args = parser.parse_args()
    rows = read_pairs(args.pairs, args.limit)
    result = asyncio.run(evaluate(rows, load_settings(args.config), args.show_false))
    print(json.dumps({"file": args.pairs.name, **result}, ensure_ascii=False))


if __name__ == "__main__":
    main()
