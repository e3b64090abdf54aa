"""Pick the disk store's engine by measurement: diskcache vs raw SQLite (WAL).

Prints one JSON line: get/set microseconds per op (p50) for 2 KB values, 5,000 keys.
Usage: python benchmarks/disk_store.py
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import tempfile
import time

import diskcache

N = 5000
VALUE = os.urandom(2048)


def timed(fn, keys):
    samples = []
    for key in keys:
        t0 = time.perf_counter()
        fn(key)
        samples.append((time.perf_counter() - t0) * 1e6)
    return round(statistics.median(samples), 1), round(sorted(samples)[int(len(samples) * 0.99)], 1)


def bench_diskcache(path):
    cache = diskcache.Cache(path, eviction_policy="least-recently-stored")
    keys = [f"hitrate:v1:default:chat:{i:032x}" for i in range(N)]
    set_p50, set_p99 = timed(lambda k: cache.set(k, VALUE, expire=3600), keys)
    get_p50, get_p99 = timed(lambda k: cache.get(k), keys)
    cache.close()
    return {"set_p50_us": set_p50, "set_p99_us": set_p99, "get_p50_us": get_p50, "get_p99_us": get_p99}


def bench_sqlite(path):
    db = sqlite3.connect(os.path.join(path, "s.db"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v BLOB, e REAL)")
    keys = [f"hitrate:v1:default:chat:{i:032x}" for i in range(N)]

    def put(k):
        db.execute("INSERT OR REPLACE INTO kv VALUES (?,?,?)", (k, VALUE, time.time() + 3600))

    def get(k):
        db.execute("SELECT v FROM kv WHERE k=? AND e>?", (k, time.time())).fetchone()

    set_p50, set_p99 = timed(put, keys)
    get_p50, get_p99 = timed(get, keys)
    db.close()
    return {"set_p50_us": set_p50, "set_p99_us": set_p99, "get_p50_us": get_p50, "get_p99_us": get_p99}


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        print(json.dumps({"benchmark": "disk_store", "keys": N, "value_bytes": len(VALUE),
                          "diskcache": bench_diskcache(a), "sqlite_wal": bench_sqlite(b)}))
