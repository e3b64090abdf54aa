"""One "instance": builds the tiny Llama, an engine from HITRATE_KV_* (remote Redis),
generates for a prompt and prints one JSON line. test_sharing.py runs two."""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    args = json.loads(sys.argv[1])
    import torch

    from hitrate.kv import hf
    from tests.kv.conftest import random_tokens, tiny_llama

    torch.set_num_threads(1)
    model = tiny_llama(layers=args.get("layers", 8))
    engine = hf.make_engine(model, model_id="tiny-llama-shared")  # tiers from the environment
    prompt = random_tokens(args["tokens"], seed=args["seed"])
    started = time.perf_counter()
    first = hf.prefill(model, prompt, engine, store=False)
    ttft = time.perf_counter() - started
    out = hf.generate(model, None, prompt, engine, max_new_tokens=6, do_sample=False)
    engine.flush()
    print(json.dumps({"ttft_s": ttft, "cached": first.cached_tokens, "tokens": out.tokens,
                      "tiers": [t.name for t in engine.tiers],
                      "first_logit": first.logits[:4].tolist()}), flush=True)
    engine.close()


if __name__ == "__main__":
    main()
