"""Losses, accuracies by label and the probes, on a fixed evaluation batch (SCIENCE §2, §4.1, §4.2).

Labels split the targets by what can predict them (SCIENCE §2): ``0`` the global bigram,
``1`` a trigger's first firing (unpredictable), ``≥ 2`` the in-context targets.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inductionlab.models.amt import AMTransformer
from inductionlab.probes.attention import attention_probes
from inductionlab.probes.memory import memory_probes
from inductionlab.tasks.bigram import TriggerBatch

LABEL_GROUPS = {"global": lambda lab: lab == 0, "first": lambda lab: lab == 1, "in_context": lambda lab: lab >= 2}


def in_context_positions(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Positions with label ≥ 2, packed per row: ``(positions (B, Tq), valid (B, Tq) bool)``.

    Rows with fewer in-context targets than ``Tq`` are padded (``valid`` False) so the last layer
    can compute queries only where the in-context loss reads them.
    """
    mask = labels >= 2
    counts = mask.sum(dim=1)
    width = max(int(counts.max().item()), 1)
    order = torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices[:, :width]
    valid = torch.arange(width, device=labels.device) < counts[:, None]
    return order, valid


def training_loss(model: nn.Module, batch: TriggerBatch, loss_on: str, buckets: int = 8) -> Tensor:
    """Mean cross-entropy on the in-context targets (label ≥ 2) or on every target (SCIENCE §2).

    The in-context loss reads only the positions with label ≥ 2, so the last layer computes its
    queries only there. Rows differ in how many such positions they have (a degenerate sequence
    has nearly all), so rows are sorted by that count and cut into ``buckets`` groups, each padded
    only to its own longest row. The loss is the same as on the full logits; only the work shrinks.
    """
    if loss_on == "all":
        logits = model(batch.inputs)
        return F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten())
    counts = (batch.labels >= 2).sum(dim=1)
    total = torch.zeros((), device=batch.tokens.device)
    for rows in torch.argsort(counts).chunk(buckets):
        labels = batch.labels[rows]
        positions, valid = in_context_positions(labels)
        logits = model(batch.inputs[rows], query_positions=positions)
        targets = torch.gather(batch.targets[rows], 1, positions)
        losses = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
        total = total + (losses * valid.flatten()).sum()
    return total / counts.sum().clamp_min(1)


@torch.no_grad()
def label_metrics(model: nn.Module, batch: TriggerBatch, bigram: Tensor, chunk: int = 64) -> dict[str, float]:
    """Loss and accuracy per label group, plus the bigram's own loss on the global targets."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    bigram = bigram.to(batch.tokens.device)
    for start in range(0, batch.tokens.shape[0], chunk):
        tokens, labels = batch.tokens[start : start + chunk], batch.labels[start : start + chunk]
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        logits = model(inputs)
        losses = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view_as(targets)
        correct = (logits.argmax(-1) == targets).float()
        optimal = -torch.log(bigram[inputs, targets].clamp_min(1e-30))
        for name, select in LABEL_GROUPS.items():
            m = select(labels)
            counts[name] = counts.get(name, 0) + int(m.sum())
            sums[f"loss_{name}"] = sums.get(f"loss_{name}", 0.0) + losses[m].sum().item()
            sums[f"acc_{name}"] = sums.get(f"acc_{name}", 0.0) + correct[m].sum().item()
        m = labels == 0
        sums["loss_global_bigram_optimum"] = sums.get("loss_global_bigram_optimum", 0.0) + optimal[m].sum().item()
        counts["all"] = counts.get("all", 0) + labels.numel()
        sums["loss_all"] = sums.get("loss_all", 0.0) + losses.sum().item()
    out = {}
    for key, total in sums.items():
        group = "global" if key == "loss_global_bigram_optimum" else key.split("_", 1)[1]
        out[key] = total / counts[group] if counts[group] else math.nan
    return out


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batch: TriggerBatch,
    bigram: Tensor,
    train_len: int,
    fixed_triggers: Tensor | None,
    probe_batch: int = 32,
) -> dict[str, float]:
    """Every metric logged at an evaluation step: label metrics, §4.1 and §4.2 probes."""
    out = label_metrics(model, batch, bigram)
    if isinstance(model, AMTransformer):
        out.update(memory_probes(model, train_len, fixed_triggers, bigram, eval_len=batch.labels.shape[1]))
    out.update(attention_probes(model, batch.tokens[:probe_batch], batch.labels[:probe_batch]))
    return out
