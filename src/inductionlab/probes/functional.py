"""Functional milestones of the memories (docs/science.md §6 "birth"): does a memory *work*?

The argmax probes of §4.1 (probes/memory.py) are scale-free: from zero init they report the direction of a
matrix that is still almost zero. A memory works when it moves the model's attention or output, so each
matrix gets a measurement on data that isolates it, with the rest of the circuit made ideal by a clamp at
evaluation (docs/science.md §8, interventions.py):

- ``fn_wk1`` (``W_K¹``): the layer-1 attention mass on the previous token, mean over query positions
  ``1 ≤ t < 64``;
- ``fn_wk2`` (``W_K²``): with layer 1 clamped to the perfect previous-token pattern, the last layer's attention
  mass from an in-context query (label ``c ≥ 2``) onto the keys that follow an earlier occurrence of its
  trigger (``z_{s−1} = z_t``); this no longer needs ``W_K¹``;
- ``fn_wo`` (``W_O²``): with the last layer's pattern replaced by the perfect induction pattern, the accuracy on
  the in-context targets: what ``W_O²`` copies once attention is right.

A memory is *formed* when its measurement reaches ½. Queries are taken at positions ``t < 64`` at every
training length (:data:`QUERY_LIMIT`), so that half the mass needs the same score gap at ``T = 64`` and at
``T = 256``: uniform attention over ``t + 1`` keys gives any one key ``1/(t + 1)``, and the right key's score
must lead the others by about ``ln t`` to take half. Each measurement has a ``_chance`` companion: what uniform
attention (for the masses) or a uniform guess (for ``fn_wo``) scores on the same rows.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from inductionlab.errors import ConfigError
from inductionlab.interventions import clamp_hook
from inductionlab.models.names import hook_name
from inductionlab.probes.attention import attention_probes

QUERY_LIMIT = 64  # query positions t < 64 at every T
FORMED = 0.5  # a memory is formed when its measurement reaches ½
FUNCTIONAL = ("fn_wo", "fn_wk2", "fn_wk1")  # the measurements, in the order of the memories wo, wk2, wk1


def _mass(pattern: Tensor, b: Tensor, t: Tensor, keys: Tensor) -> float:
    """Mean over the queries ``(b, t)`` of the attention mass on ``keys`` ((n, T) bool), best head."""
    rows = pattern[b, :, t].float()  # (n, H, T)
    return (rows * keys[:, None]).sum(-1).mean(0).max().item()


@torch.no_grad()
def functional_probes(model: nn.Module, tokens: Tensor, labels: Tensor, query_limit: int = QUERY_LIMIT
                      ) -> dict[str, float]:
    """The three functional measurements of the module docstring on a batch of the bigram task.

    model: a model with at least two layers and the hook points of models/names.py (the stored model, without
    the run's evaluation-time interventions). tokens: (B, T+1) int64; labels: (B, T) int64 (0 = bigram target,
    ``c ≥ 1`` = the c-th firing of the trigger that is the input at ``t``), as in probes/attention.py. Only the
    first ``query_limit + 1`` tokens are read: a causal model's outputs at ``t < query_limit`` do not depend on
    later ones. Returns an empty dict for a one-layer model.
    """
    if tokens.dim() != 2 or labels.shape != (tokens.shape[0], tokens.shape[1] - 1):
        raise ConfigError(f"functional_probes: tokens must be (batch, T+1) and labels (batch, T); got "
                          f"{tuple(tokens.shape)} and {tuple(labels.shape)}")
    if model.n_layers < 2:
        return {}
    last = model.n_layers - 1
    inputs, targets = tokens[:, :query_limit], tokens[:, 1:query_limit + 1]
    labels = labels[:, :query_limit].to(inputs.device)
    seq_len = inputs.shape[1]
    positions = torch.arange(seq_len, device=inputs.device)
    out: dict[str, float] = {}

    # W_O²: the last layer attends as a perfect induction head; layer 1 as the model has it (read for W_K¹ too)
    cache: dict[str, Tensor] = {}
    logits = model(inputs, cache=cache, hooks={hook_name("pattern", last): clamp_hook("induction")})
    b, t = (labels >= 2).nonzero(as_tuple=True)
    hit = (logits[b, t].argmax(-1) == targets[b, t]).float()
    out["fn_wo"] = hit.mean().item() if t.numel() else float("nan")
    out["fn_wo_chance"] = 1.0 / logits.shape[-1]

    # W_K¹: layer-1 attention on the previous token at every query 1 ≤ t < query_limit
    qb, qt = torch.meshgrid(torch.arange(inputs.shape[0], device=inputs.device), positions[1:], indexing="ij")
    qb, qt = qb.flatten(), qt.flatten()
    prev = positions[None, :] == (qt - 1)[:, None]  # (n, T)
    out["fn_wk1"] = _mass(cache[hook_name("pattern", 0)], qb, qt, prev)
    out["fn_wk1_chance"] = (1.0 / (positions[1:] + 1).double()).mean().item() if seq_len > 1 else float("nan")

    # W_K²: layer 1 clamped to the perfect previous-token pattern; the last layer's mass on z_{s-1} = z_t is the
    # attention probe attn2_induction of that forward (probes/attention.py), on the same window
    clamped = {hook_name("pattern", 0): clamp_hook("previous-token")}
    window = attention_probes(model, tokens[:, :query_limit + 1], labels,
                              forward=lambda x, cache=None: model(x, cache=cache, hooks=clamped))
    out["fn_wk2"], out["fn_wk2_chance"] = window["attn2_induction"], window["attn2_induction_chance"]
    return out
