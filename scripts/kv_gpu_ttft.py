"""Cold vs warm TTFT on a GPU, phase by phase, to explain the bfloat16 warm path (never CI).

    python3 scripts/kv_gpu_ttft.py --shape small --dtype bfloat16 [--warmup] [--profile]
    python3 scripts/kv_gpu_ttft.py --shape llama8b --dtype bfloat16 --chat

One process per run: every figure below is from a fresh CUDA context, so the first call
of each kind of forward is reported apart from the steady state. Per run:

- `cold_s`: full prefills of N cached + `--new` tokens, in call order;
- `warm_s`: prefills reusing the cached prefix from the GPU tier (`hf.prefill`), in
  call order, and `warm_phases_s`: the same split into retrieve (GPU tier -> one
  tensor), cache build (DynamicCache), forward (the new tokens only);
- `ref_s`: the forward over KV that never left the model (the floor of `warm_s`);
- `sdpa_backends_s`: the steady warm forward with each SDPA backend forced;
- `new_shapes`: first and second call for other (cached, new) lengths;
- `--sdpa pytorch`: PyTorch's own attention kernel choice instead of hitrate's order;
- `--warmup`: `hf.warmup(model)` first (one tiny cold and one tiny cached forward);
- `--profile`: the top operators of the first warm forward (torch.profiler);
- `--chat`: a 3-turn chat's TTFT per turn with and without `save_decode_cache`.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from kv_blend import load_model, timed

from hitrate.kv import hf
from hitrate.kv.tiers import CPUTier, GPUTier

SHAPES = {"small": "llama-small-shape", "llama8b": "llama8b-shape"}  # kv_blend.SHAPES


def forward(model, ids: list[int], cache, *, hitrate_order: bool = True):
    with hf.inference(model) if hitrate_order else torch.no_grad():
        return model(input_ids=torch.tensor([ids], device=model.device), past_key_values=cache,
                     use_cache=True, logits_to_keep=1)


def warm_phases(model, engine, prompt: list[int], device: str) -> dict:
    hit, t_retrieve = timed(lambda: engine.retrieve(prompt, device=model.device), device)
    cached = min(hit.num_tokens, len(prompt) - 1)
    cache, t_cache = timed(lambda: hf.cache_from_kv(hit.kv.narrow(3, 0, cached), model.config), device)
    _, t_forward = timed(lambda: forward(model, prompt[cached:], cache), device)
    return {"retrieve": round(t_retrieve, 4), "cache": round(t_cache, 4), "forward": round(t_forward, 4)}


def profile_top(fn, rows: int = 12) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:rows]
    return [{"op": e.key[:80], "calls": e.count, "self_cpu_ms": round(e.self_cpu_time_total / 1e3, 2),
             "self_device_ms": round(getattr(e, "self_device_time_total", 0) / 1e3, 2)} for e in events]


def chat(model, device: str, turns: int = 3, system: int = 2048, question: int = 64,
         answer: int = 256) -> dict:
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(7)
    system_ids = torch.randint(0, vocab, (system,), generator=g).tolist()
    questions = [torch.randint(0, vocab, (question,), generator=g).tolist() for _ in range(turns)]
    out: dict = {"system_tokens": system, "question_tokens": question, "answer_tokens": answer}
    for save in (False, True):
        engine = hf.make_engine(model, [GPUTier(8 << 30), CPUTier(8 << 30)], model_id=f"chat-{save}")
        rows, history = [], list(system_ids)
        try:
            for turn in range(turns):
                prompt = history + questions[turn]
                first, ttft = timed(lambda e=engine, p=prompt: hf.prefill(model, p, e, store=False), device)
                reply = hf.generate(model, None, prompt, engine, max_new_tokens=answer, min_new_tokens=answer,
                                    do_sample=False, save_decode_cache=save)
                engine.flush()
                rows.append({"turn": turn + 1, "prompt_tokens": len(prompt),
                             "cached_tokens": first.cached_tokens, "ttft_s": round(ttft, 4)})
                history = prompt + reply.tokens
        finally:
            engine.close()
        out["with_decode_cache" if save else "prompt_only"] = rows
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="small")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--cached", type=int, default=8192)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sdpa", choices=["hitrate", "pytorch"], default="hitrate",
                        help="attention kernel order: hitrate's (hf.SDPA_PRIORITY) or PyTorch's own")
    parser.add_argument("--warmup", action="store_true", help="call hf.warmup(model) before timing")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--chat", action="store_true")
    args = parser.parse_args()
    device = args.device
    if args.sdpa == "pytorch":
        hf.SDPA_PRIORITY = None
    report: dict = {"shape": args.shape, "dtype": args.dtype, "device": device, "cached_tokens": args.cached,
                    "new_tokens": args.new, "warmup": args.warmup, "sdpa": args.sdpa}
    start = time.perf_counter()
    model, _ = load_model(SHAPES[args.shape], device, args.dtype)
    report["attn_implementation"] = model.config._attn_implementation
    report["build_s"] = round(time.perf_counter() - start, 2)
    if args.warmup:
        _, report["warmup_s"] = timed(lambda: hf.warmup(model), device)
    g = torch.Generator().manual_seed(1)
    vocab = model.config.vocab_size
    prefix = torch.randint(0, vocab, (args.cached,), generator=g).tolist()
    prompt = prefix + torch.randint(0, vocab, (args.new,), generator=g).tolist()

    cold = []
    for _ in range(args.repeats):
        out, seconds = timed(lambda: hf.prefill(model, prompt, None), device)
        cold.append(round(seconds, 4))
    report["cold_s"] = cold
    tiers = [GPUTier(16 << 30), CPUTier(16 << 30)]
    engine = hf.make_engine(model, tiers, model_id=f"ttft-{args.shape}-{args.dtype}")
    try:
        engine.store(prefix, hf.kv_slicer(out.cache), wait=True)
        engine.retrieve(prefix)  # promoted into the GPU tier before anything is timed
        if args.profile and device.startswith("cuda"):
            report["first_warm_profile"] = profile_top(lambda: hf.prefill(model, prompt, engine, store=False))
        warm = []
        for _ in range(args.repeats):
            result, seconds = timed(lambda: hf.prefill(model, prompt, engine, store=False), device)
            warm.append(round(seconds, 4))
        report["warm_s"] = warm
        report["warm_cached_tokens"] = result.cached_tokens
        report["warm_phases_s"] = [warm_phases(model, engine, prompt, device) for _ in range(3)]
        kv = torch.stack([torch.stack((layer.keys[0, :, :args.cached], layer.values[0, :, :args.cached]))
                          for layer in out.cache.layers]).clone()
        ref = []
        for _ in range(args.repeats):
            cache = hf.cache_from_kv(kv, model.config)
            ref_out, seconds = timed(lambda c=cache: forward(model, prompt[args.cached:], c), device)
            ref.append(round(seconds, 4))
        report["ref_s"] = ref
        shapes = []  # other (cached, new) lengths: does each new shape pay a one-time cost?
        for cached, new in ((2048, 17), (2048, 100), (4096, 64), (4096, 200), (6144, 33), (6144, 128),
                            (8192, 300), (8192, 5)):
            if cached > args.cached:
                continue
            other = prefix[:cached] + torch.randint(0, vocab, (new,), generator=g).tolist()
            first = timed(lambda o=other: hf.prefill(model, o, engine, store=False), device)[1]
            second = timed(lambda o=other: hf.prefill(model, o, engine, store=False), device)[1]
            shapes.append({"cached": cached, "new": new, "first_s": round(first, 4),
                           "second_s": round(second, 4)})
        report["new_shapes"] = shapes
        report["max_abs_diff"] = (result.logits - ref_out.logits[0, -1]).abs().max().item()
        if device.startswith("cuda"):
            from torch.nn.attention import SDPBackend, sdpa_kernel

            backends = {}
            for name in ("MATH", "EFFICIENT_ATTENTION", "FLASH_ATTENTION", "CUDNN_ATTENTION"):
                try:
                    with sdpa_kernel(getattr(SDPBackend, name)):
                        times = [timed(lambda: forward(model, prompt[args.cached:],
                                                       hf.cache_from_kv(kv, model.config),
                                                       hitrate_order=False), device)[1]
                                 for _ in range(3)]
                    backends[name] = [round(t, 4) for t in times]
                except Exception as exc:  # a backend that refuses this shape says why
                    backends[name] = f"{type(exc).__name__}: {str(exc)[:120]}"
            report["sdpa_backends_s"] = backends
    finally:
        engine.close()
    report["cold_steady_s"] = statistics.median(cold[1:]) if len(cold) > 1 else cold[0]
    report["warm_steady_s"] = statistics.median(warm[1:]) if len(warm) > 1 else warm[0]
    report["speedup_steady"] = round(report["cold_steady_s"] / report["warm_steady_s"], 2)
    report["speedup_first_calls"] = round(cold[0] / warm[0], 2)
    if args.chat:
        report["chat"] = chat(model, device)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
