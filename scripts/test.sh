#!/usr/bin/env bash
# The whole test suite on a fresh machine: venv, dependencies, lint, pytest.
# Extra arguments go to pytest (e.g. `-m "not slow"` for the quick local subset).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
bash scripts/test_deps.sh
.venv/bin/ruff check src tests benchmarks
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "error: pytest collected no tests; that is a failure, not a pass" >&2
  exit 1
fi
exit "$status"
