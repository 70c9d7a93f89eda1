"""Setting, figures and README of the nope3 experiment (written next to ``results.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.ticker import NullLocator

from inductionlab.experiments.kit.claims import claims_section
from inductionlab.experiments.kit.finish import readme_heading
from inductionlab.report.figures import save_figure
from inductionlab.report.format import number

DISTRIBUTIONS = {"random_tokens": "repeated random tokens", "task": "task sequences"}
KINDS = ("previous_token", "induction")


def setting(cfg: dict[str, Any], test_lengths: list[int]) -> str:
    """One paragraph: the model (``cfg``: a variant's ``config`` entry), how it was trained and evaluated."""
    return (f"General transformer (docs/science.md §3.2): {cfg['n_layers']} layers, {cfg['n_heads']} heads, "
            f"d = {cfg['d_model']},"
            f" pre-LayerNorm, no positional encoding, trained {cfg['steps']} AdamW steps at T_train = "
            f"{cfg['train_len']} with {cfg['trigger_mode']} triggers, loss on {cfg['loss_on']} targets, "
            f"attention-only and with MLPs; evaluated up to {test_lengths[-1]} tokens on non-degenerate sequences; "
            "head scores on repeated random tokens and on the task's own sequences.")


def write_figures(results: dict[str, Any], out: Path) -> list[str]:
    """Training curves and accuracy by test length; head-score maps on both distributions."""
    variants = results["variants"]
    lengths = results["test_lengths"]
    train_len = next(iter(variants.values()))["config"]["train_len"]
    fig, (ax_curve, ax_len) = plt.subplots(1, 2, figsize=(11, 4))
    for variant, data in variants.items():
        curve = data["curve"]
        ax_curve.plot([c["step"] for c in curve], [c["acc_in_context"] for c in curve], "o-", ms=3, label=variant)
        ax_len.plot(lengths, [data["by_length"][str(t)]["acc_in_context"] for t in lengths], "o-", label=variant)
        ax_len.plot(lengths, [data["untrained"]["acc_in_context_by_length"][str(t)] for t in lengths], ":",
                    color=ax_len.lines[-1].get_color(), label=f"{variant}, untrained")
    ax_curve.set(xlabel="step", ylabel="in-context accuracy", title="training (evaluation batch)", ylim=(0, 1.02))
    ax_len.axvline(train_len, color="grey", lw=0.8, ls="--")
    ax_len.set_xscale("log", base=2)
    ax_len.xaxis.set_minor_locator(NullLocator())
    ax_len.set_xticks(lengths, [str(t) for t in lengths])
    ax_len.set(xlabel="test length T (T_train dashed)", ylabel="in-context accuracy", ylim=(0, 1.02),
               title="by test length, non-degenerate sequences")
    ax_curve.legend(fontsize=8)
    ax_len.legend(fontsize=7)
    names = [save_figure(fig, out, "nope3")]

    columns = [(where, kind) for where in DISTRIBUTIONS for kind in KINDS]
    fig, axes = plt.subplots(len(variants), len(columns), figsize=(3.4 * len(columns), 3.1 * len(variants)),
                             squeeze=False)
    for row, (variant, data) in enumerate(variants.items()):
        for col, (where, kind) in enumerate(columns):
            ax = axes[row][col]
            grid = data["head_scores"][where][kind]
            image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis")
            for layer, values in enumerate(grid):
                for head, value in enumerate(values):
                    ax.text(head, layer, number(value, 2), ha="center", va="center",
                            color="white" if value != value or value < 0.6 else "black", fontsize=8)
            ax.set_xticks(range(len(grid[0])), [f"head {h + 1}" for h in range(len(grid[0]))])
            ax.set_yticks(range(len(grid)), [f"layer {layer + 1}" for layer in range(len(grid))])
            ax.set_title(f"{variant}\n{kind.replace('_', '-')}, {DISTRIBUTIONS[where]}", fontsize=9)
        fig.colorbar(image, ax=axes[row][-1], shrink=0.8)
    names.append(save_figure(fig, out, "nope3_heads"))
    return names


def _best(grid: list[list[float]]) -> str:
    values = [v for row in grid for v in row if v == v]
    return number(max(values), 2) if values else number(None)


def readme(results: dict[str, Any]) -> str:
    """The experiment's README.md: accuracy by length and best heads per variant, the claims."""
    lengths = results["test_lengths"]
    lines = readme_heading("nope3: three-layer position-free general transformers (docs/science.md §6)", results,
                           "variant", "first step acc ≥ 0.5", "≥ 0.9", *(f"T={t}" for t in lengths),
                           "best previous-token head (task / random)", "best induction head (task / random)")
    for variant, data in results["variants"].items():
        first = data["first_step_acc_in_context"]
        accs = " | ".join(number(data['by_length'][str(t)]['acc_in_context']) for t in lengths)
        heads = data["head_scores"]
        lines.append(f"| {variant} | {first['0.5']} | {first['0.9']} | {accs} | "
                     f"{_best(heads['task']['previous_token'])} / {_best(heads['random_tokens']['previous_token'])} | "
                     f"{_best(heads['task']['induction'])} / {_best(heads['random_tokens']['induction'])} |")
    lines += ["", *claims_section(results)]
    return "\n".join(lines)
