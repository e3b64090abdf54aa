"""Native and LiteLLM-style configs; bad configs give one clear error naming the field."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from hitrate.config import ConfigError, load_config, parse_config


def write(tmp_path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_native_config(tmp_path, monkeypatch):
    monkeypatch.setenv("UP_KEY", "sk-from-env")
    config = load_config(write(tmp_path, """
        models:
          - name: fast
            model: gpt-4o-mini
            api_base: http://127.0.0.1:9/v1
            api_key: os.environ/UP_KEY
            timeout: 30
        cache: {type: disk, ttl: 600, namespace: prod, disk_cache_dir: /tmp/x}
        server: {port: 4100}
        master_key: sk-master
    """))
    model = config.models[0]
    assert (model.name, model.model, model.api_key, model.timeout) == (
        "fast", "gpt-4o-mini", "sk-from-env", 30)
    assert (config.cache.type, config.cache.ttl, config.cache.namespace) == ("disk", 600, "prod")
    assert config.server.port == 4100 and config.master_key == "sk-master"


def test_litellm_config_as_is(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.setenv("MASTER", "sk-1234")
    config = load_config(write(tmp_path, """
        model_list:
          - model_name: gpt-4o
            litellm_params:
              model: openai/gpt-4o
              api_key: os.environ/OPENAI_API_KEY
          - model_name: local-llama
            litellm_params:
              model: hosted_vllm/meta-llama/Llama-3-8B
              api_base: http://127.0.0.1:8000/v1
              timeout: 45
          - model_name: azure-gpt
            litellm_params:
              model: azure/my-deployment
              api_base: https://example.openai.azure.com
              api_version: "2024-10-21"
              api_key: az-key
          - model_name: llama3
            litellm_params:
              model: ollama/llama3
        router_settings: {num_retries: 2}
        litellm_settings:
          cache: true
          cache_params:
            type: disk
            disk_cache_dir: /tmp/litellm-cache
            ttl: 600
            namespace: team
            mode: default_off
            supported_call_types: ["acompletion"]
        general_settings:
          master_key: os.environ/MASTER
    """))
    gpt, llama, azure, ollama = config.models
    assert (gpt.name, gpt.model, gpt.api_base, gpt.api_key) == (
        "gpt-4o", "gpt-4o", "https://api.openai.com/v1", "sk-openai")
    assert (llama.model, llama.api_base, llama.timeout) == (
        "meta-llama/Llama-3-8B", "http://127.0.0.1:8000/v1", 45)
    assert (azure.provider, azure.model, azure.api_version) == ("azure", "my-deployment",
                                                                 "2024-10-21")
    assert ollama.api_base == "http://localhost:11434/v1"
    c = config.cache
    assert (c.enabled, c.type, c.disk_cache_dir, c.ttl, c.namespace, c.mode) == (
        True, "disk", "/tmp/litellm-cache", 600, "team", "default_off")
    assert config.master_key == "sk-1234"


def test_litellm_local_cache_and_no_cache():
    local = parse_config({"model_list": [], "litellm_settings": {"cache": True,
                                                                 "cache_params": {"type": "local"}}})
    assert local.cache.enabled and local.cache.type == "memory"
    off = parse_config({"model_list": [], "litellm_settings": {}})
    assert not off.cache.enabled


@pytest.mark.parametrize(("data", "field"), [
    ({"cache": {"ttl": -5}}, "cache.ttl"),
    ({"cache": {"type": "floppy"}}, "cache.type"),
    ({"cache": {"tll": 5}}, "cache.tll"),
    ({"models": [{"name": "x", "api_base": "ftp://x"}]}, "models[0].api_base"),
    ({"models": [{"api_base": "http://x"}]}, "models[0].name"),
    ({"server": {"port": "eighty"}}, "server.port"),
    ({"model_list": [{"model_name": "x", "litellm_params": {"model": "bedrock/claude"}}]},
     "model_list[0].litellm_params.model"),
    ({"model_list": [{"litellm_params": {"model": "openai/x"}}]}, "model_list[0].model_name"),
    ({"model_list": [], "litellm_settings": {"cache": True, "cache_params": {"type": "s4"}}},
     "litellm_settings.cache_params.type"),
    ({"models": [{"name": "x", "api_key": "os.environ/HITRATE_SURELY_UNSET"}]},
     "models[0].api_key"),
])
def test_bad_configs_name_the_field(data, field):
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert str(info.value).startswith(field)


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(write(tmp_path, "models:\n  - name: [unclosed\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_cli_serve_rejects_bad_config_without_traceback(tmp_path):
    path = write(tmp_path, "cache:\n  ttl: soon\n")
    result = subprocess.run([sys.executable, "-m", "hitrate.cli", "serve", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "cache.ttl" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1
