"""Sentinel: master + replica + one sentinel. The master is killed under traffic; every
request still succeeds, and the cache (with its replicated entries) is back once the
replica has been promoted."""

from __future__ import annotations

import time

import pytest

from tests.backends.conftest import RELAXED, start_sentinel_set
from tests.conftest import ask


@pytest.mark.slow
def test_failover_under_traffic(servers, backend_gateway, upstream):
    sentinels = start_sentinel_set(servers)
    gateway = backend_gateway({
        "type": "redis-sentinel", "ttl": 300,
        "redis": {"sentinel_nodes": [f"127.0.0.1:{sentinels.sentinel_port}"],
                  "service_name": sentinels.service},
        "circuit": {"recovery_time": 0.2, "max_recovery_time": 0.5, **RELAXED}})
    client = gateway.client(timeout=30)
    assert ask(client, "before failover")[0]["x-hitrate-cache"] == "miss"
    assert ask(client, "before failover")[0]["x-hitrate-cache"] == "hit"
    assert sentinels.master.cmd("WAIT", "1", "5000") == ":1"  # the replica has the entry

    sentinels.master.proc.kill()
    deadline = time.monotonic() + 30
    during = 0
    while sentinels.master_port() != sentinels.replica.port:
        assert time.monotonic() < deadline, "sentinel did not fail over"
        start = time.monotonic()
        _, answer = ask(client, f"during failover {during}")
        assert answer.choices[0].message.content
        assert time.monotonic() - start < 1.5
        during += 1
    assert during > 0

    # the promoted replica serves the entry written before the failover
    deadline = time.monotonic() + 10
    while ask(client, "before failover")[0]["x-hitrate-cache"] != "hit":
        assert time.monotonic() < deadline, "cache did not come back after the failover"
        time.sleep(0.1)
    assert ask(client, "after failover")[0]["x-hitrate-cache"] == "miss"
    assert ask(client, "after failover")[0]["x-hitrate-cache"] == "hit"
    assert gateway.cache.store.circuit_state() == "closed"
