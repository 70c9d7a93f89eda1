"""KV-shifting attention, shared by both model families (docs/science.md §3.3).

Each key and value is mixed with its predecessor before attention (and before any rotary
rotation)::

    k̂_s = α1·k_s + α2·k_{s−1}        v̂_s = β1·v_s + β2·v_{s−1}        (k_{−1} = v_{−1} = 0)

with four learnable scalars per head, stored as one tensor ``(…, 4)`` in the order of
:data:`~inductionlab.models.names.KV_SHIFT_SCALARS`: ``[α1, α2, β1, β2]``, initialised
``α1, β1 ~ U(0, 1)``, ``α2 = 1 − α1``, ``β2 = 1 − β1``.

The shift is linear and acts along the key axis only, so besides shifting the keys and values
themselves (:func:`shift_sequence`) it can be moved onto what attention already computes, which
is how the associative-memory transformer keeps its table lookups:

- scores: ``q·k̂_s = α1 (q·k_s) + α2 (q·k_{s−1})``, the content scores shifted one key to the right
  (:func:`shift_key_scores`; a positional term on ``t − s`` is added after, unshifted);
- values: ``Σ_s β_s v̂_s = Σ_s (β1 β_s + β2 β_{s+1}) v_s``, the pattern shifted one key to the left
  (:func:`shift_value_weights`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def initial_scalars(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """``[α1, α2, β1, β2]`` of shape ``(*shape, 4)`` drawn as docs/science.md §3.3 says."""
    first = torch.rand(*shape, 2, generator=generator)  # α1, β1
    return torch.stack((first[..., 0], 1 - first[..., 0], first[..., 1], 1 - first[..., 1]), dim=-1)


def shift_sequence(x: Tensor, first: Tensor, second: Tensor) -> Tensor:
    """``first·x_s + second·x_{s−1}`` along the second-to-last axis of ``x`` (…, T, k), ``x_{−1} = 0``;
    ``first``/``second`` broadcast against ``x``."""
    previous = F.pad(x[..., :-1, :], (0, 0, 1, 0))
    return first * x + second * previous


def shift_key_scores(scores: Tensor, alpha1: Tensor, alpha2: Tensor) -> Tensor:
    """Content scores ``q_t·k_s`` (…, Tq, T) → ``q_t·k̂_s = α1 q_t·k_s + α2 q_t·k_{s−1}`` (the score of key
    ``−1`` is 0); the scalars broadcast against ``scores``."""
    return alpha1 * scores + alpha2 * F.pad(scores[..., :-1], (1, 0))


def shift_value_weights(pattern: Tensor, beta1: Tensor, beta2: Tensor) -> Tensor:
    """Attention ``β_ts`` (…, Tq, T) on the shifted values → the weights on the unshifted ones,
    ``β1 β_ts + β2 β_{t,s+1}`` (so that ``Σ_s β_ts v̂_s = Σ_s w_ts v_s``)."""
    return beta1 * pattern + beta2 * F.pad(pattern[..., 1:], (0, 1))
