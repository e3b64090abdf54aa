"""The disk store on a full disk (simulated with SQLite's max_page_count on the store's own
connection) and with a tiny size limit: clients keep being served, /cache/health says the
backend is down while writes fail, the failure is logged once per episode with a clear
message, and the WAL stays within the configured size."""

from __future__ import annotations

import logging
import os

import httpx

from hitrate.stores.disk import DiskStore
from tests.conftest import ask

ADMIN = {"authorization": "Bearer sk-master"}


def _limit_pages(store: DiskStore, extra_pages: int | None) -> None:
    """Caps the database file at its current size (+ extra pages): a full disk, as SQLite
    sees it. None lifts the cap."""

    def cap() -> None:
        assert store._db is not None
        if extra_pages is None:
            store._db.execute("PRAGMA max_page_count = 1073741823")
            return
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count = {pages + extra_pages}")

    store._executor.submit(cap).result()


def _health(gw) -> httpx.Response:
    return httpx.get(f"{gw.url}/cache/health", headers=ADMIN, timeout=30)


def test_full_disk_is_reported_down_and_logged_once_per_episode(make_gateway, upstream,
                                                                tmp_path, caplog):
    gw = make_gateway(cache={"type": "disk", "disk_cache_dir": str(tmp_path / "c")},
                      master_key="sk-master")
    client = gw.client(api_key="sk-master")
    assert ask(client, "kept")[0]["x-hitrate-cache"] == "miss"
    assert _health(gw).status_code == 200
    store = gw.cache.store
    _limit_pages(store, 0)
    big = "y" * 20_000  # needs new (overflow) pages
    with caplog.at_level(logging.WARNING, logger="hitrate"):
        for i in range(8):
            headers, answer = ask(client, f"{big} {i}")
            assert headers["x-hitrate-cache"] == "miss" and answer.choices[0].message.content
            assert ask(client, "kept")[0]["x-hitrate-cache"] == "hit"  # reads still work
        health = _health(gw)
        assert health.status_code == 503
        payload = health.json()
        assert payload["status"] == "unhealthy"
        assert "full" in payload["error"] and "rollback" not in payload["error"]
        stats = httpx.get(f"{gw.url}/cache/stats", headers=ADMIN, timeout=30).json()
        assert stats["backend"]["up"] is False
        _limit_pages(store, None)  # space again
        assert ask(client, f"{big} after")[0]["x-hitrate-cache"] == "miss"
        assert ask(client, f"{big} after")[0]["x-hitrate-cache"] == "hit"
        assert _health(gw).status_code == 200
    # The engine logs each failure episode once (reads and writes apart; here only the
    # writes failed): one "failing", one "recovered", not one per request.
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("hitrate")]
    assert len(lines) == 2, lines
    assert "writes failing" in lines[0] and "full" in lines[0]
    assert "rollback" not in lines[0]
    assert "writes recovered" in lines[1]


async def test_write_error_message_names_the_problem(tmp_path):
    store = DiskStore(tmp_path, max_bytes=1 << 30)
    try:
        await store.set("hitrate:v1:a:chat:0", b"x" * 100)
        _limit_pages(store, 0)
        try:
            await store.set("hitrate:v1:a:chat:1", os.urandom(50_000))
        except Exception as exc:  # the engine turns it into a skipped store
            message = str(exc)
        else:
            raise AssertionError("the write did not fail")
        assert "full" in message and "cannot rollback" not in message
        assert store.failure() is not None and await store.ping() is False
        assert await store.get("hitrate:v1:a:chat:0") == b"x" * 100
        assert store.stats().entries == 1  # the failed write is not counted
        _limit_pages(store, None)
        await store.set("hitrate:v1:a:chat:1", b"fits")
        assert store.failure() is None and await store.ping() is True
    finally:
        await store.close()


async def test_the_wal_stays_within_a_tiny_size_limit(tmp_path):
    limit = int(0.05 * 1024 * 1024)
    store = DiskStore(tmp_path, max_bytes=limit)
    try:
        for i in range(300):
            await store.set(f"hitrate:v1:a:chat:{i}", os.urandom(2000))
        wal = tmp_path / "hitrate.sqlite3-wal"
        assert store.stats().bytes <= limit
        assert wal.stat().st_size <= limit, wal.stat().st_size
    finally:
        await store.close()
