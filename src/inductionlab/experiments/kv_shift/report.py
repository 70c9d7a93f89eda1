"""Setting, figures and README of the kv-shift experiment (written next to ``results.json``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from inductionlab.experiments.kit.claims import claims_section
from inductionlab.experiments.kit.figures import seed_band
from inductionlab.experiments.kit.finish import readme_heading
from inductionlab.experiments.kv_shift.measure import LEARNT_LEVEL, REACH_LEVEL, outcome
from inductionlab.models.names import KV_SHIFT_SCALARS, kv_shift_metric
from inductionlab.report.figures import save_figure
from inductionlab.report.format import number
from inductionlab.runs import RunDir

ARM_COLORS = {"kv-shift": "tab:red", "one-layer": "tab:grey", "two-layer": "tab:blue"}
ARM_LABELS = {"kv-shift": "one KV-shift layer", "one-layer": "one vanilla layer", "two-layer": "two vanilla layers"}
SCALAR_COLORS = dict(zip(KV_SHIFT_SCALARS, ("tab:red", "tab:orange", "tab:blue", "tab:cyan"), strict=True))
TASK_TEXT = {"bigram": "bigram with fixed triggers (AMT)", "markov": "in-context Markov chains (general transformer)"}
OUTCOME_TEXT = {"bigram": "in-context accuracy", "markov": "(loss − L_Bayes) / Δ"}


def setting(runs_dir: Path, specs, arm_of: Callable) -> str:
    """Both tasks, the arms and how they were trained."""
    parts = []
    for task in ("bigram", "markov"):
        by_arm = {arm_of(s)[1]: s for s in specs if arm_of(s)[0] == task}
        kv, two = (RunDir(runs_dir / by_arm[arm].folder).config() for arm in ("kv-shift", "two-layer"))
        seeds = sorted({dict(s.params)["seed"] for s in specs if arm_of(s)[0] == task})
        parts.append(
            f"{TASK_TEXT[task]}: T = {kv.data.seq_len}, d = {kv.model.d_model}; one KV-shift layer with no positional "
            f"encoding against one and two vanilla layers ({two.model.pos_enc}); {kv.train.steps} {kv.train.optimizer} "
            f"steps (batch {kv.train.batch_size}, lr {kv.train.lr}), evaluated every {kv.train.eval_every}; seeds "
            f"{seeds[0]}–{seeds[-1]}.")
    return " ".join(parts)


def write_figures(curves, results: dict[str, Any], out: Path) -> list[str]:
    """The three arms' outcome curves per task, and the KV-shift layer's four scalars over training."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, task in zip(axes, ("bigram", "markov"), strict=True):
        for arm, runs in curves[task].items():
            derived = {seed: [{"step": r["step"], "outcome": outcome(task, r)} for r in rows
                              if "loss_in_context" in r] for seed, rows in runs.items()}
            seed_band(ax, derived, "outcome", color=ARM_COLORS[arm], label=ARM_LABELS[arm])
        ax.axhline(LEARNT_LEVEL if task == "bigram" else REACH_LEVEL, color="grey", lw=0.6, ls=":")
        ax.set(xlabel="step (linear to 10, then log)", ylabel=OUTCOME_TEXT[task], title=TASK_TEXT[task])
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlim(left=0)
        ax.legend(fontsize=7)
    fig.suptitle("one KV-shift layer against one and two vanilla layers (mean over seeds, band min–max)", fontsize=9)
    names = [save_figure(fig, out, "kv_shift_curves", dpi=110)]

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, task in zip(axes, ("bigram", "markov"), strict=True):
        for scalar in KV_SHIFT_SCALARS:
            for i, rows in enumerate(curves[task]["kv-shift"].values()):
                points = [(r["step"], r[kv_shift_metric(0, 0, scalar)]) for r in rows
                          if kv_shift_metric(0, 0, scalar) in r]
                ax.plot(*zip(*points, strict=True), color=SCALAR_COLORS[scalar], lw=1, alpha=0.8,
                        label=scalar if i == 0 else None)
        ax.axhline(0, color="grey", lw=0.5)
        ax.axhline(1, color="grey", lw=0.5, ls=":")
        ax.set(xlabel="step (linear to 10, then log)", ylabel="value (head 0)", title=TASK_TEXT[task])
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlim(left=0)
        ax.legend(fontsize=7)
    fig.suptitle("the KV-shift scalars over training, one line per seed (construction: α1 = 0, α2 = 1, β1 = 1, "
                 "β2 = 0)", fontsize=9)
    names.append(save_figure(fig, out, "kv_shift_scalars", dpi=110))
    return names


def readme(results: dict[str, Any]) -> str:
    """The experiment's README.md: outcomes and milestones per arm, the scalars, the claims."""
    lines = readme_heading("KV-shifting attention: induction in one layer (docs/science.md §3.3)", results,
                           "task", "arm", "final outcome per seed", "milestone step per seed")
    for task, entry in results["tasks"].items():
        for arm, a in entry["arms"].items():
            finals = ", ".join(number(v, 3) for v in a["final"].values())
            steps = ", ".join("never" if v is None else str(v) for v in a["milestone"].values())
            lines.append(f"| {task} ({OUTCOME_TEXT[task]}) | {ARM_LABELS[arm]} | {finals} | {steps} |")
    lines += ["", "A milestone is the first evaluation with in-context accuracy ≥ "
              f"{LEARNT_LEVEL} (bigram) or excess loss over Bayes < {REACH_LEVEL} Δ (markov).", "",
              "| task | scalar ratio | step 0 per seed | end per seed |", "|---|---|---|---|"]
    for task, entry in results["tasks"].items():
        for which, values in entry["scalars"].items():
            text = "α-share, abs(α1) / (abs(α1) + abs(α2))" if which == "alpha" else \
                "β-share, abs(β2) / (abs(β1) + abs(β2))"
            lines.append(f"| {task} | {text} | {', '.join(number(v['initial'], 3) for v in values.values())} | "
                         f"{', '.join(number(v['final'], 3) for v in values.values())} |")
    lines += ["", *claims_section(results)]
    return "\n".join(lines)
