"""Two processes pointed at the same Redis share chunks: the second one's prefill of a
prompt the first one saw is a cached prefill, with identical output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[2]


def run_instance(redis_url: str, **args) -> dict:
    env = {**os.environ, "HITRATE_KV_REMOTE_URL": redis_url, "HITRATE_KV_CPU_SIZE_MB": "128",
           "HITRATE_KV_DISK_DIR": "", "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "random"}
    done = subprocess.run([sys.executable, str(ROOT / "tests/kv/share_worker.py"), json.dumps(args)],
                          env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_second_process_gets_the_first_ones_chunks(redis_url, record_property):
    first = run_instance(redis_url, tokens=1500, seed=11)
    second = run_instance(redis_url, tokens=1500, seed=11)
    assert first["tiers"] == second["tiers"] == ["cpu", "remote"]
    assert first["cached"] == 0
    assert second["cached"] == 1499  # everything but the last prompt token
    assert second["tokens"] == first["tokens"]
    record_property("ttft_s", {"first_process": first["ttft_s"], "second_process": second["ttft_s"]})
