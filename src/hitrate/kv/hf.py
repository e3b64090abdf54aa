"""HuggingFace transformers integration: generation that reuses cached prompt KV.

    engine = hitrate.kv.hf.make_engine(model, model_id="my-llama@rev")
    out = hitrate.kv.hf.generate(model, tokenizer, prompt, engine, max_new_tokens=64)

Works for decoder models whose cache is a standard `DynamicCache` made only of full
attention layers (Llama, Mistral, Qwen2, ... ; batch size 1). The prompt's longest
cached prefix is loaded into a `DynamicCache` (`DynamicCache(ddp_cache_data=[(k, v),
...], config=cfg)`), only the rest of the prompt is prefilled, and afterwards the new
prompt chunks are stored (write-behind). A full-prompt hit still recomputes the last
prompt token: its logits are needed to sample the first new token.

Chunk layout "hf:L2HTD": one tensor per chunk, [layers, 2 (key, value), kv heads,
tokens, head dim], batch dimension dropped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hitrate.kv.chunking import KVNamespace
from hitrate.kv.engine import KVEngine

if TYPE_CHECKING:
    import torch

LAYOUT = "hf:L2HTD"
TOKEN_AXIS = 3


def model_fingerprint(model: Any) -> str:
    """A model identity for the namespace: name/revision when the model came from a
    checkpoint, plus a digest of its config and a sample of its weights, so two
    different random-weight models never share chunks."""
    config = model.config
    h = hashlib.blake2b(config.to_json_string(use_diff=False).encode(), digest_size=8)
    params = list(model.named_parameters())
    for name, param in params[:2] + params[-2:]:
        flat = param.detach().reshape(-1)[:1024].float().cpu()
        h.update(name.encode())
        h.update(flat.numpy().tobytes())
    name = getattr(config, "_name_or_path", "") or "local"
    revision = getattr(config, "_commit_hash", None)
    return f"{name}@{revision or ''}#{h.hexdigest()}"


def namespace_for(model: Any, *, model_id: str | None = None, tp_rank: int = 0,
                  tp_size: int = 1) -> KVNamespace:
    dtype = str(model.dtype).removeprefix("torch.")
    return KVNamespace(model=model_id or model_fingerprint(model), dtype=dtype, layout=LAYOUT,
                       tp_rank=tp_rank, tp_size=tp_size)


def make_engine(model: Any, tiers: Any = None, *, model_id: str | None = None,
                settings: Any = None, **engine_kwargs: Any) -> KVEngine:
    """An engine for `model`: tiers given explicitly, or built from `settings` (a
    `hitrate.config.KVConfig`; default: the `HITRATE_KV_*` environment variables)."""
    from hitrate.kv.settings import build_tiers, resolve_settings

    namespace = namespace_for(model, model_id=model_id)
    if tiers is None:
        settings = resolve_settings(settings)
        tiers = build_tiers(settings)
        engine_kwargs.setdefault("chunk_size", settings.chunk_size)
        engine_kwargs.setdefault("store_partial", settings.store_partial)
    elif settings is not None:
        settings = resolve_settings(settings)
    engine = KVEngine(namespace, tiers, token_axis=TOKEN_AXIS, **engine_kwargs)
    engine.settings = settings
    return engine


def _check_engine(model: Any, engine: KVEngine) -> None:
    if engine.namespace.layout != LAYOUT:
        raise ValueError(f"engine layout is {engine.namespace.layout}, HF needs {LAYOUT}")
    dtype = str(model.dtype).removeprefix("torch.")
    if engine.namespace.dtype != dtype:
        raise ValueError(f"engine holds {engine.namespace.dtype} KV, the model runs in {dtype}")


# Attention kernels tried in this order for hitrate's own forwards on CUDA. PyTorch's
# default on Hopper picks cuDNN attention for a masked bfloat16 forward (a cached
# prefill: new tokens over past + new), and cuDNN builds an execution graph the first
# time it sees each (query, key) length pair: about 1 s of host time per new shape,
# measured on an H200 (scripts/kv_gpu_ttft.py), against ~30 ms for the forward itself.
# Flash attention (unmasked) and memory-efficient attention (masked) need no build.
# Set it to None to let PyTorch choose.
SDPA_PRIORITY: Sequence[str] | None = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH")


@contextmanager
def inference(model: Any) -> Iterator[None]:
    """`torch.no_grad()`, and on CUDA the attention kernel order `SDPA_PRIORITY`."""
    import torch

    priority = SDPA_PRIORITY
    with torch.no_grad():
        if priority is None or not str(getattr(model, "device", "cpu")).startswith("cuda"):
            yield
            return
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel([getattr(SDPBackend, name) for name in priority], set_priority=True):
            yield


def cache_from_kv(kv: torch.Tensor | None, config: Any):
    """A `DynamicCache` holding `kv` ([L, 2, H, T, D]), or an empty one for None."""
    from transformers import DynamicCache

    if kv is None:
        return DynamicCache(config=config)
    data = [(kv[layer, 0].unsqueeze(0), kv[layer, 1].unsqueeze(0)) for layer in range(kv.shape[0])]
    return DynamicCache(ddp_cache_data=data, config=config)


def kv_slicer(cache: Any):
    """fn(start, end) -> [L, 2, H, end-start, D] chunk tensor read from a DynamicCache."""
    import torch

    layers = list(cache.layers)
    for layer in layers:
        if type(layer).__name__ != "DynamicLayer":
            raise ValueError(f"hitrate.kv.hf supports full-attention DynamicCache layers only, "
                             f"not {type(layer).__name__}")

    # Capture the tensors now: later decoding steps replace layer.keys with longer ones.
    pairs = [(layer.keys, layer.values) for layer in layers]

    def cut(start: int, end: int) -> torch.Tensor:
        return torch.stack([torch.stack((k[0, :, start:end], v[0, :, start:end])) for k, v in pairs])

    return cut


def _ids(tokenizer: Any, prompt: Any) -> list[int]:
    if tokenizer is None or not isinstance(prompt, str):
        ids = prompt.tolist() if hasattr(prompt, "tolist") else list(prompt)
        if ids and isinstance(ids[0], list):
            if len(ids) != 1:
                raise ValueError("hitrate.kv.hf handles one prompt at a time (batch size 1)")
            ids = ids[0]
        return [int(i) for i in ids]
    return list(tokenizer(prompt, return_tensors=None)["input_ids"])


def _plain_ids(tokenizer: Any, prompt: Any) -> list[int]:
    """Token ids of a prompt, segments included as plain text (blending off)."""
    from hitrate.kv.segments import PromptLayout, Segment, build_layout

    if isinstance(prompt, PromptLayout):
        return prompt.ids
    if isinstance(prompt, list | tuple) and any(isinstance(p, Segment | str) for p in prompt):
        return build_layout(tokenizer, prompt).ids
    return _ids(tokenizer, prompt)


@dataclass(slots=True)
class Prefill:
    logits: torch.Tensor  # logits of the last prompt position, [vocab]
    cache: Any  # DynamicCache holding the whole prompt
    prompt_tokens: int
    cached_tokens: int  # tokens whose KV came from hitrate (never the last one)


def prefill(model: Any, tokens: Any, engine: KVEngine | None, *, store: bool = True) -> Prefill:
    """Prefills `tokens`, loading the longest cached prefix from `engine` first."""
    import torch

    ids = _ids(None, tokens)
    if not ids:
        raise ValueError("empty prompt")
    cached = 0
    kv = None
    if engine is not None:
        _check_engine(model, engine)
        hit = engine.retrieve(ids, device=model.device)
        cached = min(hit.num_tokens, len(ids) - 1)  # the last token is always recomputed
        if cached > 0:
            kv = hit.kv.narrow(TOKEN_AXIS, 0, cached)
    cache = cache_from_kv(kv, model.config)
    with inference(model):
        out = model(input_ids=torch.tensor([ids[cached:]], device=model.device),
                    past_key_values=cache, use_cache=True, logits_to_keep=1)
    if engine is not None and store:
        engine.store(ids, kv_slicer(cache))
    return Prefill(out.logits[0, -1], cache, len(ids), cached)


def warmup(model: Any, *, cached: int = 32, new: int = 8) -> None:
    """Runs one tiny full prefill and one tiny prefill over a cache, so that a server's
    first real request of each kind does not pay the one-time cost of loading and
    choosing GPU kernels (cold prefills and cached prefills use different attention
    kernels: causal without a mask vs a mask over past + new tokens)."""
    import torch

    ids = list(range(1, cached + new + 1))
    with inference(model):
        out = model(input_ids=torch.tensor([ids[:cached]], device=model.device), use_cache=True)
        model(input_ids=torch.tensor([ids[cached:]], device=model.device),
              past_key_values=out.past_key_values, use_cache=True, logits_to_keep=1)
    if str(model.device).startswith("cuda"):
        torch.cuda.synchronize(model.device)


@dataclass(slots=True)
class Generation:
    text: str | None  # decoded new tokens (None without a tokenizer)
    tokens: list[int]  # new tokens only
    prompt_tokens: int
    cached_tokens: int  # prefix tokens loaded; with blending, segment tokens loaded
    output: Any  # what model.generate returned
    blend: Any = None  # hitrate.kv.blend.BlendStats when the prompt was blended


def _blend_wanted(engine: KVEngine, prompt: Any) -> bool:
    """Segments in the prompt (unless the engine's settings turn blending off), or a
    string prompt holding the separator of settings that turn it on."""
    from hitrate.kv.segments import PromptLayout, Segment

    settings = engine.settings
    if settings is not None and not settings.blend:
        return False  # the config turned blending off: segments are plain text
    if isinstance(prompt, PromptLayout):
        return True
    if isinstance(prompt, list | tuple) and any(isinstance(p, Segment) for p in prompt):
        return True
    return bool(settings is not None and settings.blend_separator and isinstance(prompt, str)
                and settings.blend_separator in prompt)


def generate(model: Any, tokenizer: Any, prompt: Any, engine: KVEngine, *, store: bool = True,
             save_decode_cache: bool | None = None, **gen_kwargs: Any) -> Generation:
    """`model.generate` with the prompt's cached prefix loaded from `engine`.

    `prompt`: a string (needs `tokenizer`) or token ids. Keyword arguments go to
    `model.generate` (max_new_tokens, do_sample, ...). The new prompt chunks are stored
    after generation, without making the caller wait for the writes.

    Prompts with segments (a list of `hitrate.kv.segments.Segment` and fresh text, or,
    when the engine's settings have `blend` on, a string holding `blend_separator`) are
    blended instead (`hitrate.kv.blend`): segments are reused wherever they sit.

    `save_decode_cache` (default: the engine's settings, off like LMCache's): also store
    the KV of the generated tokens, so the next turn of a chat (this prompt + this
    answer + a new question, as token ids) is a longer prefix hit. Only whole chunks of
    the answer's KV are stored (a partial chunk could never match a longer prompt)."""

    if _blend_wanted(engine, prompt):
        from hitrate.kv import blend

        settings = engine.settings
        options = {}
        if settings is not None:
            options = {"ratio": settings.blend_ratio, "check_layer": settings.blend_check_layer,
                       "separator": settings.blend_separator}
        return blend.generate(model, tokenizer, prompt, engine, store=store, **options, **gen_kwargs)
    _check_engine(model, engine)
    ids = _plain_ids(tokenizer, prompt)
    if not ids:
        raise ValueError("empty prompt")
    hit = engine.retrieve(ids, device=model.device)
    cached = min(hit.num_tokens, len(ids) - 1)
    kv = hit.kv.narrow(TOKEN_AXIS, 0, cached) if cached > 0 else None
    cache = cache_from_kv(kv, model.config)
    new, text, output = generate_from_cache(model, tokenizer, ids, cache, **gen_kwargs)
    if store:
        engine.store(ids, kv_slicer(cache))  # the prompt (the cache also holds the answer)
        if save_decode_cache is None:
            save_decode_cache = bool(engine.settings is not None and engine.settings.save_decode_cache)
        if save_decode_cache:
            # The cache holds prompt + answer except the last sampled token (never fed
            # back). Chunks already stored above are skipped by `store`.
            seen = [*ids, *new][:cache.get_seq_length()]
            start = len(ids) // engine.chunk_size * engine.chunk_size
            engine.store(seen, kv_slicer(cache), start=start, partial=False)
    return Generation(text, new, len(ids), cached, output)


def generate_from_cache(model: Any, tokenizer: Any, ids: list[int], cache: Any, **gen_kwargs: Any
                        ) -> tuple[list[int], str | None, Any]:
    """`model.generate` for prompt `ids` whose first tokens' KV `cache` holds (at least
    the last prompt token is left out, to give the first new token's logits). Returns
    (new tokens, their text or None without a tokenizer, what model.generate returned)."""
    import torch

    input_ids = torch.tensor([ids], device=model.device)
    with inference(model):
        output = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                past_key_values=cache, **gen_kwargs)
    sequences = output.sequences if hasattr(output, "sequences") else output
    new = sequences[0, len(ids):].tolist()
    text = tokenizer.decode(new, skip_special_tokens=True) if tokenizer is not None else None
    return new, text, output
