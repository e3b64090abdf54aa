"""Reuse of cached segments at any position (CacheBlend-style), for HuggingFace models.

    from hitrate.kv import blend
    from hitrate.kv.segments import Segment
    engine = hitrate.kv.hf.make_engine(model)
    out = blend.generate(model, tokenizer, ["Answer from these.\\n", Segment(doc_b),
                         Segment(doc_a), "Q: ..."], engine, max_new_tokens=32)

How a prompt is prefilled (after Yao et al., "CacheBlend", EuroSys'25):

1. Each segment's KV is loaded from the engine (keys: `ChunkKeyer.segment_seed`), or,
   on a miss, computed on its own after the `anchor` (BOS) and stored. Either way it
   holds the segment as if it sat at positions [len(anchor), len(anchor) + n).
2. Its keys are rotated to the segment's real positions (`hitrate.kv.rope`).
3. Layers below `check_layer` (2) run on every token (cheap: a few layers). At
   `check_layer` the fresh K/V of every token is compared with the loaded K/V; the
   segment tokens that matter most, together with all fresh tokens (text that is not a
   segment), are the only tokens computed in the layers above. Every other token keeps
   its loaded K/V there. Fresh tokens attend to everything, so the question still
   reads all documents. Which tokens (`Selection`): by default the `ratio` that
   deviate most; optionally each segment's first/last tokens always, deviations
   weighted by the attention the question pays each token (the first-order error a
   stale value adds to what the question reads), and gradual filtering (a larger
   share at the check layer, narrowed down over the next layers).

ratio=1 recomputes everything (equal to a full prefill up to float rounding); ratio=0
skips the check and is plain concatenation of the loaded KV. A model this cannot run
(not Llama/Mistral/Qwen2/Qwen3-shaped, sliding windows, length-dependent RoPE) falls
back to prefix reuse through `hitrate.kv.hf`, and the result says so.

The answer does not depend on what was cached: a segment computed on a miss is the
same tensor a later hit loads, so a cold and a warm request blend identically.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hitrate.kv import hf, rope
from hitrate.kv.segments import Part, PromptLayout, build_layout

if TYPE_CHECKING:
    import torch

    from hitrate.kv.engine import KVEngine

log = logging.getLogger("hitrate.kv")

SUPPORTED_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})
DEFAULT_RATIO = 0.10  # with DEFAULT_SELECTION: about plain 0.15's TTFT, lower KL
DEFAULT_CHECK_LAYER = 2  # SmolLM2-135M: KL 20-40% lower than at 1, for one layer more
_QUERY_BLOCK = 256  # masked attention: query rows per call (each computes scores up to its last row)


def unsupported_reason(model: Any, prompt_tokens: int = 0) -> str | None:
    """Why blending cannot run on `model` (None when it can)."""
    config = model.config
    kind = getattr(config, "model_type", "?")
    if kind not in SUPPORTED_MODEL_TYPES:
        return f"model type {kind!r} (blending runs on {', '.join(sorted(SUPPORTED_MODEL_TYPES))})"
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "rotary_emb") or not hasattr(inner, "layers"):
        return "the model has no decoder layers / rotary embedding where Llama-like models keep them"
    types = getattr(config, "layer_types", None)
    if types and any(t != "full_attention" for t in types):
        return "sliding-window attention layers"
    window = getattr(config, "sliding_window", None)
    if kind == "mistral" and window and prompt_tokens > window:
        return f"prompt longer than the sliding window ({window})"
    kind_of_rope = rope.rope_type(model)
    if kind_of_rope not in rope.STATIC_ROPE_TYPES:
        return f"RoPE type {kind_of_rope!r} changes with the sequence length"
    head_dim = inner.layers[0].self_attn.head_dim
    if rope.inverse_frequencies(model).numel() * 2 != head_dim:
        return "partial rotary embeddings"
    return None


@dataclass(slots=True)
class LoadedSegment:
    """A segment's KV placed in a prompt: `kv` [L, 2, H, n, D] as computed at positions
    [base, base + n); the prompt holds it at [start, start + n)."""

    start: int
    kv: torch.Tensor
    base: int

    @property
    def end(self) -> int:
        return self.start + self.kv.shape[3]


@dataclass(slots=True)
class BlendStats:
    mode: str  # "blend", "prefix" (fallback), or "full" (no segment in the prompt)
    prompt_tokens: int
    segment_tokens: int = 0
    loaded_tokens: int = 0  # segment tokens whose KV came from the engine
    computed_segment_tokens: int = 0  # segment tokens computed on their own (misses)
    recomputed_tokens: int = 0  # segment tokens selected for recomputation
    fresh_tokens: int = 0  # tokens outside segments (always computed)
    prefix_tokens: int = 0  # fallback modes: prefix tokens loaded by plain prefix reuse
    ratio: float = 0.0
    load_s: float = 0.0
    compute_segments_s: float = 0.0
    blend_s: float = 0.0
    reason: str | None = None  # why blending fell back
    selected: list[int] = field(default_factory=list)  # positions recomputed (check layer up)


@dataclass(slots=True)
class BlendPrefill:
    logits: torch.Tensor  # [vocab], last prompt position
    cache: Any  # DynamicCache holding the whole prompt's (blended) KV
    ids: list[int]
    stats: BlendStats


# -- the blended forward pass --------------------------------------------------------


def _qkv(attn: Any, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """q, k, v ([1, heads, n, D]) of hidden states x ([1, n, d]) at the given rotations,
    computed as the Llama/Qwen attention modules compute them."""
    shape = (*x.shape[:-1], -1, attn.head_dim)
    q = attn.q_proj(x).view(shape)
    k = attn.k_proj(x).view(shape)
    v = attn.v_proj(x).view(shape).transpose(1, 2)
    if hasattr(attn, "q_norm"):  # Qwen3 normalizes each head before RoPE
        q = attn.q_norm(q)
        k = attn.k_norm(k)
    q = q.transpose(1, 2)
    k = k.transpose(1, 2)
    cos = cos.unsqueeze(1)
    sin = sin.unsqueeze(1)
    q = q * cos + rope.rotate_half(q) * sin
    k = k * cos + rope.rotate_half(k) * sin
    return q, k, v


Blocks = list[tuple[int, int, int, "torch.Tensor"]]


def _plan_blocks(positions: torch.Tensor) -> Blocks:
    """Masked attention for queries at `positions` (ascending), planned once and reused
    by every layer: rows [lo, hi) see keys [0, span) under a mask (no per-layer host syncs)."""
    import torch

    host = positions.tolist()
    key_pos = torch.arange(host[-1] + 1, device=positions.device)
    blocks = []
    for lo in range(0, len(host), _QUERY_BLOCK):
        hi = min(lo + _QUERY_BLOCK, len(host))
        span = host[hi - 1] + 1
        blocks.append((lo, hi, span, key_pos[:span].unsqueeze(0) <= positions[lo:hi].unsqueeze(1)))
    return blocks


def _attend(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, blocks: Blocks | None,
            scale: float, gqa: bool) -> torch.Tensor:
    """Attention of queries q ([1, Hq, n, D]) over the layer's keys/values ([1, Hkv, T, D]).

    blocks=None: the queries are every token in order (plain causal attention, the fast
    kernel). Otherwise each query sees keys at positions <= its own (`_plan_blocks`), in
    blocks of rows so no [n, T] score matrix is ever whole."""
    import torch
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    if blocks is None:
        out = sdpa(q, keys, values, is_causal=True, scale=scale, enable_gqa=gqa)
    else:
        if gqa:  # fused kernels may not take enable_gqa with a mask: share KV heads here, once
            groups = q.shape[1] // keys.shape[1]
            keys = keys.repeat_interleave(groups, dim=1)
            values = values.repeat_interleave(groups, dim=1)
        out = torch.cat([sdpa(q[:, :, lo:hi], keys[:, :, :span], values[:, :, :span], attn_mask=mask,
                              scale=scale) for lo, hi, span, mask in blocks], dim=2)
    return out.transpose(1, 2).reshape(1, q.shape[2], -1)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which segment tokens are recomputed from the check layer up (besides the ratio).

    - `sink`/`tail`: the first/last tokens of every segment are always recomputed
      (counted in the ratio's budget). A segment's first tokens were computed right after
      the anchor, its last ones never saw what follows: both are where its cached KV is
      most out of context (EPIC's "LegoLink" recomputes the first ones).
    - `metric`: the deviation ranked at the check layer: "kv" (keys and values), "k" or "v".
    - `attention`: weight each token's deviation by the attention the prompt's trailing
      fresh text (the question) pays it at that layer: to first order, the error a stale
      value adds to the question's attention output is that weight times its deviation.
    - `pre_ratios`: gradual filtering (CacheBlend): the check layer keeps the first
      (larger) share, each next layer the next share, chosen among the tokens still
      computed by that layer's own deviation, and the layer after them narrows it down
      to `ratio`. A share not above the ratio is skipped.
    """

    sink: int = 0
    tail: int = 0
    metric: str = "kv"
    attention: bool = False
    pre_ratios: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.sink < 0 or self.tail < 0:
            raise ValueError("blend sink/tail token counts must be >= 0")
        if self.metric not in ("kv", "k", "v"):
            raise ValueError(f"blend selection metric must be kv, k or v, not {self.metric!r}")
        object.__setattr__(self, "pre_ratios", tuple(float(r) for r in self.pre_ratios))
        if any(not 0.0 < r <= 1.0 for r in self.pre_ratios):
            raise ValueError(f"blend pre_ratios must be within (0, 1], not {self.pre_ratios}")


# Question-attention-weighted deviation with gradual filtering (50% -> 30% -> the ratio).
# Its stages cost ~20% more time than plain ranking at one ratio, so the default ratio is
# 0.10 (about plain 0.15's TTFT). Chosen on the tuning split with 12 prompts: top-1 94.8%
# / KL 0.0124 vs plain 0.15's 94.3% / 0.0178 (README, "Reuse of repeated text at any
# position"). Selection() is the plain ranking.
DEFAULT_SELECTION = Selection(attention=True, pre_ratios=(0.5, 0.3))


def _deviation(metric: str, k: torch.Tensor, v: torch.Tensor, old_k: torch.Tensor,
               old_v: torch.Tensor) -> torch.Tensor:
    """Per-token squared distance ([n]) between fresh and loaded K/V ([H, n, D])."""
    diff = None
    if metric in ("kv", "k"):
        diff = (k - old_k).float().pow(2).sum(dim=(0, 2))
    if metric in ("kv", "v"):
        dv = (v - old_v).float().pow(2).sum(dim=(0, 2))
        diff = dv if diff is None else diff + dv
    return diff


def _suffix_attention(q: torch.Tensor, keys: torch.Tensor, suffix: int, scale: float) -> torch.Tensor:
    """Mean attention ([T]) that the last `suffix` query rows of q ([1, Hq, n, D]) pay to
    the keys ([1, Hkv, T, D]) before the first of them (all visible to every row)."""
    import torch

    total = keys.shape[2]
    rows = q[0, :, -suffix:].float()
    k = keys[0, :, :total - suffix].float()
    k = k.repeat_interleave(rows.shape[0] // k.shape[0], dim=0)
    probs = torch.softmax(rows @ k.transpose(1, 2) * scale, dim=-1)  # [Hq, suffix, T - suffix]
    weight = torch.zeros(total, dtype=torch.float32, device=keys.device)
    weight[:total - suffix] = probs.mean(dim=(0, 1))
    return weight


def _forced_mask(total: int, segments: Sequence[LoadedSegment], selection: Selection, device: Any
                 ) -> torch.Tensor:
    """Positions always recomputed: each segment's first `sink` and last `tail` tokens."""
    import torch

    forced = torch.zeros(total, dtype=torch.bool, device=device)
    for seg in segments:
        n = seg.end - seg.start
        forced[seg.start:seg.start + min(selection.sink, n)] = True
        if selection.tail:
            forced[max(seg.start, seg.end - selection.tail):seg.end] = True
    return forced


def blended_forward(model: Any, ids: Sequence[int], segments: Sequence[LoadedSegment], *,
                    ratio: float = DEFAULT_RATIO, check_layer: int = DEFAULT_CHECK_LAYER,
                    selection: Selection = DEFAULT_SELECTION
                    ) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Prefill of `ids` reusing `segments`' KV. Returns (last-position logits [vocab],
    KV [L, 2, Hkv, T, D] of the whole prompt, positions recomputed from check_layer up
    (from check_layer + len(pre_ratios) up with `selection.pre_ratios`)).

    The caller checked `unsupported_reason`. Segments must not overlap."""
    import torch

    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"blend ratio must be within [0, 1], not {ratio}")
    inner = model.model
    layers = inner.layers
    num_layers = len(layers)
    if not 1 <= check_layer < num_layers:
        raise ValueError(f"check_layer must be within [1, {num_layers - 1}], not {check_layer}")
    device = model.device
    total = len(ids)
    attn0 = layers[0].self_attn
    heads_kv, head_dim = model.config.num_key_value_heads, attn0.head_dim
    gqa = model.config.num_attention_heads != heads_kv
    dtype = next(model.parameters()).dtype

    kv = torch.empty(num_layers, 2, 1, heads_kv, total, head_dim, dtype=dtype, device=device)
    reused = torch.zeros(total, dtype=torch.bool, device=device)
    inv_freq = rope.inverse_frequencies(model)
    covered = 0
    for seg in sorted(segments, key=lambda s: s.start):
        if seg.start < covered or seg.end > total:
            raise ValueError("segments overlap or fall outside the prompt")
        covered = seg.end
        loaded = seg.kv.to(device=device, dtype=dtype)
        kv[:, 0, 0, :, seg.start:seg.end] = rope.rerotate(loaded[:, 0], seg.start - seg.base, inv_freq)
        kv[:, 1, 0, :, seg.start:seg.end] = loaded[:, 1]
        reused[seg.start:seg.end] = True
    reused[total - 1] = False  # the last token's logits are the point: always computed

    num_reused = int(reused.sum())
    # the fresh text after the last segment (at least the last token): whose attention
    # `selection.attention` weighs deviations by
    suffix = total - max((seg.end for seg in segments), default=0)
    suffix = max(1, min(suffix, total - 1))
    select = num_reused > 0 and ratio > 0
    # Selection stages: layer -> how many segment tokens stay recomputed above it.
    stages: dict[int, int] = {}
    forced = None
    if select:
        shares = [r for r in selection.pre_ratios if r > ratio] + [ratio]
        for offset, share in enumerate(shares[-(num_layers - check_layer):]):
            stages[check_layer + offset] = math.ceil(share * num_reused)
        if selection.sink or selection.tail:
            forced = _forced_mask(total, segments, selection, device) & reused
    # Tokens computed in the current layer: None = every token (then the causal kernel
    # runs), else their positions, ascending, with the attention blocks planned for them.
    active = None if (select or num_reused == 0) else (~reused).nonzero().squeeze(1)
    blocks = None if active is None else _plan_blocks(active)
    selected: list[int] = []

    with hf.inference(model):
        hidden = inner.embed_tokens(torch.tensor([list(ids)], device=device))
        cos_all, sin_all = inner.rotary_emb(hidden, torch.arange(total, device=device).unsqueeze(0))
        if active is not None:
            hidden = hidden[:, active]
        for index, layer in enumerate(layers):
            attn = layer.self_attn
            x = layer.input_layernorm(hidden)
            if active is None:
                q, k, v = _qkv(attn, x, cos_all, sin_all)
            else:
                q, k, v = _qkv(attn, x, cos_all[:, active], sin_all[:, active])
            if index in stages:
                # Fresh K/V of the tokens computed here vs the loaded ones: only those that
                # differ most (and the forced ones) stay computed in the layers above.
                positions = torch.arange(total, device=device) if active is None else active
                old_k = kv[index, 0, 0] if active is None else kv[index, 0, 0][:, positions]
                old_v = kv[index, 1, 0] if active is None else kv[index, 1, 0][:, positions]
                diff = _deviation(selection.metric, k[0], v[0], old_k, old_v)
                if selection.attention:
                    keys_now = kv[index, 0].clone()
                    keys_now[:, :, positions] = k
                    diff = diff * _suffix_attention(q, keys_now, suffix, attn.scaling)[positions]
                candidate = reused[positions]
                diff = diff.masked_fill(~candidate, float("-inf"))
                keep_count = stages[index]
                if forced is not None:
                    must = forced[positions]
                    diff = diff.masked_fill(must, float("inf"))
                    keep_count = max(keep_count, int(must.sum()))
                keep_count = min(keep_count, int(candidate.sum()))
                top = torch.topk(diff, keep_count).indices
                selected = positions[top].sort().values.tolist()
                if active is None:
                    kv[index, 0] = k  # every token's fresh K/V at this layer is exact: keep it all
                    kv[index, 1] = v
                else:
                    kv[index, 0, :, :, active] = k
                    kv[index, 1, :, :, active] = v
                if keep_count < int(candidate.sum()):
                    keep = ~candidate
                    keep[top] = True
                    active = positions[keep]
                    blocks = _plan_blocks(active)
                    q = q[:, :, keep]
                    hidden = hidden[:, keep]
            elif active is None:
                kv[index, 0] = k
                kv[index, 1] = v
            else:
                kv[index, 0, :, :, active] = k
                kv[index, 1, :, :, active] = v
            out = _attend(q, kv[index, 0], kv[index, 1], blocks, attn.scaling, gqa)
            hidden = hidden + attn.o_proj(out)
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        logits = model.lm_head(inner.norm(hidden[:, -1:]))[0, -1]
    return logits, kv.squeeze(2), selected


# -- segments: load, or compute and store --------------------------------------------


def default_anchor(model: Any, tokenizer: Any = None) -> list[int]:
    """What a segment is computed after: the tokens a prompt starts with (BOS), so the
    segment's first token is not mistaken for the start of the text."""
    from hitrate.kv.segments import start_tokens

    if tokenizer is not None:
        return start_tokens(tokenizer)
    bos = getattr(model.config, "bos_token_id", None)
    return [int(bos)] if isinstance(bos, int) else []


def _compute_segment(model: Any, anchor: list[int], tokens: Sequence[int]) -> torch.Tensor:
    """The segment's KV [L, 2, H, n, D], computed after `anchor` alone."""
    import torch

    cache = hf.cache_from_kv(None, model.config)
    with hf.inference(model):
        model(input_ids=torch.tensor([anchor + list(tokens)], device=model.device),
              past_key_values=cache, use_cache=True, logits_to_keep=1)
    return hf.kv_slicer(cache)(len(anchor), len(anchor) + len(tokens))


def load_segments(model: Any, layout: PromptLayout, engine: KVEngine | None, anchor: list[int],
                  stats: BlendStats, *, store: bool = True) -> list[LoadedSegment]:
    """Every segment of `layout` with its KV: from the engine, or computed (and stored)."""
    seed = engine.keyer.segment_seed(anchor) if engine is not None else None
    loaded: list[LoadedSegment] = []
    computed: dict[tuple[int, ...], Any] = {}  # a segment repeated in one prompt is computed once
    for span in layout.segments:
        kv = None
        t0 = time.perf_counter()
        if engine is not None:
            hit = engine.retrieve(span.tokens, device=model.device, seed=seed)
            if hit.num_tokens == span.num_tokens:
                kv = hit.kv
                stats.loaded_tokens += span.num_tokens
        stats.load_s += time.perf_counter() - t0
        if kv is None:
            t0 = time.perf_counter()
            kv = computed.get(span.tokens)
            if kv is None:
                kv = computed[span.tokens] = _compute_segment(model, anchor, span.tokens)
                if engine is not None and store:
                    engine.store(span.tokens, kv, seed=seed, partial=True)
            stats.computed_segment_tokens += span.num_tokens
            stats.compute_segments_s += time.perf_counter() - t0
        loaded.append(LoadedSegment(span.start, kv, len(anchor)))
    return loaded


# -- what integrations call ----------------------------------------------------------


def prefill(model: Any, prompt: Sequence[Part] | PromptLayout, engine: KVEngine | None, *,
            tokenizer: Any = None, ratio: float = DEFAULT_RATIO,
            check_layer: int = DEFAULT_CHECK_LAYER, anchor: Sequence[int] | None = None,
            store: bool = True, selection: Selection = DEFAULT_SELECTION) -> BlendPrefill:
    """Prefills a prompt of segments and fresh text (see `hitrate.kv.segments`).

    Segments come from `engine` when cached and are stored there when not (`engine`
    None: computed every time, nothing stored). Models blending cannot run on are
    prefilled with prefix reuse instead (`stats.mode == "prefix"`)."""
    if engine is not None:
        hf._check_engine(model, engine)
    layout = prompt if isinstance(prompt, PromptLayout) else build_layout(tokenizer, prompt)
    stats = BlendStats("blend", len(layout.ids), layout.segment_tokens, ratio=ratio)
    reason = unsupported_reason(model, len(layout.ids))
    if reason is not None or not layout.segments:
        stats.mode = "full" if reason is None else "prefix"
        stats.reason = reason
        if reason is not None:
            log.info("KV blending falls back to prefix reuse: %s", reason)
        stats.fresh_tokens = len(layout.ids)
        done = hf.prefill(model, layout.ids, engine, store=store)
        stats.prefix_tokens = done.cached_tokens
        return BlendPrefill(done.logits, done.cache, layout.ids, stats)
    anchor_ids = list(default_anchor(model, tokenizer) if anchor is None else anchor)
    segments = load_segments(model, layout, engine, anchor_ids, stats, store=store)
    t0 = time.perf_counter()
    logits, kv, selected = blended_forward(model, layout.ids, segments, ratio=ratio,
                                           check_layer=check_layer, selection=selection)
    stats.blend_s = time.perf_counter() - t0
    stats.selected = selected
    stats.recomputed_tokens = len(selected)
    stats.fresh_tokens = len(layout.ids) - layout.segment_tokens
    return BlendPrefill(logits, hf.cache_from_kv(kv, model.config), layout.ids, stats)


def generate(model: Any, tokenizer: Any, prompt: Sequence[Part] | PromptLayout | str,
             engine: KVEngine | None, *, ratio: float = DEFAULT_RATIO,
             check_layer: int = DEFAULT_CHECK_LAYER, separator: str | None = None,
             anchor: Sequence[int] | None = None, store: bool = True,
             selection: Selection = DEFAULT_SELECTION, **gen_kwargs: Any) -> hf.Generation:
    """`model.generate` on a blended prefill. `prompt`: parts (`Segment`s and fresh
    text), a layout, or a string cut at `separator` (every piece but the last is a
    segment). Keyword arguments go to `model.generate`."""
    from hitrate.kv.segments import split_on_separator

    if isinstance(prompt, str):
        prompt = split_on_separator(prompt, separator) if separator else [prompt]
    done = prefill(model, prompt, engine, tokenizer=tokenizer, ratio=ratio, check_layer=check_layer,
                   anchor=anchor, store=store, selection=selection)
    # generate() recomputes the last prompt token from a cache of the ones before it;
    # that token was computed in full by the blend too, so the result is the same.
    done.cache.crop(-1)
    new, text, output = hf.generate_from_cache(model, tokenizer, done.ids, done.cache, **gen_kwargs)
    stats = done.stats
    cached = stats.prefix_tokens if stats.mode != "blend" else stats.loaded_tokens
    return hf.Generation(text, new, len(done.ids), cached, output, blend=stats)
