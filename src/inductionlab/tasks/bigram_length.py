"""The bigram-with-triggers task at any sequence length: in-context accuracy by position and by the distance to
a trigger's previous occurrence, and layer-1 previous-token attention (docs/science.md §2, §4.2, §6; the length
and nope3 experiments evaluate trained models beyond their training length with it).
"""

from __future__ import annotations

from typing import Any

import torch

from inductionlab.config import RunConfig
from inductionlab.models.names import hook_layers, hook_name
from inductionlab.tasks.bigram import TriggerBatch
from inductionlab.tasks.bigram_task import degenerate_shares
from inductionlab.tasks.build import make_task

DISTANCE_BUCKETS = ((1, 16), (17, 64), (65, 256), (257, 4096))


def previous_occurrence_distance(inputs: torch.Tensor, triggers: torch.Tensor) -> torch.Tensor:
    """For each position t whose input is a trigger, ``t − t'`` with t' its previous occurrence.

    inputs: (B, T) int64; triggers: (B, K).  Returns (B, T) int64, 0 where undefined.
    A loop over the K triggers only; positions are vectorised.
    """
    batch, seq_len = inputs.shape
    positions = torch.arange(seq_len, device=inputs.device).expand(batch, -1)
    out = torch.zeros_like(inputs)
    for k in range(triggers.shape[1]):
        hit = inputs == triggers[:, k : k + 1]
        last = torch.where(hit, positions, torch.full_like(positions, -1)).cummax(dim=1).values
        previous = torch.cat((torch.full_like(last[:, :1], -1), last[:, :-1]), dim=1)
        out = torch.where(hit & (previous >= 0), positions - previous, out)
    return out


@torch.no_grad()
def evaluate_length(model, batch: TriggerBatch, train_len: int, chunk: int = 16) -> dict[str, Any]:
    """In-context accuracy by position bucket and distance, and layer-1 previous-token attention.

    Accuracies are over the non-degenerate sequences (``acc_in_context_all``: over all), beside the
    share of rows and of in-context targets that degenerate sequences make up. A target at query
    position ``t`` is *before* ``T_train`` (``t < train_len``) or *beyond* it; a target beyond is split by
    where its induction key lies (the position after the trigger's previous occurrence, the one layer 2
    must find through layer 1's previous-token memory, docs/science.md §4.4 (iv)): *query beyond, key
    inside* (key ``< train_len``) or *both beyond*, with the number of targets each part rests on.
    """
    correct, labels, distance, prev_hit = [], [], [], []
    for start in range(0, batch.tokens.shape[0], chunk):
        tokens = batch.tokens[start : start + chunk]
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        cache: dict = {}
        logits = model(inputs, cache=cache)
        correct.append(logits.argmax(-1) == targets)
        labels.append(batch.labels[start : start + chunk])
        distance.append(previous_occurrence_distance(inputs, batch.triggers[start : start + chunk]))
        prev_hit.append(previous_token_hits(cache, inputs.shape[1]))
    correct, labels, distance = torch.cat(correct), torch.cat(labels), torch.cat(distance)
    prev_hit = torch.cat(prev_hit).float()[~batch.degenerate.to(prev_hit[0].device)]  # (B', T-1), non-degenerate
    seq_len = labels.shape[1]
    in_context_all = labels >= 2
    in_context = in_context_all & ~batch.degenerate[:, None].to(labels.device)  # docs/science.md §6: non-degenerate
    positions = torch.arange(seq_len, device=labels.device).expand_as(labels)

    # the induction key of a target at query t: the position after the trigger's previous occurrence t − d
    key_positions = positions - distance + 1
    query_beyond, key_beyond = positions >= train_len, key_positions >= train_len

    def acc(mask: torch.Tensor) -> float | None:
        return correct[mask].float().mean().item() if mask.any() else None

    out: dict[str, Any] = {
        "acc_in_context": acc(in_context),
        "acc_in_context_all": acc(in_context_all),
        "acc_in_context_before_train_len": acc(in_context & ~query_beyond),
        "acc_in_context_beyond_train_len": acc(in_context & query_beyond),
        "acc_in_context_query_beyond_key_inside": acc(in_context & query_beyond & ~key_beyond),
        "acc_in_context_both_beyond": acc(in_context & key_beyond),
        "targets_query_beyond_key_inside": int((in_context & query_beyond & ~key_beyond).sum()),
        "targets_both_beyond": int((in_context & key_beyond).sum()),
        "acc_in_context_by_distance": {f"{lo}-{hi}": acc(in_context & (distance >= lo) & (distance <= hi))
                                       for lo, hi in DISTANCE_BUCKETS},
        "layer1_prev_token_before_train_len": prev_hit[:, : train_len - 1].mean().item(),
    }
    if seq_len > train_len:
        out["layer1_prev_token_beyond_train_len"] = prev_hit[:, train_len - 1 :].mean().item()
    out.update(degenerate_shares(labels, batch.degenerate.to(labels.device)))
    return out


def previous_token_hits(cache: dict, seq_len: int) -> torch.Tensor:
    """Where the previous-token head puts its largest weight on ``t − 1``: (b, T − 1) bool.

    The AMT's previous-token head is layer 1 by construction; in a general transformer it is the
    (layer, head) with the highest hit rate on this batch (layers up to the second-to-last).
    """
    target = torch.arange(seq_len - 1)
    layers = hook_layers(cache, "pattern")
    best, best_rate = None, -1.0
    for layer in layers[:-1] or layers:
        pattern = cache[hook_name("pattern", layer)]  # (b, H, T, T)
        for head in range(pattern.shape[1]):
            hits = pattern[:, head, 1:].argmax(-1) == target.to(pattern.device)
            rate = hits.float().mean().item()
            if rate > best_rate:
                best, best_rate = hits, rate
    return best


def batch_at_length(cfg: RunConfig, seq_len: int, n: int) -> TriggerBatch:
    """``n`` fresh sequences of the task of ``cfg`` at length ``seq_len`` (seed fixed per length)."""
    task = make_task(cfg.model_copy(update={"data": cfg.data.model_copy(update={"seq_len": seq_len})}), "cpu")
    return task.sample(n, torch.Generator().manual_seed(10_000 + seq_len))
