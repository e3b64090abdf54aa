"""Interleaved TTFT on SmolLM2: full prefill vs blended prefills with the plain and the
attention-weighted gradual selection, alternating on the same prompts (report split of
benchmarks/kv_blend.py), so that the machine's load hits every variant alike.

Prints one JSON line (medians over 4 questions x 2 runs). Usage: python scripts/kv_blend_ttft.py
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from kv_blend import SPLITS

from hitrate.kv import blend, hf, samples
from hitrate.kv.segments import build_layout
from hitrate.kv.tiers import CPUTier

GRADUAL = blend.Selection(attention=True, pre_ratios=(0.5, 0.3))


def main() -> None:
    warnings.filterwarnings("ignore")
    model, tokenizer = samples.smollm2()
    offset, questions = SPLITS["report"]
    docs = samples.stdlib_documents(6, 3000, offset)
    engine = hf.make_engine(model, [CPUTier(16 << 30)], chunk_size=256)

    def layout_for(q: int):
        order = list(docs)
        random.Random(q).shuffle(order)
        return build_layout(tokenizer, samples.rag_parts(order, questions[q % len(questions)]))

    blend.prefill(model, layout_for(0), engine)  # every document cached
    engine.flush()
    variants = {"plain_0.15": (0.15, blend.Selection()), "gradual_0.15": (0.15, GRADUAL),
                "plain_0.2": (0.2, blend.Selection()), "gradual_0.2": (0.2, GRADUAL),
                "gradual_0.1": (0.1, GRADUAL)}
    times: dict[str, list[float]] = {k: [] for k in ["full", *variants]}
    for q in range(1, 5):
        layout = layout_for(q)
        ids = torch.tensor([layout.ids])
        for _ in range(2):
            start = time.perf_counter()
            with torch.no_grad():
                model(input_ids=ids, logits_to_keep=1)
            times["full"].append(time.perf_counter() - start)
            for name, (ratio, selection) in variants.items():
                start = time.perf_counter()
                blend.prefill(model, layout, engine, ratio=ratio, selection=selection, store=False)
                times[name].append(time.perf_counter() - start)
    full = statistics.median(times["full"])
    rows = {k: {"s": round(statistics.median(v), 3), "speedup": round(full / statistics.median(v), 2)}
            for k, v in times.items() if k != "full"}
    print(json.dumps({"load_average_1m": round(os.getloadavg()[0], 2), "full_s": round(full, 3), **rows}))
    engine.close()


if __name__ == "__main__":
    main()
