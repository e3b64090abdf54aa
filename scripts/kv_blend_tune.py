"""Quality-only sweep of blend selection settings on SmolLM2 (no timing), for choosing
settings on the tuning split of `benchmarks/kv_blend.py` (`--split tune`: other documents,
other questions) before measuring on the reported one.

Each question's reference answer and each document's KV are computed once; every
variant is then one blended forward per question. Prints one JSON line per variant:
top-1 agreement and mean KL over all questions, and the share of segment tokens
recomputed (what TTFT follows).

Usage: python scripts/kv_blend_tune.py --split tune --questions 4 \\
    --variants '{"ratio": 0.15}' '{"ratio": 0.15, "sink": 8}' ...
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from kv_blend import SPLITS

from hitrate.kv import blend, hf, samples
from hitrate.kv import blend_quality as quality
from hitrate.kv.segments import build_layout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=sorted(SPLITS), default="tune")
    parser.add_argument("--docs", type=int, default=6)
    parser.add_argument("--doc-chars", type=int, default=3000)
    parser.add_argument("--questions", type=int, default=4)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--variants", nargs="+", required=True,
                        help='JSON objects: ratio, check_layer, anchor (bos|system), sink, tail, metric, '
                             'attention, '
                             'pre_ratios')
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    model, tokenizer = samples.smollm2()
    offset, questions = SPLITS[args.split]
    docs = samples.stdlib_documents(args.docs, args.doc_chars, offset)
    anchor = blend.default_anchor(model, tokenizer)
    cases = []
    kv_cache: dict = {}
    for q in range(1, args.questions + 1):
        order = list(docs)
        random.Random(q).shuffle(order)
        layout = build_layout(tokenizer, samples.rag_parts(order, questions[q % len(questions)]))
        segments = {}
        system = layout.ids[:layout.segments[0].start]  # the true prefix before the first segment
        for name, after in (("bos", anchor), ("system", system)):
            segments[name] = []
            for span in layout.segments:
                key = (tuple(after), span.tokens)
                if key not in kv_cache:
                    kv_cache[key] = blend._compute_segment(model, list(after), span.tokens)
                segments[name].append(blend.LoadedSegment(span.start, kv_cache[key], len(after)))
        cases.append((layout, segments, quality.reference(model, layout.ids, args.steps)))
    for text in args.variants:
        spec = json.loads(text)
        ratio = spec.pop("ratio")
        check_layer = spec.pop("check_layer", blend.DEFAULT_CHECK_LAYER)
        anchor_name = spec.pop("anchor", "bos")  # "system": segments computed after the system text
        selection = blend.Selection(**spec)
        top1, kl, share, per_q = [], [], [], []
        t0 = time.perf_counter()
        for layout, by_anchor, ref in cases:
            logits, kv, selected = blend.blended_forward(model, layout.ids, by_anchor[anchor_name],
                                                         ratio=ratio, check_layer=check_layer,
                                                         selection=selection)
            cache = hf.cache_from_kv(kv, model.config)
            got = quality.continuation_logits(model, logits, cache, ref.continuation)
            agree = quality.agreement(ref.logits, got)
            top1.append(agree.top1)
            kl.append(agree.kl_mean)
            share.append(len(selected) / layout.segment_tokens)
            per_q.append(round(agree.top1 * args.steps))
        print(json.dumps({"variant": json.loads(text), "top1": round(sum(top1) / len(top1), 4),
                          "kl_mean": round(sum(kl) / len(kl), 5), "share": round(sum(share) / len(share), 4),
                          "agree_per_question": per_q, "seconds": round(time.perf_counter() - t0, 1)}),
              flush=True)


if __name__ == "__main__":
    main()
