"""An experiment defined outside the package (a module under tests/), registered by its import path
``toy_experiment:TOY``: two tiny birth runs, one claim against a null (docs/science.md §6, §7)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from inductionlab.experiments import Experiment
from inductionlab.experiments.kit.claims import Rule, claim, claims_table
from inductionlab.experiments.kit.curves import evaluations, last_evaluation, seed_spread
from inductionlab.experiments.kit.experiment import experiment_preset
from inductionlab.experiments.kit.figures import seed_band
from inductionlab.experiments.kit.finish import finish
from inductionlab.experiments.kit.runs import trained_runs
from inductionlab.report.figures import save_figure
from inductionlab.runs import RunDir, RunSpec, seed_overrides

PRESETS = {name: {"seeds": (0, 1)} for name in ("quick", "paper", "smoke")}
TINY = ("train.steps=8", "model.d_model=16", "train.eval_every=4", "train.checkpoint_every=4", "train.batch_size=8",
        "train.eval_batch_size=8", "data.seq_len=24")


def plan(preset_name: str) -> list[RunSpec]:
    """Two seeds of a tiny birth-quick run."""
    preset = experiment_preset(PRESETS, preset_name)
    return [RunSpec(f"toy-{preset_name}-s{seed}", "birth-quick", (*TINY, *seed_overrides(seed)), (("seed", seed),))
            for seed in preset["seeds"]]


def analyse(runs_dir: Path, out: Path, preset_name: str) -> dict[str, Any]:
    """The global loss at the end against the untrained model's (the first evaluation)."""
    specs, diverged = trained_runs(runs_dir, plan(preset_name))
    curves = {dict(s.params)["seed"]: RunDir(runs_dir / s.folder).metrics() for s in specs}
    final = seed_spread([last_evaluation(rows)["loss_global"] for rows in curves.values()])
    untrained = seed_spread([evaluations(rows)[0]["loss_global"] for rows in curves.values()])
    results: dict[str, Any] = {"experiment": "toy", "preset": preset_name, "question": "Does training lower the "
                               "global loss?", "setting": "two tiny birth-quick runs", "final": final}
    found = [claim("Training lowers the global loss", "below the untrained model's", "global loss at the end",
                   final["mean"], untrained["mean"], "the untrained model (first evaluation)",
                   Rule("lower", None, 1e-6))]
    return finish(out, results, claims=found, diverged=diverged, figures=partial(_figure, curves), readme=_readme)


def _figure(curves, results: dict[str, Any], out: Path) -> list[str]:
    fig, ax = plt.subplots()
    seed_band(ax, curves, "loss_global", label="global loss")
    return [save_figure(fig, out, "toy")]


def _readme(results: dict[str, Any]) -> str:
    return "\n".join(["# Toy", "", claims_table(results["claims"]), ""])


TOY = Experiment(name="toy", title="A toy experiment from outside the package", presets=PRESETS, plan=plan,
                 analyse=analyse)
