"""Figures and the README of the length experiment (written next to ``results.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.ticker import NullLocator

from inductionlab.experiments.kit.claims import Rule, SeedValues, claim, claims_section
from inductionlab.report.figures import save_figure
from inductionlab.report.format import number, spread


def _series(results: dict[str, Any], pos_enc: str, key: str) -> tuple[list[int], list[float], list[float]]:
    xs, means, stds = [], [], []
    for seq_len in results["test_lengths"]:
        stats = results["encodings"][pos_enc][str(seq_len)].get(key)
        if stats is not None and stats["mean"] is not None:
            xs.append(seq_len)
            means.append(stats["mean"])
            stds.append(stats["std"])
    return xs, means, stds


def write_figures(results: dict[str, Any], out: Path) -> list[str]:
    """In-context accuracy against test length; before vs beyond T_train; layer-1 by position."""
    train_len = results["train_len"]
    names = []
    panels = (("acc_in_context", "all in-context targets"),
              ("acc_in_context_beyond_train_len", f"in-context targets at positions ≥ T_train = {train_len}"),
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
    axes[0].set_ylabel("accuracy (mean ± std over seeds)")
    axes[0].legend(fontsize=8)
    names.append(save_figure(fig, out, "length_generalisation"))

    longest = str(results["test_lengths"][-1])
    fig, ax = plt.subplots(figsize=(7, 4))
    encodings = list(results["encodings"])
    width = 0.38
    for i, (key, label) in enumerate((("acc_in_context_before_train_len", f"positions < {train_len}"),
                                      ("acc_in_context_beyond_train_len", f"positions ≥ {train_len}"))):
        stats = [results["encodings"][p][longest][key] for p in encodings]
        ax.bar([j + (i - 0.5) * width for j in range(len(encodings))], [s["mean"] or 0 for s in stats], width,
               yerr=[s["std"] or 0 for s in stats], capsize=3, label=label)
    ax.set_xticks(range(len(encodings)), encodings)
    ax.set(ylabel="in-context accuracy", title=f"test length {longest}: before vs beyond the training length",
           ylim=(0, 1.05))
    ax.legend()
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
        ax.errorbar(xs, [r["model_gap"]["mean"] for r in rows], yerr=[r["model_gap"]["std"] for r in rows],
                    fmt="o-", capsize=3, color=color, label=pos_enc)
        if "theory_gap" in rows[0]:
            ax.plot(xs, [r["theory_gap"]["mean"] for r in rows], "--", color=color)
    ax.axvline(data["train_len"], color="grey", lw=0.8, ls=":")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xlabel="position of the pair (a, b)", ylabel="ξ_b − ξ_j*",
           title=f"family 2 at T = {data['seq_len']}: model (—), §4.4 with read-off memories (--)")
    ax.legend(fontsize=8)
    return save_figure(fig, out, "designed_distance")


def readme(results: dict[str, Any]) -> str:
    """The experiment's README.md: accuracy by test length, before and beyond T_train, family 2, the claims."""
    lengths = results["test_lengths"]
    train_len = results["train_len"]
    lines = [
        "# Length generalisation (docs/science.md §3.1, §4.4 (iv), §6)", "",
        f"Preset `{results['preset']}`: trained at T_train = {train_len}, evaluated at {lengths}. "
        "Mean ± std over seeds.", "",
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
    lines += ["", f"## At T = {longest}: targets before vs beyond T_train", "",
              "| encoding | before | beyond | layer-1 previous-token, beyond |", "|---|---|---|---|"]
    for pos_enc, by_len in results["encodings"].items():
        row = by_len[longest]
        lines.append(f"| {pos_enc} | {spread(row['acc_in_context_before_train_len'])} | "
                     f"{spread(row['acc_in_context_beyond_train_len'])} | "
                     f"{spread(row['layer1_prev_token_beyond_train_len'])} |")
    if results.get("designed_distance"):
        data = results["designed_distance"]
        positions = [r["position"] for r in next(iter(data["rows"].values()))]
        lines += ["", f"## Family 2 at T = {data['seq_len']}: one pair at position s₀ ({data['pair']})", "",
                  "Model p(b), mean ± std over seeds (mean logit gap; mean §4.4 gap with read-off memories "
                  "where the theory applies).", "",
                  "| encoding | " + " | ".join(f"s₀={p}" for p in positions) + " |",
                  "|---" * (len(positions) + 1) + "|"]
        for pos_enc, rows in data["rows"].items():
            cells = [f"{spread(r['model_p_b'], 2)} ({number(r['model_gap']['mean'], 1)}"
                     + (f"; {number(r['theory_gap']['mean'], 1)})" if "theory_gap" in r else ")") for r in rows]
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


def claims(results: dict[str, Any]) -> list[dict[str, Any]]:
    """§4.4 (iv): absolute positions do not extrapolate, relative ones do; each against a null (docs/science.md §7)."""
    lengths, train_len, enc = results["test_lengths"], results["train_len"], results["encodings"]
    longest = str(lengths[-1])
    at_4x = str(min(lengths, key=lambda t: abs(t - 4 * train_len)))

    def drop(pos_enc: str) -> tuple[float | None, dict[str, Any]]:
        """Accuracy before minus beyond T_train at the longest test length, mean over seeds."""
        row = enc[pos_enc][longest]
        per_seed = {s: (r["acc_in_context_before_train_len"] - r["acc_in_context_beyond_train_len"]
                        if None not in (r["acc_in_context_before_train_len"], r["acc_in_context_beyond_train_len"])
                        else None) for s, r in row["per_seed"].items()}
        values = [v for v in per_seed.values() if v is not None]
        return (sum(values) / len(values) if values else None), per_seed

    out = []
    if "rpe" in enc:
        null_drop, null_per_seed = drop("rpe")
        for pos_enc in ("ape", "ape-sincos"):
            if pos_enc in enc:
                measured, per_seed = drop(pos_enc)
                out.append(claim(
                    f"`{pos_enc}` loses the pairs beyond τ = T_train: its previous-token memory is tied to trained "
                    "positions", "accuracy beyond T_train ≥ 0.3 below the accuracy before it, ≥ 0.2 more than rpe "
                    "loses", f"in-context accuracy before T_train minus beyond it, at T = {longest}, mean over seeds",
                    measured, null_drop, "the same drop for rpe (relative positions)", Rule("higher", 0.3, 0.2),
                    seeds=SeedValues(per_seed, null_per_seed), per_seed=per_seed))
    def beyond(pos_enc: str) -> dict[str, Any]:
        """Accuracy on targets beyond T_train at about 4 × T_train, per seed."""
        return {s: r["acc_in_context_beyond_train_len"] for s, r in enc[pos_enc][at_4x]["per_seed"].items()}

    if "ape" in enc:
        null_stats = enc["ape"][at_4x]["acc_in_context_beyond_train_len"]
        for pos_enc in ("rpe", "bias"):
            if pos_enc in enc:
                stats = enc[pos_enc][at_4x]["acc_in_context_beyond_train_len"]
                out.append(claim(
                    f"`{pos_enc}` (relative positions) keeps its induction head at {int(at_4x) // train_len}× the "
                    "training length", "in-context accuracy beyond T_train ≥ 0.9, ≥ 0.3 above ape",
                    f"in-context accuracy on targets at positions ≥ T_train, T = {at_4x}, mean over seeds",
                    stats["mean"], null_stats["mean"], "the ape model on the same targets", Rule("higher", 0.9, 0.3),
                    seeds=SeedValues(beyond(pos_enc), beyond("ape")), per_seed=beyond(pos_enc)))
    return out
