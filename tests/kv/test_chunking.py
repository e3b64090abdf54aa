"""Chunk keys: stable across processes, chained, namespaced."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hitrate.kv.chunking import ChunkKeyer, KVNamespace

NS = KVNamespace(model="m@1", dtype="float32", layout="hf:L2HTD")


def test_chunks_cover_tokens_with_a_final_partial_chunk():
    keyer = ChunkKeyer(NS, chunk_size=4)
    chunks = keyer.chunks(list(range(10)))
    assert [(c.start, c.end) for c in chunks] == [(0, 4), (4, 8), (8, 10)]
    assert [(c.start, c.end) for c in keyer.chunks(list(range(10)), partial=False)] == [(0, 4), (4, 8)]
    assert keyer.chunks([]) == []
    assert all(c.key.startswith("hitrate:kv:" + NS.id + ":") for c in chunks)


def test_keys_chain_the_whole_prefix():
    keyer = ChunkKeyer(NS, chunk_size=4)
    base = keyer.keys(list(range(12)))
    changed_first = keyer.keys([99, *range(1, 12)])
    assert all(a != b for a, b in zip(base, changed_first, strict=True))  # every later key changes
    changed_last = keyer.keys([*range(11), 99])
    assert base[:2] == changed_last[:2] and base[2] != changed_last[2]
    # A prefix's keys are the longer prompt's keys (that is what makes prefixes hit).
    assert keyer.keys(list(range(8))) == base[:2]
    # A partial chunk is not the full chunk that starts with the same tokens.
    assert keyer.keys(list(range(10)))[2] != base[2]


def test_container_types_do_not_change_keys():
    torch = pytest.importorskip("torch")
    keyer = ChunkKeyer(NS, chunk_size=4)
    tokens = [5, 70000, 3, 2**40, 1]
    assert keyer.keys(tokens) == keyer.keys(torch.tensor(tokens)) == keyer.keys(tuple(tokens))


@pytest.mark.parametrize("change", [
    {"model": "m@2"}, {"dtype": "bfloat16"}, {"layout": "vllm:LTHC"}, {"tp_rank": 1},
    {"tp_size": 2}, {"version": 2},
])
def test_namespace_fields_split_the_key_space(change):
    other = KVNamespace(**{**NS.to_dict(), **change})
    assert ChunkKeyer(other, 4).keys(list(range(8))) != ChunkKeyer(NS, 4).keys(list(range(8)))


def test_keys_are_the_same_in_another_process_with_another_hash_seed():
    code = ("from hitrate.kv.chunking import ChunkKeyer, KVNamespace;"
            "print(ChunkKeyer(KVNamespace('m@1','float32','hf:L2HTD'), 4).keys(list(range(10))))")
    outs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        outs.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                check=True).stdout)
    assert len(outs) == 1
    assert outs.pop().strip() == str(ChunkKeyer(NS, 4).keys(list(range(10))))
