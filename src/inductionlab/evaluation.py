"""The training loss (docs/science.md §2).

What an evaluation step logs belongs to the task (``Task.evaluate``: tasks/bigram_task.py for the bigram task,
docs/science.md §2, §4; tasks/markov.py for in-context Markov chains, §10). The loss here reads a batch only
through its ``loss_mask``; the bigram task at any sequence length is tasks/bigram_length.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from inductionlab.models.hooks import Forward
from inductionlab.tasks.base import Batch


def in_context_positions(mask: Tensor) -> tuple[Tensor, Tensor]:
    """Positions where ``mask`` (B, T) bool holds, packed per row: ``(positions (B, Tq), valid (B, Tq) bool)``.

    Rows with fewer such targets than ``Tq`` are padded (``valid`` False) so the last layer
    can compute queries only where the in-context loss reads them.
    """
    counts = mask.sum(dim=1)
    width = max(int(counts.max().item()), 1)
    order = torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices[:, :width]
    valid = torch.arange(width, device=mask.device) < counts[:, None]
    return order, valid


def training_loss(model: Forward, batch: Batch, loss_on: str, buckets: int = 8) -> Tensor:
    """Mean cross-entropy on the targets of the batch's ``loss_mask`` (``in-context``; for the bigram task the
    labels ≥ 2) or on every target (``all``) (docs/science.md §2).

    The in-context loss reads only the masked positions, so the last layer computes its
    queries only there. Rows differ in how many such positions they have (a degenerate sequence
    has nearly all), so rows are sorted by that count and cut into ``buckets`` row groups
    (models/hooks.py), each padded only to its own longest row; the layers below the last run once
    for the whole batch. The loss is the same as on the full logits; only the work shrinks.
    ``model``: the model, or a callable with its signature running interventions (docs/science.md §8).
    """
    if loss_on == "all":
        logits = model(batch.inputs)
        return F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten())
    order = torch.argsort(batch.loss_mask.sum(dim=1))
    mask, targets = batch.loss_mask[order], batch.targets[order]
    groups = [in_context_positions(rows) for rows in mask.split(-(-len(order) // buckets))]
    logits = model(batch.inputs[order], query_positions=[positions for positions, _ in groups])
    total = torch.zeros((), device=batch.tokens.device)
    split_targets = targets.split([len(valid) for _, valid in groups])
    for (positions, valid), group_logits, group_targets in zip(groups, logits, split_targets, strict=True):
        picked = torch.gather(group_targets, 1, positions)
        losses = F.cross_entropy(group_logits.flatten(0, 1), picked.flatten(), reduction="none")
        total = total + (losses * valid.flatten()).sum()
    return total / mask.sum().clamp_min(1)
