"""The chunk format: exact round trips, and every kind of damage is detected."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from hitrate.kv import codec  # noqa: E402

DIGEST = bytes(range(16))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float8_e4m3fn", "int8"])
def test_round_trip_is_bit_exact(dtype):
    x = torch.randn(3, 2, 2, 5, 8).to(getattr(torch, dtype))
    blob = codec.encode(x, token_axis=3, layout="hf:L2HTD", key_digest=DIGEST)
    header, y = codec.decode(blob, key_digest=DIGEST, layout="hf:L2HTD")
    assert header.dtype == dtype and header.shape == (3, 2, 2, 5, 8) and header.num_tokens == 5
    assert y.dtype == x.dtype and torch.equal(y.view(torch.uint8), x.view(torch.uint8))
    assert header.payload_offset % 64 == 0
    assert len(blob) - header.payload_offset == x.numel() * x.element_size()


def test_non_contiguous_input_is_encoded_in_logical_order():
    x = torch.randn(4, 6, 8)
    view = x.transpose(0, 1)  # non-contiguous
    blob = codec.encode(view, token_axis=0, layout="t", key_digest=DIGEST)
    assert torch.equal(codec.decode(blob)[1], view)


def _blob():
    return codec.encode(torch.randn(2, 2, 2, 4, 8), token_axis=3, layout="hf:L2HTD", key_digest=DIGEST)


@pytest.mark.parametrize("damage", ["payload_bit", "header_bit", "truncated", "extended", "magic",
                                    "empty"])
def test_damage_is_detected(damage):
    blob = bytearray(_blob())
    header = codec.read_header(bytes(blob))
    if damage == "payload_bit":
        blob[header.payload_offset + 17] ^= 0x04
    elif damage == "header_bit":
        blob[40] ^= 0x01  # inside the layout string
    elif damage == "truncated":
        blob = blob[:-3]
    elif damage == "extended":
        blob += b"\0"
    elif damage == "magic":
        blob[0:4] = b"XXXX"
    else:
        blob = bytearray()
    with pytest.raises(codec.CorruptChunk):
        codec.decode(bytes(blob), key_digest=DIGEST)


def test_value_bound_to_another_key_is_rejected():
    with pytest.raises(codec.CorruptChunk, match="different key"):
        codec.decode(_blob(), key_digest=bytes(16))


def test_layout_mismatch_is_rejected():
    with pytest.raises(codec.CorruptChunk, match="layout"):
        codec.decode(_blob(), layout="vllm:LTHC")


def test_unchecked_decode_skips_only_the_checksum():
    blob = bytearray(_blob())
    blob[codec.read_header(bytes(blob)).payload_offset] ^= 1
    codec.decode(bytes(blob), check=False)  # in-process tiers trust their own bytes
    with pytest.raises(codec.CorruptChunk):
        codec.decode(bytes(blob), check=True)
