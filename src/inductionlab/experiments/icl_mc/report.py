"""Setting, figures and README of the icl-mc experiment (written next to ``results.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from inductionlab.experiments.kit.claims import claims_section
from inductionlab.experiments.kit.figures import seed_band
from inductionlab.experiments.kit.finish import readme_heading
from inductionlab.report.figures import save_figure
from inductionlab.report.format import number
from inductionlab.runs import RunDir

STRATEGY_COLORS = {"uniform": "tab:grey", "unigram": "tab:orange", "bayes": "tab:blue", "true": "black"}


def setting(runs_dir: Path, specs) -> str:
    """The task, the models and how they were trained."""
    cfg = RunDir(runs_dir / specs[0].folder).config()
    m, d, t = cfg.model, cfg.data, cfg.train
    seeds = sorted({dict(s.params)["seed"] for s in specs})
    orders = sorted({dict(s.params)["order"] for s in specs})
    return (f"In-context Markov chains: k = {d.k} states, order {' and '.join(map(str, orders))}, rows ~ "
            f"Dirichlet({d.alpha:g}·1), {d.start} start, T = {d.seq_len}. Attention-only general transformers "
            f"(d = {m.d_model}, {m.n_heads} head(s) per layer, {m.pos_enc} positions in every layer), two layers and "
            f"one, {t.steps} {t.optimizer} steps (batch {t.batch_size}, lr {t.lr}), loss on every target; seeds "
            f"{seeds[0]}–{seeds[-1]}. Losses over the targets with a complete context; reference losses on the "
            f"same evaluation batch (evaluated every {t.eval_every} steps).")


def write_figures(curves, results: dict[str, Any], out: Path) -> list[str]:
    """The stage plot (KL from each strategy to the model over training) and the head scores."""
    names = []
    for order in sorted({order for order, _ in curves}):
        depths = [depth for o, depth in curves if o == order]
        fig, axes = plt.subplots(1, len(depths), figsize=(6 * len(depths), 4), squeeze=False)
        for ax, depth in zip(axes[0], depths, strict=True):
            for name, color in STRATEGY_COLORS.items():
                seed_band(ax, curves[(order, depth)], f"kl_{name}", color=color, label=f"KL({name} ‖ model)")
            seed_band(ax, curves[(order, depth)], "kl_unigram_to_bayes", color="tab:purple", ls=":",
                  label="KL(unigram ‖ Bayes)")
            ax.set(xlabel="step", ylabel="nats", yscale="log", title=f"order {order}, {depth}")
            ax.legend(fontsize=7)
        fig.suptitle("stages: KL from each strategy to the model (mean over seeds, band min–max)", fontsize=9)
        names.append(save_figure(fig, out, f"icl_mc_stages_n{order}", dpi=110))

    heads = results["models"]["n2-two-layer"]["heads"]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    kinds = (("previous_token_layer1", "previous-token, layer 1"), ("induction_layer2", "induction, layer 2"))
    for i, (key, _) in enumerate(kinds):
        for j, state in enumerate(("untrained", "trained")):
            values = [h[state][key] for h in heads.values()]
            ax.scatter([i * 3 + j] * len(values), values, color="tab:grey" if j == 0 else "tab:blue", s=25)
    ax.set_xticks([0, 1, 3, 4], ["step 0", "trained", "step 0", "trained"])
    for i, (_, label) in enumerate(kinds):
        ax.annotate(label, (i * 3 + 0.5, 1.04), ha="center", fontsize=8, xycoords=("data", "axes fraction"))
    ax.axhline(0.5, color="grey", lw=0.6, ls=":")
    ax.set(ylabel="best head score (held-out sequences)", ylim=(0, 1.0))
    names.append(save_figure(fig, out, "icl_mc_heads", dpi=110))
    return names


def readme(results: dict[str, Any]) -> str:
    """The experiment's README.md: final losses against the reference strategies, plateaus, the claims."""
    lines = readme_heading("Statistical induction heads: in-context Markov chains (docs/science.md §10)", results,
                           "model", "final loss", "L_uniform", "L_unigram", "L_Bayes", "L_true",
                           "unigram-plateau share per seed")
    for name, model in results["models"].items():
        f = model["final"]
        shares = ", ".join(number(v, 2) for v in model["plateau_share"].values())
        lines.append(f"| {name} | {_mean(f['loss_in_context'])} | {_mean(f['loss_uniform'])} | "
                     f"{_mean(f['loss_unigram'])} | {_mean(f['loss_bayes'])} | {_mean(f['loss_true'])} | {shares} |")
    if "n3-two-layer" in results["models"]:
        lower = results["models"]["n3-two-layer"]["final"]["loss_bayes_lower_order"]
        lines += ["", f"Order 3: the bigram Bayes predictor's loss on the same targets is {_mean(lower)}."]
    lines += ["", "A plateau counts for a seed only if the model leaves it: it ends with KL(Bayes ‖ model) < 0.25 κ "
              "(left per seed, two layers: " + ", ".join(
                  str(v) for v in results["models"]["n2-two-layer"]["left_for_bayes"].values()) + ")."]
    path = results["models"]["n2-two-layer"]["straight_path"].values()
    lines += ["", "The plateau claim's null: per seed, the mixture (1 − λ_t)·uniform + λ_t·Bayes whose loss on the "
              "evaluation batch equals the model's at every evaluation. Its plateau share per seed: "
              + ", ".join(number(p["plateau_share"], 2) for p in path) + "; the closest it comes to the unigram "
              "strategy, KL(unigram ‖ mixture) / κ: " + ", ".join(number(p["closest_to_unigram"], 2) for p in path)
              + " (the plateau needs < 0.25)."]
    lines += ["", *claims_section(results)]
    return "\n".join(lines)


def _mean(stats: dict[str, Any]) -> str:
    return number(stats.get("mean"), 4)
