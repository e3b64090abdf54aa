"""Moving cached keys to new positions (RoPE re-rotation).

Rotary embeddings rotate each (i, i + D/2) pair of a key by position * inv_freq[i].
Rotations compose, R(p + d) = R(d) R(p), so a key computed at position p is moved to
position p + d by rotating it again by d: no need to recompute it. Values carry no
position and are reused as they are.

Only "static" RoPE variants qualify: those whose inverse frequencies do not change with
the sequence length (default, linear, llama3, yarn; not dynamic NTK or longrope).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

STATIC_ROPE_TYPES = frozenset({"default", "linear", "llama3", "yarn"})


def rope_type(model: Any) -> str:
    rotary = model.model.rotary_emb
    return str(getattr(rotary, "rope_type", "default"))


def inverse_frequencies(model: Any) -> torch.Tensor:
    """The model's RoPE inverse frequencies ([D/2], float32), as its rotary module uses them."""
    return model.model.rotary_emb.inv_freq.detach().float()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    import torch

    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rerotate(keys: torch.Tensor, delta: int, inv_freq: torch.Tensor) -> torch.Tensor:
    """`keys` ([..., tokens, D], RoPE applied at some positions) moved by `delta` positions.

    The angle is computed in float64 and the rotation in float32, so moving a key costs
    less precision than HF's own float32 angles at large positions; the result has the
    keys' dtype."""
    import torch

    if delta == 0:
        return keys
    angles = float(delta) * inv_freq.to(device=keys.device, dtype=torch.float64)
    angles = torch.cat((angles, angles))
    cos = angles.cos().float()
    sin = angles.sin().float()
    k = keys.float()
    return (k * cos + rotate_half(k) * sin).to(keys.dtype)
