"""KV metrics move when a request hits: in the gateway's /metrics registry, over the
exporter the vLLM connector starts (`metrics_port`), and in `hitrate kv stats`."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from prometheus_client import generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from hitrate.cli import app  # noqa: E402
from hitrate.kv import hf  # noqa: E402
from hitrate.kv import metrics as kv_metrics  # noqa: E402
from hitrate.kv.tiers import CPUTier, StoreTier  # noqa: E402
from hitrate.metrics import build_registry  # noqa: E402
from hitrate.stores.disk import DiskStore  # noqa: E402

from .conftest import free_port, random_tokens  # noqa: E402


def samples(text: str, namespace: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("namespace") == namespace:
                key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "namespace"))
                out[(s.name, key)] = s.value
    return out


def value(snap, name: str, **labels: str) -> float:
    return snap.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_move_when_a_request_hits(llama, tmp_path):
    registry = build_registry(lambda: None)  # the gateway's registry, no gateway state
    disk = StoreTier(DiskStore(tmp_path / "kv"), name="disk", serde="zstd")
    prompt = random_tokens(600, seed=21)  # 2 full chunks + 88 tokens
    with hf.make_engine(llama, [CPUTier(64 << 20), disk], model_id="metrics-llama") as engine:
        ns = engine.namespace.id
        hf.generate(llama, None, prompt, engine, max_new_tokens=2, do_sample=False)
        engine.flush()
        before = samples(generate_latest(registry).decode(), ns)
        assert value(before, "hitrate_kv_lookups_total", op="retrieve") == 1
        assert value(before, "hitrate_kv_hit_tokens_total", tier="cpu") == 0
        assert value(before, "hitrate_kv_chunks_stored_total") == 3
        stored = value(before, "hitrate_kv_stored_bytes_total", tier="disk")
        assert 0 < stored < 600 * 8192  # zstd-compressed bytes of 600 tokens' KV
        assert value(before, "hitrate_kv_store_duration_seconds_count", tier="disk") >= 1

        hf.generate(llama, None, [*prompt, 5, 6, 7], engine, max_new_tokens=2, do_sample=False)
        after = samples(generate_latest(registry).decode(), ns)
        assert value(after, "hitrate_kv_lookups_total", op="retrieve") == 2
        # the two full chunks (the 88-token partial chunk is another prefix than 91 tokens)
        assert value(after, "hitrate_kv_hit_tokens_total", tier="cpu") == 512
        assert value(after, "hitrate_kv_chunk_hits_total", tier="cpu") == 2
        assert value(after, "hitrate_kv_load_duration_seconds_count", tier="cpu") > value(
            before, "hitrate_kv_load_duration_seconds_count", tier="cpu")
        assert value(after, "hitrate_kv_tier_entries", tier="cpu") >= 3

        # a second engine reading only the disk tier: hits come from disk, bytes are loaded
        with hf.make_engine(llama, [StoreTier(DiskStore(tmp_path / "kv"), name="disk")],
                            model_id="metrics-llama") as reader:
            hf.generate(llama, None, prompt, reader, max_new_tokens=1)
            both = samples(generate_latest(registry).decode(), ns)  # summed over engines
            assert value(both, "hitrate_kv_hit_tokens_total", tier="disk") == 600
            assert value(both, "hitrate_kv_loaded_bytes_total", tier="disk") > 0
            assert value(both, "hitrate_kv_errors_total", tier="disk") == 0


def test_exporter_and_kv_stats_show_the_counters(llama, tmp_path):
    port = kv_metrics.serve(free_port(), host="127.0.0.1")
    assert port is not None
    prompt = random_tokens(300, seed=22)
    with hf.make_engine(llama, [CPUTier(64 << 20)], model_id="metrics-cli") as engine:
        hf.generate(llama, None, prompt, engine, max_new_tokens=1)
        engine.flush()
        hf.generate(llama, None, prompt, engine, max_new_tokens=1)
        ns = engine.namespace.id
        config = tmp_path / "hitrate.yaml"
        config.write_text(f"kv:\n  disk_dir: {tmp_path / 'disk'}\n")
        url = f"http://127.0.0.1:{port}/metrics"
        result = CliRunner().invoke(app, ["kv", "stats", "-c", str(config), "--json", "--metrics-url", url])
        assert result.exit_code == 0, result.output
        got = {(s["name"], s["labels"].get("tier")): s["value"] for s in json.loads(result.output)["metrics"]
               if s["labels"].get("namespace") == ns}
        assert got[("hitrate_kv_hit_tokens_total", "cpu")] == 300  # loaded (the model recomputes the last)
        text = CliRunner().invoke(app, ["kv", "stats", "-c", str(config), "--metrics-url", url]).output
        assert f"hitrate_kv_hit_tokens_total{{namespace={ns},tier=cpu}} 300" in text
    bad = CliRunner().invoke(app, ["kv", "stats", "-c", str(config), "--metrics-url",
                                   f"http://127.0.0.1:{free_port()}/metrics"])
    assert bad.exit_code == 0 and "unavailable" in bad.output
