"""The stored record and its byte encoding (versioned, checksummed).

Layout: MAGIC(3) VERSION(1) CRC32(4) META_LEN(4) META(json) RESPONSE(json)

The CRC covers everything after it. The response JSON is kept as its own byte range
so that a hit can be sent to the client without re-encoding it. Anything that does
not decode exactly (foreign value, truncated write, bit flip, other version, wrong
key) raises `CorruptEntry`; the engine treats that as a miss and deletes the value.
"""

from __future__ import annotations

import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson

MAGIC = b"HRT"
VERSION = 1
_HEADER = struct.Struct(">3sBII")


class CorruptEntry(ValueError):
    """Stored bytes that are not a valid entry for this key."""


@dataclass(slots=True)
class Entry:
    key: str
    kind: str  # "chat" | "completion" | "embedding"
    response: dict[str, Any]
    created_at: float = field(default_factory=time.time)
    expires_at: float | None = None
    upstream_latency_ms: float = 0.0
    model: str = ""
    response_bytes: bytes | None = None  # the encoded response, when we have it

    def age(self, now: float | None = None) -> float:
        return max(0.0, (now if now is not None else time.time()) - self.created_at)

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (now or time.time()) >= self.expires_at

    def body_bytes(self) -> bytes:
        if self.response_bytes is None:
            self.response_bytes = orjson.dumps(self.response)
        return self.response_bytes


def encode(entry: Entry) -> bytes:
    meta = orjson.dumps(
        {
            "k": entry.key,
            "t": entry.kind,
            "c": entry.created_at,
            "e": entry.expires_at,
            "l": entry.upstream_latency_ms,
            "m": entry.model,
        }
    )
    rest = meta + entry.body_bytes()
    return _HEADER.pack(MAGIC, VERSION, zlib.crc32(rest), len(meta)) + rest


def decode(data: bytes, expected_key: str | None = None) -> Entry:
    if len(data) < _HEADER.size:
        raise CorruptEntry("too short")
    magic, version, crc, meta_len = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CorruptEntry("not a hitrate entry")
    if version != VERSION:
        raise CorruptEntry(f"entry version {version}, expected {VERSION}")
    rest = memoryview(data)[_HEADER.size :]
    if zlib.crc32(rest) != crc:
        raise CorruptEntry("checksum mismatch")
    if meta_len > len(rest):
        raise CorruptEntry("bad meta length")
    try:
        meta = orjson.loads(rest[:meta_len])
        response_bytes = bytes(rest[meta_len:])
        response = orjson.loads(response_bytes)
        entry = Entry(
            key=meta["k"],
            kind=meta["t"],
            response=response,
            created_at=float(meta["c"]),
            expires_at=meta["e"],
            upstream_latency_ms=float(meta["l"]),
            model=meta["m"],
            response_bytes=response_bytes,
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CorruptEntry(f"bad payload: {exc}") from exc
    if not isinstance(response, dict):
        raise CorruptEntry("payload is not an object")
    if expected_key is not None and entry.key != expected_key:
        raise CorruptEntry("entry belongs to another key")
    return entry
