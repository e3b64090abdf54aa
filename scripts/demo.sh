#!/usr/bin/env bash
# The main job on a fresh machine: install, then `hitrate demo` (no network, no API key).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh semantic
exec .venv/bin/hitrate demo "$@"
