"""Exactness with a random-weight Llama (8 layers, GQA 8/2 heads, head dim 64, float32):
a cached prefill's logits equal the uncached ones, through every tier, and the
negative controls show the comparison would catch wrong KV."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from hitrate.kv import hf  # noqa: E402
from hitrate.kv.tiers import CPUTier, StoreTier  # noqa: E402
from hitrate.stores.disk import DiskStore  # noqa: E402

from .conftest import random_tokens  # noqa: E402

PREFIX = 512  # two 256-token chunks shared between the prompts


def make_tiers(kind: str, tmp_path, fixture):
    if kind == "cpu":
        return [CPUTier(256 << 20)]
    if kind == "disk":
        return [StoreTier(DiskStore(tmp_path / "kv"), name="disk")]
    from hitrate.kv.settings import remote_store

    url = fixture("redis_url" if kind == "redis" else "s3_url")
    return [StoreTier(remote_store(url), name=kind)]


@pytest.fixture
def tiers_for(tmp_path, request):
    def make(kind: str):
        return make_tiers(kind, tmp_path, request.getfixturevalue)

    return make


def reference_logits(model, cache, cached: int, suffix: list[int]) -> torch.Tensor:
    """The same computation hitrate's path does, but with KV that never left the model's
    own cache: same kernels, same shapes, so any difference is the cache's fault."""
    kv = torch.stack([torch.stack((layer.keys[0, :, :cached], layer.values[0, :, :cached]))
                      for layer in cache.layers]).clone()
    with torch.no_grad():
        out = model(input_ids=torch.tensor([suffix]), past_key_values=hf.cache_from_kv(kv, model.config),
                    use_cache=True, logits_to_keep=1)
    return out.logits[0, -1]


def full_logits(model, tokens: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([tokens]), logits_to_keep=1).logits[0, -1]


@pytest.mark.parametrize("tier", ["cpu", "disk", "redis", "s3"])
def test_cached_logits_equal_uncached(llama, tiers_for, tier, record_property):
    engine = hf.make_engine(llama, tiers_for(tier), model_id=f"tiny-llama-{tier}")
    try:
        prefix = random_tokens(PREFIX, seed=1)
        first = prefix + random_tokens(90, seed=2)
        second = prefix + random_tokens(70, seed=3)
        cold = hf.prefill(llama, first, engine)
        assert cold.cached_tokens == 0
        engine.flush()

        warm = hf.prefill(llama, second, engine)
        assert warm.cached_tokens == PREFIX
        ref = reference_logits(llama, cold.cache, PREFIX, second[PREFIX:])
        diff_same_kernels = (warm.logits - ref).abs().max().item()
        diff_full_prefill = (warm.logits - full_logits(llama, second)).abs().max().item()
        record_property("max_abs_diff_same_kernels", diff_same_kernels)
        record_property("max_abs_diff_vs_full_prefill", diff_full_prefill)
        assert diff_same_kernels == 0.0
        # A single full prefill runs other matmul shapes: equal to float32 rounding only.
        assert diff_full_prefill < 1e-4

        # The KV that came back is bit-identical to what the first run computed.
        hit = engine.retrieve(second)
        for i, layer in enumerate(cold.cache.layers):
            assert torch.equal(hit.kv[i, 0, :, :PREFIX], layer.keys[0, :, :PREFIX])
            assert torch.equal(hit.kv[i, 1, :, :PREFIX], layer.values[0, :, :PREFIX])
    finally:
        engine.close()


def test_full_prompt_hit_recomputes_only_the_last_token(llama):
    engine = hf.make_engine(llama, [CPUTier(256 << 20)], model_id="tiny-llama-full")
    try:
        prompt = random_tokens(600, seed=4)  # 2 full chunks + a partial one
        cold = hf.prefill(llama, prompt, engine)
        engine.flush()
        assert engine.lookup(prompt) == 600  # the partial chunk is cached too
        warm = hf.prefill(llama, prompt, engine)
        assert warm.cached_tokens == 599
        ref = reference_logits(llama, cold.cache, 599, prompt[599:])
        assert (warm.logits - ref).abs().max().item() == 0.0
        assert warm.cache.get_seq_length() == 600
    finally:
        engine.close()


def test_negative_controls(llama):
    engine = hf.make_engine(llama, [CPUTier(256 << 20)], model_id="tiny-llama-neg")
    try:
        prefix = random_tokens(PREFIX, seed=5)
        cold = hf.prefill(llama, prefix + random_tokens(40, seed=6), engine)
        engine.flush()
        second = prefix + random_tokens(40, seed=7)

        # 1. A mismatching token in chunk 1 misses from that chunk on.
        changed = list(second)
        changed[300] = (changed[300] + 1) % 1000
        assert engine.lookup(changed) == 256
        # ... and in chunk 0, misses entirely.
        changed[3] = (changed[3] + 1) % 1000
        assert engine.lookup(changed) == 0

        # 2. A dropped chunk ends the hit there (no hole-skipping).
        key = engine.keyer.keys(second)[0]
        assert engine._run(engine.tiers[0].delete(key))
        assert engine.lookup(second) == 0
        assert hf.prefill(llama, second, engine, store=False).cached_tokens == 0

        # 3. The comparison catches wrong KV: chunk 1 replaced by chunk 0's KV (what a
        # key that ignored position/prefix would serve) changes the logits.
        kv = torch.stack([torch.stack((layer.keys[0, :, :PREFIX], layer.values[0, :, :PREFIX]))
                          for layer in cold.cache.layers]).clone()
        good = reference_logits(llama, cold.cache, PREFIX, second[PREFIX:])
        kv[:, :, :, 256:512] = kv[:, :, :, 0:256]
        with torch.no_grad():
            bad = llama(input_ids=torch.tensor([second[PREFIX:]]),
                        past_key_values=hf.cache_from_kv(kv, llama.config), logits_to_keep=1).logits[0, -1]
        assert (bad - good).abs().max().item() > 1e-3
    finally:
        engine.close()


def test_generate_reuses_the_prefix_and_matches_uncached_generation(llama):
    engine = hf.make_engine(llama, [CPUTier(256 << 20)], model_id="tiny-llama-gen")
    try:
        prefix = random_tokens(PREFIX, seed=8)
        hf.generate(llama, None, prefix + random_tokens(30, seed=9), engine, max_new_tokens=2,
                    do_sample=False)
        engine.flush()
        prompt = prefix + random_tokens(50, seed=10)
        cached = hf.generate(llama, None, prompt, engine, max_new_tokens=8, do_sample=False)
        assert cached.cached_tokens == PREFIX and len(cached.tokens) == 8
        with torch.no_grad():
            plain = llama.generate(input_ids=torch.tensor([prompt]), max_new_tokens=8,
                                   do_sample=False)[0, len(prompt):].tolist()
        assert cached.tokens == plain
        engine.flush()
        assert engine.lookup(prompt) == len(prompt)  # the new chunks were stored
    finally:
        engine.close()


def test_generate_with_a_tokenizer(llama, tmp_path):
    from .tokenizer import build_tokenizer

    tokenizer = build_tokenizer(tmp_path)
    engine = hf.make_engine(llama, [CPUTier(256 << 20)], model_id="tiny-llama-tok")
    try:
        text = " ".join(f"word{i % 97}" for i in range(400))
        first = hf.generate(llama, tokenizer, text, engine, max_new_tokens=4, do_sample=False)
        engine.flush()
        again = hf.generate(llama, tokenizer, text, engine, max_new_tokens=4, do_sample=False)
        assert first.cached_tokens == 0 and again.cached_tokens == again.prompt_tokens - 1
        assert again.tokens == first.tokens and isinstance(again.text, str)
    finally:
        engine.close()


def test_engine_for_another_model_or_dtype_is_refused(llama):
    engine = hf.make_engine(llama, [CPUTier(1 << 20)])
    try:
        assert engine.namespace.model.startswith("local@#")  # weights fingerprint
        bf16 = hf.namespace_for(llama.to(torch.bfloat16))
        llama.to(torch.float32)
        assert bf16.dtype == "bfloat16"
        other = hf.make_engine(llama, [CPUTier(1 << 20)], model_id="x")
        other.namespace = bf16
        with pytest.raises(ValueError, match="bfloat16"):
            hf.prefill(llama, [1, 2, 3], other)
        other.close()
    finally:
        engine.close()


def test_fingerprint_separates_random_models():
    from .conftest import tiny_llama

    a, b = tiny_llama(layers=2, seed=1), tiny_llama(layers=2, seed=2)
    assert hf.model_fingerprint(a) != hf.model_fingerprint(b)
    assert hf.model_fingerprint(a) == hf.model_fingerprint(tiny_llama(layers=2, seed=1))


@pytest.mark.parametrize("save_decode", [False, True])
def test_decode_cache_makes_the_next_turn_a_longer_exact_hit(llama, save_decode):
    """Turn 2 = turn 1's prompt + its answer + a new question. With save_decode_cache
    the answer's whole chunks are a prefix hit too, and turn 2's logits equal the same
    computation on the KV the first generation left in the model's own cache."""
    from hitrate.kv.settings import resolve_settings

    settings = resolve_settings({"save_decode_cache": save_decode, "chunk_size": 16}, {})
    engine = hf.make_engine(llama, [CPUTier(64 << 20)], model_id=f"tiny-llama-decode-{save_decode}",
                            settings=settings, chunk_size=16)
    try:
        prompt = random_tokens(40, seed=30)
        first = hf.generate(llama, None, prompt, engine, max_new_tokens=30, min_new_tokens=30,
                            do_sample=False)
        engine.flush()
        turn2 = [*prompt, *first.tokens, *random_tokens(20, seed=31)]
        # 40 + 29 tokens have KV after turn 1 (the last sampled token was never fed back)
        expected_hit = 64 if save_decode else 32
        assert engine.lookup(turn2) == expected_hit
        done = hf.prefill(llama, turn2, engine, store=False)
        assert done.cached_tokens == expected_hit

        cache = hf.cache_from_kv(None, llama.config)  # the same generation, never stored
        new, _, _ = hf.generate_from_cache(llama, None, prompt, cache, max_new_tokens=30,
                                           min_new_tokens=30, do_sample=False)
        assert new == first.tokens
        expected = reference_logits(llama, cache, expected_hit, turn2[expected_hit:])
        assert torch.equal(done.logits, expected)
    finally:
        engine.close()


class _OnCuda(torch.nn.Module):
    """Stands for a model on a CUDA device: `hf.inference` only reads `.device`."""

    device = torch.device("cuda", 0)


def test_inference_sets_the_attention_kernel_order_on_cuda_and_restores_it():
    # A cached bfloat16 prefill on Hopper would otherwise pick cuDNN attention, which
    # builds a graph per new (query, key) length pair: ~1 s on an H200 (README).
    from torch.nn.attention import SDPBackend

    wanted = [int(getattr(SDPBackend, name)) for name in hf.SDPA_PRIORITY]
    before = torch._C._get_sdp_priority_order()
    assert before[:len(wanted)] != wanted  # else the check below proves nothing
    with hf.inference(_OnCuda()):
        inside = torch._C._get_sdp_priority_order()
        assert not torch.is_grad_enabled()
    assert inside[:len(wanted)] == wanted
    assert torch._C._get_sdp_priority_order() == before
    with hf.inference(torch.nn.Linear(1, 1)):  # a CPU model: no_grad only
        assert torch._C._get_sdp_priority_order() == before
        assert not torch.is_grad_enabled()


def test_warmup_leaves_the_model_as_it_was(llama):
    tokens = random_tokens(300, seed=11)
    before = full_logits(llama, tokens)
    hf.warmup(llama)
    assert torch.equal(full_logits(llama, tokens), before)
