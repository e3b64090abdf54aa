#!/usr/bin/env bash
# The KV cache's GPU checks and blending timings, on a CUDA machine (never CI: no GPU).
# Uses the machine's own python3 with torch + transformers; hitrate runs from src/.
# Wheels of what that python lacks (orjson, pydantic, ...) may lie in .whl/.
# Writes JSON lines to stdout and, when $OUT is set, to files there.
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
out=${OUT:-/tmp}
python3 scripts/kv_gpu_check.py 2>&1 | grep -v Warning | tee "$out/kv_gpu_check.jsonl"
ratios="0 0.05 0.1 0.15 0.2 0.3 1"
python3 benchmarks/kv_blend.py --model smollm2-shape --device cuda --docs 8 --doc-tokens 1024 \
  --questions 3 --repeat 5 --steps 16 --ratios $ratios 2>&1 | grep -v Warning | tee "$out/kv_blend_smollm2_shape.json"
python3 benchmarks/kv_blend.py --model llama8b-shape --device cuda --dtype bfloat16 --docs 8 \
  --doc-tokens 1024 --questions 3 --repeat 5 --steps 16 --ratios $ratios 2>&1 | grep -v Warning \
  | tee "$out/kv_blend_llama8b_shape.json"
