#!/usr/bin/env bash
# The KV cache's GPU checks and blending timings, on a CUDA machine (never CI: no GPU).
# Uses the machine's own python3 with torch + transformers; hitrate runs from src/.
# Wheels of what that python lacks (orjson, pydantic, ...) may lie in .whl/.
# Writes JSON lines to stdout and, when $OUT is set, to files there.
set -uo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/hitrate-site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/hitrate-site:src
else
  export PYTHONPATH=src
fi
export PYTHONUNBUFFERED=1
out=${OUT:-/tmp}
nvidia-smi -L
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
python3 scripts/kv_gpu_check.py 2>&1 | grep -v Warning | tee "$out/kv_gpu_check.jsonl"
ratios="0 0.05 0.1 0.15 0.2 0.3 1"
python3 benchmarks/kv_blend.py --model smollm2-shape --device cuda --docs 8 --doc-tokens 1024 \
  --questions 3 --repeat 5 --steps 16 --ratios $ratios 2>&1 | grep -v Warning | tee "$out/kv_blend_smollm2_shape.json"
python3 benchmarks/kv_blend.py --model llama8b-shape --device cuda --dtype bfloat16 --docs 8 \
  --doc-tokens 1024 --questions 3 --repeat 5 --steps 16 --ratios $ratios 2>&1 | grep -v Warning \
  | tee "$out/kv_blend_llama8b_shape.json"
