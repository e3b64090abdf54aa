"""LiteLLM cache settings from their docs that must do what they say: supported_call_types,
qdrant-semantic with a Qdrant server, register_model with a dict."""

from __future__ import annotations

import pytest

from hitrate.config import ConfigError, parse_config


def _litellm(**cache_params) -> dict:
    return {"model_list": [], "litellm_settings": {"cache": True, "cache_params": cache_params}}


@pytest.mark.parametrize(("call_types", "kinds"), [
    (["acompletion", "completion"], {"chat"}),
    (["embedding", "aembedding"], {"embedding"}),
    (["text_completion", "atext_completion", "aresponses"], {"completion", "responses"}),
    (["anthropic_messages", "responses", "completion"], {"messages", "responses", "chat"}),
])
def test_supported_call_types_become_supported_kinds(call_types, kinds):
    config = parse_config(_litellm(type="local", supported_call_types=call_types))
    assert config.cache.supported_kinds == kinds


def test_all_kinds_when_not_given():
    assert parse_config(_litellm(type="local")).cache.supported_kinds is None
    assert parse_config({}).cache.supported_kinds is None
    native = parse_config({"cache": {"supported_kinds": ["chat", "embedding"]}})
    assert native.cache.supported_kinds == {"chat", "embedding"}


def test_unknown_call_type_is_one_line_error():
    with pytest.raises(ConfigError) as info:
        parse_config(_litellm(type="local", supported_call_types=["acompletion", "telepathy"]))
    message = str(info.value)
    assert "supported_call_types" in message and "telepathy" in message
    assert "\n" not in message
    with pytest.raises(ConfigError, match="supported_kinds"):
        parse_config({"cache": {"supported_kinds": ["chat", "images"]}})
    with pytest.raises(ConfigError, match="supported_call_types"):
        parse_config(_litellm(type="local", supported_call_types="acompletion"))


def test_litellm_call_types_hitrate_does_not_cache_are_ignored_with_a_warning(caplog):
    config = parse_config(_litellm(type="local",
                                   supported_call_types=["acompletion", "atranscription"]))
    assert config.cache.supported_kinds == {"chat"}
    assert "atranscription" in caplog.text


def test_qdrant_semantic_with_a_server():
    config = parse_config(_litellm(
        type="qdrant-semantic", qdrant_api_base="https://qdrant.example.com:6333",
        qdrant_api_key="qk-123", qdrant_collection_name="answers",
        qdrant_quantization_config="binary", similarity_threshold=0.9))
    semantic = config.cache.semantic
    assert semantic is not None and semantic.index == "qdrant"
    options = dict(semantic.index_options)
    quantization = options.pop("quantization_config", None)
    assert options == {"url": "https://qdrant.example.com:6333", "api_key": "qk-123",
                       "collection": "answers"}
    assert quantization == "binary"


async def test_qdrant_collection_is_created_quantized():
    """The quantization reaches Qdrant's create_collection. Qdrant's local mode (the real
    engine, in process) accepts but does not keep it, and no Qdrant server runs here, so
    the client records what it was asked before doing it."""
    import numpy as np
    from qdrant_client import AsyncQdrantClient

    from hitrate.semantic.qdrant_index import QdrantIndex

    class RecordingClient(AsyncQdrantClient):
        asked: dict = {}

        async def create_collection(self, *args, **kwargs):
            RecordingClient.asked = kwargs
            return await super().create_collection(*args, **kwargs)

    index = QdrantIndex(client=RecordingClient(location=":memory:"),
                        quantization_config="scalar")
    try:
        vector = np.ones(8, dtype=np.float32) / np.sqrt(8)
        await index.add("hitrate:v1:q:chat:k", vector, scope="s", namespace="q", text="t",
                        expires_at=None)
        scalar = RecordingClient.asked["quantization_config"].scalar
        assert (scalar.type.value, scalar.always_ram) == ("int8", True)
        assert [m.key for m in await index.search(vector, scope="s", k=1, min_score=0.5)] == \
            ["hitrate:v1:q:chat:k"]
    finally:
        await index.close()


def test_qdrant_quantization_is_validated():
    with pytest.raises(ConfigError, match="qdrant_quantization_config"):
        parse_config(_litellm(type="qdrant-semantic", qdrant_api_base="http://q:6333",
                              qdrant_quantization_config="lossy"))


def test_register_model_accepts_litellm_dict():
    from hitrate.costs import register_model, unregister_model
    from hitrate.costs.prices import PriceMap

    registered = register_model({
        "my-finetune": {"max_tokens": 8192, "input_cost_per_token": 3e-6,
                        "output_cost_per_token": 1.2e-5, "litellm_provider": "openai",
                        "mode": "chat"},
        "my-embedder": {"input_cost_per_token": 1e-7, "output_cost_per_token": 0,
                        "mode": "embedding"},
    })
    try:
        assert set(registered) == {"my-finetune", "my-embedder"}
        price = PriceMap().get("my-finetune")
        assert price is not None and price.output_cost_per_token == 1.2e-5
        assert price.max_input_tokens == 8192 and price.provider == "openai"
        # the keyword form still works
        register_model("kw-model", input_cost_per_token=1e-6, output_cost_per_token=2e-6)
        assert PriceMap().get("kw-model") is not None
    finally:
        for name in ("my-finetune", "my-embedder", "kw-model"):
            unregister_model(name)
    with pytest.raises(ValueError, match="bad-model"):
        register_model({"bad-model": {"input_cost_per_token": "a lot"}})
    with pytest.raises(TypeError):
        register_model({"x": {"input_cost_per_token": 1e-6}}, input_cost_per_token=1.0)
