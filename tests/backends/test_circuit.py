"""The circuit breaker's state machine (pure logic, a fake clock) and, against a real
redis-server, what a dead or hung backend costs a caller."""

from __future__ import annotations

import contextlib
import logging
import time

import pytest
import redis.exceptions

from hitrate.stores.circuit import CircuitBreaker, CircuitOpen
from hitrate.stores.redis import RedisStore
from hitrate.stores.remote import BackendTimeout


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_state_machine(caplog):
    clock = Clock()
    breaker = CircuitBreaker("b", recovery_time=1.0, max_recovery_time=4.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="hitrate.stores"):
        assert breaker.before() is False
        breaker.success(False)
        breaker.failure(False, ConnectionError("down"))
        assert breaker.state == "open" and breaker.stats.opens == 1
        for _ in range(3):
            with pytest.raises(CircuitOpen):
                breaker.before()
        assert breaker.stats.rejected == 3
        clock.now += 1.0
        assert breaker.before() is True  # the single probe
        assert breaker.state == "half_open"
        with pytest.raises(CircuitOpen):
            breaker.before()  # everyone else still fails fast
        breaker.failure(True, TimeoutError(), timeout=True)
        assert breaker.state == "open" and breaker.stats.timeouts == 1
        clock.now += 1.5
        with pytest.raises(CircuitOpen):
            breaker.before()  # the wait doubled to 2 s
        clock.now += 0.5
        assert breaker.before() is True
        breaker.success(True)
        assert breaker.state == "closed"
        # after recovery the wait is back to 1 s
        breaker.failure(False, ConnectionError("again"))
        clock.now += 1.0
        assert breaker.before() is True
        breaker.abandoned(True)  # the probe's caller went away: no verdict, probe again
        assert breaker.before() is True
        breaker.success(True)
    changes = [r.getMessage() for r in caplog.records]
    # one line per state change: open, half_open, open, half_open, closed, open, half_open, closed
    assert len(changes) == 8, changes
    assert all("circuit" in m for m in changes)


def test_threshold_and_ping_verdicts():
    clock = Clock()
    breaker = CircuitBreaker("b", failure_threshold=3, clock=clock)
    for _ in range(2):
        breaker.failure(False, ConnectionError())
    assert breaker.state == "closed"
    breaker.success(False)  # successes reset the count
    for _ in range(3):
        breaker.failure(False, ConnectionError())
    assert breaker.state == "open"
    breaker.force(True)
    assert breaker.state == "closed"
    breaker.force(False, ConnectionError())
    assert breaker.state == "open"


async def test_hung_redis_costs_one_timeout_then_nothing(servers):
    server = servers.redis()
    store = RedisStore(port=server.port, timeout=0.05, recovery_time=0.3)
    try:
        await store.set("hitrate:v1:h:chat:k", b"v")
        server.proc.pause()
        start = time.monotonic()
        with pytest.raises((BackendTimeout, redis.exceptions.TimeoutError)):
            await store.get("hitrate:v1:h:chat:k")  # redis-py's socket timeout: 50 ms
        assert time.monotonic() - start < 1.0
        assert store.circuit_state() == "open"
        start = time.monotonic()
        for _ in range(100):
            with pytest.raises(CircuitOpen):
                await store.get("hitrate:v1:h:chat:k")
        assert time.monotonic() - start < 1.0  # no network at all while open
        stats = store.stats()
        assert (stats.timeouts, stats.rejected, stats.circuit_opens) == (1, 100, 1)
        assert await store.ping() is False  # admin ping really asks, and says no
        server.proc.resume()
        assert await store.ping() is True
        assert store.circuit_state() == "closed"
        assert await store.get("hitrate:v1:h:chat:k") == b"v"
    finally:
        await store.close()


async def test_dead_redis_fails_fast_and_recovers_by_itself(servers):
    """The breaker's clock is a fake one moved by the test, so "still open" and "time to
    probe" never depend on how fast a busy machine runs this test; the operation timeout
    is generous for the same reason (timeouts are test_hung_redis_...'s subject)."""
    server = servers.redis()
    clock = Clock()
    store = RedisStore(port=server.port, timeout=2.0, recovery_time=0.2, max_recovery_time=0.2,
                       clock=clock)
    try:
        await store.set("hitrate:v1:d:chat:k", b"v")
        server.proc.kill()
        with pytest.raises(redis.exceptions.ConnectionError):
            await store.get("hitrate:v1:d:chat:k")
        assert store.circuit_state() == "open"
        for _ in range(3):  # the clock has not moved: no probe, no network
            with pytest.raises(CircuitOpen):
                await store.get("hitrate:v1:d:chat:k")
        server.proc.start()  # same port; the data is gone (no persistence)
        deadline = time.monotonic() + 60  # generous wall-clock bound on the whole recovery
        while store.circuit_state() != "closed":
            assert time.monotonic() < deadline, "the circuit never closed"
            clock.now += 0.2  # time for the next probe
            with contextlib.suppress(Exception):
                await store.get("hitrate:v1:d:chat:k")
        assert store.stats().circuit_opens >= 1
        await store.set("hitrate:v1:d:chat:k", b"again")
        assert await store.get("hitrate:v1:d:chat:k") == b"again"
    finally:
        await store.close()
