"""How chunks are written to the disk and remote tiers (LMCache's `remote_serde`).

    naive   the chunk as `codec.encode` made it (header, CRC, raw tensor bytes)
    zstd    lossless: the payload's bytes regrouped by significance (byte i of every
            element together, as blosc's shuffle does), each plane Zstandard-compressed
            where that pays (exponent bytes compress, mantissa bytes mostly do not, and
            are stored as they are). Decodes to the identical chunk, whose CRC is
            checked as usual.
    int8    lossy, opt-in (CacheGen/KIVI-style): every channel (all indices but the
            token axis) scaled by its absolute maximum over the chunk's tokens and
            rounded to int8. Decodes to a new chunk of the original dtype (a fresh
            CRC): the exactness contract holds only for the other serdes.

Every stored value starts with a 4-byte magic, so any tier reads all three whatever it
writes (a fleet can switch serde without flushing). `loads` never raises: bytes it
cannot decode are returned as they are, and `codec.decode` then rejects them as
corrupt (a counted miss, deleted). Runs on worker threads, never the I/O loop: zstd
releases the GIL; numpy/torch do the rest.
"""

from __future__ import annotations

import struct
import zlib
from abc import ABC, abstractmethod
from typing import Any

from hitrate.kv import codec

ZSTD_MAGIC = b"HKVZ"
INT8_MAGIC = b"HKVQ"
_ZSTD_HEAD = struct.Struct("<4sBBIQ")  # magic, version, element size, header length, total length
_INT8_HEAD = struct.Struct("<4sBII")  # magic, version, original header length, crc32 of the rest
_VERSION = 1
ZSTD_LEVEL = 1  # the fastest standard level: speed matters more than the last percent here


def _is_chunk(value: Any) -> bool:
    """Tiers also hold non-chunk values (namespace manifests): those stay as they are."""
    return bytes(value[:4]) == codec.MAGIC


class Serde(ABC):
    name: str = "serde"
    lossless: bool = True

    @abstractmethod
    def dumps(self, chunk: bytes) -> bytes:
        """An encoded chunk (`codec.encode`) -> the bytes stored in the tier. Values
        that are not chunks are returned unchanged."""


class Naive(Serde):
    name = "naive"

    def dumps(self, chunk: bytes) -> bytes:
        return chunk if isinstance(chunk, bytes) else bytes(chunk)


def _zstd() -> Any:
    try:
        from compression import zstd  # Python 3.14+
    except ImportError:
        from backports import zstd  # the `kv` extra: backports.zstd on older Pythons
    return zstd


def _element_size(header: codec.ChunkHeader) -> int:
    import numpy as np

    if header.dtype.startswith("float8") or header.dtype in ("int8", "uint8"):
        return 1
    return np.dtype({"bfloat16": "float16"}.get(header.dtype, header.dtype)).itemsize


class Zstd(Serde):
    """Byte planes, each Zstandard-compressed only where that pays (`KEEP_RATIO`): in
    float KV the sign/exponent planes compress, mantissa planes barely do, so most of
    the bytes skip the codec in both directions."""

    name = "zstd"
    KEEP_RATIO = 0.9  # a plane is stored compressed only below 90% of its size

    def __init__(self, level: int = ZSTD_LEVEL):
        self.level = level

    def dumps(self, chunk: bytes) -> bytes:
        import numpy as np

        if not _is_chunk(chunk):
            return chunk
        header = codec.read_header(chunk)
        offset, size = header.payload_offset, _element_size(header)
        payload = np.frombuffer(chunk, dtype=np.uint8, offset=offset)
        if size == 1 or len(payload) % size:
            size = 1
        zstd = _zstd()
        parts = [_ZSTD_HEAD.pack(ZSTD_MAGIC, _VERSION, size, offset, len(chunk)),
                 memoryview(chunk)[:offset]]
        grouped = payload.reshape(-1, size)
        for i in range(size):
            plane = np.ascontiguousarray(grouped[:, i]).data if size > 1 else payload.data
            packed = zstd.compress(plane, level=self.level)
            keep = len(packed) < self.KEEP_RATIO * len(plane)
            parts += [_PLANE.pack(keep, len(packed) if keep else len(plane)), packed if keep else plane]
        return b"".join(parts)


_PLANE = struct.Struct("<BQ")  # compressed?, stored length


def _unzstd(value: bytes) -> bytearray:
    import numpy as np

    _, version, size, offset, total = _ZSTD_HEAD.unpack_from(value)
    if version != _VERSION:
        raise ValueError(f"zstd chunk version {version}")
    mv = memoryview(value)
    pos = _ZSTD_HEAD.size
    out = bytearray(total)
    out[:offset] = mv[pos:pos + offset]
    pos += offset
    plane_len = (total - offset) // size
    grouped = np.frombuffer(out, dtype=np.uint8, offset=offset).reshape(-1, size)
    zstd = _zstd()
    for i in range(size):
        packed, length = _PLANE.unpack_from(mv, pos)
        pos += _PLANE.size
        data = mv[pos:pos + length]
        pos += length
        plane = zstd.decompress(data) if packed else data
        if len(plane) != plane_len:
            raise ValueError("zstd chunk plane has the wrong length")
        grouped[:, i] = np.frombuffer(plane, dtype=np.uint8)
    if pos != len(value):
        raise ValueError("zstd chunk has the wrong length")
    return out


class Int8(Serde):
    name = "int8"
    lossless = False

    def dumps(self, chunk: bytes) -> bytes:
        import torch

        if not _is_chunk(chunk):
            return chunk
        header, tensor = codec.decode(chunk, check=False)
        if not tensor.is_floating_point() or tensor.element_size() == 1 or tensor.numel() == 0:
            return chunk  # nothing to gain (int8, fp8) or nothing to scale
        x = tensor.float()
        scale = x.abs().amax(dim=header.token_axis, keepdim=True) / 127.0
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        q = torch.round(x / scale).clamp_(-127, 127).to(torch.int8)
        body = b"".join((bytes(memoryview(chunk)[:header.payload_offset]),
                         scale.contiguous().numpy().tobytes(), q.contiguous().numpy().tobytes()))
        return _INT8_HEAD.pack(INT8_MAGIC, _VERSION, header.payload_offset, zlib.crc32(body)) + body


def _unint8(value: bytes) -> bytes:
    import torch

    _, version, head_len, crc = _INT8_HEAD.unpack_from(value)
    if version != _VERSION:
        raise ValueError(f"int8 chunk version {version}")
    pos = _INT8_HEAD.size
    if zlib.crc32(memoryview(value)[pos:]) != crc:
        raise ValueError("int8 chunk checksum mismatch")
    header = codec.read_header(value[pos:pos + head_len], whole=False)
    pos += head_len
    scale_shape = list(header.shape)
    scale_shape[header.token_axis] = 1
    n_scales = 1
    for d in scale_shape:
        n_scales *= d
    numel = n_scales * header.shape[header.token_axis]
    scale = torch.frombuffer(value, dtype=torch.float32, offset=pos, count=n_scales).reshape(scale_shape)
    pos += 4 * n_scales
    if pos + numel != len(value):
        raise ValueError("int8 chunk has the wrong length")
    q = torch.frombuffer(value, dtype=torch.int8, offset=pos, count=numel).reshape(header.shape)
    x = (q.float() * scale).to(getattr(torch, header.dtype))
    return codec.encode(x, token_axis=header.token_axis, layout=header.layout,
                        key_digest=header.key_digest)


SERDES: dict[str, type[Serde]] = {"naive": Naive, "zstd": Zstd, "int8": Int8}


def get(name: str) -> Serde:
    try:
        return SERDES[name]()
    except KeyError:
        raise ValueError(f"unknown KV serde {name!r}; use one of {', '.join(SERDES)}") from None


def loads(value: Any) -> Any:
    """A stored value -> an encoded chunk (`codec.decode` input). Values that are not
    wrapped, or cannot be unwrapped, come back unchanged."""
    magic = bytes(value[:4])
    try:
        if magic == ZSTD_MAGIC:
            return _unzstd(value)
        if magic == INT8_MAGIC:
            return _unint8(value)
    except Exception:  # damaged: left for codec.decode to reject as corrupt
        return value
    return value


_pool: Any = None


def _map(fn: Any, values: list[Any]) -> list[Any]:
    """`fn` over `values` on a small shared thread pool (zstd and numpy copies release
    the GIL, so a prompt's chunks decode in parallel on a many-core host)."""
    global _pool
    if len(values) < 2:
        return [fn(v) for v in values]
    if _pool is None:
        import os
        from concurrent.futures import ThreadPoolExecutor

        _pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1),
                                   thread_name_prefix="hitrate-kv-serde")
    return list(_pool.map(fn, values))


def loads_many(values: list[Any]) -> list[Any]:
    """`loads` over a tier's reply (None stays None). Called on a worker thread."""
    return _map(lambda v: None if v is None else loads(v), values)


def dumps_many(serde: Serde, values: list[Any]) -> list[Any]:
    return _map(serde.dumps, values)


def is_wrapped(value: Any) -> bool:
    return value is not None and bytes(value[:4]) in (ZSTD_MAGIC, INT8_MAGIC)
