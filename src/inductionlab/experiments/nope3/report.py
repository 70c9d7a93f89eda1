"""Setting, figures and README of the nope3 experiment (written next to ``results.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.ticker import NullLocator

from inductionlab.experiments.kit.claims import claims_section
from inductionlab.experiments.kit.curves import seed_spread
from inductionlab.experiments.kit.finish import readme_heading
from inductionlab.report.figures import save_figure
from inductionlab.report.format import number, spread

DISTRIBUTIONS = {"random_tokens": "repeated random tokens", "task": "task sequences"}
KINDS = ("previous_token", "induction")



def setting(cfg: dict[str, Any], test_lengths: list[int], n_seeds: int) -> str:
    """One paragraph: the model (``cfg``: a variant's ``config`` entry), how it was trained and evaluated."""
    return (f"General transformer (docs/science.md §3.2): {cfg['n_layers']} layers, {cfg['n_heads']} heads, "
            f"d = {cfg['d_model']}, pre-LayerNorm, no positional encoding, trained {cfg['steps']} AdamW steps of "
            f"batch {cfg['batch_size']} at T_train = {cfg['train_len']} with {cfg['trigger_mode']} triggers, loss "
            f"on {cfg['loss_on']} targets, attention-only and with MLPs, {n_seeds} seed{'s' * (n_seeds != 1)} each; "
            f"evaluated up to "
            f"{test_lengths[-1]} tokens on non-degenerate sequences beside the in-context unigram predictor (no "
            "induction) and, at T_train, the untrained model; head scores on repeated random tokens and on the task's "
            "own sequences.")


def mean_grid(grids: list[list[list[float]]]) -> list[list[float]]:
    """The element-wise mean of per-seed (layer × head) score grids (NaN where any seed has NaN)."""
    return [[sum(g[layer][head] for g in grids) / len(grids) for head in range(len(grids[0][0]))]
            for layer in range(len(grids[0]))]


def write_figures(results: dict[str, Any], out: Path) -> list[str]:
    """Training curves and accuracy by test length; head-score maps (mean over seeds) on both distributions."""
    variants = results["variants"]
    lengths = results["test_lengths"]
    train_len = next(iter(variants.values()))["config"]["train_len"]
    fig, (ax_curve, ax_len) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (variant, data) in enumerate(variants.items()):
        color = f"C{i}"
        for j, run in enumerate(data["seeds"].values()):
            curve = run["curve"]
            ax_curve.plot([c["step"] for c in curve], [c["acc_in_context"] for c in curve], "o-", ms=2, lw=1,
                          color=color, alpha=0.8, label=variant if j == 0 else None)
        for key, style, label in (("by_length", "o-", variant),
                                  ("no_induction_by_length", "--", "in-context unigram (no induction)")):
            stats = [data[key][str(t)] if key != "by_length" else data[key][str(t)]["acc_in_context"] for t in lengths]
            if key == "no_induction_by_length" and i:
                continue  # the same sequences for every variant
            ax_len.errorbar(lengths, [s["mean"] for s in stats], yerr=[s["std"] or 0 for s in stats], fmt=style,
                            capsize=3, color=color if key != "no_induction_by_length" else "grey", label=label)
    ax_curve.set(xlabel="step", ylabel="in-context accuracy", title="training (evaluation batch), every seed",
                 ylim=(0, 1.02))
    ax_len.axvline(train_len, color="grey", lw=0.8, ls="--")
    ax_len.set_xscale("log", base=2)
    ax_len.xaxis.set_minor_locator(NullLocator())
    ax_len.set_xticks(lengths, [str(t) for t in lengths])
    ax_len.set(xlabel="test length T (T_train dashed)", ylabel="in-context accuracy (mean ± sample sd)",
               ylim=(0, 1.02), title="by test length, non-degenerate sequences")
    ax_curve.legend(fontsize=8)
    ax_len.legend(fontsize=7)
    names = [save_figure(fig, out, "nope3")]

    columns = [(where, kind) for where in DISTRIBUTIONS for kind in KINDS]
    fig, axes = plt.subplots(len(variants), len(columns), figsize=(3.4 * len(columns), 3.1 * len(variants)),
                             squeeze=False)
    for row, (variant, data) in enumerate(variants.items()):
        for col, (where, kind) in enumerate(columns):
            ax = axes[row][col]
            grid = mean_grid([run["head_scores"][where][kind] for run in data["seeds"].values()])
            image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis")
            for layer, values in enumerate(grid):
                for head, value in enumerate(values):
                    ax.text(head, layer, number(value, 2), ha="center", va="center",
                            color="white" if value != value or value < 0.6 else "black", fontsize=8)
            ax.set_xticks(range(len(grid[0])), [f"head {h + 1}" for h in range(len(grid[0]))])
            ax.set_yticks(range(len(grid)), [f"layer {layer + 1}" for layer in range(len(grid))])
            ax.set_title(f"{variant} (mean over seeds)\n{kind.replace('_', '-')}, {DISTRIBUTIONS[where]}", fontsize=9)
        fig.colorbar(image, ax=axes[row][-1], shrink=0.8)
    names.append(save_figure(fig, out, "nope3_heads"))
    return names


def _best(grid: list[list[float]]) -> float | None:
    values = [v for row in grid for v in row if v == v]
    return max(values) if values else None


def _best_heads(data: dict[str, Any], where: str, kind: str) -> str:
    """The best head of ``kind`` on ``where``, mean ± sample sd over seeds."""
    return spread(seed_spread([_best(run["head_scores"][where][kind]) for run in data["seeds"].values()]), 2)


def readme(results: dict[str, Any]) -> str:
    """The experiment's README.md: accuracy by length and best heads per variant (over seeds), the claims."""
    lengths = results["test_lengths"]
    lines = readme_heading("nope3: three-layer position-free general transformers (docs/science.md §6)", results,
                           "variant", "first step acc ≥ 0.5 (per seed)", "≥ 0.9", *(f"T={t}" for t in lengths))
    for variant, data in results["variants"].items():
        firsts = {level: " / ".join(number(run["first_step_acc_in_context"][level]) if
                                    run["first_step_acc_in_context"][level] is not None else "never"
                                    for run in data["seeds"].values()) for level in ("0.5", "0.9")}
        accs = " | ".join(spread(data["by_length"][str(t)]["acc_in_context"]) for t in lengths)
        lines.append(f"| {variant} | {firsts['0.5']} | {firsts['0.9']} | {accs} |")
    for key, label in (("untrained_by_length", "untrained"), ("no_induction_by_length", "in-context unigram")):
        for variant, data in results["variants"].items():
            accs = " | ".join(spread(data[key].get(str(t))) for t in lengths)
            name = label if key == "no_induction_by_length" else f"{variant}, {label}"
            lines.append(f"| {name} | | | {accs} |")
            if key == "no_induction_by_length":
                break  # the same sequences for every variant
    lines += ["", "Accuracy: in-context targets of non-degenerate sequences, mean ± sample sd over seeds.", "",
              "| variant | best previous-token head (task / random) | best induction head (task / random) |",
              "|---|---|---|"]
    for variant, data in results["variants"].items():
        cells = [f"{_best_heads(data, 'task', kind)} / {_best_heads(data, 'random_tokens', kind)}" for kind in KINDS]
        lines.append(f"| {variant} | {cells[0]} | {cells[1]} |")
    lines += ["", *claims_section(results)]
    return "\n".join(lines)
