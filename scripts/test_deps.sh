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
# -- semantic cache -----------------------------------------------------------------
# -- ops (dashboard browser test) ---------------------------------------------------
# -- KV cache -----------------------------------------------------------------------
