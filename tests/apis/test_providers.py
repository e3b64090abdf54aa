"""LiteLLM provider prefixes: default base URLs and key variables, and the ones we refuse."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from hitrate.config import ConfigError, parse_config
from hitrate.providers import PROVIDERS


def _model(target: str, **params) -> dict:
    return {"model_list": [{"model_name": "m", "litellm_params": {"model": target, **params}}]}


@pytest.mark.parametrize(("prefix", "base", "key_env"), [
    ("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    ("together_ai", "https://api.together.xyz/v1", "TOGETHERAI_API_KEY"),
    ("deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
    ("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    ("fireworks_ai", "https://api.fireworks.ai/inference/v1", "FIREWORKS_AI_API_KEY"),
    ("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    ("perplexity", "https://api.perplexity.ai", "PERPLEXITYAI_API_KEY"),
    ("xai", "https://api.x.ai/v1", "XAI_API_KEY"),
    ("deepinfra", "https://api.deepinfra.com/v1/openai", "DEEPINFRA_API_KEY"),
    ("cerebras", "https://api.cerebras.ai/v1", "CEREBRAS_API_KEY"),
    ("gemini", "https://generativelanguage.googleapis.com/v1beta/openai", "GEMINI_API_KEY"),
    ("anthropic", "https://api.anthropic.com/v1", "ANTHROPIC_API_KEY"),
])
def test_provider_defaults(monkeypatch, prefix, base, key_env):
    monkeypatch.setenv(key_env, f"key-for-{prefix}")
    model = parse_config(_model(f"{prefix}/some/model-1"))
    (deployment,) = model.models
    assert (deployment.api_base, deployment.api_key, deployment.model) == (
        base, f"key-for-{prefix}", "some/model-1")


def test_config_api_base_and_key_win(monkeypatch):
    monkeypatch.setenv("GROQ_API_KEY", "from-env")
    (deployment,) = parse_config(_model("groq/llama", api_base="http://127.0.0.1:9/v1",
                                        api_key="explicit")).models
    assert (deployment.api_base, deployment.api_key) == ("http://127.0.0.1:9/v1", "explicit")


def test_key_alias_variables(monkeypatch):
    monkeypatch.delenv("TOGETHERAI_API_KEY", raising=False)
    monkeypatch.setenv("TOGETHER_API_KEY", "alias")
    (deployment,) = parse_config(_model("together_ai/mixtral")).models
    assert deployment.api_key == "alias"


@pytest.mark.parametrize("prefix", ["bedrock", "vertex_ai", "sagemaker"])
def test_signing_providers_are_one_line_errors(prefix):
    with pytest.raises(ConfigError) as caught:
        parse_config(_model(f"{prefix}/anything"))
    message = str(caught.value)
    assert "\n" not in message and prefix in message and "groq" in message


def test_cli_reports_an_unsupported_provider_without_a_traceback(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent("""
        model_list:
          - model_name: m
            litellm_params: {model: bedrock/anthropic.claude-v2}
    """))
    result = subprocess.run([sys.executable, "-m", "hitrate", "serve", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "bedrock" in result.stderr


def test_every_listed_provider_has_an_https_base_or_is_self_hosted():
    for name, provider in PROVIDERS.items():
        assert provider.api_base is None or provider.api_base.startswith(("https://", "http://")), name


def test_anthropic_model_serves_both_apis(make_gateway, upstream):
    """An `anthropic/` model answers Anthropic's Messages API natively and the OpenAI chat
    API through Anthropic's OpenAI-compatible endpoint (same api_base, Bearer auth)."""
    import anthropic

    config = _model("anthropic/claude-x", api_base=upstream.api_base, api_key="sk-ant")
    config["model_list"][0]["model_name"] = "claude"
    gateway = make_gateway(models=[parse_config(config).models[0].model_dump()])
    claude = anthropic.Anthropic(base_url=gateway.url, api_key="sk-test", max_retries=0)
    message = claude.messages.create(model="claude", max_tokens=8,
                                     messages=[{"role": "user", "content": "hi"}])
    assert message.content[0].text.startswith("Answer #")
    assert upstream.calls("messages") == 1
    chat = gateway.client().chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "hi"}])
    assert chat.choices[0].message.content.startswith("Answer #")
    assert upstream.calls("chat") == 1


def test_supported_kinds_limit_what_is_cached(make_gateway, upstream):
    """LiteLLM's `supported_call_types: [acompletion]`: chat is cached, embeddings and
    Responses calls go straight upstream (bypass)."""
    config = parse_config({"model_list": [{"model_name": "gpt-test", "litellm_params": {
        "model": "openai/sim-model", "api_base": upstream.api_base, "api_key": "k"}}],
        "litellm_settings": {"cache": True, "cache_params": {
            "type": "local", "supported_call_types": ["acompletion", "completion"]}}})
    assert config.cache.supported_kinds == {"chat"}
    gateway = make_gateway(models=[m.model_dump() for m in config.models],
                           cache=config.cache.model_dump(exclude_unset=True))
    client = gateway.client()
    for _ in range(2):
        client.chat.completions.create(model="gpt-test",
                                       messages=[{"role": "user", "content": "cached"}])
        raw = client.embeddings.with_raw_response.create(model="gpt-test", input="not cached")
        assert raw.headers["x-hitrate-cache"] == "bypass"
    assert upstream.calls("chat") == 1 and upstream.calls("embedding") == 2


def test_an_unknown_kind_fails_at_startup():
    with pytest.raises(ConfigError) as caught:
        parse_config({"cache": {"supported_kinds": ["chat", "speech"]}})
    assert "speech" in str(caught.value) and "\n" not in str(caught.value)
