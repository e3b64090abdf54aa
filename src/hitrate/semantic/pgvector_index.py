"""Vector index in PostgreSQL with pgvector, through psycopg 3's async connection pool.

One row per entry: `key` (primary key), `scope`, `namespace`, `text`, `expires_at` (epoch
seconds, NULL = never) and `embedding vector(dim)`. A search is one query: rows of the
scope, unexpired, ordered by cosine distance (`<=>`), `LIMIT k`. Indexes: btree on scope
and namespace, and HNSW (`vector_cosine_ops`) on the embedding. PostgreSQL's planner picks
per query: a small scope is read through the scope btree and ranked exactly; a large one
walks the HNSW graph with pgvector's iterative scan (`hnsw.iterative_scan = strict_order`),
so a scope filter never starves the result of its k rows. Expired rows are skipped by the
query and deleted in bulk at most every `purge_interval` seconds.

The table (and the `vector` extension, if the role may create it) is created on the first
`add`, dimension from the first vector, unless `dim` is given; an existing table is reused.
"""

from __future__ import annotations

import contextlib
import re
import time
from typing import Any

from hitrate.semantic.index import Match
from hitrate.semantic.server_index import ServerIndex, stored_vector

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class PgvectorIndex(ServerIndex):
    name = "pgvector"

    def __init__(self, dsn: str = "postgresql://127.0.0.1:5432/postgres", *,
                 table: str = "hitrate_vectors", dim: int | None = None, hnsw: bool = True,
                 hnsw_m: int = 16, hnsw_ef_construction: int = 64, hnsw_ef_search: int = 64,
                 min_connections: int = 1, max_connections: int = 8, purge_interval: float = 60.0,
                 timeout: float = 10.0):
        if not _IDENTIFIER.match(table):
            raise ValueError(f"table {table!r} is not a plain SQL identifier")
        import pgvector.psycopg  # noqa: F401 - a missing client fails here, not on a request
        import psycopg_pool  # noqa: F401

        super().__init__(dim)
        self.dsn = dsn
        self.table = table
        self.where = f"table {table!r}"
        self.hnsw = hnsw
        self._hnsw_build = (int(hnsw_m), int(hnsw_ef_construction))
        self.hnsw_ef_search = int(hnsw_ef_search)
        self._pool_size = (min_connections, max_connections)
        self.purge_interval = purge_interval
        self.timeout = timeout
        self._pool: Any = None
        self._next_purge = time.monotonic() + purge_interval

    # -- schema ---------------------------------------------------------------------

    async def _configure(self, conn: Any) -> None:
        from pgvector.psycopg import register_vector_async

        await register_vector_async(conn)
        # ef_search: candidates per HNSW probe; strict_order: keep probing until k rows
        # pass the scope/expiry filter, results still in exact distance order.
        await conn.execute(f"SET hnsw.ef_search = {self.hnsw_ef_search}")
        await conn.execute("SET hnsw.iterative_scan = strict_order")

    async def _open_pool(self) -> None:
        import psycopg
        from psycopg_pool import AsyncConnectionPool

        async with await psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, connect_timeout=max(1, int(self.timeout))) as conn:
            found = await (await conn.execute(
                "SELECT 1 FROM pg_extension WHERE extname = 'vector'")).fetchone()
            if found is None:
                await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        pool = AsyncConnectionPool(
            self.dsn, min_size=self._pool_size[0], max_size=self._pool_size[1],
            kwargs={"autocommit": True}, configure=self._configure, timeout=self.timeout,
            open=False, name=f"hitrate-{self.table}")
        try:
            await pool.open(wait=True, timeout=self.timeout)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def _existing_dim(self) -> int | None:
        if self._pool is None:
            await self._open_pool()
        async with self._pool.connection() as conn:
            row = await (await conn.execute(
                "SELECT a.atttypmod FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) "
                "AND a.attname = 'embedding' AND NOT a.attisdropped", (self.table,))).fetchone()
        return None if row is None else int(row[0])

    async def _create(self, dim: int) -> None:
        import psycopg

        t = self.table
        statements = [
            f"CREATE TABLE IF NOT EXISTS {t} (key text PRIMARY KEY, scope text NOT NULL, "
            f"namespace text NOT NULL, text text NOT NULL, expires_at double precision, "
            f"embedding vector({dim}) NOT NULL)",
            f"CREATE INDEX IF NOT EXISTS {t}_scope ON {t} (scope)",
            f"CREATE INDEX IF NOT EXISTS {t}_namespace ON {t} (namespace)",
            f"CREATE INDEX IF NOT EXISTS {t}_expires_at ON {t} (expires_at)",
        ]
        if self.hnsw:
            m, ef_construction = self._hnsw_build
            statements.append(
                f"CREATE INDEX IF NOT EXISTS {t}_embedding ON {t} USING hnsw "
                f"(embedding vector_cosine_ops) WITH (m = {m}, ef_construction = {ef_construction})")
        # Another process may create the same object at the same moment.
        raced = (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable,
                 psycopg.errors.DuplicateObject)
        async with self._pool.connection() as conn:
            for statement in statements:
                with contextlib.suppress(*raced):
                    await conn.execute(statement)

    # -- protocol -------------------------------------------------------------------

    async def _store(self, key: str, values: Any, *, scope: str, namespace: str, text: str,
                     expires_at: float | None) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                f"INSERT INTO {self.table} (key, scope, namespace, text, expires_at, embedding) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (key) DO UPDATE SET "
                "scope = EXCLUDED.scope, namespace = EXCLUDED.namespace, text = EXCLUDED.text, "
                "expires_at = EXCLUDED.expires_at, embedding = EXCLUDED.embedding",
                (key, scope, namespace, text, expires_at, values))
        if time.monotonic() >= self._next_purge:
            await self.purge_expired()

    async def _nearest(self, query: Any, *, scope: str, k: int, min_score: float) -> list[Match]:
        async with self._pool.connection() as conn:
            rows = await (await conn.execute(
                f"SELECT key, text, embedding <=> %(q)s AS distance, embedding FROM {self.table} "
                "WHERE scope = %(scope)s AND (expires_at IS NULL OR expires_at > %(now)s) "
                "ORDER BY embedding <=> %(q)s LIMIT %(k)s",
                {"q": query, "scope": scope, "now": time.time(), "k": int(k)})).fetchall()
        found = []
        for key, text, distance, embedding in rows:
            score = 1.0 - float(distance)
            if score >= min_score:
                found.append(Match(key, min(score, 1.0), text, stored_vector(embedding)))
        return found

    async def delete(self, key: str) -> bool:
        if not await self._ensure():
            return False
        async with self._pool.connection() as conn:
            cursor = await conn.execute(f"DELETE FROM {self.table} WHERE key = %s", (key,))
            return cursor.rowcount > 0

    async def clear(self, namespace: str | None = None) -> int:
        if not await self._ensure():
            return 0
        async with self._pool.connection() as conn:
            if namespace is None:
                cursor = await conn.execute(f"DELETE FROM {self.table}")
            else:
                cursor = await conn.execute(f"DELETE FROM {self.table} WHERE namespace = %s",
                                            (namespace,))
            return max(cursor.rowcount, 0)

    async def purge_expired(self) -> int:
        """Delete expired rows in bulk (search already skips them)."""
        self._next_purge = time.monotonic() + self.purge_interval
        if not await self._ensure():
            return 0
        async with self._pool.connection() as conn:
            cursor = await conn.execute(f"DELETE FROM {self.table} WHERE expires_at <= %s",
                                        (time.time(),))
            return max(cursor.rowcount, 0)

    async def analyze(self) -> None:
        """Refresh the planner's statistics now, e.g. after a bulk load. Autovacuum does it on
        its own within a minute or so; until then a fast-grown table is searched exactly
        (the planner believes every scope is small), correct but slower."""
        if await self._ensure():
            async with self._pool.connection() as conn:
                await conn.execute(f"ANALYZE {self.table}")

    async def count(self) -> int:
        if not await self._ensure():
            return 0
        async with self._pool.connection() as conn:
            row = await (await conn.execute(
                f"SELECT count(*) FROM {self.table} WHERE expires_at IS NULL OR expires_at > %s",
                (time.time(),))).fetchone()
            return int(row[0])

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
            self._ready = False
