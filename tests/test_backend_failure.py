"""A failing backend degrades to misses; requests never fail because of the cache."""

from __future__ import annotations

import logging

from hitrate.config import parse_config
from hitrate.engine import ResponseCache
from hitrate.gateway.app import create_app
from hitrate.serving import BackgroundServer
from hitrate.stores.memory import MemoryStore
from tests.conftest import Gateway, ask


class FlakyStore(MemoryStore):
    name = "flaky"

    def __init__(self) -> None:
        super().__init__()
        self.broken = True

    async def get(self, key):
        if self.broken:
            raise ConnectionError("backend down")
        return await super().get(key)

    async def set(self, key, value, ttl=None):
        if self.broken:
            raise ConnectionError("backend down")
        await super().set(key, value, ttl)


def test_failing_backend_serves_misses_then_recovers(upstream, caplog):
    store = FlakyStore()
    cache = ResponseCache(store)
    config = parse_config({"models": [{"name": "gpt-test", "api_base": upstream.api_base}]})
    with caplog.at_level(logging.WARNING, logger="hitrate.engine"), \
            BackgroundServer(create_app(config, cache=cache)) as server:
        client = Gateway(server, None).client()
        for _ in range(5):
            headers, answer = ask(client, "still works")
            assert headers["x-hitrate-cache"] == "miss"
            assert answer.choices[0].message.content
        assert upstream.calls() == 5
        assert cache.stats.backend_errors >= 5
        failing_logs = [r.getMessage() for r in caplog.records if "failing" in r.getMessage()]
        # Logged once per episode, not per request: reads and writes are episodes of
        # their own (a full disk fails writes only), so a dead backend logs one of each.
        assert len(failing_logs) == 2
        assert sum("reads failing" in m for m in failing_logs) == 1
        assert sum("writes failing" in m for m in failing_logs) == 1
        store.broken = False
        ask(client, "still works")
        assert ask(client, "still works")[0]["x-hitrate-cache"] == "hit"
        assert any("recovered" in r.getMessage() for r in caplog.records)
