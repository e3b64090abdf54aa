"""The console script: `hitrate serve` answers, `hitrate demo` shows the product."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _hitrate() -> list[str]:
    exe = shutil.which("hitrate", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "hitrate.cli"]


@contextlib.contextmanager
def serving(config: Path) -> Iterator[str]:
    """`hitrate serve --config CONFIG` on a free port, until /health answers; its URL."""
    port = _free_port()
    proc = subprocess.Popen([*_hitrate(), "serve", "--config", str(config), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_serve_proxies_and_caches(tmp_path, upstream):
    config = tmp_path / "config.yaml"
    config.write_text(f"""
model_list:
  - model_name: gpt-test
    litellm_params:
      model: openai/sim-model
      api_base: {upstream.api_base}
      api_key: sk-upstream
litellm_settings:
  cache: true
  cache_params: {{type: disk, disk_cache_dir: {tmp_path / 'cache'}}}
""")
    with serving(config) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0)
        statuses = [client.chat.completions.with_raw_response.create(
            model="gpt-test", messages=[{"role": "user", "content": "cli"}]
        ).headers["x-hitrate-cache"] for _ in range(2)]
        assert statuses == ["miss", "hit"]


def test_demo_runs_offline():
    result = subprocess.run([*_hitrate(), "demo", "--latency-ms", "20", "40"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "What happened" in out
    assert "hit" in out and "miss" in out
    assert "9 hit / 1 miss" in out  # the coalesced burst
    assert "reached the provider" in out
