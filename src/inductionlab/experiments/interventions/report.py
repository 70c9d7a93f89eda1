"""Setting, figures and README of the interventions experiment (written next to ``results.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from inductionlab.experiments.kit.claims import claims_section
from inductionlab.experiments.kit.figures import seed_band
from inductionlab.experiments.kit.finish import readme_heading
from inductionlab.report.figures import save_figure
from inductionlab.report.format import spread
from inductionlab.runs import RunDir

ARM_COLORS = {"none": "black", "clamp-previous-token": "tab:blue", "freeze-wk2": "tab:orange",
              "ablate-layer1": "tab:red", "one-layer": "tab:grey", "clamp-induction": "tab:green"}


def setting(runs_dir: Path, specs, freeze_until: int) -> str:
    """The model, how it was trained, and the arms."""
    cfg = RunDir(runs_dir / specs[0].folder).config()
    m, d, t = cfg.model, cfg.data, cfg.train
    seeds = sorted({dict(s.params)["seed"] for s in specs})
    return (f"Associative-memory transformers (d = {m.d_model}, {m.pos_enc} positions, {m.init} init, no W_F), every "
            f"trained matrix starting at zero, {t.steps} {t.optimizer.upper()} steps (batch {t.batch_size}, lr {t.lr}, "
            f"weight decay {t.weight_decay}) on the {d.source} bigrams, T = {d.seq_len}, K = {d.n_triggers} "
            f"{d.trigger_mode} triggers, loss on the in-context targets; seeds {seeds[0]}–{seeds[-1]} in every arm. "
            f"Arms: none; layer 1 clamped to perfect previous-token; W_K² frozen at zero until step {freeze_until}; "
            "layer 1's attention output zero-ablated (training and evaluation); a one-layer model; layer 2 clamped "
            "to perfect induction. In-context accuracy over non-degenerate evaluation sequences, every "
            f"{t.eval_every} steps; memory probes every {t.probe_every or t.eval_every} step(s).")


def write_figures(curves: dict[str, dict[int, list[dict[str, Any]]]], results: dict[str, Any], out: Path) -> list[str]:
    """Trajectories per arm (in-context accuracy, wo, layer-1 and layer-2 attention) and the milestones per seed."""
    panels = (("acc_in_context", "in-context accuracy"), ("wo", "wo probe (W_O² W_V²)"),
              ("attn1_prev_token", "layer 1 attention on t − 1"), ("attn2_induction", "layer 2 induction mass"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for arm, runs in curves.items():
            seed_band(ax, runs, key, color=ARM_COLORS.get(arm), label=arm)
        ax.axhline(0.9, color="grey", lw=0.6, ls=":")
        ax.set(xlabel="step", title=title, ylim=(0, 1.02))
    axes[0].legend(fontsize=7)
    fig.suptitle("each arm: mean over seeds, band min–max; dotted: 0.9", fontsize=9)
    names = [save_figure(fig, out, "interventions_trajectories", dpi=110)]

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, key in zip(axes, ("acc_in_context", "wo"), strict=True):
        arms = [arm for arm, data in results["arms"].items() if key in next(iter(data["milestones"].values()))]
        for i, arm in enumerate(arms):
            data = results["arms"][arm]
            steps = [m[key] for m in data["milestones"].values()]
            reached = [s for s in steps if s is not None]
            ax.scatter(reached, [i] * len(reached), color=ARM_COLORS.get(arm), s=22)
            missing = len(steps) - len(reached)
            if missing:
                ax.annotate(f"{missing} never", (data["steps"], i), fontsize=7, va="center")
            if data["median"][key] is not None:
                ax.plot([data["median"][key]] * 2, [i - 0.3, i + 0.3], color=ARM_COLORS.get(arm), lw=2)
        ax.set_yticks(range(len(arms)), arms)
        ax.set(xlabel=f"first step with {key} ≥ 0.9 (dots: seeds; bar: median)", title=f"milestone of {key}")
    names.append(save_figure(fig, out, "interventions_milestones", dpi=110))
    return names


def readme(results: dict[str, Any]) -> str:
    """The experiment's README.md: milestones per arm and seed, the ablation at evaluation, the claims."""
    lines = readme_heading("Interventions during training (docs/science.md §8)", results, "arm",
                           "milestone acc ≥ 0.9 per seed", "median", "wo ≥ 0.9 per seed", "median",
                           "final in-context acc.")
    for arm, data in results["arms"].items():
        ms = data["milestones"].values()
        acc = ", ".join(_step(m["acc_in_context"]) for m in ms)
        wo = ", ".join(_step(m["wo"]) if "wo" in m else "–" for m in ms)
        med = data["median"]
        final = data["final"]["acc_in_context"]
        lines.append(f"| {arm} | {acc} | {_step(med['acc_in_context'])} | {wo} | {_step(med['wo'])} | "
                     f"{spread(final)} |")
    removed = results["none_ablated_at_evaluation"]
    lines += ["", "Milestones are interpolated between the last logged value below 0.9 and the first at or above "
              "it. In this table a milestone never reached counts as later than every step, and a median that falls "
              "on one is undefined (–); the claims pair the arms seed by seed, a milestone never reached counting "
              "at the last step.", "", "The trained `none` arm with layer 1's attention output ablated at evaluation "
              f"only: in-context accuracy {spread(removed['zero-ablate'])} zeroed, {spread(removed['mean-ablate'])} "
              "replaced by its mean over the evaluation batch (position by position); the one-layer model "
              f"{spread(results['arms']['one-layer']['final']['acc_in_context'])}.", "", *claims_section(results)]
    return "\n".join(lines)


def _step(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f}"  # a step, interpolated: one decimal at any size
