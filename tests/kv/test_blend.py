"""Blending (hitrate.kv.blend): segment keys, RoPE re-rotation, selective recompute,
fallbacks, config flag; mechanics on random-weight models, quality on a real one."""

from __future__ import annotations

import math

import pytest

from .conftest import random_tokens, tiny_llama

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from hitrate.kv import blend, hf, rope  # noqa: E402
from hitrate.kv import blend_quality as quality  # noqa: E402
from hitrate.kv.segments import Segment, build_layout, split_on_separator  # noqa: E402
from hitrate.kv.tiers import CPUTier, StoreTier  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture(scope="module")
def model():
    return tiny_llama(layers=4, seed=3)


def docs(n: int = 3, size: int = 160) -> list[list[int]]:
    return [random_tokens(size + 17 * i, 100 + i) for i in range(n)]


def rag(documents, question, head=(1, 7, 9)) -> list:
    return [list(head), *[Segment(d) for d in documents], question]


def engine_for(model, **kwargs):
    return hf.make_engine(model, [CPUTier(256 << 20)], chunk_size=64, **kwargs)


def full_logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, -1]


# -- mechanics ------------------------------------------------------------------------


@pytest.mark.parametrize(("anchor_len", "new_start"), [(1, 137), (300, 5)])
def test_rerotated_keys_equal_keys_computed_at_the_new_position(model, anchor_len, new_start):
    segment = random_tokens(200, 1)
    anchor = random_tokens(anchor_len, 2)
    stored = blend._compute_segment(model, anchor, segment)  # at positions [anchor_len, ...)
    prompt = random_tokens(new_start, 3) + segment
    cache = hf.cache_from_kv(None, model.config)
    with torch.no_grad():
        model(input_ids=torch.tensor([prompt]), past_key_values=cache, use_cache=True)
    first_layer = hf.kv_slicer(cache)(new_start, new_start + len(segment))[0]
    at_new = first_layer[0]  # keys
    moved = rope.rerotate(stored[0, 0], new_start - anchor_len, rope.inverse_frequencies(model))
    assert stored.dtype == torch.float32
    assert not torch.allclose(stored[0, 0], at_new, atol=1e-3)  # positions matter...
    torch.testing.assert_close(moved, at_new, atol=2e-5, rtol=1e-5)  # ...and moving fixes them
    torch.testing.assert_close(stored[0, 1], first_layer[1], atol=1e-6, rtol=1e-6)  # values: as they are


def _qwen(kind: str):
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(5)
    common = dict(vocab_size=1024, hidden_size=256, intermediate_size=512, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096)
    if kind == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**common)).eval()
    return Qwen3ForCausalLM(Qwen3Config(head_dim=64, **common)).eval()


@pytest.mark.parametrize("kind", ["llama", "qwen2", "qwen3"])
def test_ratio_one_equals_a_full_prefill(model, kind):
    net = model if kind == "llama" else _qwen(kind)
    parts = rag(docs(), random_tokens(12, 50))
    done = blend.prefill(net, parts, None, ratio=1.0)
    layout = build_layout(None, parts)
    assert done.stats.mode == "blend" and done.stats.recomputed_tokens == layout.segment_tokens
    torch.testing.assert_close(done.logits, full_logits(net, layout.ids), atol=1e-5, rtol=1e-5)
    # and generation from that cache is token for token the model's own
    ids = torch.tensor([layout.ids])
    expected = net.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12,
                            do_sample=False)[0, len(layout.ids):].tolist()
    engine = engine_for(net)
    try:
        out = blend.generate(net, None, parts, engine, ratio=1.0, max_new_tokens=12, do_sample=False)
    finally:
        engine.close()
    assert out.tokens == expected


def test_ratio_zero_is_naive_concatenation(model):
    """ratio=0: segment tokens keep their loaded (moved) KV in every layer; only the
    fresh tokens are computed, attending to it. Built here with HF's own cache."""
    from transformers import DynamicCache

    documents = docs()
    parts = rag(documents, random_tokens(12, 51))
    done = blend.prefill(model, parts, None, ratio=0.0)
    assert done.stats.recomputed_tokens == 0

    cache = DynamicCache(config=model.config)
    inv_freq = rope.inverse_frequencies(model)
    anchor = blend.default_anchor(model)
    position = 0
    logits = None
    for part in parts:
        if isinstance(part, Segment):
            kv = blend._compute_segment(model, anchor, list(part.content))
            keys = rope.rerotate(kv[:, 0], position - len(anchor), inv_freq)
            for layer in range(kv.shape[0]):
                cache.update(keys[layer].unsqueeze(0), kv[layer, 1].unsqueeze(0), layer)
            position += kv.shape[3]
        else:
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([part]), past_key_values=cache,
                               use_cache=True).logits[0, -1]
            position += len(part)
    torch.testing.assert_close(done.logits, logits, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(done.logits, full_logits(model, done.ids), atol=1e-3)


def test_recompute_ratio_selects_that_share_and_brings_logits_closer(model):
    parts = rag(docs(4), random_tokens(16, 52))
    layout = build_layout(None, parts)
    ref = quality.reference(model, layout.ids, 8)
    kls = {}
    for ratio in (0.0, 0.15, 0.5, 1.0):
        done = blend.prefill(model, layout, None, ratio=ratio)
        assert done.stats.recomputed_tokens == math.ceil(ratio * layout.segment_tokens)
        assert all(any(s.start <= p < s.end for s in layout.segments) for p in done.stats.selected)
        got = quality.continuation_logits(model, done.logits, done.cache, ref.continuation)
        kls[ratio] = quality.agreement(ref.logits, got).kl_mean
    assert kls[1.0] < 1e-6
    assert kls[0.5] < kls[0.15] < kls[0.0]


def test_bad_arguments_are_refused(model):
    layout = build_layout(None, rag(docs(2), [5, 6]))
    segments = blend.load_segments(model, layout, None, [1], blend.BlendStats("blend", 0))
    with pytest.raises(ValueError, match="ratio"):
        blend.blended_forward(model, layout.ids, segments, ratio=1.5)
    with pytest.raises(ValueError, match="check_layer"):
        blend.blended_forward(model, layout.ids, segments, check_layer=4)
    with pytest.raises(ValueError, match="overlap"):
        blend.blended_forward(model, layout.ids, segments + segments[:1])


# -- segment keys and the engine ------------------------------------------------------


def test_segments_are_reused_in_any_order_after_any_prefix(model):
    d = docs(3)
    engine = engine_for(model)
    try:
        first = blend.prefill(model, rag(d, random_tokens(10, 60), head=(1, 2)), engine)
        engine.flush()
        assert first.stats.loaded_tokens == 0
        assert first.stats.computed_segment_tokens == sum(map(len, d))
        # other documents order, a longer head, another question: every segment is a hit
        later = blend.prefill(model, rag([d[2], d[0], d[1]], random_tokens(20, 61), head=(1, 3, 4, 5, 6)),
                              engine)
        assert later.stats.loaded_tokens == sum(map(len, d))
        assert later.stats.computed_segment_tokens == 0
        # a document never seen is computed; the known one still loads
        mixed = blend.prefill(model, rag([random_tokens(90, 62), d[1]], [7, 8]), engine)
        assert (mixed.stats.loaded_tokens, mixed.stats.computed_segment_tokens) == (len(d[1]), 90)
    finally:
        engine.close()


def test_segment_keys_depend_on_tokens_anchor_and_model_only(model):
    engine = engine_for(model)
    other = engine_for(tiny_llama(layers=4, seed=4))
    try:
        seg = random_tokens(100, 70)
        keyer = engine.keyer
        keys = keyer.keys(seg, seed=keyer.segment_seed([1]))
        assert keys == keyer.keys(list(seg), seed=keyer.segment_seed([1]))
        assert not set(keys) & set(keyer.keys(seg))  # never a prefix chunk's key
        assert not set(keys) & set(keyer.keys(seg, seed=keyer.segment_seed([2])))
        assert not set(keys) & set(other.keyer.keys(seg, seed=other.keyer.segment_seed([1])))
        assert all(k.startswith(keyer.prefix) for k in keys)  # cleared with the namespace
    finally:
        engine.close()
        other.close()


def test_a_cold_request_blends_exactly_like_a_warm_one(model):
    parts = rag(docs(), random_tokens(12, 63))
    engine = engine_for(model)
    try:
        cold = blend.prefill(model, parts, engine)
        engine.flush()
        warm = blend.prefill(model, parts, engine)
    finally:
        engine.close()
    assert cold.stats.loaded_tokens == 0 and warm.stats.computed_segment_tokens == 0
    assert torch.equal(cold.logits, warm.logits)
    assert cold.stats.selected == warm.stats.selected


def test_blended_prompts_never_store_prefix_chunks(model):
    """A blended prompt's KV is approximate: it must not be served later as an exact
    prefix hit."""
    parts = rag(docs(), random_tokens(12, 64))
    engine = engine_for(model)
    try:
        done = blend.prefill(model, parts, engine)
        engine.flush()
        assert engine.lookup(done.ids) == 0
    finally:
        engine.close()


def test_segments_are_shared_through_redis(model, redis_url):
    from hitrate.stores.redis import RedisStore

    d = docs(2)
    writer = hf.make_engine(model, [StoreTier(RedisStore(url=redis_url), name="remote")], chunk_size=64)
    try:
        blend.prefill(model, rag(d, [5, 6]), writer)
        writer.flush()
    finally:
        writer.close()
    reader = engine_for(model)  # a second instance: empty CPU tier, same Redis
    reader.tiers.append(StoreTier(RedisStore(url=redis_url), name="remote"))
    try:
        done = blend.prefill(model, rag(d[::-1], [9, 10, 11]), reader)
        assert done.stats.loaded_tokens == sum(map(len, d))
    finally:
        reader.close()


# -- integration: the config flag, separators, fallbacks ---------------------------------


def test_split_on_separator():
    parts = split_on_separator("sys # # doc one # # doc two # # question?", " # # ")
    assert parts == [Segment("sys"), " # # ", Segment("doc one"), " # # ", Segment("doc two"),
                     " # # ", "question?"]
    assert split_on_separator("no separator here", "##") == ["no separator here"]
    with pytest.raises(ValueError):
        split_on_separator("x", "")


def test_the_config_flag_turns_blending_on_for_separated_prompts(model, tmp_path):
    from .tokenizer import build_tokenizer

    tokenizer = build_tokenizer(tmp_path)
    words = lambda start, n: " ".join(f"word{i}" for i in range(start, start + n))  # noqa: E731
    prompt = f"{words(10, 120)} <sep> {words(300, 90)} <sep> {words(600, 8)}"
    on = {"cpu_size_mb": 64, "chunk_size": 64, "blend": True, "blend_separator": "<sep>",
          "blend_ratio": 0.2}
    engine = hf.make_engine(model, settings=on)
    try:
        out = hf.generate(model, tokenizer, prompt, engine, max_new_tokens=4, do_sample=False)
        assert out.blend is not None and out.blend.mode == "blend"
        assert out.blend.segment_tokens == 120 + 90  # the word-level tokenizer drops spaces
        assert out.blend.recomputed_tokens == math.ceil(0.2 * out.blend.segment_tokens)
        # a prompt without the separator is an ordinary prompt: prefix reuse, no blending
        plain_prompt = prompt.replace("<sep>", "")
        hf.generate(model, tokenizer, plain_prompt, engine, max_new_tokens=2, do_sample=False)
        engine.flush()
        again = hf.generate(model, tokenizer, plain_prompt, engine, max_new_tokens=2, do_sample=False)
        assert again.blend is None and again.cached_tokens > 0
    finally:
        engine.close()
    off = hf.make_engine(model, settings={**on, "blend": False})
    try:
        plain = hf.generate(model, tokenizer, prompt, off, max_new_tokens=4, do_sample=False)
        assert plain.blend is None
        assert plain.prompt_tokens == out.prompt_tokens
    finally:
        off.close()


def test_blend_settings_are_validated(monkeypatch):
    from hitrate.config import ConfigError
    from hitrate.kv.settings import resolve_settings

    monkeypatch.setenv("HITRATE_KV_BLEND_RATIO", "1.5")
    with pytest.raises(ConfigError, match="HITRATE_KV_BLEND_RATIO"):
        resolve_settings({})
    monkeypatch.setenv("HITRATE_KV_BLEND_RATIO", "0.3")
    monkeypatch.setenv("HITRATE_KV_BLEND", "true")
    settings = resolve_settings({})
    assert settings.blend and settings.blend_ratio == 0.3


def test_unsupported_models_fall_back_to_prefix_reuse():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=1024, n_embd=128, n_layer=2, n_head=4,
                                      bos_token_id=1, eos_token_id=2)).eval()
    assert "gpt2" in blend.unsupported_reason(gpt2)
    parts = rag(docs(2), [5, 6, 7])
    ids = build_layout(None, parts).ids
    expected = gpt2.generate(input_ids=torch.tensor([ids]), max_new_tokens=5,
                             do_sample=False)[0, len(ids):].tolist()
    engine = engine_for(gpt2)
    try:
        first = blend.generate(gpt2, None, parts, engine, max_new_tokens=5, do_sample=False)
        engine.flush()
        again = blend.generate(gpt2, None, parts, engine, max_new_tokens=5, do_sample=False)
    finally:
        engine.close()
    assert first.blend.mode == "prefix" and first.tokens == expected
    assert again.tokens == expected and again.cached_tokens > 0  # prefix reuse still works


# -- a real model ---------------------------------------------------------------------


@pytest.mark.slow
def test_blending_a_real_model_stays_close_to_a_full_prefill(smollm2):
    """SmolLM2-135M (real weights): blended answers track the full prefill's, and
    recomputing more brings them closer."""
    from hitrate.kv import samples

    model, tokenizer = smollm2
    documents = samples.stdlib_documents(3, 1200)
    layout = build_layout(tokenizer, samples.rag_parts(documents[::-1], "How do I write JSON to a file?"))
    ref = quality.reference(model, layout.ids, 16)
    scores = {}
    for ratio in (0.0, 0.3, 1.0):
        done = blend.prefill(model, layout, None, ratio=ratio, tokenizer=tokenizer)
        got = quality.continuation_logits(model, done.logits, done.cache, ref.continuation)
        scores[ratio] = quality.agreement(ref.logits, got)
    assert scores[1.0].kl_mean < 1e-5 and scores[1.0].top1 == 1.0
    assert scores[0.3].kl_mean < scores[0.0].kl_mean
    assert scores[0.3].top1 >= 0.9


# -- selection rules ------------------------------------------------------------------


def test_segment_boundary_tokens_are_always_recomputed(model):
    """sink/tail: every segment's first and last tokens are among the recomputed ones,
    within the ratio's budget when it is large enough and on top of it when it is not."""
    parts = rag(docs(3), random_tokens(12, 80))
    layout = build_layout(None, parts)
    boundary = set()
    for span in layout.segments:
        boundary |= set(range(span.start, span.start + 4)) | set(range(span.end - 3, span.end))
    plain = blend.prefill(model, layout, None, ratio=0.3, selection=blend.Selection())
    assert not boundary <= set(plain.stats.selected)  # the deviation alone picks others
    for ratio, expected in ((0.3, math.ceil(0.3 * layout.segment_tokens)), (0.01, len(boundary))):
        done = blend.prefill(model, layout, None, ratio=ratio, selection=blend.Selection(sink=4, tail=3))
        assert boundary <= set(done.stats.selected)
        assert done.stats.recomputed_tokens == expected
    # ratio 0 stays plain concatenation: nothing is forced
    assert blend.prefill(model, layout, None, ratio=0.0,
                         selection=blend.Selection(sink=4)).stats.recomputed_tokens == 0


def test_gradual_filtering_narrows_to_the_ratio_and_stays_exact_at_one(model):
    parts = rag(docs(3), random_tokens(12, 81))
    layout = build_layout(None, parts)
    wide = blend.prefill(model, layout, None, ratio=0.5, selection=blend.Selection())
    gradual = blend.prefill(model, layout, None, ratio=0.15, selection=blend.Selection(pre_ratios=(0.5,)))
    assert gradual.stats.recomputed_tokens == math.ceil(0.15 * layout.segment_tokens)
    assert set(gradual.stats.selected) <= set(wide.stats.selected)  # chosen among the wider set
    full = blend.prefill(model, layout, None, ratio=1.0, selection=blend.Selection(pre_ratios=(1.0,), sink=2))
    torch.testing.assert_close(full.logits, full_logits(model, layout.ids), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bad", [dict(sink=-1), dict(metric="q"), dict(pre_ratios=(0.0,)),
                                 dict(pre_ratios=(0.5, 1.5))])
def test_bad_selections_are_refused(bad):
    with pytest.raises(ValueError, match="blend"):
        blend.Selection(**bad)


def test_attention_weighted_selection_keeps_the_budget_and_is_exact_at_one(model):
    """attention=True ranks deviations weighted by what the question attends to: another
    choice of tokens than the deviation alone, of the same size, and ratio 1 still
    equals a full prefill."""
    layout = build_layout(None, rag(docs(3), random_tokens(12, 82)))
    plain = blend.prefill(model, layout, None, ratio=0.2, selection=blend.Selection())
    weighted = blend.prefill(model, layout, None, ratio=0.2, selection=blend.Selection(attention=True))
    assert weighted.stats.recomputed_tokens == plain.stats.recomputed_tokens
    assert weighted.stats.selected != plain.stats.selected
    assert all(any(s.start <= p < s.end for s in layout.segments) for p in weighted.stats.selected)
    full = blend.prefill(model, layout, None, ratio=1.0,
                         selection=blend.Selection(attention=True, pre_ratios=(1.0,)))
    torch.testing.assert_close(full.logits, full_logits(model, layout.ids), atol=1e-5, rtol=1e-5)
