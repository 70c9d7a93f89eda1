"""Figure and README of the nope3 experiment (written next to ``results.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from inductionlab.experiments.claims import claims_table
from inductionlab.experiments.figures import save_figure


def write_figure(results: dict[str, Any], out: Path) -> str:
    """Training curves, accuracy by test length, and head-score maps of both variants."""
    variants = results["variants"]
    fig, axes = plt.subplots(1, 2 + 2 * len(variants), figsize=(8 + 3.6 * len(variants), 3.8))
    for variant, data in variants.items():
        curve = data["curve"]
        axes[0].plot([c["step"] for c in curve], [c["acc_in_context"] for c in curve], "o-", ms=3, label=variant)
        lengths = results["test_lengths"]
        axes[1].plot(lengths, [data["by_length"][str(t)]["acc_in_context"] for t in lengths], "o-", label=variant)
    axes[0].set(xlabel="step", ylabel="in-context accuracy", title="training", ylim=(0, 1.02))
    axes[1].set(xlabel="test length T", xscale="log", title="by test length", ylim=(0, 1.02))
    axes[1].axvline(next(iter(variants.values()))["config"]["train_len"], color="grey", lw=0.8, ls="--")
    axes[0].legend()
    for i, (variant, data) in enumerate(variants.items()):
        for j, key in enumerate(("previous_token", "induction")):
            ax = axes[2 + 2 * i + j]
            image = ax.imshow(data["head_scores"][key], vmin=0, vmax=1, cmap="viridis")
            ax.set(title=f"{variant}: {key}", xlabel="head", ylabel="layer")
            fig.colorbar(image, ax=ax, shrink=0.8)
    return save_figure(fig, out, "nope3")


def write_readme(results: dict[str, Any], out: Path) -> None:
    lengths = results["test_lengths"]
    lines = ["# nope3: three-layer position-free general transformers (SCIENCE §6)", "",
             f"Preset `{results['preset']}`. {results['setting']}", "",
             "| variant | first step acc ≥ 0.5 | ≥ 0.9 | final acc at T_train | "
             + " | ".join(f"T={t}" for t in lengths) + " | best previous-token head | best induction head |",
             "|---" * (len(lengths) + 6) + "|"]
    for variant, data in results["variants"].items():
        prev = max(max(row) for row in data["head_scores"]["previous_token"])
        ind = max(max(row) for row in data["head_scores"]["induction"])
        first = data["first_step_acc_in_context"]
        accs = " | ".join(f"{data['by_length'][str(t)]['acc_in_context']:.3f}" for t in lengths)
        lines.append(f"| {variant} | {first['0.5']} | {first['0.9']} | "
                     f"{data['final_acc_in_context_train_len']:.3f} | {accs} | {prev:.2f} | {ind:.2f} |")
    lines += ["", "## Claims", "", claims_table(results["claims"])]
    lines += ["", "Figures: " + ", ".join(f"`{f}`" for f in results["figures"]), ""]
    (out / "README.md").write_text("\n".join(lines))
