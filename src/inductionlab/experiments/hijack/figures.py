"""Figures of the hijack experiment (written next to ``results.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch

from inductionlab.experiments.hijack.analysis import NULLS, PREDICTIONS
from inductionlab.experiments.hijack.report import GAP_RULE, JUDGED, ROW_LABELS, claim_subset, strongest_null
from inductionlab.experiments.hijack.stats import group_means
from inductionlab.prompts.query_pairs import Setting
from inductionlab.report.figures import save_figure
from inductionlab.report.format import number

PANELS = PREDICTIONS
COLORS = {"model": "black", "weights_only": "tab:orange", "theta_readout": "tab:blue", "scalar": "tab:green",
          "constant": "tab:gray"}


def write_figures(results: dict[str, Any], tables: dict[str, dict], core: list[Setting], unigram: list[Setting],
                  out: Path) -> list[str]:
    """Every figure of the experiment; returns the PNG names."""
    names = [_beside(results, out), _scatter(results, tables, core, out, centred=False),
             _scatter(results, tables, core, out, centred=True),
             _sweep(results, core, out, "count", lambda s: s.n, "pairs (a, b) in the prompt", "count_sweep"),
             _crossover(results, out),
             _sweep(results, core, out, "distance", lambda s: s.position, "position of the pair", "distance_sweep"),
             _families_4_5(results, tables, core, unigram, out), _decomposition(results, out)]
    return names


def _scatter(results, tables, core, out: Path, centred: bool) -> str:
    """Predicted against measured gap, prompt by prompt, coloured by setting; count regression in grey."""
    encodings = list(results["encodings"])
    fig, axes = plt.subplots(len(encodings), len(PANELS), figsize=(4.3 * len(PANELS), 4 * len(encodings)),
                             squeeze=False)
    for row, pos_enc in enumerate(encodings):
        subset = claim_subset(pos_enc)
        chosen = []
        for table in tables[pos_enc].values():
            mask = table.setting < len(core)
            if subset == "inside":
                mask = mask & table.inside
            chosen.append(table.select(mask))
        stats = results["encodings"][pos_enc]["subsets"][subset]["agreement"]

        measured, colour = _gaps(chosen, "model", centred), torch.cat([t.setting for t in chosen])
        for col, name in enumerate(PANELS):
            ax = axes[row][col]
            best = strongest_null(stats)
            ax.scatter(measured, _gaps(chosen, best, centred), s=3, color="lightgrey", rasterized=True,
                       label=f"strongest null: {best.replace('_', ' ')}")
            ax.scatter(measured, _gaps(chosen, name, centred), s=3, c=colour, cmap="turbo", alpha=0.5,
                       rasterized=True)
            lo, hi = float(measured.min()), float(measured.max())
            ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
            ax.set_title(f"{pos_enc}: {name}\nwithin R² {number(stats[name]['within_r2']['mean'], 2)} "
                         f"({best.replace('_', ' ')} {number(stats[best]['within_r2']['mean'], 2)}), "
                         f"pooled {number(stats[name]['pooled_r2']['mean'], 2)}", fontsize=9)
            ax.set_xlabel("measured gap" + (" − setting mean" if centred else ""))
            ax.legend(fontsize=7, loc="upper left")
            if col == 0:
                ax.set_ylabel(f"predicted gap{' − setting mean' if centred else ''} ({subset} prompts)")
    name = "within_setting" if centred else "predicted_vs_measured"
    return save_figure(fig, out, name)


FLOOR = -1.0  # the R² axis starts here; a lower mean is written at the floor, lower seeds sit on it


def _beside(results, out: Path) -> str:
    """Within-setting R² of each prediction beside every null (a dot per seed, a bar for the mean), with the
    noise ceiling (band: min–max over seeds) and the rule's level, on the prompts the claims are judged on."""
    encodings = list(results["encodings"])
    names = (*PREDICTIONS, *NULLS, "attention_regression", "readout")
    fig, axes = plt.subplots(1, len(encodings), figsize=(6.5 * len(encodings), 5.2), squeeze=False, sharey=True)
    for ax, pos_enc in zip(axes[0], encodings, strict=True):
        entry = results["encodings"][pos_enc]["subsets"][claim_subset(pos_enc)]
        ceiling = entry["noise_ceiling"]["r2"]
        if ceiling["mean"] is not None:
            ax.axhspan(ceiling["min"], ceiling["max"], color="tab:purple", alpha=0.15, lw=0)
            ax.axhline(ceiling["mean"], color="tab:purple", lw=1.2, label="noise ceiling (filler re-drawn)")
        ax.axhline(GAP_RULE.level, color="black", lw=0.8, ls="--", label=f"level {GAP_RULE.level:g}")
        ax.axhline(0, color="grey", lw=0.6)
        for x, name in enumerate(names):
            stats = entry["agreement"][name]["within_r2"]
            colour = COLORS.get(name, "tab:gray" if name in NULLS else "tab:brown")
            if stats["mean"] is not None:
                ax.bar(x, stats["mean"], color=colour, alpha=0.35 if name not in PREDICTIONS else 0.8)
            seeds = [v for v in stats["per_seed"].values() if v is not None]
            ax.plot([x] * len(seeds), [max(v, FLOOR) for v in seeds], "o", color="black", ms=3)
            if stats["mean"] is not None and stats["mean"] < FLOOR:
                ax.annotate(number(stats["mean"], 2), (x, FLOOR), ha="center", va="bottom", fontsize=6)
        ax.set_ylim(FLOOR, 1.05)
        ax.set_xticks(range(len(names)), [ROW_LABELS[n] for n in names], rotation=60, ha="right", fontsize=7)
        ax.set(ylabel="within-setting R² (dots: seeds)",
               title=f"{pos_enc}, {claim_subset(pos_enc)} prompts: predictions, nulls, ceiling")
        ax.legend(fontsize=7, loc="lower left")
    return save_figure(fig, out, "predictions_beside_nulls")


def _gaps(tables: list, name: str, centred: bool) -> torch.Tensor:
    """One gap of every table, concatenated; centred on each seed's own setting means (as the statistic is)."""
    return torch.cat([t.gaps[name] - group_means(t.gaps[name], t.setting) if centred else t.gaps[name]
                      for t in tables])


def _sweep(results, core: list[Setting], out: Path, family: str, x_of, xlabel: str, name: str) -> str:
    """The gap against the swept variable of one family, one line per prompt length: model (—), scalar (--)."""
    encodings = list(results["encodings"])
    fig, axes = plt.subplots(1, len(encodings), figsize=(6 * len(encodings), 4.2), squeeze=False)
    lengths = sorted({s.seq_len for s in core if s.family == family})
    for ax, pos_enc in zip(axes[0], encodings, strict=True):
        rows = {r["setting"]: r for r in results["encodings"][pos_enc]["settings"]}
        for i, seq_len in enumerate(lengths):
            sweep = [s for s in core if s.family == family and s.seq_len == seq_len]
            color = plt.cm.viridis(i / max(len(lengths) - 1, 1))
            xs = [x_of(s) for s in sweep]
            ax.plot(xs, [rows[s.label]["model_gap"]["mean"] for s in sweep], "o-", color=color, label=f"T={seq_len}")
            ax.plot(xs, [rows[s.label]["scalar_gap"]["mean"] for s in sweep], "--", color=color)
        if family == "distance":
            ax.axvline(results["train_len"], color="grey", lw=0.8, ls=":")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(xlabel=xlabel, ylabel="ξ_b − ξ_j* (mean over pairs and seeds)",
               title=f"{pos_enc}, {family}: model (—), scalar form held out (--)")
        ax.legend(fontsize=7)
    return save_figure(fig, out, name)


def _crossover(results, out: Path) -> str:
    encodings = list(results["encodings"])
    fig, axes = plt.subplots(1, len(encodings), figsize=(5.5 * len(encodings), 4), squeeze=False)
    for ax, pos_enc in zip(axes[0], encodings, strict=True):
        cross = results["encodings"][pos_enc]["crossover"]
        lengths = [int(t) for t in cross["by_T"]]
        for name in ("model", *PANELS):
            ys = [cross["by_T"][str(t)][name]["mean"] for t in lengths]
            ax.plot(lengths, [float("nan") if y is None else y for y in ys], "o-" if name == "model" else "s--",
                    color=COLORS[name], label=name)
        constants = [[v["constant_by_T"][str(t)] for v in cross["per_seed"].values()] for t in lengths]
        ax.plot(lengths, [sum(c) / len(c) for c in constants], ":", color=COLORS["constant"],
                label="best constant per T, other seeds (mean)")
        ax.set(xscale="log", xlabel="prompt length T", ylabel="n* (mean over crossing pairs and seeds)")
        judged = "" if "crossover" in JUDGED.get(pos_enc, ()) else " (not judged: most pairs lie beyond T_train)"
        ax.set_title(f"{pos_enc}: crossover n*{judged}\nMAE " + ", ".join(
            f"{name} {number(cross['mae'][name]['mean'], 2)}" for name in PANELS)
            + f", constant per T {number(cross['constant_mae']['mean'], 2)}", fontsize=9)
        ax.set_xticks(lengths, [str(t) for t in lengths])
        ax.minorticks_off()
        ax.legend(fontsize=7)
    return save_figure(fig, out, "crossover")


def _families_4_5(results, tables, core: list[Setting], unigram: list[Setting], out: Path) -> str:
    fig, (ax4, ax5) = plt.subplots(1, 2, figsize=(12, 4.3))
    fam4 = results["family_4"]
    for prefix, style, label in (("non-trigger", "o-", "a not a trigger"), ("trigger query", "s-", "a a trigger")):
        rows = [r for r in fam4["settings"] if r["setting"].startswith(prefix)]
        ns = [int(r["setting"].rsplit("n=", 1)[1]) for r in rows]
        line = ax4.errorbar(ns, [r["model_gap"]["mean"] for r in rows], yerr=[r["model_gap"]["std"] for r in rows],
                            fmt=style, capsize=3, label=f"model, {label}")[0]
        ax4.plot(ns, [r["scalar_read_off_gap"]["mean"] for r in rows], "--", color=line.get_color(),
                 label=f"§4.4 read off, {label}")
    ax4.axhline(0, color="grey", lw=0.8)
    ax4.set(xlabel="pairs (a, b) in a 64-token prompt", ylabel="ξ_b − ξ_j* (mean ± std over seeds)",
            title="family 4: fixed-trigger model")
    ax4.legend(fontsize=7)
    for i, (pos_enc, by_seed) in enumerate(tables.items()):
        color = f"C{i}"
        xs, ys = [], []
        for table in by_seed.values():
            sel = table.select(table.setting >= len(core))
            groups = sel.seq_len * 1000 + sel.pair
            xs.append(sel.copies_fraction - group_means(sel.copies_fraction, groups))
            ys.append(sel.gaps["model"] - group_means(sel.gaps["model"], groups))
        ax5.scatter(torch.cat(xs), torch.cat(ys), s=3, color=color, alpha=0.3, rasterized=True)
        slope = results["encodings"][pos_enc]["unigram_slope"]
        grid = torch.linspace(float(torch.cat(xs).min()), float(torch.cat(xs).max()), 2)
        ax5.plot(grid, slope["model_slope"]["mean"] * grid, color=color, label=f"{pos_enc}: model slope")
        ax5.plot(grid, slope["theory_slope"]["mean"] * grid, "--", color=color, label=f"{pos_enc}: scalar form slope")
    ax5.set(xlabel="#{s : z_s = b} / T, minus its (T, pair) mean", ylabel="ξ_b − ξ_j*, minus its (T, pair) mean",
            title="family 5: a absent; copies of b planted")
    ax5.legend(fontsize=7)
    return save_figure(fig, out, "families_4_5")


def _decomposition(results, out: Path) -> str:
    encodings = list(results["encodings"])
    fig, axes = plt.subplots(1, len(encodings), figsize=(6 * len(encodings), 4.5), squeeze=False)
    for ax, pos_enc in zip(axes[0], encodings, strict=True):
        margin = results["encodings"][pos_enc]["score_decomposition"]["induction_margin"]
        pairs = sorted(margin, key=lambda p: abs(margin[p]))
        ax.barh(pairs, [margin[p] for p in pairs], color="tab:purple")
        ax.axvline(0, color="grey", lw=0.8)
        ax.set(xlabel="score on induction keys − other keys (mean over seeds)",
               title=f"{pos_enc}: what puts layer-2 attention on the induction keys")
    return save_figure(fig, out, "score_decomposition")
