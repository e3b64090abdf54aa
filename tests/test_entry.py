"""The stored record: versioned, checksummed, bound to its key."""

from __future__ import annotations

import pytest

from hitrate.entry import CorruptEntry, Entry, decode, encode


def _entry() -> Entry:
    return Entry("hitrate:v1:default:chat:abc", "chat",
                 {"choices": [{"message": {"content": "hello"}}]}, created_at=100.0,
                 expires_at=200.0, upstream_latency_ms=412.5, model="m")


def test_round_trip():
    data = encode(_entry())
    back = decode(data, expected_key="hitrate:v1:default:chat:abc")
    assert back.response == _entry().response
    assert (back.created_at, back.expires_at, back.upstream_latency_ms, back.model) == (
        100.0, 200.0, 412.5, "m")
    assert back.body_bytes() == _entry().body_bytes()


def test_every_single_bit_flip_is_detected():
    data = bytearray(encode(_entry()))
    for i in range(len(data)):
        for bit in (0, 7):
            damaged = bytearray(data)
            damaged[i] ^= 1 << bit
            with pytest.raises(CorruptEntry):
                decode(bytes(damaged), expected_key="hitrate:v1:default:chat:abc")


@pytest.mark.parametrize("cut", [0, 3, 11, 20, -1])
def test_truncated(cut):
    data = encode(_entry())
    with pytest.raises(CorruptEntry):
        decode(data[:cut])


@pytest.mark.parametrize("raw", [b"", b"hello world", b'{"choices": []}', b"\x00" * 64])
def test_foreign_values(raw):
    with pytest.raises(CorruptEntry):
        decode(raw)


def test_wrong_key_and_version():
    data = encode(_entry())
    with pytest.raises(CorruptEntry, match="another key"):
        decode(data, expected_key="hitrate:v1:default:chat:other")
    with pytest.raises(CorruptEntry, match="version"):
        decode(data[:3] + bytes([9]) + data[4:])
