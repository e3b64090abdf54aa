"""The kv: config section, HITRATE_KV_* overrides, tiers built from them, and
`hitrate kv stats | clear`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from hitrate.cli import app
from hitrate.config import ConfigError, parse_config
from hitrate.kv.settings import build_tiers, resolve_settings


def test_kv_section_defaults_and_validation():
    assert parse_config({}).kv.chunk_size == 256
    cfg = parse_config({"kv": {"chunk_size": 512, "cpu_size_mb": 64, "disk_dir": "/tmp/x",
                               "remote_url": "redis://127.0.0.1:6379/0", "remote_ttl": 3600}})
    assert cfg.kv.chunk_size == 512 and cfg.kv.remote_ttl == 3600
    with pytest.raises(ConfigError, match=r"kv\.chunk_size"):
        parse_config({"kv": {"chunk_size": 0}})
    with pytest.raises(ConfigError, match=r"kv\.remote_url"):
        parse_config({"kv": {"remote_url": "http://x"}})
    with pytest.raises(ConfigError, match=r"kv\.cpu_mb: unknown field"):
        parse_config({"kv": {"cpu_mb": 1}})


def test_environment_wins_and_errors_name_the_variable():
    cfg = parse_config({"kv": {"chunk_size": 512, "cpu_size_mb": 64}}).kv
    env = {"HITRATE_KV_CHUNK_SIZE": "128", "HITRATE_KV_REMOTE_URL": "redis://h:1/0",
           "HITRATE_KV_DISK_DIR": "none"}
    s = resolve_settings(cfg, env)
    assert (s.chunk_size, s.cpu_size_mb, s.remote_url, s.disk_dir) == (128, 64, "redis://h:1/0", None)
    with pytest.raises(ConfigError, match="HITRATE_KV_CPU_SIZE_MB"):
        resolve_settings(None, {"HITRATE_KV_CPU_SIZE_MB": "lots"})


def test_tiers_in_search_order(tmp_path):
    pytest.importorskip("redis")
    s = resolve_settings({"cpu_size_mb": 8, "gpu_size_mb": 8, "disk_dir": str(tmp_path),
                          "remote_url": "redis://127.0.0.1:1/0"}, {})
    tiers = build_tiers(s)  # no CUDA here: the GPU tier is left out
    assert [t.name for t in tiers] == ["cpu", "disk", "remote"]
    assert [t.verify for t in tiers] == [False, True, True]
    with pytest.raises(ValueError, match="no KV tier"):
        build_tiers(resolve_settings({"cpu_size_mb": 0}, {}))


def test_kv_stats_and_clear_cli(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from hitrate.kv.chunking import KVNamespace
    from hitrate.kv.engine import KVEngine

    monkeypatch.delenv("HITRATE_KV_REMOTE_URL", raising=False)
    config = tmp_path / "hitrate.yaml"
    config.write_text(f"kv:\n  disk_dir: {tmp_path / 'kv'}\n  chunk_size: 16\n")
    settings = resolve_settings(parse_config({"kv": {"disk_dir": str(tmp_path / "kv"),
                                                     "chunk_size": 16}}).kv, {})
    ns = KVNamespace(model="cli-model", dtype="float32", layout="hf:L2HTD")
    with KVEngine(ns, build_tiers(settings), token_axis=3, chunk_size=16) as engine:
        engine.store(list(range(40)), torch.zeros(1, 2, 1, 40, 4), wait=True)
    runner = CliRunner()
    result = runner.invoke(app, ["kv", "stats", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    (disk,) = json.loads(result.output)["tiers"]
    assert disk["chunks"] == 3
    assert disk["namespaces"][0]["model"] == "cli-model" and disk["namespaces"][0]["id"] == ns.id
    text = runner.invoke(app, ["kv", "stats", "-c", str(config)]).output
    assert "3 chunks" in text and "model=cli-model" in text
    assert "deleted 4 keys" in runner.invoke(app, ["kv", "clear", "-c", str(config), "-y"]).output
    bad = runner.invoke(app, ["kv", "stats"], env={"HITRATE_KV_CHUNK_SIZE": "-1"})
    assert bad.exit_code == 2 and "HITRATE_KV_CHUNK_SIZE" in bad.output
