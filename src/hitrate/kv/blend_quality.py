"""How far a blended prefill (or a prefill on lossy-serde KV) is from a full one:
next-token KL divergence and top-1 agreement over a continuation (used by the tests,
`benchmarks/kv_blend.py` and `benchmarks/kv.py`).

The continuation is the full prefill's own greedy answer, fed to both caches (teacher
forcing), so the two are compared at the same positions even after a disagreement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass(slots=True)
class Reference:
    continuation: list[int]  # greedy tokens after the prompt
    logits: torch.Tensor  # [n, vocab]: logits that predicted each of them


@dataclass(slots=True)
class Agreement:
    kl_mean: float  # mean KL(full || blended) over the positions, nats
    kl_max: float
    top1: float  # share of positions where both pick the same next token
    positions: int

    def to_dict(self) -> dict[str, Any]:
        return {"kl_mean": round(self.kl_mean, 5), "kl_max": round(self.kl_max, 5),
                "top1": round(self.top1, 4), "positions": self.positions}


def reference(model: Any, ids: list[int], steps: int) -> Reference:
    """A full prefill of `ids` and `steps` greedy tokens after it."""
    import torch

    input_ids = torch.tensor([ids], device=model.device)
    with torch.no_grad():
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                             max_new_tokens=steps, min_new_tokens=steps, do_sample=False,
                             output_logits=True, return_dict_in_generate=True)
    tokens = out.sequences[0, len(ids):].tolist()
    return Reference(tokens, torch.stack([step[0] for step in out.logits]).float())


def continuation_logits(model: Any, first_logits: torch.Tensor, cache: Any,
                        continuation: list[int]) -> torch.Tensor:
    """Logits [n, vocab] predicting each continuation token, from a prompt's cache and
    its last-position logits (teacher forcing)."""
    import torch

    rows = [first_logits.float().reshape(1, -1)]
    if len(continuation) > 1:
        with torch.no_grad():
            out = model(input_ids=torch.tensor([continuation[:-1]], device=model.device),
                        past_key_values=cache, use_cache=True)
        rows.append(out.logits[0].float())
    return torch.cat(rows)


def agreement(reference_logits: torch.Tensor, logits: torch.Tensor) -> Agreement:
    import torch

    ref = torch.log_softmax(reference_logits.float(), dim=-1)
    got = torch.log_softmax(logits.float(), dim=-1)
    kl = (ref.exp() * (ref - got)).sum(dim=-1).clamp_min(0)
    same = (reference_logits.argmax(dim=-1) == logits.argmax(dim=-1)).float()
    return Agreement(float(kl.mean()), float(kl.max()), float(same.mean()), int(kl.numel()))


def prompt_kv(model: Any, ids: list[int]) -> torch.Tensor:
    """The KV of `ids[:-1]` from a plain prefill, as one "hf:L2HTD" tensor (a copy)."""
    import torch

    from hitrate.kv import hf

    cache = hf.cache_from_kv(None, model.config)
    with torch.no_grad():
        model(input_ids=torch.tensor([ids[:-1]], device=model.device), past_key_values=cache,
              use_cache=True, logits_to_keep=1)
    return hf.kv_slicer(cache)(0, len(ids) - 1).clone()


def with_prompt_kv(model: Any, ids: list[int], kv: torch.Tensor, ref: Reference) -> Agreement:
    """How close the answer stays when the KV of `ids[:-1]` is `kv` (e.g. after a lossy
    serde) instead of the model's own: the last prompt token and the reference
    continuation are computed on top of it."""
    import torch

    from hitrate.kv import hf

    cache = hf.cache_from_kv(kv, model.config)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids[-1:]], device=model.device), past_key_values=cache,
                    use_cache=True, logits_to_keep=1)
    return agreement(ref.logits, continuation_logits(model, out.logits[0, -1], cache, ref.continuation))
