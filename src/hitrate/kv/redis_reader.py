"""Bulk reads of KV chunks from Redis: MGET on plain sockets, each value received
straight into its own buffer.

The shared `RedisStore` (redis-py's asyncio client) is right for the response cache's
small values; for a prompt's KV (tens of MB per request) its reply path copies every
value several times between the stream buffer, the parser and the result. Here each
value is `recv_into` a `bytearray` of its announced length (one copy: kernel -> final
buffer; `codec.decode` then views it without copying), and a prompt's keys are split
over `connections` sockets read in parallel threads (the socket calls release the GIL).
Writes and everything else stay on `RedisStore`.

Only for URLs without TLS (redis://, unix://; user, password and db honoured); other
URLs keep the store's own reads. Failures raise: the engine counts a miss.
"""

from __future__ import annotations

import asyncio
import queue
import socket
from collections.abc import Sequence
from urllib.parse import unquote, urlparse


def supports(url: str) -> bool:
    return url.startswith(("redis://", "unix://"))


class RedisError(RuntimeError):
    """An error reply, or a reply that is not what MGET returns."""


class _Connection:
    def __init__(self, url: str, timeout: float):
        parsed = urlparse(url)
        if parsed.scheme == "unix":
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(parsed.path)
            db = dict(p.split("=", 1) for p in parsed.query.split("&") if "=" in p).get("db", "0")
        else:
            self.sock = socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379),
                                                 timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            db = parsed.path.strip("/") or "0"
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.reader = self.sock.makefile("rb", buffering=1 << 16)
        if parsed.password is not None:
            auth = [unquote(parsed.username)] if parsed.username else []
            self.command("AUTH", *auth, unquote(parsed.password))
        if db != "0":
            self.command("SELECT", db)

    def send(self, *parts: str) -> None:
        out = [b"*%d\r\n" % len(parts)]
        for part in parts:
            data = part.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(out))

    def line(self) -> bytes:
        line = self.reader.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("Redis closed the connection")
        if line[:1] == b"-":
            raise RedisError(line[1:-2].decode(errors="replace"))
        return line[:-2]

    def command(self, *parts: str) -> bytes:
        self.send(*parts)
        return self.line()

    def mget(self, keys: Sequence[str]) -> list[bytearray | None]:
        self.send("MGET", *keys)
        head = self.line()
        if head[:1] != b"*" or int(head[1:]) != len(keys):
            raise RedisError(f"unexpected MGET reply {head[:32]!r}")
        values: list[bytearray | None] = []
        for _ in keys:
            head = self.line()
            if head[:1] != b"$":
                raise RedisError(f"unexpected MGET element {head[:32]!r}")
            size = int(head[1:])
            if size < 0:
                values.append(None)
                continue
            value = bytearray(size)
            view = memoryview(value)
            got = 0
            while got < size:  # large reads go straight into `value`, past the buffer
                n = self.reader.readinto(view[got:])
                if not n:
                    raise ConnectionError("Redis closed the connection mid-value")
                got += n
            if self.reader.read(2) != b"\r\n":
                raise RedisError("MGET value not terminated")
            values.append(value)
        return values

    def close(self) -> None:
        try:
            self.reader.close()
        finally:
            self.sock.close()


class RedisBulkReader:
    """`get_many` for KV tiers over Redis: parallel MGETs on a small socket pool."""

    def __init__(self, url: str, *, timeout: float = 10.0, connections: int = 4,
                 min_split_bytes: int = 8 << 20):
        if not supports(url):
            raise ValueError(f"RedisBulkReader needs a redis:// or unix:// URL, not {url!r}")
        self.url = url
        self.timeout = timeout
        self.connections = max(1, connections)
        self.min_split_bytes = min_split_bytes
        self._idle: queue.SimpleQueue[_Connection] = queue.SimpleQueue()
        self._value_bytes = 0  # running estimate of a value's size, to decide splits

    def _mget(self, keys: Sequence[str]) -> list[bytearray | None]:
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = _Connection(self.url, self.timeout)
        try:
            values = conn.mget(keys)
        except BaseException:
            conn.close()  # a half-read reply leaves the socket unusable
            raise
        self._idle.put(conn)
        return values

    async def get_many(self, keys: Sequence[str]) -> list[bytearray | None]:
        """Called by the tier on the engine's I/O loop: the socket work runs in threads.
        A batch expected to be large is split into contiguous parts read in parallel."""
        if not keys:
            return []
        parts = 1
        if self._value_bytes:
            parts = max(1, min(self.connections, len(keys),
                               self._value_bytes * len(keys) // self.min_split_bytes))
        size = -(-len(keys) // parts)
        groups = [keys[i:i + size] for i in range(0, len(keys), size)]
        results = await asyncio.gather(*(asyncio.to_thread(self._mget, g) for g in groups))
        values = [v for group in results for v in group]
        found = [len(v) for v in values if v is not None]
        if found:
            self._value_bytes = max(found)
        return values

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return
