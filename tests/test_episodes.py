"""Failure episodes (stores/episodes.py): a full disk fails every write and no read; that
is one episode, logged once, not a failing/recovered pair per request."""

from __future__ import annotations

import logging

from hitrate.stores.episodes import FailureEpisodes, side_of


def test_reads_succeeding_do_not_end_a_write_failure(caplog):
    log = logging.getLogger("hitrate.test-episodes")
    episodes = FailureEpisodes("disk", log)
    with caplog.at_level(logging.WARNING, logger=log.name):
        for _ in range(100):  # a request: the lookup works, the store fails
            episodes.succeeded("get")
            episodes.failed("set", OSError("disk full"))
        assert episodes.failing and episodes.failing_sides() == ["writes"]
        episodes.failed("get_many", TimeoutError("slow"))
        episodes.succeeded("set_many")
        episodes.succeeded("get")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "cache backend disk: writes failing (set: OSError: disk full); answers are not stored",
        "cache backend disk: reads failing (get_many: TimeoutError: slow); serving misses",
        "cache backend disk: writes recovered",
        "cache backend disk: reads recovered",
    ]
    assert not episodes.failing


def test_sides():
    assert [side_of(op) for op in ("get", "get_many", "set", "set_many", "delete")] == [
        "reads", "reads", "writes", "writes", "writes"]
