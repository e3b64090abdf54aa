"""LMCache's configuration read as is: every LMCache field maps onto a hitrate field or
is an error naming it, in the kv: section, LMCACHE_CONFIG_FILE, LMCACHE_<FIELD>
variables and vLLM's kv_connector_extra_config."""

from __future__ import annotations

import pytest

from hitrate.config import ConfigError, parse_config
from hitrate.kv.lmcache_config import ACCEPTED, MAPPED
from hitrate.kv.settings import connector_settings, resolve_settings

# One value per mapped LMCache field, and what hitrate makes of it.
SAMPLES = {
    "chunk_size": (512, {"chunk_size": 512}),
    "local_cpu": (False, {"cpu_size_mb": 0}),
    "max_local_cpu_size": (2.5, {"cpu_size_mb": 2560}),
    "local_disk": ("file:///var/cache/kv/", {"disk_dir": "/var/cache/kv/"}),
    "max_local_disk_size": (4, {"disk_size_mb": 4096}),
    "remote_url": ("redis://cache:6379", {"remote_url": "redis://cache:6379"}),
    "remote_serde": ("cachegen", {"remote_serde": "int8"}),
    "save_decode_cache": (True, {"save_decode_cache": True}),
    "save_unfull_chunk": (False, {"store_partial": False}),
    "enable_blending": (True, {"blend": True}),
    "blend_special_str": (" # # ", {"blend_separator": " # # "}),
    "blend_recompute_ratio": (0.3, {"blend_ratio": 0.3}),
    "blend_recompute_ratios": ([0.25], {"blend_ratio": 0.25}),
    "blend_check_layers": ([3], {"blend_check_layer": 3}),
    "blocking_timeout_secs": (7, {"remote_timeout": 7}),
}


def test_every_mapped_field_has_a_sample():
    assert set(SAMPLES) == set(MAPPED)


@pytest.mark.parametrize("field", sorted(MAPPED))
def test_each_mapped_lmcache_field_lands_on_its_hitrate_field(field):
    value, expected = SAMPLES[field]
    kv = parse_config({"kv": {field: value}}).kv
    for name, want in expected.items():
        assert getattr(kv, name) == want, (field, name)


@pytest.mark.parametrize("field", sorted(ACCEPTED))
def test_each_unsupported_lmcache_field_is_accepted_off_and_an_error_on(field):
    allowed, _ = ACCEPTED[field]
    for value in (None, *allowed):
        parse_config({"kv": {field: value}})  # asks for nothing hitrate lacks
    bad = "something-else" if not allowed or not isinstance(allowed[0], bool) else not allowed[0]
    if field == "use_gds":
        return  # both values accepted: only meaningful with gds_path, itself an error
    with pytest.raises(ConfigError, match=rf"^kv: {field}: .*cannot be honoured"):
        parse_config({"kv": {field: bad}})


def test_a_whole_lmcache_yaml_and_errors_name_the_field():
    kv = parse_config({"kv": {"chunk_size": 256, "local_cpu": True, "max_local_cpu_size": 5.0,
                              "local_disk": "file:///tmp/lmcache/", "max_local_disk_size": 5.0,
                              "remote_url": "redis://localhost:6379", "remote_serde": "naive",
                              "use_layerwise": False, "save_decode_cache": True}}).kv
    assert (kv.cpu_size_mb, kv.disk_dir, kv.disk_size_mb, kv.remote_serde) == (
        5120, "/tmp/lmcache/", 5120, "naive")
    with pytest.raises(ConfigError, match=r"^kv\.lmcache_rpc_port: unknown field"):
        parse_config({"kv": {"lmcache_rpc_port": 1}})
    with pytest.raises(ConfigError, match=r"^kv: blend_recompute_ratios: hitrate takes one value"):
        parse_config({"kv": {"blend_recompute_ratios": [0.1, 0.2]}})
    with pytest.raises(ConfigError, match=r"^kv\.remote_url"):  # LMCache's lm:// server
        parse_config({"kv": {"remote_url": "lm://localhost:65432"}})
    with pytest.raises(ConfigError, match=r"^kv\.remote_serde"):
        parse_config({"kv": {"remote_serde": "kivi"}})
    # local_cpu: false wins over a size given after it
    assert parse_config({"kv": {"local_cpu": False, "max_local_cpu_size": 1}}).kv.cpu_size_mb == 0


def test_config_file_variable_and_lmcache_variables(tmp_path):
    path = tmp_path / "lmcache.yaml"
    path.write_text("chunk_size: 128\nlocal_cpu: true\nmax_local_cpu_size: 0.5\n"
                    "remote_url: redis://127.0.0.1:6379\nremote_serde: cachegen\n")
    s = resolve_settings(None, {"LMCACHE_CONFIG_FILE": str(path)})
    assert (s.chunk_size, s.cpu_size_mb, s.remote_url, s.remote_serde) == (
        128, 512, "redis://127.0.0.1:6379", "int8")
    # precedence: kv: section < file < LMCACHE_<FIELD> < HITRATE_KV_<FIELD>
    s = resolve_settings({"chunk_size": 64, "disk_dir": "/d"},
                         {"HITRATE_KV_CONFIG_FILE": str(path), "LMCACHE_CHUNK_SIZE": "32",
                          "LMCACHE_LOG_LEVEL": "DEBUG", "HITRATE_KV_REMOTE_SERDE": "zstd"})
    assert (s.chunk_size, s.disk_dir, s.remote_serde) == (32, "/d", "zstd")
    assert resolve_settings(None, {"LMCACHE_LOCAL_CPU": "False"}).cpu_size_mb == 0
    path.write_text("use_layerwise: true\n")
    with pytest.raises(ConfigError, match=r"^LMCACHE_CONFIG_FILE \(.*\): use_layerwise: "):
        resolve_settings(None, {"LMCACHE_CONFIG_FILE": str(path)})
    path.write_text("chunk_size: -4\n")
    with pytest.raises(ConfigError, match=r"^LMCACHE_CONFIG_FILE \(.*\): .*greater than 0"):
        resolve_settings(None, {"LMCACHE_CONFIG_FILE": str(path)})
    with pytest.raises(ConfigError, match=r"^LMCACHE_CONFIG_FILE \(.*missing.yaml\)"):
        resolve_settings(None, {"LMCACHE_CONFIG_FILE": str(tmp_path / "missing.yaml")})
    with pytest.raises(ConfigError, match=r"^LMCACHE_ENABLE_P2P: 'true' cannot be honoured"):
        resolve_settings(None, {"LMCACHE_ENABLE_P2P": "true"})
    with pytest.raises(ConfigError, match=r"^LMCACHE_MAX_LOCAL_CPU_SIZE: "):
        resolve_settings(None, {"LMCACHE_MAX_LOCAL_CPU_SIZE": "lots"})


def test_vllm_extra_config_takes_both_names_and_rejects_unknown_keys(tmp_path):
    config = tmp_path / "hitrate.yaml"
    config.write_text("kv:\n  chunk_size: 512\n  cpu_size_mb: 64\n")
    s = connector_settings({"config": str(config), "model_id": "m", "max_local_cpu_size": 1,
                            "lmcache.save_decode_cache": True, "remote_serde": "zstd"}, {})
    assert (s.chunk_size, s.cpu_size_mb, s.save_decode_cache, s.remote_serde) == (512, 1024, True, "zstd")
    with pytest.raises(ConfigError, match=r"^kv_connector_extra_config\.chunk_sise: unknown field"):
        connector_settings({"chunk_sise": 256}, {})
    with pytest.raises(ConfigError, match=r"^kv_connector_extra_config\.enable_pd: "):
        connector_settings({"lmcache.enable_pd": True}, {})
