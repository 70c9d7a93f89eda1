"""Progress measures logged at every evaluation step (docs/science.md §9).

Beside the losses, accuracies and probes already logged, a run records on the same time axis:

- the **in-context learning score** (Olsson et al. 2022): the loss at a late position minus the
  loss at an early one, ``L(⌊0.9 T⌋) − L(⌊0.1 T⌋)``, over all targets (``icl_score``) and over the
  in-context targets only (``icl_score_in_context``; the mean loss of in-context targets in the last
  tenth of the positions minus that in the first tenth, where single positions hold too few);
  negative when the model predicts better later in the context;
- the **attention entropy** of every layer and head, ``attn_entropy_L{l}H{h}`` (nats, mean over the
  query positions of the batch; 0-based layer and head as in the hook names);
- the **task head scores** of :func:`~inductionlab.probes.attention.task_head_scores` per head,
  ``head_prev_token_L{l}H{h}`` and ``head_induction_L{l}H{h}``;
- the Frobenius **norm of every trained matrix**, ``norm_{name}``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inductionlab.models.names import hook_name
from inductionlab.probes.attention import head_scores_on_cache, run_with_cache


@torch.no_grad()
def progress_measures(model: nn.Module, tokens: Tensor, labels: Tensor,
                      forward: Callable[..., Tensor] | None = None,
                      ran: tuple[Tensor, dict[str, Tensor]] | None = None) -> dict[str, float]:
    """docs/science.md §9 measures on sequences of the task: tokens (B, T+1), labels (B, T).

    ``forward`` runs the model (with the interventions of the current step, if any); default ``model``.
    ``ran``: the ``(logits, cache)`` of a forward already run on ``tokens[:, :-1]``.
    """
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    labels = labels.to(inputs.device)
    logits, cache = ran if ran is not None else run_with_cache(forward or model, inputs)
    losses = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view_as(targets)
    seq_len = inputs.shape[1]
    early, late = int(0.1 * seq_len), min(int(0.9 * seq_len), seq_len - 1)
    out = {"icl_score": (losses[:, late].mean() - losses[:, early].mean()).item()}
    in_context = labels >= 2
    tenth = max(seq_len // 10, 1)
    first, last = in_context[:, :tenth], in_context[:, -tenth:]
    out["icl_score_in_context"] = ((losses[:, -tenth:][last].mean() - losses[:, :tenth][first].mean()).item()
                                   if first.any() and last.any() else math.nan)
    for layer in range(model.n_layers):
        pattern = cache[hook_name("pattern", layer)].float()  # (B, H, T, T)
        entropy = -(pattern * pattern.clamp_min(1e-30).log()).sum(-1).mean((0, 2))  # (H,)
        for head, value in enumerate(entropy.tolist()):
            out[f"attn_entropy_L{layer}H{head}"] = value
    scores = head_scores_on_cache(cache, inputs, labels, model.n_layers)
    for kind, key in (("previous_token", "head_prev_token"), ("induction", "head_induction")):
        for (layer, head), value in _per_head(scores[kind]):
            out[f"{key}_L{layer}H{head}"] = value
    for name, param in model.named_parameters():
        out[f"norm_{name}"] = param.detach().float().norm().item()
    return out


def _per_head(table: Tensor):
    for layer in range(table.shape[0]):
        for head in range(table.shape[1]):
            yield (layer, head), table[layer, head].item()
