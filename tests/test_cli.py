"""The console script: `hitrate serve` answers, `hitrate demo` shows the product."""

from __future__ import annotations

import subprocess
import time

import httpx
import openai

from tests.serve_process import free_port, hitrate_command


def test_serve_proxies_and_caches(tmp_path, upstream):
    port = free_port()
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
    proc = subprocess.Popen([*hitrate_command(), "serve", "--config", str(config), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.05)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        statuses = [client.chat.completions.with_raw_response.create(
            model="gpt-test", messages=[{"role": "user", "content": "cli"}]
        ).headers["x-hitrate-cache"] for _ in range(2)]
        assert statuses == ["miss", "hit"]
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_demo_runs_offline():
    result = subprocess.run([*hitrate_command(), "demo", "--latency-ms", "20", "40"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "What happened" in out
    assert "hit" in out and "miss" in out
    assert "9 hit / 1 miss" in out  # the coalesced burst
    assert "reached the provider" in out
