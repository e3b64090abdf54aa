"""The binary format of one KV chunk.

    fixed header   "<4sBBBBBIQ16s": magic "HKVC", format version, dtype code, ndim,
                   token axis, layout length, tokens in chunk, payload bytes, key digest
    layout         ascii, e.g. "hf:L2HTD"
    shape          ndim x uint32
    crc32          over everything before it and the whole payload
    padding        zeros up to a multiple of 64 bytes, so the payload is aligned
    payload        the tensor's raw bytes, C order

The key digest binds a value to the key it was stored under: bytes copied to the wrong
key, truncated writes, bit flips and foreign values all fail `decode` with
`CorruptChunk`, which the engine counts and treats as a miss. `read_header` is
torch-free (used by `hitrate kv stats`).
"""

from __future__ import annotations

import struct
import warnings
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hitrate.kv.chunking import FORMAT_VERSION

if TYPE_CHECKING:
    import torch

MAGIC = b"HKVC"
_FIXED = struct.Struct("<4sBBBBBIQ16s")
_CRC = struct.Struct("<I")
_ALIGN = 64

DTYPES = ["float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2", "int8", "uint8",
          "float64"]
_CODE = {name: i for i, name in enumerate(DTYPES)}

# Decoded tensors are views of the stored bytes (no copy); torch warns that the buffer
# is read-only. Callers never write into them (documented on KVEngine.retrieve).
warnings.filterwarnings("ignore", message="The given buffer is not writable")


class CorruptChunk(ValueError):
    """Stored bytes that are not a valid chunk for this key."""


@dataclass(frozen=True, slots=True)
class ChunkHeader:
    version: int
    dtype: str
    shape: tuple[int, ...]
    token_axis: int
    layout: str
    num_tokens: int
    payload_len: int
    key_digest: bytes
    crc: int
    payload_offset: int


def _dtype_name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def encode(tensor: torch.Tensor, *, token_axis: int, layout: str, key_digest: bytes) -> bytes:
    """One chunk tensor -> bytes. Called on the engine's writer thread."""
    name = _dtype_name(tensor)
    if name not in _CODE:
        raise ValueError(f"unsupported KV dtype {name}")
    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    flat = tensor.contiguous().reshape(-1).view(_u8())
    payload = flat.numpy().data
    layout_b = layout.encode("ascii")
    axis = token_axis % tensor.ndim
    head = _FIXED.pack(MAGIC, FORMAT_VERSION, _CODE[name], tensor.ndim, axis, len(layout_b),
                       tensor.shape[axis], len(payload), key_digest)
    head += layout_b + struct.pack(f"<{tensor.ndim}I", *tensor.shape)
    crc = zlib.crc32(payload, zlib.crc32(head))
    head += _CRC.pack(crc)
    head += b"\0" * (-len(head) % _ALIGN)
    return b"".join((head, payload))


def _u8() -> Any:
    import torch

    return torch.uint8


def read_header(buf: bytes | memoryview, *, whole: bool = True) -> ChunkHeader:
    """Parses and sanity-checks the header. No checksum, no torch. `whole=False`: `buf`
    may be the header alone (lossy serdes keep the original header beside new data)."""
    mv = memoryview(buf)
    try:
        (magic, version, code, ndim, axis, layout_len, num_tokens, payload_len,
         digest) = _FIXED.unpack_from(mv, 0)
        if magic != MAGIC:
            raise CorruptChunk("not a hitrate KV chunk")
        if version != FORMAT_VERSION:
            raise CorruptChunk(f"chunk format version {version}, expected {FORMAT_VERSION}")
        if code >= len(DTYPES):
            raise CorruptChunk(f"unknown dtype code {code}")
        pos = _FIXED.size
        layout = bytes(mv[pos:pos + layout_len]).decode("ascii")
        pos += layout_len
        shape = struct.unpack_from(f"<{ndim}I", mv, pos)
        pos += 4 * ndim
        (crc,) = _CRC.unpack_from(mv, pos)
        pos += _CRC.size
    except (struct.error, UnicodeDecodeError) as exc:
        raise CorruptChunk(f"truncated or malformed header: {exc}") from None
    offset = pos + (-pos % _ALIGN)
    if axis >= max(ndim, 1) or (ndim and shape[axis] != num_tokens):
        raise CorruptChunk("token axis does not match shape")
    if whole and offset + payload_len != len(mv):
        raise CorruptChunk(f"length {len(mv)}, header says {offset + payload_len}")
    return ChunkHeader(version, DTYPES[code], tuple(shape), axis, layout, num_tokens,
                       payload_len, digest, crc, offset)


def verify(buf: bytes | memoryview, header: ChunkHeader) -> None:
    mv = memoryview(buf)
    crc = zlib.crc32(mv[header.payload_offset:], zlib.crc32(mv[:header.payload_offset - _pad_len(header)
                                                                 - _CRC.size]))
    if crc != header.crc:
        raise CorruptChunk("checksum mismatch")


def _pad_len(header: ChunkHeader) -> int:
    unpadded = _FIXED.size + len(header.layout) + 4 * len(header.shape) + _CRC.size
    return header.payload_offset - unpadded


def decode(buf: bytes | memoryview, *, key_digest: bytes | None = None, check: bool = True,
           layout: str | None = None) -> tuple[ChunkHeader, torch.Tensor]:
    """Bytes -> (header, tensor view of `buf`; no copy). Raises CorruptChunk.

    `check=False` skips the CRC for values that never left this process (the CPU tier
    holds only chunks that were encoded here or already verified)."""
    import torch

    header = read_header(buf)
    if key_digest is not None and header.key_digest != key_digest:
        raise CorruptChunk("chunk is bound to a different key")
    if layout is not None and header.layout != layout:
        raise CorruptChunk(f"layout {header.layout}, expected {layout}")
    if check:
        verify(buf, header)
    dtype = getattr(torch, header.dtype)
    if header.payload_len == 0:
        return header, torch.empty(header.shape, dtype=dtype)
    raw = torch.frombuffer(buf, dtype=torch.uint8, offset=header.payload_offset,
                           count=header.payload_len)
    try:
        tensor = raw.view(dtype).reshape(header.shape)
    except RuntimeError as exc:
        raise CorruptChunk(f"payload does not match shape: {exc}") from None
    return header, tensor
