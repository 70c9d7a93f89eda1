"""Losses, accuracies by label and the probes, on a fixed evaluation batch (docs/science.md §2, §4.1, §4.2),
and the evaluation of a trained model at any sequence length (the length and nope3 experiments).

Labels split the targets by what can predict them (docs/science.md §2): ``0`` the global bigram,
``1`` a trigger's first firing (unpredictable), ``≥ 2`` the in-context targets. Accuracies are
over the non-degenerate sequences (docs/science.md §6), with the degenerate share beside them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inductionlab.models.names import hook_layers, hook_name
from inductionlab.probes.attention import attention_probes, run_with_cache
from inductionlab.probes.memory import memory_probes
from inductionlab.probes.progress import progress_measures
from inductionlab.tasks.bigram import TriggerBatch
from inductionlab.tasks.build import Task, make_sampler
from inductionlab.tasks.markov import MarkovBatch, reference_probs, target_nll

Forward = Callable[..., Tensor]  # a model, or a callable with its signature (interventions.py)
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


def training_loss(model: Forward, batch: TriggerBatch, loss_on: str, buckets: int = 8) -> Tensor:
    """Mean cross-entropy on the in-context targets (label ≥ 2) or on every target (docs/science.md §2).

    The in-context loss reads only the positions with label ≥ 2, so the last layer computes its
    queries only there. Rows differ in how many such positions they have (a degenerate sequence
    has nearly all), so rows are sorted by that count and cut into ``buckets`` groups, each padded
    only to its own longest row. The loss is the same as on the full logits; only the work shrinks.
    ``model``: the model, or a callable with its signature running interventions (docs/science.md §8).
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


def degenerate_shares(labels: Tensor, degenerate: Tensor) -> dict[str, float]:
    """The fraction of rows that are degenerate and of in-context targets (label ≥ 2) they supply (docs/science.md §2).

    labels: (B, T); degenerate: (B,) bool. A degenerate sequence repeats a trigger cycle forever,
    so its tail is trivially predictable and it holds many in-context targets.
    """
    in_context = (labels >= 2).sum(1)
    total = int(in_context.sum())
    return {"degenerate_rows": degenerate.float().mean().item(),
            "degenerate_in_context_share": int(in_context[degenerate].sum()) / total if total else math.nan}


@torch.no_grad()
def label_metrics(model: Forward, batch: TriggerBatch, bigram: Tensor, chunk: int = 64) -> dict[str, float]:
    """Loss and accuracy per label group, plus the bigram's own loss on the global targets.

    Every group is measured over the **non-degenerate** sequences (docs/science.md §6); the in-context
    accuracy and loss are also given over all sequences (``*_in_context_all``), beside the share
    of rows and of in-context targets that degenerate sequences make up.
    """
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    bigram = bigram.to(batch.tokens.device)
    for start in range(0, batch.tokens.shape[0], chunk):
        tokens, labels = batch.tokens[start : start + chunk], batch.labels[start : start + chunk]
        kept = ~batch.degenerate[start : start + chunk, None].to(labels.device)
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        logits = model(inputs)
        losses = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view_as(targets)
        correct = (logits.argmax(-1) == targets).float()
        optimal = -torch.log(bigram[inputs, targets].clamp_min(1e-30))
        groups = {name: select(labels) & kept for name, select in LABEL_GROUPS.items()}
        groups["in_context_all"] = labels >= 2
        for name, m in groups.items():
            counts[name] = counts.get(name, 0) + int(m.sum())
            sums[f"loss_{name}"] = sums.get(f"loss_{name}", 0.0) + losses[m].sum().item()
            sums[f"acc_{name}"] = sums.get(f"acc_{name}", 0.0) + correct[m].sum().item()
        m = groups["global"]
        sums["loss_global_bigram_optimum"] = sums.get("loss_global_bigram_optimum", 0.0) + optimal[m].sum().item()
        counts["all"] = counts.get("all", 0) + int(kept.sum()) * labels.shape[1]
        sums["loss_all"] = sums.get("loss_all", 0.0) + (losses * kept).sum().item()
    out = {}
    for key, total in sums.items():
        group = "global" if key == "loss_global_bigram_optimum" else key.split("_", 1)[1]
        out[key] = total / counts[group] if counts[group] else math.nan
    out.update(degenerate_shares(batch.labels, batch.degenerate))
    return out


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batch: TriggerBatch,
    bigram: Tensor,
    train_len: int,
    fixed_triggers: Tensor | None,
    probe_batch: int = 32,
    forward: Forward | None = None,
) -> dict[str, float]:
    """Every metric logged at an evaluation step: label metrics, §4.1 and §4.2 probes, §9 progress measures.

    ``forward`` runs the model with the interventions active at this step (docs/science.md §8);
    the weight-space memory probes read the stored matrices.
    """
    forward = forward or model
    out = label_metrics(forward, batch, bigram)
    if model.stores_memories:
        out.update(memory_probes(model, train_len, fixed_triggers, bigram, eval_len=batch.labels.shape[1]))
    rows = (~batch.degenerate).nonzero().squeeze(1)[:probe_batch]  # attention probes on non-degenerate rows
    tokens, labels = batch.tokens[rows], batch.labels[rows]
    ran = run_with_cache(forward, tokens[:, :-1])  # one forward for the §4.2 and §9 measures
    out.update(attention_probes(model, tokens, labels, ran=ran))
    out.update(progress_measures(model, tokens, labels, ran=ran))
    return out


@torch.no_grad()
def markov_metrics(model: nn.Module, batch: MarkovBatch, k: int, alpha: float, forward: Forward | None = None,
                   probe_batch: int = 32) -> dict[str, float]:
    """An evaluation step of the in-context Markov-chain task (docs/science.md §10, §9).

    ``loss_in_context``: the model's cross-entropy over the targets with a complete context;
    ``loss_<strategy>``: each reference predictor's on the same targets; ``kl_<strategy>``:
    ``KL(p_strategy ‖ p_model)`` averaged over those positions; ``kl_unigram_to_bayes``, the distance
    between the two in-context strategies (the scale of the stages); then the §9 progress measures.
    """
    forward = forward or model
    start = batch.order - 2
    log_model = F.log_softmax(forward(batch.inputs).double(), -1)[:, start:]  # (B, T', k)
    out = {"loss_in_context": -log_model.gather(2, batch.targets[:, start:, None]).mean().item()}
    refs = reference_probs(batch, k, alpha)
    for name, probs in refs.items():
        p = probs[:, start:]
        out[f"loss_{name}"] = target_nll(probs, batch).mean().item()
        out[f"kl_{name}"] = (p * (torch.log(p.clamp_min(1e-300)) - log_model)).sum(-1).mean().item()
    unigram, bayes = refs["unigram"][:, start:], refs["bayes"][:, start:]
    out["kl_unigram_to_bayes"] = (unigram * (unigram.log() - bayes.log())).sum(-1).mean().item()  # the stages' scale
    if batch.order > 2:  # where a model stops that ignores the oldest token of the context: order n − 1's Bayes
        rows = torch.full((len(batch.tokens), k ** (batch.order - 2), k), 1.0 / k, dtype=torch.float64,
                          device=batch.tokens.device)  # only its shape is read
        lower = reference_probs(MarkovBatch(batch.tokens, rows, batch.order - 1), k, alpha)["bayes"]
        out["loss_bayes_lower_order"] = target_nll(lower, batch).mean().item()  # the same targets as the model
    rows = slice(0, probe_batch)
    out.update(progress_measures(model, batch.tokens[rows], batch.labels[rows], forward=forward))
    return out


def evaluate_task(task: Task, model: nn.Module, batch, train_len: int, forward: Forward | None = None
                  ) -> dict[str, float]:
    """Every metric an evaluation step logs for ``task``: :func:`evaluate` (bigram with triggers) or
    :func:`markov_metrics` (in-context Markov chains)."""
    if task.name == "icl-mc":
        return markov_metrics(model, batch, task.sampler.k, task.sampler.alpha, forward)
    return evaluate(model, batch, task.source.bigram, train_len, task.fixed_triggers, forward=forward)


# --------------------------------------------------------------------------- at any length (length, nope3)

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
    share of rows and of in-context targets that degenerate sequences make up.
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

    def acc(mask: torch.Tensor) -> float | None:
        return correct[mask].float().mean().item() if mask.any() else None

    out: dict[str, Any] = {
        "acc_in_context": acc(in_context),
        "acc_in_context_all": acc(in_context_all),
        "acc_in_context_before_train_len": acc(in_context & (positions < train_len)),
        "acc_in_context_beyond_train_len": acc(in_context & (positions >= train_len)),
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


def batch_at_length(cfg, seq_len: int, n: int) -> TriggerBatch:
    """``n`` fresh sequences of the task of ``cfg`` at length ``seq_len`` (seed fixed per length)."""
    _, sampler = make_sampler(cfg.model_copy(update={"data": cfg.data.model_copy(update={"seq_len": seq_len})}),
                              torch.device("cpu"))
    return sampler.sample(n, torch.Generator().manual_seed(10_000 + seq_len))
