"""Figures, setting and README of the length experiment (written next to ``results.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.ticker import NullLocator

from inductionlab.experiments.kit.claims import claims_section
from inductionlab.experiments.length.claims import BEFORE, BOTH_BEYOND, KEY_INSIDE
from inductionlab.report.figures import save_figure
from inductionlab.report.format import number, spread


def _series(results: dict[str, Any], pos_enc: str, key: str) -> tuple[list[int], list[float], list[float]]:
    xs, means, stds = [], [], []
    for seq_len in results["test_lengths"]:
        stats = results["encodings"][pos_enc][str(seq_len)].get(key)
        if stats is not None and stats["mean"] is not None:
            xs.append(seq_len)
            means.append(stats["mean"])
            stds.append(stats["std"] or 0.0)  # one seed: no spread
    return xs, means, stds


def write_figures(results: dict[str, Any], out: Path) -> list[str]:
    """In-context accuracy against test length; before vs beyond T_train; layer-1 by position."""
    train_len = results["train_len"]
    names = []
    panels = (("acc_in_context", "all in-context targets"),
              ("acc_in_context_both_beyond", f"targets with query and key ≥ T_train = {train_len}"),
              ("layer1_prev_token_beyond_train_len", f"layer 1 attends t−1, positions ≥ {train_len}"))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
    for ax, (key, title) in zip(axes, panels, strict=True):
        for pos_enc in results["encodings"]:
            xs, means, stds = _series(results, pos_enc, key)
            ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=pos_enc)
        ax.axvline(train_len, color="grey", lw=0.8, ls="--")
        ax.set_xscale("log", base=2)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set(xlabel="test length T", title=title, ylim=(-0.02, 1.02))
        ax.set_xticks(results["test_lengths"], [str(t) for t in results["test_lengths"]])
    axes[0].set_ylabel("accuracy (mean ± sample sd over seeds)")
    axes[0].legend(fontsize=8)
    names.append(save_figure(fig, out, "length_generalisation"))

    longest = str(results["test_lengths"][-1])
    fig, ax = plt.subplots(figsize=(7, 4))
    encodings = list(results["encodings"])
    parts = ((BEFORE, f"query < {train_len}"), (KEY_INSIDE, f"query ≥ {train_len}, key < {train_len}"),
             (BOTH_BEYOND, f"query and key ≥ {train_len}"))
    width = 0.8 / len(parts)
    for i, (key, label) in enumerate(parts):
        stats = [results["encodings"][p][longest][key] for p in encodings]
        ax.bar([j + (i - (len(parts) - 1) / 2) * width for j in range(len(encodings))],
               [s["mean"] or 0 for s in stats], width, yerr=[s["std"] or 0 for s in stats], capsize=3, label=label)
    ax.set_xticks(range(len(encodings)), encodings)
    ax.set(ylabel="in-context accuracy", title=f"test length {longest}: before vs beyond the training length",
           ylim=(0, 1.05))
    ax.legend(fontsize=8)
    names.append(save_figure(fig, out, "before_vs_beyond"))
    if results.get("designed_distance"):
        names.append(_distance_figure(results, out))
    return names


def _distance_figure(results: dict[str, Any], out: Path) -> str:
    """Family 2: logit gap of the in-context successor against the pair's position, with §4.4."""
    data = results["designed_distance"]
    fig, ax = plt.subplots(figsize=(7.5, 4.3))
    for i, (pos_enc, rows) in enumerate(data["rows"].items()):
        color = f"C{i}"
        xs = [r["position"] for r in rows]
        ax.errorbar(xs, [r["model_gap"]["mean"] for r in rows], yerr=[r["model_gap"]["std"] or 0.0 for r in rows],
                    fmt="o-", capsize=3, color=color, label=pos_enc)
        if "theory_gap" in rows[0]:
            ax.plot(xs, [r["theory_gap"]["mean"] for r in rows], "--", color=color)
            ax.plot(xs, [r["bigram_gap"]["mean"] for r in rows], ":", color=color)
    ax.axvline(data["train_len"], color="grey", lw=0.8, ls=":")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xlabel="position of the pair (a, b)", ylabel="ξ_b − ξ_j*",
           title=f"family 2 at T = {data['seq_len']}: model (—), §4.4 (--), bigram only (··)")
    ax.legend(fontsize=8)
    return save_figure(fig, out, "designed_distance")


def readme(results: dict[str, Any]) -> str:
    """The experiment's README.md: accuracy by test length, before and beyond T_train, family 2, claims, checks."""
    lengths = results["test_lengths"]
    train_len = results["train_len"]
    lines = [
        "# Length generalisation (docs/science.md §3.1, §4.4 (iv), §6)", "",
        f"Preset `{results['preset']}`: trained at T_train = {train_len}, evaluated at {lengths}. "
        "Mean ± sample standard deviation over seeds.", "",
        "## In-context accuracy by test length", "",
        "| encoding | " + " | ".join(f"T={t}" for t in lengths) + " |",
        "|---" * (len(lengths) + 1) + "|",
    ]
    for pos_enc, by_len in results["encodings"].items():
        lines.append(f"| {pos_enc} | " + " | ".join(spread(by_len[str(t)]["acc_in_context"]) for t in lengths) + " |")
    shares = next(iter(results["encodings"].values()))
    lines += ["", "Accuracies are over non-degenerate sequences; the degenerate ones (the same sequences for every "
              "encoding) supply " + ", ".join(number(shares[str(t)]['degenerate_in_context_share']['mean'], 2)
                                              for t in lengths)
              + f" of the in-context targets at T = {', '.join(str(t) for t in lengths)}."]
    longest = str(lengths[-1])
    first = shares[longest]["per_seed"]
    counts = next(iter(first.values()))
    lines += ["", f"## At T = {longest}: targets before vs beyond T_train", "",
              "A target beyond T_train is split by where its induction key lies (the position after the trigger's "
              f"previous occurrence): {counts.get('targets_query_beyond_key_inside')} targets with the query beyond "
              f"and the key inside, {counts.get('targets_both_beyond')} with both beyond (per seed, the same "
              "sequences for every encoding).", "",
              "| encoding | before | query beyond, key inside | both beyond | layer-1 previous-token, beyond |",
              "|---|---|---|---|---|"]
    for pos_enc, by_len in results["encodings"].items():
        row = by_len[longest]
        lines.append(f"| {pos_enc} | {spread(row[BEFORE])} | {spread(row[KEY_INSIDE])} | {spread(row[BOTH_BEYOND])} | "
                     f"{spread(row['layer1_prev_token_beyond_train_len'])} |")
    if results.get("designed_distance"):
        data = results["designed_distance"]
        positions = [r["position"] for r in next(iter(data["rows"].values()))]
        lines += ["", f"## Family 2 at T = {data['seq_len']}: one pair at position s₀ ({data['pair']})", "",
                  "Model p(b), mean ± sample sd over seeds (mean logit gap; mean §4.4 gap with read-off memories; "
                  "mean bigram-only gap of the same read-off, where the theory applies).", "",
                  "| encoding | " + " | ".join(f"s₀={p}" for p in positions) + " |",
                  "|---" * (len(positions) + 1) + "|"]
        for pos_enc, rows in data["rows"].items():
            cells = [f"{spread(r['model_p_b'], 2)} ({number(r['model_gap']['mean'], 1)}"
                     + (f"; {number(r['theory_gap']['mean'], 1)}; {number(r['bigram_gap']['mean'], 1)})"
                        if "theory_gap" in r else ")") for r in rows]
            lines.append(f"| {pos_enc} | " + " | ".join(cells) + " |")
    lines += ["", *claims_section(results)]
    return "\n".join(lines)


def setting(preset: dict[str, Any], base, lengths: list[int]) -> str:
    """One paragraph: the models, the seeds and the test lengths."""
    m, d, t = base.model, base.data, base.train
    return (f"{m.n_layers}-layer associative-memory transformers (d = {m.d_model}, {m.init} init, W_F {m.ff}), one per "
            f"positional encoding × {len(preset['seeds'])} seeds, trained {t.steps} steps at T_train = {d.seq_len} "
            f"on the {d.source} bigrams with K = {d.n_triggers} {d.trigger_mode} triggers; evaluated on "
            f"{preset['eval_batch']} fresh sequences at T ∈ {lengths}.")
