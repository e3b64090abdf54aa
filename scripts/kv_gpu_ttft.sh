#!/usr/bin/env bash
# Cold vs warm TTFT on a CUDA machine, phase by phase (scripts/kv_gpu_ttft.py), plus the
# exactness checks (scripts/kv_gpu_check.py). Never CI: no GPU there. Uses the machine's
# own python3 (torch + transformers); wheels of what it lacks (orjson) may lie in .whl/.
# Writes JSON lines to stdout and, when $OUT is set, to $OUT/kv_gpu_ttft.jsonl.
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
out=${OUT:-/tmp}/kv_gpu_ttft.jsonl
python3 -c 'import vllm' 2>&1 | tail -1
run() { timeout 240 python3 scripts/kv_gpu_ttft.py "$@" 2>&1 | grep -v -i -e warning -e '^  ' | tee -a "$out"; }
run --shape small --dtype float32 --profile
run --shape small --dtype bfloat16 --sdpa pytorch --profile
run --shape small --dtype bfloat16
run --shape llama8b --dtype bfloat16 --sdpa pytorch --profile
run --shape llama8b --dtype bfloat16 --chat
timeout 120 python3 scripts/kv_gpu_check.py 2>&1 | grep -v -i -e warning -e '^  ' | tee -a "$out"
