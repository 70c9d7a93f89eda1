"""Setting, side-by-side table, figures and README of the birth experiment (written next to ``results.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from inductionlab.config import RunConfig, load_config
from inductionlab.experiments.birth.all_targets import DISTANCES
from inductionlab.experiments.birth.topdown import ARGMAX_LEVEL, ARMS, ORDER_ARMS
from inductionlab.experiments.kit.claims import claims_section
from inductionlab.experiments.kit.curves import last_evaluation
from inductionlab.experiments.kit.figures import seed_band
from inductionlab.experiments.kit.finish import readme_heading
from inductionlab.probes.functional import FORMED, FUNCTIONAL
from inductionlab.report.figures import save_figure
from inductionlab.report.format import spread
from inductionlab.runs import RunDir

MEMORY_COLORS = {"wo": "tab:green", "wk2": "tab:orange", "wk1": "tab:purple"}
FUNCTIONAL_COLORS = dict(zip(FUNCTIONAL, MEMORY_COLORS.values(), strict=True))
# Bietti et al.'s reference run, read from their public code (docs/birth.md)
BIETTI = {"init of the trained matrices": "random (nn.Linear default)", "d": 256, "T": 256, "batch": 512,
          "tokens per step": 131072, "steps": 1000, "optimizer": "SGD, momentum 0.9", "lr": 0.03,
          "weight decay": 0.0001, "K (fixed triggers)": 5, "loss on": "in-context targets", "W_F": "none",
          "trained": "W_K¹, W_K², W_O²"}


def _row(cfg: RunConfig) -> dict[str, Any]:
    m, d, t = cfg.model, cfg.data, cfg.train
    return {"init of the trained matrices": "zero" if m.zero_init else "random (nn.Linear default)",
            "d": m.d_model, "T": d.seq_len, "batch": t.batch_size, "tokens per step": t.batch_size * d.seq_len,
            "steps": t.steps, "optimizer": f"{t.optimizer.upper()}, momentum {t.momentum}", "lr": t.lr,
            "weight decay": t.weight_decay, "K (fixed triggers)": d.n_triggers, "loss on": f"{t.loss_on} targets",
            "W_F": m.ff, "trained": ", ".join(m.trained or ("wk1", "wk2", "wo2"))}


def side_by_side(runs_dir: Path, specs, preset_name: str, paper_topdown: str) -> dict[str, dict[str, Any]]:
    """Every hyperparameter of Bietti's reference run beside this preset's arms of setting (b) and the paper
    preset's main arm (``paper_topdown``: its preset name)."""
    out = {"Bietti et al. (reference)": BIETTI}
    for spec in specs:
        p = dict(spec.params)
        name = f"{preset_name}: {p.get('arm')}"
        if p["setting"] == "topdown" and name not in out:
            out[name] = _row(RunDir(runs_dir / spec.folder).config())
    if preset_name != "paper":
        out["paper: T256-random"] = _row(load_config(paper_topdown))
    return out


def setting(runs_dir: Path, specs, freeze_until: int) -> str:
    """One paragraph per setting: the models and how they were trained."""
    parts = []
    for name, label in (("all", "(a) all targets"), ("topdown", "(b) top-down, main arm")):
        chosen = [s for s in specs if dict(s.params)["setting"] == name]
        cfg = RunDir(runs_dir / chosen[0].folder).config()
        m, d, t = cfg.model, cfg.data, cfg.train
        seeds = sorted({dict(s.params)["seed"] for s in chosen})
        variants = "2 and 1 layers" if name == "all" else "random init"
        parts.append(f"{label}: associative-memory transformers (d = {m.d_model}, {m.pos_enc} positions, {m.init} "
                     f"init, W_F {m.ff}), {variants}, trained {t.steps} {t.optimizer.upper()} steps (batch "
                     f"{t.batch_size}, lr {t.lr}, weight decay {t.weight_decay}) on the {d.source} bigrams, "
                     f"T = {d.seq_len}, K = {d.n_triggers} {d.trigger_mode} triggers, loss on {t.loss_on} targets; "
                     f"seeds {seeds[0]}–{seeds[-1]}.")
    arms = "; ".join(f"{arm}: {text}" for arm, text in ARMS.items())
    return (" ".join(parts) + f" Arms of (b), same tokens per step: {arms} (s = {freeze_until}). Accuracies are "
            "over non-degenerate evaluation sequences; functional measurements over query positions t < 64.")


def _all_targets_figure(all_targets, results: dict[str, Any], out: Path) -> str:
    fig, (ax_loss, ax_acc, ax_dist) = plt.subplots(1, 3, figsize=(17, 4.2))
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
    by_distance = results["all_targets"]["global_first_by_distance"]
    for key, label, color in (("in_order", "global first", "tab:blue"), ("other_order", "in-context first", "tab:red"),
                              ("undetermined", "undetermined", "grey")):
        ax_dist.plot(DISTANCES, [by_distance[str(n)]["order"][key] for n in DISTANCES], "o-", color=color, label=label)
    ax_dist.set(xlabel="global loss within this many nats of the bigram optimum", ylabel="seeds",
                title="(a) the distance reading: outcome against the distance")
    for ax in (ax_loss, ax_acc, ax_dist):
        ax.legend(fontsize=7)
    return save_figure(fig, out, "birth_all_targets", dpi=110)


def _top_down_figure(top_down, results: dict[str, Any], out: Path) -> str:
    arms = [arm for arm in ARMS if arm in top_down]
    fig, axes = plt.subplots(2, len(arms), figsize=(4.6 * len(arms), 7.6), squeeze=False)
    s = results["top_down"]["freeze_until"]
    for col, arm in enumerate(arms):
        ax_probe, ax_fn = axes[0][col], axes[1][col]
        for mem, color in MEMORY_COLORS.items():
            seed_band(ax_probe, top_down[arm], mem, color=color, label=mem, lw=0.8)
        seed_band(ax_probe, top_down[arm], "wk2_triggers", color=MEMORY_COLORS["wk2"], ls=":", label="wk2_triggers")
        seed_band(ax_probe, top_down[arm], "wk1_all", color=MEMORY_COLORS["wk1"], ls=":", label="wk1_all")
        for key, color in FUNCTIONAL_COLORS.items():
            seed_band(ax_fn, top_down[arm], key, color=color, label=key, marker=".")
        ax_fn.axhline(FORMED, color="grey", lw=0.6, ls=":")
        for ax in (ax_probe, ax_fn):
            if "freeze" in arm:
                ax.axvline(s, color="black", lw=0.6, ls="--")
            ax.set(xlabel="step", ylim=(0, 1.02))
            ax.legend(fontsize=6)
        ax_probe.set(title=f"{arm}: argmax probes", ylabel="recall")
        ax_fn.set(title=f"{arm}: functional measurements", ylabel="mass / accuracy")
    fig.tight_layout()
    return save_figure(fig, out, "birth_top_down", dpi=100)


def _milestones_figure(results: dict[str, Any], out: Path) -> str:
    fig, ax = plt.subplots(figsize=(8, 0.9 * len(ARMS) + 1.5))
    arms = list(results["top_down"]["arms"])
    for i, arm in enumerate(arms):
        ms = results["top_down"]["arms"][arm]["functional"][str(FORMED)]["milestones"]
        for j, key in enumerate(FUNCTIONAL):
            steps = [m[key] for m in ms.values() if m[key] is not None]
            ax.scatter(steps, [i * 4 + j] * len(steps), color=FUNCTIONAL_COLORS[key], s=18,
                       label=key if i == 0 else None)
    ax.set_yticks([i * 4 + 1 for i in range(len(arms))], arms)
    ax.set(xlabel=f"step at which the functional measurement reaches {FORMED:g} (one dot per seed)",
           title="(b) functional milestones per arm")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out, "birth_milestones", dpi=110)


def write_figures(all_targets, top_down, results: dict[str, Any], out: Path) -> list[str]:
    """(a) losses, accuracy and the distance curve; (b) probes and functional measurements per arm; milestones."""
    return [_all_targets_figure(all_targets, results, out), _top_down_figure(top_down, results, out),
            _milestones_figure(results, out)]


def _med(values: dict[str, Any], keys) -> str:
    return ", ".join("–" if values.get(k) is None else f"{values[k]:.0f}" for k in keys)


def readme(results: dict[str, Any]) -> str:
    """The experiment's README.md: the side-by-side table, both settings' tables and the claims."""
    a, b = results["all_targets"], results["top_down"]
    columns = list(results["side_by_side"])
    lines = readme_heading("Birth of an induction head (docs/science.md §6)", results) + [
        "## Setting (b) beside Bietti et al.'s reference run", "", "| | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns)]
    for field in results["side_by_side"][columns[0]]:
        lines.append(f"| {field} | " + " | ".join(str(results["side_by_side"][c].get(field, "")) for c in columns)
                     + " |")
    lines += ["", "## (a) All targets, with W_F", "",
              "| depth | in-context acc. | over all sequences | degenerate share of in-context targets | global loss "
              "| bigram optimum |", "|---|---|---|---|---|---|"]
    for depth, final in a["final"].items():
        lines.append(f"| {depth} | {spread(final.get('acc_in_context'))} | {spread(final.get('acc_in_context_all'))} | "
                     f"{spread(final.get('degenerate_in_context_share'))} | {spread(final.get('loss_global'))} | "
                     f"{spread(final.get('loss_global_bigram_optimum'))} |")
    lines += ["", f"Global knowledge first on normalised progress: the step at which the global loss has made x of "
              f"its way from the unigram loss ({a['unigram_loss']:.3f} nats) to its final value, and the in-context "
              "accuracy x of its rise, per seed; the ratio, and beside it the ratio with the global loss counted from "
              "step 0 and the one-layer model's:", "",
              "| x | steps per seed (global, in-context) | ratio per seed | from step 0 | one layer |",
              "|---|---|---|---|---|"]
    for x, row in a["global_first_by_progress"].items():
        steps = "; ".join(_med(s, ("global", "in_context")) for s in row["steps"].values())
        lines.append(f"| {float(x):.0%} | {steps} | {_ratios(row['ratio'])} | "
                     f"{_ratios(a['global_first_from_step_0'][x]['ratio'])} | "
                     f"{_ratios(a['global_first_one_layer'][x]['ratio'])} |")
    lines += ["", "## (b) Top-down, in-context loss, no W_F", "",
              f"Functional milestones (step at which fn_wo, fn_wk2, fn_wk1 reach {FORMED:g}) and Bietti's argmax "
              f"probes (wo, wk2_triggers, wk1_all first ≥ {ARGMAX_LEVEL}), median over seeds:", "",
              "| arm | functional: median step wo, wk2, wk1 | orders over seeds | at half their own rise | orders "
              "| argmax: median step | argmax orders |",
              "|---|---|---|---|---|---|---|"]
    for arm, data in b["arms"].items():
        fn, own, am = data["functional"][str(FORMED)], data["own_progress"], data["argmax"]["L = T"]
        lines.append(f"| {arm} | {_med(fn['median_step'], FUNCTIONAL)} | {_orders(fn['order']['orders'])} | "
                     f"{_med(own['median_step'], FUNCTIONAL)} | {_orders(own['order']['orders'])} | "
                     f"{_med(am['median_step'], am['keys'])} | {_orders(am['order']['orders'])} |")
    lines += ["", f"Order arms ({', '.join(ORDER_ARMS)}): the claims below carry the sensitivity over levels "
              "(`by_level` in results.json).", "", *claims_section(results)]
    return "\n".join(lines)


def _ratios(ratios: dict[str, float | None]) -> str:
    return ", ".join("–" if r is None else f"{r:.2f}" for r in ratios.values())


def _orders(orders: dict[str, int]) -> str:
    return "; ".join(f"{k.replace('fn_', '')}: {v}" for k, v in orders.items() if v) or "–"
