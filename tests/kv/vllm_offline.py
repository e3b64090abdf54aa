"""Runs vLLM (offline `LLM`, engine core in this process) with hitrate's connector on
token-id prompts; prints one JSON line. Used by test_vllm.py in a subprocess."""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    args = json.loads(sys.argv[1])
    from vllm import LLM, SamplingParams
    from vllm.config import KVTransferConfig

    from hitrate.kv import vllm_connector

    started = time.perf_counter()
    llm = LLM(model=args["model"], dtype="float32", max_model_len=2048, block_size=32,
              enable_prefix_caching=False, max_num_seqs=2, max_num_batched_tokens=2048,
              enforce_eager=True, seed=0,
              kv_transfer_config=KVTransferConfig(
                  kv_connector="HitrateConnector", kv_connector_module_path="hitrate.kv.vllm_connector",
                  kv_role="kv_both", kv_connector_extra_config=args["extra"]))
    startup = time.perf_counter() - started
    params = SamplingParams(max_tokens=args.get("max_tokens", 8), temperature=0, logprobs=0)
    runs = []
    # follow_ups: chat turns, each the previous prompt + its answer + these tokens
    prompts = [*args["prompts"], *[None] * len(args.get("follow_ups", []))]
    previous: list[int] = []
    for turn, prompt in enumerate(prompts):
        if prompt is None:  # a follow-up turn, built from the previous one's answer
            prompt = previous + runs[-1]["tokens"] + args["follow_ups"][turn - len(args["prompts"])]
        previous = prompt
        t = time.perf_counter()
        out = llm.generate([{"prompt_token_ids": prompt}], params, use_tqdm=False)[0]
        seconds = time.perf_counter() - t
        completion = out.outputs[0]
        logprobs = [entry[tok].logprob for tok, entry in zip(completion.token_ids, completion.logprobs,
                                                             strict=True)]
        runs.append({"tokens": list(completion.token_ids), "cached": out.num_cached_tokens,
                     "seconds": seconds, "logprobs": logprobs, "prompt_len": len(prompt)})
    engines = list(vllm_connector._engines.values())
    for engine in engines:
        engine.flush()
    stats = [engine.stats_dict() for engine in engines]
    print(json.dumps({"startup": startup, "runs": runs, "stats": stats}), flush=True)


if __name__ == "__main__":
    main()
