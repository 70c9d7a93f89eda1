"""The null of the plateau claim (docs/science.md §7.1, §10): a path that goes straight from uniform to Bayes.

A loss curve that falls from ``L_uniform`` to ``L_Bayes`` passes ``L_unigram`` on its way whatever the
model does, and a curve that flattens there spends time near it. The plateau claim says more: that the
model *implements the unigram strategy* while it sits there. Its null keeps the model's own loss curve
and takes the mechanism away: at every evaluation step the predictor

    p_t = (1 − λ_t) · uniform + λ_t · Bayes,

a mixture of the two strategies that never passes through the unigram one, with ``λ_t`` chosen so that
``p_t``'s loss on the evaluation batch equals the model's loss at that step. The plateau of that path,
measured with the same definition (:func:`~.run.plateau_share`, :func:`~.run.left_for_bayes`), is what
the loss curve alone would score.

The mixture's loss ``L(λ) = mean −log((1 − λ)/k + λ·p_Bayes(z_{t+1}))`` is convex in ``λ``; it falls
from ``L(0) = L_uniform`` to its minimum ``L(λ*)`` (``λ* ≤ 1``, near 1), and ``λ_t`` is found on
``[0, λ*]`` by bisection, every step at once; a model loss above ``L(0)`` gives ``λ = 0``, one below
``L(λ*)`` gives ``λ*``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from inductionlab.experiments.kit.curves import evaluations
from inductionlab.tasks.markov import MarkovBatch, reference_probs

BISECTIONS = 60  # halvings of [0, 1]: λ to double precision


def mixture_loss(lam: Tensor, p_target: Tensor, k: int) -> Tensor:
    """``L(λ)`` for each ``λ`` of ``lam`` (S,): the mean of ``−log((1 − λ)/k + λ·p_target)`` over the targets
    ``p_target`` (N,), the Bayes predictor's probability of each next token: (S,) float64."""
    return -torch.log((1 - lam[:, None]) / k + lam[:, None] * p_target[None]).mean(-1)


def matching_weights(losses: Tensor, p_target: Tensor, k: int) -> Tensor:
    """The ``λ_t`` (S,) whose mixture loss equals each model loss of ``losses`` (S,) (module docstring)."""
    grid = torch.linspace(0, 1, 1001, dtype=torch.float64)
    lam_star = grid[mixture_loss(grid, p_target, k).argmin()]  # the bottom of a convex curve, to 1e-3
    low, high = torch.zeros_like(losses), torch.full_like(losses, float(lam_star))
    for _ in range(BISECTIONS):
        mid = (low + high) / 2
        above = mixture_loss(mid, p_target, k) > losses  # the mixture still loses more: move towards Bayes
        low, high = torch.where(above, mid, low), torch.where(above, high, mid)
    return (low + high) / 2


def straight_path(rows: list[dict[str, Any]], batch: MarkovBatch, k: int, alpha: float) -> list[dict[str, Any]]:
    """The null path of a run's evaluation rows ``rows`` on its evaluation batch ``batch``: one row per
    evaluation step with ``step``, ``lambda``, ``loss_in_context`` (the model's) and ``loss_path`` (the
    mixture's, equal to it unless clamped at an end of ``[0, λ*]``), and the KLs the
    plateau reads, ``kl_unigram`` = KL(unigram ‖ p_t), ``kl_bayes`` = KL(Bayes ‖ p_t) and
    ``kl_unigram_to_bayes``, averaged over the positions with a complete context as the trainer logs them."""
    evals = evaluations(rows)
    start = batch.order - 2
    refs = {name: p[:, start:] for name, p in reference_probs(batch, k, alpha).items()}  # (B, T', k) float64
    bayes, unigram = refs["bayes"], refs["unigram"]
    p_target = torch.gather(bayes, 2, batch.targets[:, start:, None]).flatten()
    losses = torch.tensor([r["loss_in_context"] for r in evals], dtype=torch.float64)
    lam = matching_weights(losses, p_target, k)
    matched = mixture_loss(lam, p_target, k).tolist()
    out = []
    kappa = (unigram * (unigram.log() - bayes.log())).sum(-1).mean().item()
    for row, weight, loss in zip(evals, lam.tolist(), matched, strict=True):
        log_path = torch.log((1 - weight) / k + weight * bayes)
        out.append({"step": row["step"], "lambda": weight, "loss_in_context": row["loss_in_context"], "loss_path": loss,
                    "kl_unigram": (unigram * (unigram.log() - log_path)).sum(-1).mean().item(),
                    "kl_bayes": (bayes * (bayes.log() - log_path)).sum(-1).mean().item(),
                    "kl_unigram_to_bayes": kappa})
    return out
