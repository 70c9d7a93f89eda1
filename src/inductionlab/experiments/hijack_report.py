"""Figures and the README of the hijack experiment (written next to ``results.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch

from inductionlab.experiments.figures import save_figure

COLORS = {"model": "black", "weights_only": "tab:orange", "readout": "tab:blue", "scalar": "tab:green"}


def write_figures(rows: list[dict[str, Any]], results: dict[str, Any], out: Path) -> list[str]:
    """p(b) and the logit gap against n for several T; predicted-vs-measured; score decomposition."""
    names = []
    count = [r for r in rows if r["family"] == "count"]
    lengths = sorted({r["seq_len"] for r in count})
    fig, (ax_p, ax_gap) = plt.subplots(1, 2, figsize=(11, 4))
    for i, seq_len in enumerate(lengths):
        sweep = sorted((r for r in count if r["seq_len"] == seq_len), key=lambda r: r["n"])
        ns = [r["n"] for r in sweep]
        color = plt.cm.viridis(i / max(len(lengths) - 1, 1))
        ax_p.plot(ns, [r["model_p_b"] for r in sweep], "o-", color=color, label=f"T={seq_len}")
        ax_gap.plot(ns, [r["model_gap"] for r in sweep], "o-", color=color, label=f"model, T={seq_len}")
        ax_gap.plot(ns, [r["scalar_gap"] for r in sweep], "--", color=color, label=f"scalar theory, T={seq_len}")
        ax_gap.plot(ns, [r["readout_gap"] for r in sweep], ":", color=color)
    a, b, rival = (count[0]["tokens"][k] for k in ("a", "b", "rival"))
    ax_p.set(xlabel=f"pairs ({a!r}, {b!r}) in the prompt", ylabel=f"model p({b!r} | …{a!r})",
             title="family 1 (count): context vs stored bigram")
    ax_gap.axhline(0, color="grey", lw=0.8)
    ax_gap.set(xlabel="pairs n", ylabel=f"ξ({b!r}) − ξ({rival!r})",
               title="logit gap: model (—), scalar (--), readout (··)")
    ax_p.legend()
    ax_gap.legend(fontsize=7)
    names.append(save_figure(fig, out, "count_sweep"))

    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharex=True, sharey=True)
    core = [r for r in rows if r["family"] in ("count", "distance", "conflict")]
    measured = torch.cat([r["_gaps"]["model"] for r in core])
    for ax, name in zip(axes, ("weights_only", "readout", "scalar"), strict=True):
        predicted = torch.cat([r["_gaps"][name] for r in core])
        ax.scatter(measured, predicted, s=4, alpha=0.3, color=COLORS[name])
        lo, hi = float(measured.min()), float(measured.max())
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
        r2 = results["families_1_to_3"][f"{name}_r2_gap"]
        ax.set(title=f"{name}: R² = {r2:.2f}", xlabel="measured gap")
    axes[0].set_ylabel("predicted gap")
    names.append(save_figure(fig, out, "predicted_vs_measured"))

    distance = [r for r in rows if r["family"] == "distance"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, seq_len in enumerate(sorted({r["seq_len"] for r in distance})):
        sweep = sorted((r for r in distance if r["seq_len"] == seq_len), key=lambda r: r["position"])
        color = plt.cm.viridis(i / 3)
        positions = [r["position"] for r in sweep]
        ax.plot(positions, [r["model_gap"] for r in sweep], "o-", color=color, label=f"T={seq_len}")
        ax.plot([r["position"] for r in sweep], [r["scalar_gap"] for r in sweep], "--", color=color)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xlabel="position of the pair", ylabel="logit gap", title="family 2 (distance): model (—), scalar (--)")
    ax.legend()
    names.append(save_figure(fig, out, "distance_sweep"))

    fig, (ax_nt, ax_nc) = plt.subplots(1, 2, figsize=(11, 4))
    non_trigger = sorted((r for r in rows if r["family"] == "non-trigger"), key=lambda r: r["n"])
    if non_trigger:
        a, b, rival = (non_trigger[0]["tokens"][k] for k in ("a", "b", "rival"))
        for key, style in (("model", "o-"), ("readout", ":"), ("scalar", "--")):
            ax_nt.plot([r["n"] for r in non_trigger], [r[f"{key}_gap"] for r in non_trigger], style,
                       color=COLORS[key], label=key)
        ax_nt.axhline(0, color="grey", lw=0.8)
        ax_nt.set(xlabel=f"pairs ({a!r}, {b!r})", ylabel=f"ξ({b!r}) − ξ({rival!r})",
                  title=f"family 4: {a!r} is not a trigger (fixed-trigger model)")
        ax_nt.legend()
    no_context = sorted((r for r in rows if r["family"] == "no-context"), key=lambda r: r["seq_len"])
    for key, style in (("model", "o-"), ("readout", ":"), ("scalar", "--")):
        ax_nc.plot([r["seq_len"] for r in no_context], [r[f"{key}_gap"] for r in no_context], style,
                   color=COLORS[key], label=key)
    ax_nc.axhline(0, color="grey", lw=0.8)
    ax_nc.set(xscale="log", xlabel="prompt length T", ylabel="logit gap b − j*",
              title="family 5: query never seen before (bigram alone)")
    ax_nc.legend()
    names.append(save_figure(fig, out, "non_trigger_and_no_context"))

    decomposition = results["layer2_score_decomposition"]["random"]
    fig, (ax_m, ax_s) = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    pairs = sorted(decomposition["induction_margin"], key=lambda p: abs(decomposition["induction_margin"][p]))
    ax_m.barh(pairs, [decomposition["induction_margin"][p] for p in pairs], color="tab:purple")
    ax_m.axvline(0, color="grey", lw=0.8)
    ax_m.set(xlabel="score on induction keys − other keys", title="what puts attention on the induction keys")
    ax_s.barh(pairs, [decomposition["spread"][p] for p in pairs], color="tab:gray")
    ax_s.set(xlabel="std of the term across keys", title="what moves layer-2 attention at all")
    names.append(save_figure(fig, out, "score_decomposition"))
    return names


def write_readme(results: dict[str, Any], out: Path) -> None:
    fam = results["families_1_to_3"]
    lines = [
        "# Knowledge hijack (SCIENCE §5, §6)", "",
        f"Preset `{results['preset']}`. Models: {', '.join(f'`{k}` → `{v}`' for k, v in results['runs'].items())}.", "",
        "Families 1–3 (count, distance, conflict) and 5 (no-context) on the random-trigger model; family 4 "
        "(non-trigger) on the fixed-trigger model. Compared quantity: the logit gap ξ_b − ξ_{j*}.", "",
        "## Agreement of the predictions with the model (families 1–3)", "",
        "| prediction | R² of logit gaps |", "|---|---|",
        *(f"| {k.removesuffix('_r2_gap')} | {v:.3f} |" for k, v in fam.items()), "",
        "## Crossover n* (smallest number of pairs at which b beats j*)", "",
        "| T | model | weights-only | readout | scalar |", "|---|---|---|---|---|",
        *(f"| {t} | {c['model']} | {c['weights_only']} | {c['readout']} | {c['scalar']} |"
          for t, c in results["crossover_n"].items()), "",
        "## Per family", "",
        "| family | prompts | b wins (model) | R² weights-only | R² readout | R² scalar |", "|---|---|---|---|---|---|",
        *(f"| {f} | {s['n_prompts']} | {s['model_b_wins']:.2f} | {s['weights_only_r2_gap']:.2f} | "
          f"{s['readout_r2_gap']:.2f} | {s['scalar_r2_gap']:.2f} |" for f, s in results["by_family"].items()), "",
        "Figures: " + ", ".join(f"`{f}`" for f in results["figures"]), "",
    ]
    (out / "README.md").write_text("\n".join(lines))


def setting(preset: dict[str, Any], runs_dir: Path, runs: dict[str, Path]) -> str:
    """One paragraph: the trained models and the designed prompts."""
    from inductionlab.runs import RunDir

    cfg = RunDir(runs["random"]).config()
    m, d, t = cfg.model, cfg.data, cfg.train
    return (f"Two {m.n_layers}-layer associative-memory transformers (d = {m.d_model}, {m.pos_enc} positions, "
            f"{m.init} init, W_F {m.ff}) trained {t.steps} steps at T_train = {d.seq_len} on the {d.source} bigrams "
            f"with K = {d.n_triggers} triggers, loss on {t.loss_on} targets: one with random triggers "
            f"(families 1–3 and 5), one with fixed triggers (family 4). {preset['n_prompts']} prompts per setting; "
            f"count sweeps at T ∈ {list(preset['count_T'])}, distance sweeps at T ∈ {list(preset['distance_T'])}.")


def _r2_verdict(r2: float) -> str:
    return "holds" if r2 >= 0.9 else "partly" if r2 >= 0.7 else "fails"


def claims(results: dict[str, Any]) -> list[dict[str, str]]:
    """Predicted vs measured, with a verdict, for the §4.4/§4.5 claims this experiment tests."""
    from inductionlab.experiments import claim

    fam = results["families_1_to_3"]
    out = [claim(f"The {label} (SCIENCE §4.5) predicts the model's logit gap ξ_b − ξ_j* on families 1–3",
                 "R² ≥ 0.9", f"R² = {fam[f'{key}_r2_gap']:.3f}", _r2_verdict(fam[f"{key}_r2_gap"]))
           for key, label in (("readout", "readout with the measured layer-2 attention"),
                              ("scalar", "scalar form of §4.4 (least-squares fit of its coefficients)"),
                              ("weights_only", "weights-only prediction"))]
    cross = results["crossover_n"]
    close = [t for t, c in cross.items() if c["model"] is not None and c["scalar"] is not None
             and abs(c["model"] - c["scalar"]) <= 1 or c["model"] is c["scalar"] is None]
    listed = ", ".join(f"T={t}: {c['scalar']} vs {c['model']}" for t, c in cross.items())
    out.append(claim("The crossover n* (pairs at which the context beats the stored bigram) is predicted",
                     "scalar-theory n* within ±1 of the model's at every T", f"predicted vs measured: {listed}",
                     "holds" if len(close) == len(cross) else "partly" if close else "fails"))
    measured = [c["model"] for _, c in sorted(cross.items(), key=lambda kv: int(kv[0]))]
    grows = all(m is not None for m in measured) and measured == sorted(measured) and measured[-1] > measured[0]
    out.append(claim("Longer prompts dilute the in-context term, so n* grows with T (§4.4)",
                     "n* non-decreasing in T, larger at the longest T", f"model n*: {measured}",
                     "holds" if grows else "fails"))
    by_family = results["by_family"]
    for family, text in (("non-trigger", "A query token that is not a trigger is not hijacked (family 4)"),
                         ("no-context", "With no pair in the prompt the stored bigram wins (family 5)")):
        if family in by_family:
            wins = by_family[family]["model_b_wins"]
            out.append(claim(text, "b wins on ≤ 5% of prompts", f"b wins on {100 * wins:.1f}%",
                             "holds" if wins <= 0.05 else "fails"))
    return out
