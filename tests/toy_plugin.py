"""A task and an experiment defined outside the package (a module under tests/), joined by import path only.

- ``toy_plugin:RepeatTask``: a random segment, then the same segment again; the second copy is predictable from
  the context alone, so it is the task's in-context target (its ``loss_mask``).
- ``toy_plugin:TOY``: two seeds of a two-layer AMT trained on that task, and one claim against a null: the loss on
  the second copy at the end against the same loss of the untrained model (its first evaluation).

Nothing in the package names either: the config carries ``data.task: toy_plugin:RepeatTask`` and ``reproduce`` is
handed ``toy_plugin:TOY``, so the spawned workers of the local sweep and of the analysis import this module
themselves (``tests/`` is on ``sys.path`` under pytest, and spawned processes inherit it).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from pydantic import Field

from inductionlab.experiments import Experiment
from inductionlab.experiments.kit.claims import Rule, SeedValues, claim, claims_table
from inductionlab.experiments.kit.curves import evaluations, last_evaluation, seed_spread
from inductionlab.experiments.kit.experiment import experiment_preset
from inductionlab.experiments.kit.figures import seed_band
from inductionlab.experiments.kit.finish import finish
from inductionlab.experiments.kit.runs import trained_runs
from inductionlab.report.figures import save_figure
from inductionlab.runs import RunDir, RunSpec, seed_overrides
from inductionlab.tasks.base import Batch, Milestones, Task
from inductionlab.tasks.registry import DataConfig

TASK = "toy_plugin:RepeatTask"


class RepeatConfig(DataConfig):
    vocab: int = Field(8, ge=2, description="N, the tokens the segment is drawn from")

    @property
    def n_tokens(self) -> int:
        return self.vocab


class RepeatTask(Task):
    """``z_1..z_h`` uniform over N, then ``z_{h+1}.. = z_1..``: every target of the second copy is in-context."""

    name = "repeat-segment"
    config_model = RepeatConfig
    summary_keys = ("acc_in_context", "loss_in_context")
    progress_keys = {"icl": "acc_in_context"}
    milestones = Milestones(reached=("acc_in_context",), fell=("loss_in_context",))

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        length = self.config.seq_len + 1
        half = (length + 1) // 2
        segment = torch.randint(self.config.vocab, (batch_size, half), generator=generator, device=self.device)
        tokens = segment.repeat(1, 2)[:, :length]
        mask = torch.zeros(batch_size, length - 1, dtype=torch.bool, device=self.device)
        mask[:, half - 1 :] = True  # the targets z_{h+1}.. repeat the segment
        return Batch(tokens, mask)

    @torch.no_grad()
    def evaluate(self, model, batch, train_len, forward=None):
        logits = (forward or model)(batch.inputs)[batch.loss_mask]
        targets = batch.targets[batch.loss_mask]
        return {"acc_in_context": (logits.argmax(-1) == targets).float().mean().item(),
                "loss_in_context": F.cross_entropy(logits, targets).item()}


# --------------------------------------------------------------------------- the experiment

PRESETS = {name: {"seeds": (0, 1)} for name in ("quick", "paper", "smoke")}
TINY = (f"data={{task: '{TASK}', seq_len: 24, vocab: 8}}", "train.steps=12", "model.d_model=32",
        "train.eval_every=4", "train.checkpoint_every=4", "train.batch_size=16", "train.eval_batch_size=16")


def plan(preset_name: str) -> list[RunSpec]:
    """Two seeds of a tiny two-layer AMT on the repeat task."""
    preset = experiment_preset(PRESETS, preset_name)
    return [RunSpec(f"toy-{preset_name}-s{seed}", "birth-quick", (*TINY, *seed_overrides(seed)), (("seed", seed),))
            for seed in preset["seeds"]]


def analyse(runs_dir: Path, out: Path, preset_name: str) -> dict[str, Any]:
    """The loss on the second copy at the end against the untrained model's (the first evaluation)."""
    specs, diverged = trained_runs(runs_dir, plan(preset_name))
    curves = {dict(s.params)["seed"]: RunDir(runs_dir / s.folder).metrics() for s in specs}
    final_by_seed = {seed: last_evaluation(rows)["loss_in_context"] for seed, rows in curves.items()}
    untrained_by_seed = {seed: evaluations(rows)[0]["loss_in_context"] for seed, rows in curves.items()}
    final, untrained = seed_spread(list(final_by_seed.values())), seed_spread(list(untrained_by_seed.values()))
    results: dict[str, Any] = {"experiment": "toy", "preset": preset_name,
                               "question": "Does training lower the loss on a repeated segment?",
                               "setting": "two seeds of a tiny two-layer AMT on the repeat task", "final": final}
    found = [claim("Training lowers the loss on the second copy", "below the untrained model's",
                   "loss on the second copy at the end", final["mean"], untrained["mean"],
                   "the untrained model (first evaluation)", Rule("lower", None, 1e-3),
                   seeds=SeedValues(final_by_seed, untrained_by_seed))]
    return finish(out, results, claims=found, diverged=diverged, figures=partial(_figure, curves), readme=_readme)


def _figure(curves, results: dict[str, Any], out: Path) -> list[str]:
    fig, ax = plt.subplots()
    seed_band(ax, curves, "loss_in_context", label="loss on the second copy")
    return [save_figure(fig, out, "toy")]


def _readme(results: dict[str, Any]) -> str:
    return "\n".join(["# Toy", "", claims_table(results["claims"]), ""])


TOY = Experiment(name="toy", title="A toy experiment from outside the package", presets=PRESETS, plan=plan,
                 analyse=analyse)
