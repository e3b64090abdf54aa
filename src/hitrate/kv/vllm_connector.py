"""vLLM v1 KV connector: vLLM's paged KV <-> hitrate's KV engine.

    vllm serve MODEL --no-enable-prefix-caching --kv-transfer-config '{
        "kv_connector": "HitrateConnector",
        "kv_connector_module_path": "hitrate.kv.vllm_connector",
        "kv_role": "kv_both",
        "kv_connector_extra_config": {"remote_url": "redis://127.0.0.1:6379/0"}}'

`kv_connector_extra_config` takes any field of the `kv:` config section (chunk_size,
cpu_size_mb, disk_dir, remote_url, ...) or LMCache's names for them (local_cpu,
max_local_cpu_size, remote_serde, ...; also as "lmcache.<field>"), plus `config` (a
hitrate config file whose `kv:` section is the base), `model_id` (default: the served
model path and revision) and `metrics_port`; any other key is an error naming it
(`hitrate.kv.settings.connector_settings`). LMCACHE_CONFIG_FILE, LMCACHE_<FIELD> and
HITRATE_KV_* environment variables win over it. vLLM's own prefix cache
may stay on: hitrate is asked only for tokens beyond what vLLM already holds (the tests
run with it off, so that every cached token provably came through hitrate).

How it moves data: the per-layer paged cache is a `[blocks, heads, block_size, C]`
view. A token slot is row `offset` of block `block_id`; a chunk is the rows of its
token slots for every layer, stacked as `[layers, tokens, heads, C]` (layout
"vllm:<device>:bs<block_size>:LTHC"). Inside a block some backends interleave keys
and values (the CPU backend keeps all keys of a block, then all values), so a row is
only meaningful as part of its whole block: everything here moves whole blocks —
loads and stores are block-aligned, and chunk_size must be a multiple of block_size.

Loads are synchronous, before the forward pass (`start_load_kv`); stores copy the
rows out of the paged cache right after each layer's attention (`save_kv_layer`) and
hand them to the engine's write-behind queue at the end of the step (`wait_for_save`).
GPU paths (device tensors, pinned staging) are the same code with `.to(device)`; they
are exercised by scripts/kv_gpu_check.py, not by CI.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from vllm.distributed.kv_transfer.kv_connector.v1.base import (
    KVConnectorBase_V1,
    KVConnectorMetadata,
    KVConnectorRole,
)

from hitrate.kv.chunking import KVNamespace
from hitrate.kv.engine import KVEngine

if TYPE_CHECKING:
    from vllm.config import VllmConfig
    from vllm.forward_context import ForwardContext
    from vllm.v1.core.kv_cache_manager import KVCacheBlocks
    from vllm.v1.core.sched.output import SchedulerOutput
    from vllm.v1.kv_cache_interface import KVCacheConfig
    from vllm.v1.request import Request

log = logging.getLogger("hitrate.kv.vllm")
TOKEN_AXIS = 1


@dataclass
class LoadSpec:
    req_id: str
    tokens: list[int]  # prompt tokens [0, end): the prefix whose KV is loaded
    start: int  # first token to load (vLLM already holds [0, start))
    block_ids: list[int]


@dataclass
class SaveSpec:
    req_id: str
    tokens: list[int]  # prompt tokens [0, end), end block-aligned
    start: int  # chunk-aligned: chunks before it are known to be cached
    block_ids: list[int]


@dataclass
class HitrateConnectorMetadata(KVConnectorMetadata):
    loads: list[LoadSpec] = field(default_factory=list)
    saves: list[SaveSpec] = field(default_factory=list)


@dataclass
class _Tracked:
    tokens: list[int]
    block_ids: list[int]
    loaded_end: int = 0
    saved: bool = False
    request: Any = None  # vLLM's Request (its all_token_ids grows as tokens are sampled)
    decode_saved_end: int = 0  # save_decode_cache: chunk-aligned end of what was saved


_engines: dict[tuple[Any, ...], KVEngine] = {}
_engines_lock = threading.Lock()


def shared_engine(namespace: KVNamespace, settings: Any) -> KVEngine:
    """One engine per (namespace, settings) per process: vLLM builds a scheduler-side
    and a worker-side connector, which share the CPU tier when they share a process."""
    from hitrate.kv.settings import build_tiers

    key = (namespace, settings.model_dump_json())
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = KVEngine(namespace, build_tiers(settings), token_axis=TOKEN_AXIS,
                              chunk_size=settings.chunk_size, store_partial=settings.store_partial)
            _engines[key] = engine
        return engine


def _layer_order(name: str) -> tuple[int, str]:
    numbers = re.findall(r"\.(\d+)\.", name)
    return (int(numbers[0]) if numbers else -1, name)


def _slots(block_ids: list[int], start: int, end: int, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    positions = torch.arange(start, end)
    blocks = torch.tensor(block_ids, dtype=torch.long)[positions // block_size]
    return blocks, positions % block_size


class HitrateConnector(KVConnectorBase_V1):
    """hitrate's KV engine behind vLLM's v1 KV connector interface (role kv_both)."""

    def __init__(self, vllm_config: VllmConfig, role: KVConnectorRole,
                 kv_cache_config: KVCacheConfig | None = None):
        super().__init__(vllm_config=vllm_config, role=role, kv_cache_config=kv_cache_config)
        extra = dict(self._kv_transfer_config.kv_connector_extra_config or {})
        from hitrate.kv.settings import connector_settings

        self.settings = connector_settings(extra)
        if self.settings.blend:
            # Nearest real thing: vLLM computes a request's tokens from num_computed_tokens
            # on, so a connector can only supply a prefix; segments after fresh text would
            # need the model runner to recompute selected tokens (LMCache patches it).
            log.warning("hitrate: kv.blend is set, but vLLM's KV connector interface can only supply a "
                        "prompt prefix; this connector does prefix reuse. Blending runs on the "
                        "HuggingFace path (hitrate.kv.blend).")
        self.block_size = vllm_config.cache_config.block_size
        if self.settings.chunk_size % self.block_size:
            raise ValueError(f"hitrate: chunk_size {self.settings.chunk_size} must be a multiple of "
                             f"vLLM's block_size {self.block_size}")
        model = vllm_config.model_config
        model_id = extra.get("model_id") or f"{model.model}@{model.revision or ''}"
        cache_dtype = vllm_config.cache_config.cache_dtype
        dtype = str(model.dtype).removeprefix("torch.") if cache_dtype == "auto" else str(cache_dtype)
        from vllm.platforms import current_platform

        tp_size = vllm_config.parallel_config.tensor_parallel_size
        tp_rank = 0
        if role == KVConnectorRole.WORKER and tp_size > 1:
            from vllm.distributed.parallel_state import get_tensor_model_parallel_rank

            tp_rank = get_tensor_model_parallel_rank()
        # The scheduler looks up rank 0's chunks: every rank stores the same prefixes.
        self.namespace = KVNamespace(model=model_id, dtype=dtype,
                                     layout=f"vllm:{current_platform.device_type}:bs{self.block_size}:LTHC",
                                     tp_rank=tp_rank, tp_size=tp_size)
        self.engine = shared_engine(self.namespace, self.settings)
        if extra.get("metrics_port"):
            from hitrate.kv.metrics import serve

            serve(int(extra["metrics_port"]))
        # scheduler side
        self._tracked: dict[str, _Tracked] = {}
        self._requests: dict[str, Any] = {}  # save_decode_cache: request id -> Request
        self._load_plan: dict[str, int] = {}  # request id -> external tokens to load
        # worker side
        self._kv_caches: dict[str, torch.Tensor] = {}
        self._saving: dict[str, dict[str, torch.Tensor]] = {}
        self._load_errors: set[int] = set()
        log.info("hitrate KV connector (%s): namespace %s, chunk %d tokens, tiers %s", role.name,
                 self.namespace.id, self.settings.chunk_size, [t.name for t in self.engine.tiers])

    # -- scheduler side ----------------------------------------------------------

    def _usable(self, num_prompt: int) -> int:
        """Most tokens a hit may cover: block-aligned, and never the last prompt token."""
        return (num_prompt - 1) // self.block_size * self.block_size

    def _save_end(self, num_prompt: int) -> int:
        return num_prompt // self.block_size * self.block_size

    def get_num_new_matched_tokens(self, request: Request, num_computed_tokens: int
                                   ) -> tuple[int | None, bool]:
        """Scheduler, when it considers a waiting request. Asks the engine for the
        longest cached prefix (promoting it into the fast tiers)."""
        tokens = list(request.prompt_token_ids or [])
        if not tokens:
            return 0, False
        hit = self.engine.lookup(tokens[:self._save_end(len(tokens))])
        usable = min(hit, self._usable(len(tokens))) // self.block_size * self.block_size
        if usable <= num_computed_tokens:
            return 0, False
        return usable - num_computed_tokens, False

    def update_state_after_alloc(self, request: Request, blocks: KVCacheBlocks,
                                 num_external_tokens: int) -> None:
        """Scheduler, after it allocated blocks for the request's external tokens.
        (request.num_computed_tokens is not updated yet: the range is fixed in
        build_connector_meta, where the scheduled request carries local + external.)"""
        if num_external_tokens > 0:
            self._load_plan[request.request_id] = num_external_tokens
        if self.settings.save_decode_cache:
            self._requests[request.request_id] = request

    def build_connector_meta(self, scheduler_output: SchedulerOutput) -> KVConnectorMetadata:
        """Scheduler, once per step: which loads and saves the workers do this step."""
        meta = HitrateConnectorMetadata()
        scheduled = scheduler_output.num_scheduled_tokens
        for new in scheduler_output.scheduled_new_reqs:
            tracked = _Tracked(list(new.prompt_token_ids or []), list(new.block_ids[0]),
                               request=self._requests.pop(new.req_id, None))
            self._tracked[new.req_id] = tracked
            external = self._load_plan.pop(new.req_id, None)
            if external is not None:
                end = new.num_computed_tokens  # vLLM's own prefix hit + ours
                start = end - external
                tracked.loaded_end = end
                meta.loads.append(LoadSpec(new.req_id, tracked.tokens[:end], start, tracked.block_ids))
            done = new.num_computed_tokens + scheduled.get(new.req_id, 0)
            self._maybe_save(meta, new.req_id, tracked, done)
        cached = scheduler_output.scheduled_cached_reqs
        for i, req_id in enumerate(cached.req_ids):
            tracked = self._tracked.get(req_id)
            if tracked is None:
                continue
            new_ids = cached.new_block_ids[i]
            if new_ids is not None:
                if req_id in cached.resumed_req_ids:
                    tracked.block_ids = list(new_ids[0])
                    tracked.saved = False  # preempted: its blocks were freed
                else:
                    tracked.block_ids.extend(new_ids[0])
            computed = cached.num_computed_tokens[i] + scheduled.get(req_id, 0)
            self._maybe_save(meta, req_id, tracked, computed)
            self._maybe_save_decode(meta, req_id, tracked, computed)
        for req_id in scheduler_output.finished_req_ids:
            self._tracked.pop(req_id, None)
            self._load_plan.pop(req_id, None)
            self._requests.pop(req_id, None)
        return meta

    def _maybe_save_decode(self, meta: HitrateConnectorMetadata, req_id: str, tracked: _Tracked,
                           computed_after_step: int) -> None:
        """save_decode_cache: once the KV of generated tokens fills a whole chunk, save it
        (the blocks are still the request's; whole chunks only: a partial one could never
        match a longer prompt). Saved during the step that completes the chunk."""
        if tracked.request is None or not tracked.saved:
            return
        chunk = self.settings.chunk_size
        end = computed_after_step // chunk * chunk
        start = max(tracked.decode_saved_end, len(tracked.tokens) // chunk * chunk)
        if end <= start:
            return
        tokens = list(tracked.request.all_token_ids[:end])
        if len(tokens) < end or len(tracked.block_ids) * self.block_size < end:
            return  # not all known yet (should not happen: computed tokens are known)
        tracked.decode_saved_end = end
        meta.saves.append(SaveSpec(req_id, tokens, start, tracked.block_ids))

    def _maybe_save(self, meta: HitrateConnectorMetadata, req_id: str, tracked: _Tracked,
                    computed_after_step: int) -> None:
        if tracked.saved or computed_after_step < len(tracked.tokens):
            return  # the prompt's prefill is not complete after this step
        tracked.saved = True
        end = self._save_end(len(tracked.tokens))
        chunk = self.settings.chunk_size
        start = min(tracked.loaded_end // chunk * chunk, end // chunk * chunk)
        if end > start:
            meta.saves.append(SaveSpec(req_id, tracked.tokens[:end], start, tracked.block_ids))

    def request_finished(self, request: Request, block_ids: list[int]) -> tuple[bool, dict[str, Any] | None]:
        """Scheduler, once per finished request. Saves were taken at prefill time, so the
        blocks can be freed now."""
        self._tracked.pop(request.request_id, None)
        self._load_plan.pop(request.request_id, None)
        self._requests.pop(request.request_id, None)
        return False, None

    # -- worker side -------------------------------------------------------------

    def register_kv_caches(self, kv_caches: dict[str, torch.Tensor]) -> None:
        """Worker, once after the paged KV cache is allocated."""
        self._kv_caches = dict(kv_caches)

    def _layers(self, forward_context: ForwardContext) -> list[tuple[str, torch.Tensor]]:
        caches = self._kv_caches
        if not caches:
            caches = {name: layer.kv_cache for name, layer in forward_context.no_compile_layers.items()
                      if isinstance(getattr(layer, "kv_cache", None), torch.Tensor)}
        return sorted(caches.items(), key=lambda item: _layer_order(item[0]))

    def start_load_kv(self, forward_context: ForwardContext, **kwargs: Any) -> None:
        """Worker, before the forward pass: writes the planned prefixes into the paged
        cache. Synchronous; a chunk that cannot be read makes its blocks load errors
        (vLLM recomputes them)."""
        meta = self._get_connector_metadata()
        assert isinstance(meta, HitrateConnectorMetadata)
        if not meta.loads:
            return
        layers = self._layers(forward_context)
        for spec in meta.loads:
            end = len(spec.tokens)
            hit = self.engine.retrieve(spec.tokens)
            got = min(hit.num_tokens, end) // self.block_size * self.block_size
            if got < end:
                first_bad = max(got, spec.start) // self.block_size
                last = (end + self.block_size - 1) // self.block_size
                self._load_errors.update(spec.block_ids[first_bad:last])
            if got <= spec.start or hit.kv is None:
                continue
            kv = hit.kv
            if kv.shape[0] != len(layers) or tuple(kv.shape[2:]) != tuple(layers[0][1].shape[1::2]):
                log.warning("hitrate: cached KV shape %s does not fit the paged cache; not loading",
                            tuple(kv.shape))
                self._load_errors.update(spec.block_ids[spec.start // self.block_size:])
                continue
            blocks, offsets = _slots(spec.block_ids, spec.start, got, self.block_size)
            for index, (_, cache) in enumerate(layers):
                blocks_d, offsets_d = blocks.to(cache.device), offsets.to(cache.device)
                rows = kv[index, spec.start:got].to(device=cache.device, dtype=cache.dtype)
                cache[blocks_d, :, offsets_d] = rows
            log.debug("hitrate: loaded %d tokens for %s", got - spec.start, spec.req_id)

    def wait_for_layer_load(self, layer_name: str) -> None:
        """Worker, before each attention layer. Loads are complete in start_load_kv."""
        return

    def save_kv_layer(self, layer_name: str, kv_layer: torch.Tensor, attn_metadata: Any,
                      **kwargs: Any) -> None:
        """Worker, after each attention layer wrote this step's KV: copies the rows of
        requests whose prefill completed into host memory (must copy: the blocks are
        reused once the request finishes)."""
        meta = self._get_connector_metadata()
        assert isinstance(meta, HitrateConnectorMetadata)
        for spec in meta.saves:
            blocks, offsets = _slots(spec.block_ids, spec.start, len(spec.tokens), self.block_size)
            rows = kv_layer[blocks.to(kv_layer.device), :, offsets.to(kv_layer.device)]
            self._saving.setdefault(spec.req_id, {})[layer_name] = rows.to("cpu", copy=True)

    def wait_for_save(self) -> None:
        """Worker, once per step after the forward pass: hands complete requests to the
        engine's write-behind queue (returns without waiting for the writes)."""
        if not self.has_connector_metadata():
            return
        meta = self._get_connector_metadata()
        assert isinstance(meta, HitrateConnectorMetadata)
        for spec in meta.saves:
            per_layer = self._saving.pop(spec.req_id, None)
            if not per_layer:
                continue
            kv = torch.stack([t for _, t in sorted(per_layer.items(), key=lambda i: _layer_order(i[0]))])
            self.engine.store(spec.tokens, kv, start=spec.start)
        self._saving.clear()

    def get_block_ids_with_load_errors(self) -> set[int]:
        """Worker, after a step: blocks whose planned load failed (recomputed by vLLM)."""
        errors, self._load_errors = self._load_errors, set()
        return errors

    def shutdown(self) -> None:
        """Worker/scheduler, at shutdown: flush pending writes."""
        self.engine.flush()
