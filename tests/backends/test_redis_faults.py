"""Redis stopped, hung (SIGSTOP) and restarted under a stream of requests through the real
gateway: every request is answered, none waits long, caching comes back by itself."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import pytest

from tests.conftest import ask

FAST_RECOVERY = {"recovery_time": 0.2, "max_recovery_time": 0.5}


@dataclass
class Traffic:
    """Clients sending requests in a loop; every outcome is recorded with its phase."""

    client: object
    phase: str = "healthy"
    results: list[tuple[str, str, float]] = field(default_factory=list)  # phase, status, seconds
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, worker: int) -> None:
        i = 0
        while not self.stop.is_set():
            phase = self.phase
            start = time.monotonic()
            try:
                headers, answer = ask(self.client, f"worker {worker} question {i % 4}")  # repeats: hits
                assert answer.choices[0].message.content
                self.results.append((phase, headers["x-hitrate-cache"], time.monotonic() - start))
            except Exception as exc:
                self.failures.append(f"{phase}: {exc!r}")
            i += 1

    def statuses(self, phase: str) -> list[str]:
        return [status for p, status, _ in self.results if p == phase]


@pytest.mark.slow
def test_stop_hang_restart_under_traffic(servers, backend_gateway, upstream, caplog):
    server = servers.redis()
    gateway = backend_gateway({"type": "redis", "redis": {"url": server.url}, "ttl": 60,
                               "circuit": FAST_RECOVERY})
    traffic = Traffic(gateway.client(timeout=30))
    workers = [threading.Thread(target=traffic.run, args=(n,)) for n in range(2)]
    store = gateway.cache.store

    def phase(name: str, seconds: float) -> None:
        traffic.phase = name
        time.sleep(seconds)

    with caplog.at_level(logging.WARNING):
        for w in workers:
            w.start()
        try:
            phase("healthy", 0.8)
            server.proc.kill()
            phase("stopped", 1.2)
            assert store.circuit_state() in ("open", "half_open")
            server.proc.start()  # same port, empty (no persistence)
            phase("restarted", 1.5)
            server.proc.pause()
            phase("hung", 1.5)
            server.proc.resume()
            phase("resumed", 1.5)
        finally:
            traffic.stop.set()
            for w in workers:
                w.join(timeout=30)

    assert not traffic.failures, traffic.failures[:5]
    for name in ("healthy", "stopped", "restarted", "hung", "resumed"):
        assert traffic.statuses(name), f"no requests during {name}"
    worst = max(seconds for _, _, seconds in traffic.results)
    assert worst < 1.5, f"a request waited {worst:.2f}s"
    # caching works before, stops while Redis is away, and comes back after each outage
    assert "hit" in traffic.statuses("healthy")
    assert traffic.statuses("stopped").count("hit") <= 2  # only requests already past Redis
    assert "hit" in traffic.statuses("restarted")
    assert "hit" in traffic.statuses("resumed")
    assert store.circuit_state() == "closed"
    stats = store.stats()
    assert stats.timeouts >= 1 and stats.rejected > 10 and stats.circuit_opens >= 2
    # logs: state changes only, never one line per request
    lines = [r.getMessage() for r in caplog.records if r.name in ("hitrate.stores", "hitrate.engine")]
    assert len(lines) < len(traffic.results) / 4, lines
    assert all("circuit" in m or "failing" in m or "recovered" in m for m in lines), lines
