"""Where a blended prefill spends its time on a GPU: BlendStats' phases and torch.profiler's
busiest operators, for a random-weight model shape of benchmarks/kv_blend.py.

    python3 scripts/kv_blend_profile.py [--model llama8b-shape] [--ratios 0 0.15]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from kv_blend import load_model, synthetic_parts

from hitrate.kv import blend, hf
from hitrate.kv.segments import build_layout
from hitrate.kv.tiers import CPUTier, GPUTier


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="llama8b-shape")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.0, 0.15])
    args = parser.parse_args()
    model, _ = load_model(args.model, "cuda", args.dtype)
    engine = hf.make_engine(model, [GPUTier(8 << 30), CPUTier(16 << 30)], chunk_size=256)
    layout = build_layout(None, synthetic_parts(model.config.vocab_size, 8, 1024, 1))
    blend.prefill(model, layout, engine)  # computes and stores the segments
    engine.flush()
    ids = torch.tensor([layout.ids], device="cuda")
    for ratio in args.ratios:
        for _ in range(3):
            torch.cuda.synchronize()
            t = time.perf_counter()
            done = blend.prefill(model, layout, engine, ratio=ratio, store=False)
            torch.cuda.synchronize()
            total = time.perf_counter() - t
        print(f"ratio {ratio}: total {total * 1e3:.1f} ms, load {done.stats.load_s * 1e3:.1f} ms, "
              f"blend {done.stats.blend_s * 1e3:.1f} ms", flush=True)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                torch.profiler.ProfilerActivity.CUDA]) as prof:
            blend.prefill(model, layout, engine, ratio=ratio, store=False)
            torch.cuda.synchronize()
        table = prof.key_averages()
        print(table.table(sort_by="self_cuda_time_total", row_limit=14, max_name_column_width=40))
        print(table.table(sort_by="self_cpu_time_total", row_limit=10, max_name_column_width=40))
    with torch.no_grad():
        for _ in range(3):
            torch.cuda.synchronize()
            t = time.perf_counter()
            model(input_ids=ids, logits_to_keep=1)
            torch.cuda.synchronize()
    print(f"full prefill {(time.perf_counter() - t) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
