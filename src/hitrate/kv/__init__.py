"""hitrate's KV cache for self-hosted models (LMCache-like).

Attention key/value tensors of prompt chunks are stored in tiers (GPU, CPU memory,
local disk, Redis / S3 through the shared byte stores), so a later prompt that repeats
a long prefix skips most of its prefill.

    from hitrate.kv import hf
    engine = hf.make_engine(model, model_id="my-model@rev")   # tiers from kv config/env
    out = hf.generate(model, tokenizer, prompt, engine, max_new_tokens=32)

Modules: chunking (keys), codec (chunk format), serde (how chunks are written to disk
and remote tiers: naive, zstd, int8), tiers, redis_reader (bulk Redis reads), engine,
metrics (Prometheus series), settings, lmcache_config (LMCache's config read as is), hf
(transformers), vllm_connector (vLLM v1 KV connector), cli (`hitrate kv ...`); reuse of
repeated text at any position: segments (prompt parts), rope (moving keys), blend
(CacheBlend-style prefill), blend_quality (KL / top-1 against a full prefill); samples
(a real small model from a PyPI wheel, offline documents).
torch is imported only where tensors are touched, so these imports stay light.
"""

from __future__ import annotations

from hitrate.kv.chunking import ChunkKeyer, KVNamespace
from hitrate.kv.engine import KVEngine, KVHit
from hitrate.kv.settings import build_tiers, resolve_settings
from hitrate.kv.tiers import CPUTier, GPUTier, KVTier, StoreTier

__all__ = ["CPUTier", "ChunkKeyer", "GPUTier", "KVEngine", "KVHit", "KVNamespace", "KVTier",
           "StoreTier", "build_tiers", "resolve_settings"]
