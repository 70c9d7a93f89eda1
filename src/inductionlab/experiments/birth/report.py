"""Setting, figures and README of the birth experiment (written next to ``results.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from inductionlab.experiments.kit.claims import claims_section
from inductionlab.experiments.kit.curves import last_evaluation
from inductionlab.experiments.kit.figures import seed_band
from inductionlab.experiments.kit.finish import readme_heading
from inductionlab.report.figures import save_figure
from inductionlab.report.format import spread
from inductionlab.runs import RunDir

MEMORY_COLORS = {"wo": "tab:green", "wk2": "tab:orange", "wk1": "tab:purple"}


def setting(runs_dir: Path, specs) -> str:
    """One paragraph per setting: the models and how they were trained."""
    parts = []
    for name, label in (("all", "(a) all targets"), ("topdown", "(b) top-down")):
        chosen = [s for s in specs if dict(s.params)["setting"] == name]
        cfg = RunDir(runs_dir / chosen[0].folder).config()
        m, d, t = cfg.model, cfg.data, cfg.train
        seeds = sorted({dict(s.params)["seed"] for s in chosen})
        variants = "2 and 1 layers" if name == "all" else "trained matrices starting at zero and at random"
        parts.append(f"{label}: associative-memory transformers (d = {m.d_model}, {m.pos_enc} positions, {m.init} "
                     f"init, W_F {m.ff}), {variants}, trained {t.steps} {t.optimizer.upper()} steps (batch "
                     f"{t.batch_size}, lr {t.lr}, weight decay {t.weight_decay}) on the {d.source} bigrams, "
                     f"T = {d.seq_len}, K = {d.n_triggers} {d.trigger_mode} triggers, loss on {t.loss_on} targets; "
                     f"seeds {seeds[0]}–{seeds[-1]}.")
    return " ".join(parts) + " Accuracies are over non-degenerate evaluation sequences."


def write_figures(all_targets, top_down, results: dict[str, Any], out: Path) -> list[str]:
    """Setting (a): losses and accuracy, 2 vs 1 layer; setting (b): probes per init and the milestones."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.2))
    two, one = all_targets["two-layer"], all_targets["one-layer"]
    for runs, style, label in ((two, "-", "2 layers"), (one, "--", "1 layer")):
        seed_band(ax_loss, runs, "loss_global", ls=style, color="tab:blue", label=f"global bigram targets, {label}")
        seed_band(ax_loss, runs, "loss_in_context", ls=style, color="tab:red", label=f"in-context targets, {label}")
        seed_band(ax_acc, runs, "acc_in_context", ls=style, color="black", label=label)
    optimum = last_evaluation(next(iter(two.values())))["loss_global_bigram_optimum"]
    ax_loss.axhline(optimum, color="tab:blue", lw=0.8, ls=":", label="bigram optimum")
    ax_loss.set(xlabel="step", ylabel="loss", title="(a) losses, mean and min–max over seeds")
    ax_acc.set(xlabel="step", ylabel="accuracy", ylim=(0, 1.02),
               title="(a) in-context accuracy, non-degenerate sequences")
    for ax in (ax_loss, ax_acc):
        ax.legend(fontsize=7)
    names = [save_figure(fig, out, "birth_all_targets", dpi=110)]

    inits = list(top_down)
    fig, axes = plt.subplots(1, len(inits) + 1, figsize=(6 * len(inits) + 5, 4.2), squeeze=False)
    for ax, init in zip(axes[0], inits, strict=False):
        for mem, color in MEMORY_COLORS.items():
            seed_band(ax, top_down[init], mem, color=color, label=mem)
        seed_band(ax, top_down[init], "wk2_triggers", color=MEMORY_COLORS["wk2"], ls=":", label="wk2_triggers")
        for level in (0.8, 0.9, 0.95):
            ax.axhline(level, color="grey", lw=0.6, ls=":")
        ax.set(xlabel="step", ylabel="recall", ylim=(0, 1.02), title=f"(b) memory probes, {init} init")
        ax.legend(fontsize=7)
    ax = axes[0][-1]
    for i, init in enumerate(inits):
        milestones = results["top_down"][init]["by_threshold"]["0.9"]["milestones"]
        for j, mem in enumerate(MEMORY_COLORS):
            steps = [ms[mem] for ms in milestones.values() if ms[mem] is not None]
            ax.scatter(steps, [i * 4 + j] * len(steps), color=MEMORY_COLORS[mem], s=18,
                       label=mem if i == 0 else None)
    ax.set_yticks([i * 4 + 1 for i in range(len(inits))], [f"{init} init" for init in inits])
    ax.set(xlabel="first step with probe ≥ 0.9 (one dot per seed)", title="(b) milestones over seeds")
    ax.legend(fontsize=7)
    names.append(save_figure(fig, out, "birth_top_down", dpi=110))
    return names


def readme(results: dict[str, Any]) -> str:
    """The experiment's README.md: both settings' tables and the claims."""
    a, b = results["all_targets"], results["top_down"]
    lines = readme_heading("Birth of an induction head (docs/science.md §6)", results) + [
             "## (a) All targets, with W_F", "",
             "| depth | in-context acc. | over all sequences | degenerate share of in-context targets | global loss "
             "| bigram optimum |", "|---|---|---|---|---|---|"]
    for depth, final in a["final"].items():
        lines.append(f"| {depth} | {spread(final.get('acc_in_context'))} | {spread(final.get('acc_in_context_all'))} | "
                     f"{spread(final.get('degenerate_in_context_share'))} | {spread(final.get('loss_global'))} | "
                     f"{spread(final.get('loss_global_bigram_optimum'))} |")
    lines += ["", "Global knowledge first, by how close to the bigram optimum the global loss must come (the claim "
              "uses 0.05 nats; in-context milestone: accuracy above the one-layer model's final + 0.1):", "",
              "| within (nats) | global first / tied / in-context first / undetermined | steps per seed (global, "
              "in-context) |", "|---|---|---|"]
    for nats, row in a["global_first_by_distance"].items():
        o = row["order"]
        steps = "; ".join(f"{m['global_within_optimum']}, {m['in_context_above_one_layer']}"
                          for m in row["milestones"].values())
        lines.append(f"| {nats} | {o['in_order']} / {o['tied']} / {o['other_order']} / {o['undetermined']} | {steps} |")
    lines += ["", "## (b) Top-down, in-context loss, no W_F", "",
              "| init | threshold | in order / tied / other / undetermined | median step wo, wk2, wk1 | range |",
              "|---|---|---|---|---|"]
    for init, data in b.items():
        for level, row in data["by_threshold"].items():
            o = row["order"]
            med = ", ".join("–" if row["median_step"][m] is None else f"{row['median_step'][m]:g}"
                            for m in ("wo", "wk2", "wk1"))
            rng = ", ".join("–" if row["range"][m] is None else f"{row['range'][m][0]}–{row['range'][m][1]}"
                            for m in ("wo", "wk2", "wk1"))
            lines.append(f"| {init} | {level} | {o['in_order']} / {o['tied']} / {o['other_order']} / "
                         f"{o['undetermined']} | {med} | {rng} |")
    lines += ["", *claims_section(results)]
    return "\n".join(lines)
