"""The disk backend through the gateway: restarts, corruption, kill -9 mid-write."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from hitrate.entry import decode
from tests.conftest import ask


def test_entries_survive_a_restart(make_gateway, upstream, tmp_path):
    cache = {"type": "disk", "disk_cache_dir": str(tmp_path / "cache")}
    first = make_gateway(cache=cache)
    _, answer = ask(first.client(), "persist me")
    first.server.stop()
    second = make_gateway(cache=cache)
    headers, again = ask(second.client(), "persist me")
    assert headers["x-hitrate-cache"] == "hit"
    assert again.choices[0].message.content == answer.choices[0].message.content
    assert upstream.calls() == 1


def test_corrupted_entry_is_a_miss_and_is_replaced(make_gateway, upstream, tmp_path):
    directory = tmp_path / "cache"
    gw = make_gateway(cache={"type": "disk", "disk_cache_dir": str(directory)})
    client = gw.client()
    headers, _ = ask(client, "fragile")
    key = headers["x-hitrate-cache-key"]
    db = sqlite3.connect(directory / "hitrate.sqlite3", timeout=5)
    (value,) = db.execute("SELECT value FROM entries WHERE key = ?", (key,)).fetchone()
    damaged = bytearray(value)
    damaged[len(damaged) // 2] ^= 0x20  # flip a bit inside the stored answer
    with db:
        db.execute("UPDATE entries SET value = ? WHERE key = ?", (bytes(damaged), key))
    headers, fresh = ask(client, "fragile")
    assert headers["x-hitrate-cache"] == "miss"
    assert fresh.choices[0].message.content.startswith("Answer #2")
    assert gw.cache.stats.corrupt == 1
    headers, _ = ask(client, "fragile")
    assert headers["x-hitrate-cache"] == "hit"  # the fresh answer replaced the bad one
    db.close()


WRITER = textwrap.dedent("""
    import asyncio, os, sys, time
    from hitrate.entry import Entry, encode
    from hitrate.stores.disk import DiskStore

    async def main():
        store = DiskStore(sys.argv[1])
        i = 0
        while True:
            key = f"hitrate:v1:default:chat:{i:08d}"
            body = {"choices": [{"message": {"content": "x" * (1000 + i % 5000)}}], "i": i}
            await store.set(key, encode(Entry(key, "chat", body)))
            i += 1
            if i == 50:
                print("writing", flush=True)

    asyncio.run(main())
""")


@pytest.mark.slow
def test_kill_9_mid_write_never_leaves_a_corrupt_entry(tmp_path):
    directory = tmp_path / "cache"
    for round_ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(directory)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
        time.sleep(0.2 + 0.15 * round_)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    db = sqlite3.connect(directory / "hitrate.sqlite3")
    rows = db.execute("SELECT key, value FROM entries").fetchall()
    db.close()
    assert len(rows) > 50
    for key, value in rows:
        entry = decode(value, expected_key=key)  # raises on any torn write
        assert entry.response["choices"][0]["message"]["content"].startswith("x")
