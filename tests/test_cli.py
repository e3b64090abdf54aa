"""The console script: `hitrate serve` answers, `hitrate demo` shows the product."""

from __future__ import annotations

import subprocess

import openai

from tests.serve_process import hitrate_command, serve


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
    with serve(config) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        statuses = [client.chat.completions.with_raw_response.create(
            model="gpt-test", messages=[{"role": "user", "content": "cli"}]
        ).headers["x-hitrate-cache"] for _ in range(2)]
        assert statuses == ["miss", "hit"]


def test_demo_runs_offline():
    result = subprocess.run([*hitrate_command(), "demo", "--latency-ms", "20", "40"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "What happened" in out
    assert "hit" in out and "miss" in out
    assert "9 hit / 1 miss" in out  # the coalesced burst
    assert "reached the provider" in out
    for api in ("Responses API", "Anthropic Messages API"):
        rows = [line for line in out.splitlines() if api in line]
        assert [" miss " in rows[0], " hit " in rows[1]] == [True, True], rows
