"""Serdes for the disk and remote tiers: lossless ones round-trip bit-exactly through
every tier, the lossy one is opt-in and stays close on a real model, damaged values
are misses, and any tier reads every serde."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from hitrate.kv import codec, serde  # noqa: E402
from hitrate.kv.chunking import KVNamespace  # noqa: E402
from hitrate.kv.engine import KVEngine  # noqa: E402
from hitrate.kv.tiers import StoreTier  # noqa: E402
from hitrate.stores.disk import DiskStore  # noqa: E402

CHUNK = 32
TOKENS = list(range(100))  # 3 full chunks + a partial one


def store_for(kind: str, tmp_path, request):
    if kind == "disk":
        return DiskStore(tmp_path / "kv")
    from hitrate.kv.settings import remote_store

    return remote_store(request.getfixturevalue("redis_url" if kind == "redis" else "s3_url"))


def kv_like(dtype: str) -> torch.Tensor:
    """KV-shaped values with a realistic spread: [L, 2, H, T, D]."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 2, 2, len(TOKENS), 16, generator=g) * torch.linspace(0.1, 8, 16)
    return x.to(getattr(torch, dtype))


def engine(ns: KVNamespace, tier: StoreTier) -> KVEngine:
    return KVEngine(ns, [tier], token_axis=3, chunk_size=CHUNK)


@pytest.mark.parametrize("kind", ["disk", "redis", "s3"])
@pytest.mark.parametrize("name", ["naive", "zstd"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_lossless_serdes_round_trip_bit_exactly_through_every_tier(kind, name, dtype, tmp_path, request):
    ns = KVNamespace(model=f"serde-{kind}-{name}", dtype=dtype, layout="hf:L2HTD")
    kv = kv_like(dtype)
    with engine(ns, StoreTier(store_for(kind, tmp_path, request), serde=name)) as writer:
        assert writer.store(TOKENS, kv, wait=True) == 4
        writer.flush()
        keys = writer.keyer.keys(TOKENS)
        stored = writer._run(writer.tiers[0].store.get_many(keys))
    magic = serde.ZSTD_MAGIC if name == "zstd" else codec.MAGIC
    assert all(bytes(v[:4]) == magic for v in stored)
    if name == "zstd":  # it did compress (float exponents are repetitive)
        raw = sum(len(codec.encode(kv.narrow(3, c.start, c.num_tokens), token_axis=3,
                                   layout="hf:L2HTD", key_digest=c.digest))
                  for c in writer.keyer.chunks(TOKENS))
        assert sum(len(v) for v in stored) < raw
    # a second engine with a fresh tier object (nothing in memory) reads it back
    with engine(ns, StoreTier(store_for(kind, tmp_path, request), serde="naive")) as reader:
        hit = reader.retrieve(TOKENS)
        assert hit.num_tokens == len(TOKENS) and hit.kv.dtype == kv.dtype
        assert torch.equal(hit.kv.contiguous().view(torch.uint8), kv.contiguous().view(torch.uint8))
        assert reader.stats.corrupt_chunks == 0


def test_int8_is_lossy_smaller_and_opt_in(tmp_path):
    ns = KVNamespace(model="serde-int8", dtype="float32", layout="hf:L2HTD")
    kv = kv_like("float32")
    assert StoreTier(DiskStore(tmp_path / "a")).serde.name == "naive"  # the default is exact
    tier = StoreTier(DiskStore(tmp_path / "b"), serde="int8")
    with engine(ns, tier) as e:
        e.store(TOKENS, kv, wait=True)
        e.flush()
        stored = e._run(tier.store.get_many(e.keyer.keys(TOKENS)))
        assert all(bytes(v[:4]) == serde.INT8_MAGIC for v in stored)
        assert sum(len(v) for v in stored) < kv.numel() * 4 / 3  # scales: 1 float per channel
        hit = e.retrieve(TOKENS)
    assert hit.num_tokens == len(TOKENS)
    err = (hit.kv - kv).abs()
    # per-channel scale: error at most half a step of that channel's range
    step = kv.abs().amax(dim=3, keepdim=True) / 127
    assert not torch.equal(hit.kv, kv) and bool((err <= step / 2 + 1e-6).all())


@pytest.mark.parametrize("name", ["zstd", "int8"])
def test_a_damaged_wrapped_value_is_a_counted_miss(name, tmp_path):
    ns = KVNamespace(model=f"serde-damage-{name}", dtype="float32", layout="hf:L2HTD")
    tier = StoreTier(DiskStore(tmp_path / "kv"), serde=name)
    with engine(ns, tier) as e:
        e.store(TOKENS, kv_like("float32"), wait=True)
        e.flush()
        first = e.keyer.keys(TOKENS)[1]
        (value,) = e._run(tier.store.get_many([first]))
        damaged = bytearray(value)
        damaged[len(damaged) // 2] ^= 0x10
        e._run(tier.store.set(first, bytes(damaged)))
        assert e.retrieve(TOKENS).num_tokens == CHUNK  # chunk 1 is a miss: the prefix stops
        assert e.stats.corrupt_chunks == 1


def test_any_tier_reads_every_serde(tmp_path):
    ns = KVNamespace(model="serde-mixed", dtype="bfloat16", layout="hf:L2HTD")
    kv = kv_like("bfloat16")
    for name in ("naive", "zstd", "int8"):
        store = DiskStore(tmp_path / name)
        with engine(ns, StoreTier(store, serde=name)) as writer:
            writer.store(TOKENS, kv, wait=True)
        for reader_serde in ("naive", "zstd", "int8"):
            with engine(ns, StoreTier(DiskStore(tmp_path / name), serde=reader_serde)) as reader:
                assert reader.lookup(TOKENS) == len(TOKENS)


def test_settings_choose_the_serde_per_tier(tmp_path):
    from hitrate.kv.settings import build_tiers, resolve_settings

    s = resolve_settings({"cpu_size_mb": 0, "disk_dir": str(tmp_path), "disk_serde": "zstd",
                          "remote_url": "redis://127.0.0.1:1/0", "remote_serde": "cachegen"}, {})
    pytest.importorskip("redis")
    assert [(t.name, t.serde.name) for t in build_tiers(s)] == [("disk", "zstd"), ("remote", "int8")]


@pytest.mark.slow
def test_serdes_on_a_real_model(smollm2, tmp_path):
    """SmolLM2-135M (real weights): the answer on zstd-loaded KV is the full prefill's,
    bit for bit; on int8-loaded KV it stays close (KL and top-1 over a greedy answer)."""
    from hitrate.kv import blend_quality as quality
    from hitrate.kv import hf, samples

    model, tokenizer = smollm2
    documents = samples.stdlib_documents(2, 1500)
    prompt = (samples.RAG_SYSTEM + "".join(f"Document:\n{d}\n\n" for d in documents)
              + "Question: How do I write JSON to a file?<|im_end|>\n<|im_start|>assistant\n")
    ids = tokenizer(prompt)["input_ids"]
    ref = quality.reference(model, ids, 16)
    kv = quality.prompt_kv(model, ids)
    own = quality.with_prompt_kv(model, ids, kv, ref)  # the model's own KV, same kernels
    scores = {}
    for name in ("zstd", "int8"):
        tiers = [StoreTier(DiskStore(tmp_path / name), serde=name)]
        with hf.make_engine(model, tiers, model_id=f"smollm2-{name}") as e:
            e.store(ids[:-1], kv, wait=True)
        with hf.make_engine(model, [StoreTier(DiskStore(tmp_path / name))],
                            model_id=f"smollm2-{name}") as e:
            hit = e.retrieve(ids[:-1])
        assert hit.num_tokens == len(ids) - 1
        if name == "zstd":
            assert torch.equal(hit.kv, kv)
        scores[name] = quality.with_prompt_kv(model, ids, hit.kv, ref)
    assert scores["zstd"] == own and own.top1 == 1.0  # identical logits, not just close
    assert scores["int8"].top1 >= 0.9 and scores["int8"].kl_mean < 0.05, scores["int8"]
