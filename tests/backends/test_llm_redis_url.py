"""LiteLLM's `LLM_REDIS_URL` (read after `REDIS_URL`) names the Redis of a LiteLLM config
whose cache_params give no host: the gateway must use it, not a Redis on 127.0.0.1:6379
that nobody configured."""

from __future__ import annotations

import httpx

from tests.conftest import ask


def _litellm(upstream, **cache_params):
    return {
        "model_list": [{"model_name": "gpt-test",
                        "litellm_params": {"model": "openai/sim-model",
                                           "api_base": upstream.api_base}}],
        "litellm_settings": {"cache": True, "cache_params": {"type": "redis", **cache_params}},
    }


def test_llm_redis_url_is_used_when_no_host_is_given(redis_db, upstream, monkeypatch,
                                                     tmp_path):
    from hitrate.config import parse_config
    from hitrate.gateway.app import create_app
    from hitrate.serving import BackgroundServer

    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("REDIS_HOST", raising=False)
    monkeypatch.setenv("LLM_REDIS_URL", f"redis://127.0.0.1:{redis_db.port}/5")
    # A generous socket timeout: on a busy machine the first Redis round trip (connect
    # included) can take longer than the default, and a timeout is a miss by design.
    config = parse_config(_litellm(upstream, socket_timeout=5))
    with BackgroundServer(create_app(config)) as server:
        client = __import__("openai").OpenAI(base_url=f"{server.url}/v1", api_key="x",
                                             max_retries=0)
        headers, _ = ask(client, "where does this go?")
        key = headers["x-hitrate-cache-key"]
        assert ask(client, "where does this go?")[0]["x-hitrate-cache"] == "hit"
        assert httpx.get(f"{server.url}/health").status_code == 200
    assert redis_db.cmd("SELECT", "5") == "+OK"
    from tests.backends.test_redis import redis_cmd_db

    assert redis_cmd_db(redis_db.port, 5, "EXISTS", key) == "1"


def test_redis_url_wins_over_llm_redis_url_and_a_host_wins_over_both(monkeypatch, caplog):
    from hitrate.config import parse_config
    from hitrate.stores.redis import from_config

    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1111/0")
    monkeypatch.setenv("LLM_REDIS_URL", "redis://127.0.0.1:2222/0")

    def target(cache: dict) -> tuple[str, int]:
        redis = parse_config({"cache": {"type": "redis", **cache}}).cache.redis
        store = from_config(redis, "standalone", {})
        kwargs = store.client.connection_pool.connection_kwargs
        return kwargs["host"], kwargs["port"]

    assert target({}) == ("127.0.0.1", 1111)
    monkeypatch.delenv("REDIS_URL")
    assert target({}) == ("127.0.0.1", 2222)
    assert target({"redis": {"host": "10.0.0.9", "port": 3333}}) == ("10.0.0.9", 3333)
    for name in ("LLM_REDIS_URL", "REDIS_HOST", "REDIS_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert not caplog.records
    assert target({}) == ("127.0.0.1", 6379)  # the default, said out loud
    assert "no server configured" in caplog.text
