"""Every hit records what it saved: tokens and money (cached usage x price map) and the
original upstream latency, per model and namespace, in /metrics and /cache/stats."""

from __future__ import annotations

import math

import pytest

from hitrate.costs import register_model, unregister_model
from tests.conftest import ask, stream_text
from tests.ops.conftest import MASTER, admin, scrape, total, value

MINI_IN, MINI_OUT, MINI_CACHED = 0.15e-6, 0.6e-6, 0.075e-6  # bundled gpt-4o-mini


def models(upstream, *specs: tuple[str, str]) -> list[dict]:
    return [{"name": name, "model": target, "api_base": upstream.api_base} for name, target in specs]


def test_hits_record_tokens_money_and_latency(make_gateway, upstream):
    gateway = make_gateway(models=models(upstream, ("gpt-4o-mini", "sim-model")),
                           master_key=MASTER)
    client = gateway.client(api_key=MASTER)
    headers, first = ask(client, "What is the capital of France?", model="gpt-4o-mini")
    assert headers["x-hitrate-cache"] == "miss"
    usage = first.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    for _ in range(3):
        assert ask(client, "What is the capital of France?",
                   model="gpt-4o-mini")[0]["x-hitrate-cache"] == "hit"
    entry = admin(gateway, "GET", f"/cache/entries/{headers['x-hitrate-cache-key']}").json()
    assert entry["upstream_latency_ms"] > 0

    metrics = scrape(gateway)
    labels = {"model": "gpt-4o-mini", "namespace": "default"}
    assert value(metrics, "hitrate_model_hits_total", **labels) == 3
    assert value(metrics, "hitrate_tokens_saved_total", **labels, type="prompt") \
        == 3 * usage.prompt_tokens
    assert value(metrics, "hitrate_tokens_saved_total", **labels, type="completion") \
        == 3 * usage.completion_tokens
    expected_cost = 3 * (usage.prompt_tokens * MINI_IN + usage.completion_tokens * MINI_OUT)
    assert math.isclose(value(metrics, "hitrate_cost_saved_usd_total", **labels), expected_cost,
                        rel_tol=1e-9)
    assert math.isclose(value(metrics, "hitrate_latency_saved_seconds_total", **labels),
                        3 * entry["upstream_latency_ms"] / 1000, rel_tol=1e-9)
    assert value(metrics, "hitrate_unpriced_hits_total", **labels) == 0

    stats = admin(gateway, "GET", "/cache/stats").json()
    assert stats["savings"]["hits"] == 3
    assert stats["savings"]["tokens"] == 3 * usage.total_tokens
    assert math.isclose(stats["savings"]["cost_usd"], expected_cost, rel_tol=1e-9)
    assert stats["models"][0]["name"] == "gpt-4o-mini"
    assert stats["namespaces"][0]["name"] == "default"


def test_savings_split_by_namespace_and_priced_by_upstream_name(make_gateway, upstream):
    # Clients say "chat"; the upstream model is a dated OpenAI id: priced as gpt-4o-mini.
    gateway = make_gateway(models=models(upstream, ("chat", "gpt-4o-mini-2024-07-18")))
    client = gateway.client()
    usages = {}
    for namespace in ("support", "search"):
        extra = {"cache": {"namespace": namespace}}
        usages[namespace] = ask(client, f"hello from {namespace}", model="chat",
                                extra_body=extra)[1].usage
        ask(client, f"hello from {namespace}", model="chat", extra_body=extra)
    ask(client, "hello from search", model="chat", extra_body={"cache": {"namespace": "search"}})
    metrics = scrape(gateway)
    for namespace, hits in (("support", 1), ("search", 2)):
        usage = usages[namespace]
        labels = {"model": "chat", "namespace": namespace}
        assert value(metrics, "hitrate_model_hits_total", **labels) == hits
        assert math.isclose(value(metrics, "hitrate_cost_saved_usd_total", **labels),
                            hits * (usage.prompt_tokens * MINI_IN
                                    + usage.completion_tokens * MINI_OUT), rel_tol=1e-9)
    assert total(metrics, "hitrate_model_hits_total") == 3


def test_config_prices_override_and_unknown_models_count_as_unpriced(make_gateway, upstream):
    gateway = make_gateway(
        models=models(upstream, ("house-model", "sim-model"), ("mystery", "sim-model")),
        costs={"models": {"house-model": {"input_cost_per_token": 1e-5,
                                          "output_cost_per_token": 2e-5}}})
    client = gateway.client()
    usage = ask(client, "priced", model="house-model")[1].usage
    ask(client, "priced", model="house-model")
    ask(client, "unpriced", model="mystery")
    ask(client, "unpriced", model="mystery")
    metrics = scrape(gateway)
    assert math.isclose(
        value(metrics, "hitrate_cost_saved_usd_total", model="house-model", namespace="default"),
        usage.prompt_tokens * 1e-5 + usage.completion_tokens * 2e-5, rel_tol=1e-9)
    assert value(metrics, "hitrate_cost_saved_usd_total", model="mystery",
                 namespace="default") == 0
    assert value(metrics, "hitrate_unpriced_hits_total", model="mystery", namespace="default") == 1
    assert value(metrics, "hitrate_tokens_saved_total", model="mystery", namespace="default",
                 type="prompt") > 0  # tokens are still known


def test_register_model_prices_a_custom_model(make_gateway, upstream):
    register_model("my-finetune-v3", input_cost_per_token=4e-6, output_cost_per_token=8e-6)
    try:
        gateway = make_gateway(models=models(upstream, ("my-finetune-v3", "sim-model")))
        client = gateway.client()
        usage = ask(client, "tuned", model="my-finetune-v3")[1].usage
        ask(client, "tuned", model="my-finetune-v3")
        got = value(scrape(gateway), "hitrate_cost_saved_usd_total", model="my-finetune-v3",
                    namespace="default")
        assert math.isclose(got, usage.prompt_tokens * 4e-6 + usage.completion_tokens * 8e-6,
                            rel_tol=1e-9)
    finally:
        unregister_model("my-finetune-v3")


def test_litellm_config_custom_prices(tmp_path, upstream):
    from hitrate.config import parse_config

    config = parse_config({
        "model_list": [{"model_name": "custom", "litellm_params": {
            "model": "openai/sim-model", "api_base": upstream.api_base,
            "input_cost_per_token": 3e-6, "output_cost_per_token": 5e-6}}],
        "litellm_settings": {"cache": True}})
    assert config.costs.models["custom"].input_cost_per_token == 3e-6
    assert config.costs.models["custom"].output_cost_per_token == 5e-6


def test_streamed_hits_with_usage_and_embeddings_count_tokens(make_gateway, upstream):
    gateway = make_gateway(models=models(upstream, ("gpt-4o-mini", "sim-model"),
                                         ("text-embedding-3-small", "text-embedding-3-small")))
    client = gateway.client()
    options = {"model": "gpt-4o-mini", "stream_options": {"include_usage": True}}
    _, _, chunks = stream_text(client, "stream me", **options)
    usage = next(c.usage for c in chunks if c.usage)
    headers, _, _ = stream_text(client, "stream me", **options)
    assert headers["x-hitrate-cache"] == "hit"

    first = client.embeddings.create(model="text-embedding-3-small", input=["alpha beta", "gamma"])
    client.embeddings.create(model="text-embedding-3-small", input=["alpha beta", "gamma"])
    metrics = scrape(gateway)
    assert value(metrics, "hitrate_tokens_saved_total", model="gpt-4o-mini", namespace="default",
                 type="prompt") == usage.prompt_tokens
    assert value(metrics, "hitrate_tokens_saved_total", model="gpt-4o-mini", namespace="default",
                 type="completion") == usage.completion_tokens
    embedded = total(metrics, "hitrate_tokens_saved_total", type="prompt") - usage.prompt_tokens
    assert embedded == first.usage.prompt_tokens
    assert math.isclose(total(metrics, "hitrate_cost_saved_usd_total"),
                        usage.prompt_tokens * MINI_IN + usage.completion_tokens * MINI_OUT
                        + first.usage.prompt_tokens * 0.02e-6, rel_tol=1e-9)


def test_cached_prompt_tokens_use_the_cached_input_price():
    from hitrate.costs import default_prices

    price = default_prices().get("gpt-4o-mini")
    assert price is not None
    assert math.isclose(price.cost(1000, 100, cached_tokens=400),
                        600 * MINI_IN + 400 * MINI_CACHED + 100 * MINI_OUT, rel_tol=1e-12)


@pytest.mark.parametrize("name", ["gpt-4o-mini", "openai/gpt-4o-mini", "GPT-4o-mini",
                                  "gpt-4o-mini-2024-07-18", "azure/gpt-4o-mini"])
def test_model_names_resolve_leniently(name):
    from hitrate.costs import default_prices

    price = default_prices().get(name)
    assert price is not None and price.model == "gpt-4o-mini"
