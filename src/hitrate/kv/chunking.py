"""Prompt tokens -> chunk keys.

A prompt is cut into fixed chunks of `chunk_size` tokens; the last chunk may be
shorter. Chunk i's hash chains chunk i-1's hash with chunk i's token ids, so a key
names the whole prefix up to the end of its chunk, not just its own tokens. The chain
starts from a digest of the namespace (model identity, dtype, layout, tensor-parallel
rank and size, format version), so two models never share a key.

Hashes are BLAKE2b over little-endian token bytes: stable across processes, machines
and Python versions. Python's `hash()` is salted per process and would make every
instance miss every other instance's chunks.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import orjson

FORMAT_VERSION = 1
KEY_PREFIX = "hitrate:kv:"
_DIGEST = 16  # bytes; 128-bit keys: collisions are not a practical concern


@dataclass(frozen=True, slots=True)
class KVNamespace:
    """Everything that must match for two processes to share KV chunks."""

    model: str  # model identity: name + revision, or a weights fingerprint
    dtype: str  # "float32", "bfloat16", ...
    layout: str  # integration's tensor layout, e.g. "hf:L2HTD" or "vllm:LTHC"
    tp_rank: int = 0
    tp_size: int = 1
    version: int = FORMAT_VERSION

    def digest(self) -> bytes:
        return hashlib.blake2b(orjson.dumps(asdict(self), option=orjson.OPT_SORT_KEYS),
                               digest_size=_DIGEST).digest()

    @property
    def id(self) -> str:
        """Short readable namespace id used in keys (and by `hitrate kv stats`)."""
        return self.digest().hex()[:12]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk of a prompt: tokens [start, end) and the key naming that prefix."""

    index: int
    start: int
    end: int
    key: str
    digest: bytes

    @property
    def num_tokens(self) -> int:
        return self.end - self.start


def token_bytes(tokens: Any) -> bytes:
    """Token ids as little-endian int64 bytes, whatever container they came in."""
    import array

    if hasattr(tokens, "tolist"):  # torch tensors, numpy arrays
        tokens = tokens.tolist()
    buf = array.array("q", tokens)
    if buf.itemsize != 8:  # pragma: no cover - every platform we support has 8-byte "q"
        raise RuntimeError("array('q') is not 64-bit here")
    import sys

    if sys.byteorder != "little":  # pragma: no cover
        buf.byteswap()
    return buf.tobytes()


class ChunkKeyer:
    """Computes chunk keys for one namespace. Pure and cheap: no I/O, no torch."""

    def __init__(self, namespace: KVNamespace, chunk_size: int = 256):
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self.namespace = namespace
        self.chunk_size = chunk_size
        self._seed = namespace.digest()
        self.prefix = f"{KEY_PREFIX}{namespace.id}:"

    def chunks(self, tokens: Any, *, partial: bool = True, seed: bytes | None = None) -> list[Chunk]:
        """Chunks covering `tokens`: every full chunk, then the final partial chunk
        (fewer than chunk_size tokens) when `partial` and there is one. `seed` replaces
        the namespace seed as the start of the chain (see `segment_seed`)."""
        data = token_bytes(tokens)
        n = len(data) // 8
        size = self.chunk_size
        out: list[Chunk] = []
        prev = self._seed if seed is None else seed
        start = 0
        while start < n:
            end = min(start + size, n)
            if end - start < size and not partial:
                break
            digest = hashlib.blake2b(prev + data[start * 8:end * 8], digest_size=_DIGEST).digest()
            out.append(Chunk(len(out), start, end, self.prefix + digest.hex(), digest))
            prev = digest
            start = end
        return out

    def keys(self, tokens: Any, *, partial: bool = True, seed: bytes | None = None) -> list[str]:
        return [c.key for c in self.chunks(tokens, partial=partial, seed=seed)]

    def segment_seed(self, anchor: Any = ()) -> bytes:
        """The chain start for a position-independent segment (`hitrate.kv.segments`):
        the namespace, a domain tag, and the `anchor` tokens the segment was computed
        after. A segment's keys then depend on its own tokens, never on what precedes it
        in a prompt, and can never equal a prefix chunk's key."""
        return hashlib.blake2b(self._seed + b"hitrate-kv-segment" + token_bytes(anchor),
                               digest_size=_DIGEST).digest()
