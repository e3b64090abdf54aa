# Sourced by the GPU scripts (kv_gpu_*.sh): the machine's own python3 (torch +
# transformers) runs hitrate from src/; wheels of what it lacks (orjson, ...) may lie in
# .whl/ and are installed beside it. Prints the GPU and the torch/transformers versions.
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/hitrate-site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/hitrate-site:src
else
  export PYTHONPATH=src
fi
export PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
