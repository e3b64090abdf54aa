"""Backend failure episodes, logged once each: one line when reads (or writes) start
failing, one when they work again - never one per request.

Reads and writes are tracked apart because they fail apart: on a full disk every write
fails while every read succeeds, and a single "failing/recovered" flag would flip on each
request and log two lines per request (the disk-full flood of issue 11).
"""

from __future__ import annotations

import logging

_READS = frozenset({"get", "get_many", "get_with_ttl", "scan"})
_CONSEQUENCE = {"reads": "serving misses", "writes": "answers are not stored"}


def side_of(op: str) -> str:
    """"reads" for lookups, "writes" for everything that changes the store."""
    return "reads" if op in _READS else "writes"


class FailureEpisodes:
    """What the engine tells about its store's health (`failed` / `succeeded` after each
    operation); logs the start and end of each episode on `logger`."""

    def __init__(self, name: str, logger: logging.Logger):
        self.name = name
        self.log = logger
        self._failing: dict[str, str] = {}  # side -> what failed first

    def failed(self, op: str, exc: BaseException) -> None:
        side = side_of(op)
        if side in self._failing:
            return
        self._failing[side] = f"{op}: {type(exc).__name__}: {exc}"
        self.log.warning("cache backend %s: %s failing (%s); %s", self.name, side,
                         self._failing[side], _CONSEQUENCE[side])

    def succeeded(self, op: str) -> None:
        if not self._failing:
            return  # the usual case, on every hit
        side = side_of(op)
        if self._failing.pop(side, None) is not None:
            self.log.warning("cache backend %s: %s recovered", self.name, side)

    @property
    def failing(self) -> bool:
        return bool(self._failing)

    def failing_sides(self) -> list[str]:
        return sorted(self._failing)
