"""The task ``bigram-triggers`` (docs/science.md §2): its config fields, its sampler, and what an evaluation logs.

Labels split the targets by what can predict them: ``0`` the global bigram, ``1`` a trigger's first firing
(unpredictable), ``≥ 2`` the in-context targets, which the in-context loss reads. Accuracies are over the
non-degenerate sequences (docs/science.md §6), with the degenerate share beside them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inductionlab.config import RunConfig, TrainConfig
from inductionlab.errors import ConfigError, MemoryEstimateError
from inductionlab.models.hooks import Forward
from inductionlab.probes.attention import attention_probes, run_with_cache
from inductionlab.probes.functional import functional_probes
from inductionlab.probes.memory import memory_probes
from inductionlab.probes.progress import progress_measures
from inductionlab.tasks.base import Milestones, Task
from inductionlab.tasks.bigram import BigramTriggerSampler, TriggerBatch
from inductionlab.tasks.configs import BigramConfig
from inductionlab.tasks.sources import BigramSource, make_source

DOUBLE = 8
LABEL_GROUPS = {"global": lambda lab: lab == 0, "first": lambda lab: lab == 1, "in_context": lambda lab: lab >= 2}


class BigramTask(Task):
    """Bigram sequences in which each trigger ``q_k`` is followed by its output ``o_k`` (docs/science.md §2)."""

    name = "bigram-triggers"
    config_model = BigramConfig
    summary_keys = ("acc_in_context", "acc_in_context_all", "degenerate_in_context_share", "acc_global", "loss_global",
                    "loss_global_bigram_optimum", "wo", "wo_ff", "wk2", "wk2_triggers", "wk1", "loss_in_context")
    progress_keys = {"icl": "acc_in_context"}
    milestones = Milestones(reached=("wo", "wk2", "wk1", "acc_in_context"), fell=("loss_global",),
                            rose=("acc_in_context",))
    # rows, degenerate rows, in-context targets, in-context targets in degenerate rows
    n_counts = 4

    def __init__(self, config: BigramConfig, device: torch.device | str = "cpu"):
        super().__init__(config, device)
        d = config
        self.source: BigramSource = make_source(d.source, d.vocab_size, d.concentration, d.source_seed)
        self.sampler = BigramTriggerSampler(
            self.source, d.seq_len, d.n_triggers, trigger_mode=d.trigger_mode, trigger_offset=d.trigger_offset,
            output_mode=d.output_mode, no_repeat=d.no_repeat, output_split=d.output_split,
            exclude_degenerate=d.exclude_degenerate, device=self.device,
        )

    @property
    def fixed_triggers(self) -> Tensor | None:
        """(K,) int64, the triggers of trigger_mode "fixed"; None for random triggers."""
        return self.sampler.fixed_triggers

    def sample(self, batch_size: int, generator: torch.Generator) -> TriggerBatch:
        return self.sampler.sample(batch_size, generator)

    def evaluate(self, model: nn.Module, batch: TriggerBatch, train_len: int, forward: Forward | None = None
                 ) -> dict[str, float]:
        return evaluate(model, batch, self.source.bigram, train_len, self.fixed_triggers, forward=forward)

    def count(self, batch: TriggerBatch) -> Tensor:
        in_context = batch.loss_mask.sum(1)
        degenerate = batch.degenerate.to(in_context.device)
        return torch.stack((torch.tensor(len(in_context)), degenerate.sum().cpu(), in_context.sum().cpu(),
                            in_context[degenerate].sum().cpu()))

    def count_metrics(self, totals: list[int]) -> dict[str, Any]:
        rows, degenerate, in_context, degenerate_in_context = totals
        return {"train_degenerate_rows": degenerate / rows if rows else None,
                "train_degenerate_in_context_share": degenerate_in_context / in_context if in_context else None}

    def weight_probes(self, model: nn.Module, train_len: int, eval_len: int) -> dict[str, float]:
        if not model.stores_memories:
            return {}
        return memory_probes(model, train_len, self.fixed_triggers, self.source.bigram, eval_len=eval_len)

    @classmethod
    def memory(cls, config: BigramConfig, train: TrainConfig) -> dict[str, tuple[int, str]]:
        """The source's rows, its alias tables and the stationary law's linear solve: about 20 N × N float64
        working copies at their peak (measured: 6.0 GB at N = 6000)."""
        n = config.n_tokens
        if n * n > 2**60:  # before a shape could overflow building the model
            raise MemoryEstimateError(f"data.vocab_size: tensors of {n * n:.3g} entries cannot be held in memory; "
                                      "lower data.vocab_size")
        return {"task tables": (DOUBLE * 20 * n * n, "data.vocab_size")}


def make_sampler(cfg: RunConfig, device: torch.device) -> tuple[BigramSource, BigramTriggerSampler]:
    """The source and sampler of the bigram-with-triggers task a config describes (docs/science.md §2)."""
    if not isinstance(cfg.data, BigramConfig):
        raise ConfigError(f"data.task: this needs the bigram-triggers task, the config has {cfg.data.task!r}")
    task = BigramTask(cfg.data, device)
    return task.source, task.sampler


# --------------------------------------------------------------------------- metrics of an evaluation step


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
    """Every metric logged at an evaluation step: label metrics, §4.1 and §4.2 probes, §9 progress measures, and
    for a model that stores memories the functional milestones' measurements of §6 (probes/functional.py).

    ``forward`` runs the model with the interventions active at this step (docs/science.md §8);
    the weight-space memory probes read the stored matrices (a model that stores memories: the AMT).
    """
    forward = forward or model
    out = label_metrics(forward, batch, bigram)
    if model.stores_memories:
        out.update(memory_probes(model, train_len, fixed_triggers, bigram, eval_len=batch.labels.shape[1]))
    tokens, labels = probe_rows(batch, probe_batch)
    ran = run_with_cache(forward, tokens[:, :-1])  # one forward for the §4.2 and §9 measures
    out.update(attention_probes(model, tokens, labels, ran=ran))
    out.update(progress_measures(model, tokens, labels, ran=ran))
    if model.stores_memories:
        out.update(functional_probes(model, tokens, labels))
    return out


def probe_rows(batch: TriggerBatch, probe_batch: int = 32) -> tuple[Tensor, Tensor]:
    """The first ``probe_batch`` non-degenerate rows of ``batch``: ``(tokens (b, T+1), labels (b, T))``."""
    rows = (~batch.degenerate).nonzero().squeeze(1)[:probe_batch]
    return batch.tokens[rows], batch.labels[rows]
