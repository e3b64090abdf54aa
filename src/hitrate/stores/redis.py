"""Redis: standalone, Cluster and Sentinel, with redis-py's asyncio client.

Keys are stored as given: they already start with `hitrate:v1:<namespace>:`, so the
namespace is the key prefix and a namespace is listed with `SCAN MATCH <prefix>*`.
Values are stored and returned byte for byte; TTLs use `SET ... PX` (millisecond
precision, so sub-second TTLs work).

Multi-key operations never send one command across hash slots (no CROSSSLOT errors on
Cluster): batch reads use `MGET` on standalone/Sentinel and redis-py's slot-split
`mget_nonatomic` on Cluster; batch writes and deletes are pipelines of single-key
commands, which redis-py routes node by node.

redis-py's own retries are off (`Retry(NoBackoff(), 0)`): a retry would only stretch
the time a request waits on a sick backend. Recovery is the circuit breaker's job
(`remote.py`).

Timeouts: `timeout` (default 50 ms) is redis-py's `socket_timeout`, so it bounds every
wait for a reply, and a hung server is detected within it. It is not one deadline for
the whole operation, because an operation that has to open a connection first spends a
few round trips on the handshake (HELLO, CLIENT SETINFO...), and a burst of them on a
cold pool (startup, or just after an outage) queues on our own event loop: that is not
the server's fault and must not open the circuit. `connect_timeout` bounds the TCP
connect (default max(0.2 s, 2 x timeout)), and `deadline` (default max(0.5 s,
3 x timeout)) the whole operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hitrate.stores.remote import Item, RemoteStore

log = logging.getLogger("hitrate.stores")

Mode = Literal["standalone", "cluster", "sentinel"]
Node = tuple[str, int]

_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "*?[]\\"})


def parse_nodes(nodes: Sequence[Any], field: str) -> list[Node]:
    """`["h:p", {"host": h, "port": p}, [h, p]]` -> `[(h, p)]` (LiteLLM writes all three)."""
    out: list[Node] = []
    for node in nodes:
        if isinstance(node, str):
            host, sep, port = node.rpartition(":")
            if not sep:
                raise ValueError(f"{field}: {node!r} is not host:port")
            out.append((host.strip("[]"), int(port)))
        elif isinstance(node, dict):
            out.append((str(node["host"]), int(node["port"])))
        elif isinstance(node, (list, tuple)) and len(node) == 2:
            out.append((str(node[0]), int(node[1])))
        else:
            raise ValueError(f"{field}: {node!r} is not host:port")
    return out


class _SentinelPool(SentinelConnectionPool):
    """Asks Sentinel for the master at most every `MASTER_TTL` seconds, and once for
    concurrent callers, instead of once per new connection: a burst of new connections
    (a cold pool under load) would otherwise queue Sentinel round trips inside the
    per-operation timeout, and time out against a healthy master. After a failover the
    old address fails, the circuit opens, and the probe that closes it comes after the
    cached address has expired."""

    MASTER_TTL = 0.5
    _discovery: asyncio.Future[Any] | None = None
    _discovered_at = 0.0

    async def get_master_address(self) -> Any:
        now = time.monotonic()
        future = self._discovery
        stale = future is None or (future.done() and (
            future.cancelled() or future.exception() is not None
            or now - self._discovered_at >= self.MASTER_TTL))
        if stale:
            future = self._discovery = asyncio.ensure_future(super().get_master_address())
            self._discovered_at = now
        return await asyncio.shield(future)  # type: ignore[arg-type]


class RedisStore(RemoteStore):
    default_timeout = 0.05
    # Redis adds PX to its clock in an int64 of milliseconds: far beyond any real TTL.
    max_ttl = 2**62 / 1000

    def __init__(
        self,
        *,
        mode: Mode = "standalone",
        url: str | None = None,
        host: str = "127.0.0.1",
        port: int = 6379,
        username: str | None = None,
        password: str | None = None,
        db: int = 0,
        ssl: bool = False,
        ssl_ca_certs: str | None = None,
        ssl_cert_reqs: str = "required",
        startup_nodes: Sequence[Node] = (),
        sentinel_nodes: Sequence[Node] = (),
        service_name: str | None = None,
        sentinel_password: str | None = None,
        max_connections: int | None = None,
        connect_timeout: float | None = None,
        **guard: Any,
    ):
        self.name = {"standalone": "redis", "cluster": "redis-cluster",
                     "sentinel": "redis-sentinel"}[mode]
        timeout = guard.get("timeout") or self.default_timeout
        guard.setdefault("deadline", max(0.5, 3 * timeout))
        super().__init__(**guard)
        self.mode = mode
        connect_timeout = connect_timeout or max(0.2, 2 * self.timeout)
        common: dict[str, Any] = {
            "socket_timeout": self.timeout, "socket_connect_timeout": connect_timeout,
            "retry": Retry(NoBackoff(), 0), "decode_responses": False,
        }
        if max_connections:
            common["max_connections"] = max_connections
        auth = {"username": username, "password": password}
        tls: dict[str, Any] = {}
        if ssl:
            tls = {"ssl": True, "ssl_cert_reqs": ssl_cert_reqs}
            if ssl_ca_certs:
                tls["ssl_ca_certs"] = ssl_ca_certs
        self._subscriber_kwargs = {**auth, **tls, "socket_connect_timeout": connect_timeout,
                                   "socket_timeout": None, "retry": Retry(NoBackoff(), 0)}
        self._sentinel: Sentinel | None = None
        self.client: Any
        if mode == "cluster":
            if not startup_nodes:
                raise ValueError("redis-cluster needs startup_nodes")
            self.client = RedisCluster(
                startup_nodes=[ClusterNode(h, p) for h, p in startup_nodes],
                **{k: v for k, v in common.items() if k != "retry"}, **auth, **tls,
                retry=Retry(NoBackoff(), 1),  # one re-route after a MOVED / topology change
            )
        elif mode == "sentinel":
            if not sentinel_nodes or not service_name:
                raise ValueError("redis-sentinel needs sentinel_nodes and service_name")
            # Sentinel is asked once per MASTER_TTL at most, off the hot path: connect budget.
            sentinel_kwargs = {"socket_timeout": connect_timeout,
                               "socket_connect_timeout": connect_timeout,
                               "password": sentinel_password}
            self._sentinel = Sentinel(list(sentinel_nodes), sentinel_kwargs=sentinel_kwargs,
                                      **common, **tls)
            self.client = self._sentinel.master_for(service_name, db=db,
                                                    connection_pool_class=_SentinelPool, **auth)
        elif url:
            if ssl and url.startswith("redis://"):
                url = "rediss://" + url.removeprefix("redis://")
            # from_url picks the TLS connection class from the scheme; it takes no `ssl`.
            tls = {}
            if url.startswith("rediss:"):
                tls = {"ssl_cert_reqs": ssl_cert_reqs}
                if ssl_ca_certs:
                    tls["ssl_ca_certs"] = ssl_ca_certs
            # Credentials in the URL win over REDIS_USERNAME / REDIS_PASSWORD.
            self.client = aioredis.Redis.from_url(url, **common, **tls,
                                                  **{k: v for k, v in auth.items() if v})
            self._subscriber_kwargs = {**self._subscriber_kwargs, **tls, "url": url}
            self._subscriber_kwargs.pop("ssl", None)
        else:
            self.client = aioredis.Redis(host=host, port=port, db=db, **common, **auth, **tls)
            self._subscriber_kwargs.update(host=host, port=port, db=db)

    # -- backend operations -----------------------------------------------------------

    async def _prepare(self) -> None:
        if self.mode == "cluster":  # topology discovery: several round trips, once
            await asyncio.wait_for(self.client.initialize(), max(1.0, 20 * self.timeout))

    def _is_timeout(self, exc: Exception) -> bool:
        return isinstance(exc, RedisTimeoutError)

    def _answered_bad_argument(self, exc: Exception) -> bool:
        # A plain `ERR ...` reply (syntax, "invalid expire time", "not an integer"). Its
        # subclasses (OOM, READONLY, NOPERM, cluster errors...) are real backend trouble.
        return type(exc) is ResponseError and getattr(exc, "status_code", None) == "ERR"

    async def _get(self, key: str) -> bytes | None:
        return await self.client.get(key)

    async def _get_with_ttl(self, key: str) -> tuple[bytes | None, float | None]:
        pipe = self.client.pipeline(transaction=False)
        pipe.get(key)
        pipe.pttl(key)
        value, pttl = await pipe.execute()
        return value, (pttl / 1000 if value is not None and pttl > 0 else None)

    async def _get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if self.mode == "cluster":
            return await self.client.mget_nonatomic(keys)
        return await self.client.mget(keys)

    @staticmethod
    def _px(ttl: float | None) -> int | None:
        return max(1, int(ttl * 1000)) if ttl else None

    async def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        await self.client.set(key, value, px=self._px(ttl))

    async def _set_many(self, items: Sequence[Item]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for key, value, ttl in items:
            pipe.set(key, value, px=self._px(ttl))
        await pipe.execute()

    async def _delete(self, key: str) -> bool:
        return bool(await self.client.delete(key))

    async def _delete_many(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.execute_command("UNLINK", key)  # ClusterPipeline.unlink() is a coroutine
        return sum(await pipe.execute())

    async def _scan(self, prefix: str) -> AsyncIterator[str]:
        seen: set[bytes] = set()  # SCAN may return a key twice
        async for raw in self.client.scan_iter(match=prefix.translate(_GLOB_SPECIAL) + "*",
                                               count=1000):
            if raw not in seen:
                seen.add(raw)
                yield raw.decode("utf-8", "replace")

    async def _ping(self) -> None:
        await self.client.ping()

    async def _close(self) -> None:
        await self.client.aclose()
        if self._sentinel is not None:
            for sentinel in self._sentinel.sentinels:
                await sentinel.aclose()

    # -- invalidation channel (used by the tiered store) --------------------------------

    def invalidation_bus(self, channel: str) -> RedisInvalidationBus:
        return RedisInvalidationBus(self, channel)

    async def _subscriber(self) -> Any:
        """A dedicated connection for SUBSCRIBE (it cannot share the command pool's)."""
        if self.mode == "sentinel":
            return self.client  # pubsub() on the Sentinel-managed pool follows the master
        if self.mode == "cluster":
            # Cluster PUBLISH reaches every node, so any one node can serve subscribers.
            await self.client.initialize()
            nodes = self.client.get_primaries()
            node = nodes[int(time.monotonic()) % len(nodes)]
            return aioredis.Redis(host=node.host, port=node.port, **self._subscriber_kwargs)
        kwargs = dict(self._subscriber_kwargs)
        if "url" in kwargs:
            return aioredis.Redis.from_url(kwargs.pop("url"), **kwargs)
        return aioredis.Redis(**kwargs)


class RedisInvalidationBus:
    """Pub/sub channel for tiered L1 invalidation. `listen` keeps a subscription open,
    reconnecting with backoff, and reports whether it is live: while it is not, messages
    may be lost, so the tiered store must not trust its L1."""

    def __init__(self, store: RedisStore, channel: str, heartbeat: float = 1.0):
        self.store = store
        self.channel = channel
        self.heartbeat = heartbeat

    async def publish(self, message: bytes) -> None:
        await self.store._guard(lambda: self.store.client.publish(self.channel, message))

    async def listen(self, on_message: Callable[[bytes], Awaitable[None]],
                     on_live: Callable[[bool], Awaitable[None]]) -> None:
        backoff = 0.05
        while True:
            client = pubsub = None
            try:
                client = await asyncio.wait_for(self.store._subscriber(), self.heartbeat)
                pubsub = client.pubsub()
                async with asyncio.timeout(self.heartbeat):
                    await pubsub.subscribe(self.channel)
                    while (await pubsub.get_message(timeout=self.heartbeat)) is None:
                        pass  # the subscribe confirmation: from here on nothing is missed
                await on_live(True)
                backoff = 0.05
                await self._pump(pubsub, on_message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("invalidation channel %s lost: %s", self.channel, exc)
            finally:
                await on_live(False)
                await _quietly_close(pubsub, client if client is not self.store.client else None)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _pump(self, pubsub: Any, on_message: Callable[[bytes], Awaitable[None]]) -> None:
        """Deliver messages; PING every heartbeat and give up after 3 silent ones (a
        hung server or a half-open TCP connection never raises by itself)."""
        last_seen = last_ping = time.monotonic()
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True,
                                               timeout=self.heartbeat)
            now = time.monotonic()
            if message is not None:
                last_seen = now
                if message.get("type") == "message":
                    await on_message(message["data"])
            if now - last_ping >= self.heartbeat:
                last_ping = now
                await asyncio.wait_for(pubsub.ping(), self.heartbeat)
            if now - last_seen > 3 * self.heartbeat:
                raise ConnectionError("no answer to PING on the invalidation channel")


async def _quietly_close(pubsub: Any, client: Any) -> None:
    for closable in (pubsub, client):
        if closable is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(closable.aclose(), 0.5)


# -- configuration ---------------------------------------------------------------------------


def from_config(redis: Any, mode: Mode, guard: dict[str, Any]) -> RedisStore:
    """A store for a `RedisConfig`; unset connection fields fall back to the environment
    variables LiteLLM and Shannon users already set (REDIS_URL, then LiteLLM's LLM_REDIS_URL,
    REDIS_HOST, REDIS_PORT, REDIS_PASSWORD, REDIS_USERNAME), then to localhost:6379."""
    env = os.environ
    kwargs: dict[str, Any] = {
        "mode": mode, "db": redis.db, "ssl": redis.ssl, "ssl_ca_certs": redis.ssl_ca_certs,
        "ssl_cert_reqs": redis.ssl_cert_reqs, "max_connections": redis.max_connections,
        "username": redis.username or env.get("REDIS_USERNAME") or None,
        "password": redis.password or env.get("REDIS_PASSWORD") or None,
    }
    if mode == "cluster":
        kwargs["startup_nodes"] = parse_nodes(redis.startup_nodes, "cache.redis.startup_nodes")
    elif mode == "sentinel":
        kwargs.update(sentinel_nodes=parse_nodes(redis.sentinel_nodes, "cache.redis.sentinel_nodes"),
                      service_name=redis.service_name, sentinel_password=redis.sentinel_password)
    elif redis.url or (not redis.host and (env.get("REDIS_URL") or env.get("LLM_REDIS_URL"))):
        kwargs["url"] = redis.url or env.get("REDIS_URL") or env["LLM_REDIS_URL"]
    else:
        kwargs["host"] = redis.host or env.get("REDIS_HOST") or "127.0.0.1"
        kwargs["port"] = redis.port or int(env.get("REDIS_PORT") or 6379)
        if not (redis.host or redis.port or env.get("REDIS_HOST") or env.get("REDIS_PORT")):
            # Not an error (a local Redis is a fine default), but never a silent one.
            log.warning("cache backend redis: no server configured (cache.redis, REDIS_URL, "
                        "LLM_REDIS_URL, REDIS_HOST/REDIS_PORT); using 127.0.0.1:6379")
    return RedisStore(**kwargs, **guard)
