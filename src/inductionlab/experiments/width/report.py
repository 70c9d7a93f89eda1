"""Summary, claims, checks, figures and README of the width experiment (docs/science.md §11)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch

from inductionlab.experiments.hijack.stats import spearman
from inductionlab.experiments.kit.checks import check
from inductionlab.experiments.kit.claims import Rule, SeedValues, claim, claims_section
from inductionlab.experiments.kit.curves import seed_spread
from inductionlab.experiments.kit.finish import readme_heading
from inductionlab.experiments.width.measure import PREDICTIONS, REPORTED
from inductionlab.report.figures import save_figure
from inductionlab.report.format import number

LABELS = {"weights_only": "weights-only", "scalar_read_off": "scalar form",
          "readout": "readout with its own layer-2 attention"}
MEMORIES = {"wo": "W_O² (R3)", "wk2": "W_K² (R2)", "wk1": "W_K¹ (distance table)"}
FACTOR_LEVEL = 2.0  # claim 2: the trained relative disagreement at most this many times the ideal twin's
TREND_MARGIN = 0.5  # claim 1: ρ must lie below −0.5, over half-way from no trend to a monotone fall
FACTOR_MARGIN = 0.25  # claim 2: the largest width's factor must be below the smallest width's by this much


def flat(measured: dict[str, Any]) -> dict[str, float | None]:
    """One model's statistics (:func:`~inductionlab.experiments.width.measure.measure`) as ``name → value``."""
    out: dict[str, float | None] = {"gap_rms": measured["disagreement"]["gap_rms"]}
    for name in REPORTED:
        for stat, value in measured["disagreement"][name].items():
            out[f"{name}.{stat}"] = value
    for name in PREDICTIONS:
        out[f"{name}.n_star_error"] = measured["n_star_error"][name]
    out.update({f"cross_talk.{k}": v for k, v in measured["cross_talk"].items()})
    out.update({f"probes.{k}": v for k, v in measured["probes"].items()})
    out.update({f"scalars.{k}": v for k, v in measured["scalars"].items()})
    if "convergence" in measured:
        out["loss"] = measured["convergence"].get("final_loss")
        out["loss_relative_change"] = measured["convergence"]["relative_change"]
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)) or b == 0:
        return None
    return a / b


def summarise(models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per width, mean and spread over seeds of every statistic, trained and ideal; per prediction and seed, the
    factor ``D_trained / D_ideal`` and the excess ``(D_trained − D_ideal) / D_trained`` at every width; the runs
    that did not converge."""
    by_width, factor, excess = {}, {p: {} for p in PREDICTIONS}, {p: {} for p in PREDICTIONS}
    for d, m in models.items():
        by_width[d] = {}
        for kind in ("trained", "ideal"):
            rows = {seed: flat(v) for seed, v in m[kind].items()}
            keys = next(iter(rows.values())).keys()
            by_width[d][kind] = {k: {**seed_spread([r[k] for r in rows.values()]),
                                     "per_seed": {s: r[k] for s, r in rows.items()}} for k in keys}
        for p in PREDICTIONS:
            key = f"{p}.relative_rmse"
            trained, ideal = by_width[d]["trained"][key]["per_seed"], by_width[d]["ideal"][key]["per_seed"]
            factor[p][d] = {s: _ratio(trained[s], ideal.get(s)) for s in trained}
            excess[p][d] = {s: None if f is None else 1.0 - 1.0 / f for s, f in factor[p][d].items()}
    unconverged = [m["runs"][s] for m in models.values() for s, v in m["trained"].items()
                   if not v["convergence"]["converged"]]
    return {"by_width": by_width, "factor": factor, "excess": excess, "unconverged": unconverged}


def _trend(excess: dict[str, dict[str, float | None]]) -> dict[str, float | None]:
    """Per seed, Spearman ρ between the width and the excess over the widths where it was measured."""
    seeds = sorted({s for per_seed in excess.values() for s in per_seed})
    out = {}
    for s in seeds:
        points = [(float(d), v[s]) for d, v in excess.items() if v.get(s) is not None]
        if len(points) < 3:
            out[s] = None
            continue
        x, y = (torch.tensor(c, dtype=torch.float64) for c in zip(*points, strict=True))
        rho = spearman(x, y)
        out[s] = None if math.isnan(rho) else rho
    return out


def claims(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The two claims of :mod:`.run`, per prediction."""
    summary, widths = results["summary"], [str(d) for d in results["widths"]]
    smallest, largest = widths[0], widths[-1]
    out = []
    for p in PREDICTIONS:
        rho = _trend(summary["excess"][p])
        spread = seed_spread(list(rho.values()))
        out.append(claim(
            f"{LABELS[p]}: the trained models' excess disagreement over the ideal twin falls as d grows",
            "finite-width cross-talk is what separates trained models from the closed form: the excess shrinks "
            "toward 0 with d", f"Spearman ρ over d = {', '.join(widths)} of (D_trained − D_ideal)/D_trained, per seed",
            spread["mean"], 0.0, "no trend, ρ = 0", Rule("lower", None, TREND_MARGIN),
            seeds=SeedValues(rho, 0.0), reads=({},), per_seed=rho))  # every width
        at_largest, at_smallest = summary["factor"][p][largest], summary["factor"][p][smallest]
        out.append(claim(
            f"{LABELS[p]}: at d = {largest} the trained models disagree with the closed form at most "
            f"{FACTOR_LEVEL:g}× as much as the ideal twin",
            "at a width where the ideal memories are clean, a trained model follows the closed form nearly as "
            "closely", f"D_trained / D_ideal at d = {largest}, per seed",
            seed_spread(list(at_largest.values()))["mean"], seed_spread(list(at_smallest.values()))["mean"],
            f"the same factor at d = {smallest}",
            Rule("lower", FACTOR_LEVEL, FACTOR_MARGIN, "stated before the runs: the ideal twin's disagreement "
                 "accounts for at least half of the trained model's"),
            seeds=SeedValues(at_largest, at_smallest), reads=({"d_model": results["widths"][-1]},
                                                                {"d_model": results["widths"][0]}),
            per_seed=at_largest, null_per_seed=at_smallest))
    return out


def checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    """What holds by construction: the same read-off scalars written into ideal AMTs of the smallest and the
    largest width (``results["yardstick"]``) give key memories whose cross-talk falls with d. Not ``W_O²``: at
    these widths its read-back through ``W_F`` is near a random matrix's at both ends (docs/science.md §11), so
    its fall is small and not guaranteed."""
    yardstick, widths = results["yardstick"], results["widths"]
    out = []
    for memory in ("wk2", "wk1"):
        ratios = {seed: _ratio(v["largest"][memory], v["smallest"][memory]) for seed, v in yardstick.items()}
        worst = max((r for r in ratios.values() if r is not None), default=None)
        out.append(check(f"an ideal AMT's {MEMORIES[memory]} cross-talk falls from d = {widths[0]} to d = {widths[-1]} "
                         "with the scalars held fixed (random embeddings)",
                         "cross-talk at the largest width / at the smallest, the largest over seeds", worst, "< 1",
                         worst is not None and worst < 1, per_seed=ratios))
    return out


def setting(preset: dict[str, Any], cfg, results: dict[str, Any]) -> str:
    """The models, widths, training and prompts."""
    m, t = cfg.model, cfg.train
    seeds = sorted({int(s) for v in results["models"].values() for s in v["trained"]})
    return (f"Two-layer AMTs as in `hijack` (random triggers, {m.pos_enc}, linear W_F, loss on every target, "
            f"T_train = {cfg.data.seq_len}) at d = {', '.join(map(str, preset['widths']))} (N = "
            f"{results['n_tokens']} tokens), {preset['steps']} {t.optimizer} steps each (batch {t.batch_size}, "
            f"lr {t.lr}), seeds {seeds[0]}–{seeds[-1]}; each beside its ideal twin (the ideal AMT of the same d with "
            f"the scalars read off it). {results['prompts']['per_model']} designed prompts per model "
            f"({results['prompts']['settings']} settings of the count, distance and conflict families; "
            f"{preset['n_pairs']} query pairs × {preset['per_pair']}).")


def write_figures(results: dict[str, Any], out: Path) -> list[str]:
    """Disagreement against d (both predictions, and the readout that locates it) and each memory's cross-talk
    against d, trained beside ideal."""
    by_width = results["summary"]["by_width"]
    widths = [str(d) for d in results["widths"]]
    x = [int(d) for d in widths]
    names = []
    for stem, panels, ylabel in (
            ("width_disagreement", {LABELS[p]: f"{p}.relative_rmse" for p in REPORTED}, "relative disagreement D"),
            ("width_cross_talk", {MEMORIES[m]: f"cross_talk.{m}" for m in MEMORIES},
             "cross-talk (RMS off / RMS stored)")):
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
        for ax, (title, key) in zip(axes[0], panels.items(), strict=True):
            for kind, color, ls in (("trained", "tab:blue", "-"), ("ideal", "tab:orange", "--")):
                stats = [by_width[d][kind][key] for d in widths]
                for seed in stats[0]["per_seed"]:
                    ax.plot(x, [s["per_seed"].get(seed) for s in stats], color=color, ls=ls, lw=0.6, alpha=0.5)
                ax.plot(x, [s["mean"] for s in stats], color=color, ls=ls, lw=2, marker="o",
                        label=f"{'trained' if kind == 'trained' else 'ideal twin'} (mean; thin: seeds)")
            ax.set(xscale="log", xlabel="d", ylabel=ylabel, title=title)
            ax.set_xticks(x, widths)
            ax.minorticks_off()
            ax.legend(fontsize=7)
        names.append(save_figure(fig, out, stem, dpi=110))
    return names


def readme(results: dict[str, Any]) -> str:
    """The experiment's README.md: the per-width table, convergence, the claims."""
    by_width = results["summary"]["by_width"]
    lines = readme_heading("Width: the closed form as d grows (docs/science.md §11)", results,
                           "d", "model", "D weights-only", "R² weights-only", "D scalar", "R² scalar", "D readout",
                           "n* error (w-o / scalar)", "cross-talk W_O² / W_K² / W_K¹", "recall W_O²·W_F / W_K²",
                           "margin W_O² / W_K²", "eval loss")
    for d in (str(d) for d in results["widths"]):
        for kind in ("trained", "ideal"):
            s = by_width[d][kind]

            def mean(key: str, digits: int = 2, s=s) -> str:
                return number(s[key]["mean"], digits) if key in s else "–"

            lines.append(
                f"| {d} | {kind} | {mean('weights_only.relative_rmse')} | {mean('weights_only.within_r2')} | "
                f"{mean('scalar_read_off.relative_rmse')} | {mean('scalar_read_off.within_r2')} | "
                f"{mean('readout.relative_rmse')} | "
                f"{mean('weights_only.n_star_error')} / {mean('scalar_read_off.n_star_error')} | "
                f"{mean('cross_talk.wo')} / {mean('cross_talk.wk2')} / {mean('cross_talk.wk1')} | "
                f"{mean('probes.wo_ff')} / {mean('probes.wk2')} | "
                f"{mean('probes.wo_margin')} / {mean('probes.wk2_margin')} | {mean('loss', 3)} |")
    unconverged = results["summary"]["unconverged"]
    lines += ["", "Means over seeds. D: the within-setting RMSE of the prediction over the RMS of the model's own "
              "within-setting gaps (√(1 − R²); above 1: worse than each setting's mean); the ideal twin is the ideal "
              "AMT of the same d with the scalars read off each trained model, judged against the scalar form of "
              "those scalars. Cross-talk: RMS of each recall matrix off its stored associations over RMS on them. "
              "Recall: probe accuracy; margin: stored entry minus the largest competitor over the RMS stored entry. "
              "D readout: the readout with the model's own layer-2 attention (not a prediction: where it is small "
              "and D weights-only is not, the weights miss where layer 2 attends).", "",
              "Convergence (evaluation loss changing by less than 1 % over the last fifth of training): "
              + (f"{len(unconverged)} runs had not converged: {', '.join(unconverged)}." if unconverged
                 else "every run converged.")]
    lines += ["", *claims_section(results)]
    return "\n".join(lines)
