"""Positional encodings shared by both model families (docs/science.md §3.1).

Each encoding is a few lines of tensor algebra; the models decide where to apply them:

- ``ape``: a frozen random vector ``p_t`` added to the token embedding, ``t < max_len``.
- ``ape-sincos``: the same with sinusoidal ``p_t``.
- ``rpe``: relative keys (Shaw et al. 2018), ``S_ts += c·q_tᵀ W_K r_{min(t-s, δmax)}``.
- ``bias``: a trained scalar per clipped distance added to the scores (T5/ALiBi family).
- ``rope``: rotary position embedding on queries and keys.
- ``none``: no positional information (NoPE).

Positions are 0-based in code (``t = 0..T-1``); docs/science.md writes them 1-based. The list of
encodings lives in models/names.py.
"""

from __future__ import annotations

import math

import torch


def sincos_table(max_len: int, d: int) -> torch.Tensor:
    """Sinusoidal positions ``(max_len, d)`` float32, scaled to unit norm per row.

    The classic Vaswani table has norm ``√(d/2)``; dividing by it keeps ``p_t`` on the same
    scale as the unit-norm token embeddings of the ``theory`` init.
    """
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, d, 2, dtype=torch.float64) / d)
    table = torch.zeros(max_len, d, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)[:, : d // 2]
    return (table / math.sqrt(d / 2)).float()


def clipped_distances(query_pos: torch.Tensor, seq_len: int, max_dist: int) -> torch.Tensor:
    """Distance ``min(t - s, max_dist)`` for each query position ``t`` and key ``s < seq_len``.

    query_pos: (..., Tq) int64.  Returns (..., Tq, seq_len) int64; entries with ``s > t``
    (masked by causality anyway) are clipped to 0.
    """
    keys = torch.arange(seq_len, device=query_pos.device)
    return (query_pos[..., :, None] - keys).clamp(0, max_dist)


def causal_mask(query_pos: torch.Tensor, seq_len: int) -> torch.Tensor:
    """``True`` where key ``s`` may be attended from query position ``t`` (``s ≤ t``).

    query_pos: (..., Tq) int64.  Returns (..., Tq, seq_len) bool.
    """
    keys = torch.arange(seq_len, device=query_pos.device)
    return keys <= query_pos[..., :, None]


def causal_bias(query_pos: torch.Tensor, seq_len: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """:func:`causal_mask` as an additive bias: ``0`` where key ``s`` may be attended, ``-inf`` where ``s > t``.

    ``scores + causal_bias(...)`` equals ``scores.masked_fill(~causal_mask(...), -inf)`` for finite scores, bit for
    bit, and costs a broadcast add instead of a broadcast masked fill (several times slower on the CPU); its
    backward passes the gradient through unchanged (the softmax already gives zero where the probability is).
    query_pos: (..., Tq) int64.  Returns (..., Tq, seq_len) of ``dtype``.
    """
    zero = torch.zeros((), dtype=dtype, device=query_pos.device)
    return torch.where(causal_mask(query_pos, seq_len), zero, float("-inf"))


def rope_angles(positions: torch.Tensor, d: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines and sines ``(..., T, d // 2)`` of the rotary angles for ``positions`` (..., T)."""
    inv_freq = base ** (-torch.arange(0, d - d % 2, 2, device=positions.device, dtype=torch.float32) / d)
    angles = positions.to(torch.float32)[..., None] * inv_freq
    return angles.cos(), angles.sin()


def rope_rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive pairs of the last dim of ``x`` (..., T, d) by the given angles.

    With ``d`` odd the last coordinate is left as it is.  ``(R_t q)ᵀ (R_s k)`` depends on
    ``t - s`` only, which is what makes RoPE a relative encoding.
    """
    half = cos.shape[-1]
    x1, x2 = x[..., 0 : 2 * half : 2], x[..., 1 : 2 * half : 2]
    rotated = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)
    if x.shape[-1] > 2 * half:
        rotated = torch.cat((rotated, x[..., 2 * half :]), dim=-1)
    return rotated
