"""Circuit breaker for shared backends: a dead or hung backend costs nothing after the
first failure, and comes back on its own.

States:
- closed: operations run (each under its own timeout).
- open: operations fail at once with `CircuitOpen`, without touching the network. After
  `recovery_time` seconds the next operation becomes the probe.
- half_open: exactly one operation (the probe) runs; the others fail at once. Probe
  success -> closed. Probe failure -> open again, with the wait doubled up to
  `max_recovery_time`, so a backend that stays down is probed rarely.

One log line per state change (never per request); counters for metrics. Pure logic on
the event loop thread: no I/O, no locks needed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

log = logging.getLogger("hitrate.stores")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitOpen(ConnectionError):
    """Raised instead of calling a backend whose circuit is open."""


@dataclass(slots=True)
class CircuitStats:
    failures: int = 0        # operations that raised or timed out
    timeouts: int = 0        # of which timed out
    rejected: int = 0        # operations refused while open (cost: nothing)
    opens: int = 0           # closed/half_open -> open transitions


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 1,
        recovery_time: float = 1.0,
        max_recovery_time: float = 30.0,
        clock=time.monotonic,
    ):
        if failure_threshold < 1 or recovery_time <= 0 or max_recovery_time < recovery_time:
            raise ValueError("invalid circuit breaker settings")
        self.name = name
        self.failure_threshold = failure_threshold
        self.recovery_time = recovery_time
        self.max_recovery_time = max_recovery_time
        self._clock = clock
        self.state = CLOSED
        self.stats = CircuitStats()
        self._consecutive = 0
        self._wait = recovery_time
        self._retry_at = 0.0
        self._probing = False

    def before(self) -> bool:
        """Called before each operation. Returns True if this call is the half-open probe;
        raises `CircuitOpen` if the operation must not run."""
        if self.state == CLOSED:
            return False
        if self.state == OPEN and self._clock() >= self._retry_at:
            self._set(HALF_OPEN, f"probing after {self._wait:g}s")
        if self.state == HALF_OPEN and not self._probing:
            self._probing = True
            return True
        self.stats.rejected += 1
        raise CircuitOpen(f"{self.name}: circuit open")

    def success(self, probe: bool) -> None:
        self._consecutive = 0
        if probe:
            self._probing = False
        if self.state != CLOSED and (probe or self.state == HALF_OPEN):
            self._wait = self.recovery_time
            self._set(CLOSED, "backend answers again")

    def failure(self, probe: bool, exc: BaseException, *, timeout: bool = False) -> None:
        self.stats.failures += 1
        if timeout:
            self.stats.timeouts += 1
        reason = "timed out" if timeout else f"{type(exc).__name__}: {exc}"
        if probe:
            self._probing = False
            self._wait = min(self._wait * 2, self.max_recovery_time)
            self._open(f"probe failed ({reason})")
            return
        self._consecutive += 1
        if self.state == CLOSED and self._consecutive >= self.failure_threshold:
            self._open(reason)

    def abandoned(self, probe: bool) -> None:
        """The operation was cancelled by its caller: no verdict on the backend."""
        if probe:
            self._probing = False  # still half_open: the next call is the probe

    def force(self, ok: bool, exc: BaseException | None = None) -> None:
        """An out-of-band check (admin ping) saw the backend up or down."""
        if ok:
            self._consecutive = 0
            if self.state != CLOSED:
                self._wait = self.recovery_time
                self._set(CLOSED, "ping answered")
        elif self.state == CLOSED:
            self._open(f"ping failed ({exc})")

    def _open(self, reason: str) -> None:
        self.stats.opens += 1
        self._retry_at = self._clock() + self._wait
        self._set(OPEN, f"{reason}; failing fast for {self._wait:g}s")

    def _set(self, state: str, why: str) -> None:
        if state == self.state:
            return
        self.state = state
        log.warning("cache backend %s: circuit %s (%s)", self.name, state, why)
