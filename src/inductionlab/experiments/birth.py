"""Experiment "birth" (SCIENCE §2, §3.1, §4.1, §6): watch an induction head being born.

A two-layer associative-memory transformer and the same model with one layer are trained on the
bigram-with-triggers task over several seeds. SCIENCE §6 predicts that the two-layer model learns
the in-context targets while the one-layer model cannot, that the global bigram loss falls first,
and that the memories form top-down: ``W_O²`` (copy the attended token), then ``W_K²`` (match the
trigger), then ``W_K¹`` (attend the previous position). The memory-recall probes of §4.1 logged
during training show when each forms.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from inductionlab.experiments import experiment_preset, seed_spread, write_results
from inductionlab.experiments.claims import Rule, claim, claims_table
from inductionlab.experiments.figures import save_figure
from inductionlab.runs import RunDir
from inductionlab.sweep import RunSpec, seed_overrides

PRESETS = {
    "quick": {"preset": "birth-quick", "seeds": (0, 1)},
    "paper": {"preset": "birth-quick", "seeds": (0, 1, 2, 3, 4)},
    "smoke": {"preset": "birth-quick", "set": ("train.steps=40", "model.d_model=64", "train.eval_every=10"),
              "seeds": (0,)},
}
DEPTHS = {"two-layer": 2, "one-layer": 1}
MEMORIES = ("wo", "wk2", "wk1")
QUESTION = ("Does a two-layer transformer learn the in-context targets that a one-layer one cannot, and in what "
            "order do its global bigram knowledge and its memories form (SCIENCE §6)?")


def plan(preset_name: str) -> list[RunSpec]:
    """Two-layer and one-layer models × seeds."""
    preset = experiment_preset(PRESETS, preset_name)
    return [RunSpec(f"birth-{preset_name}-{depth}-s{seed}", preset["preset"],
                    (*preset.get("set", ()), f"model.n_layers={layers}", *seed_overrides(seed)),
                    (("depth", depth), ("seed", seed)))
            for depth, layers in DEPTHS.items() for seed in preset["seeds"]]


def analyse(runs_dir: Path, out: Path, preset_name: str) -> dict[str, Any]:
    """Final metrics, milestones and curves of every run; claims, figure, README."""
    curves: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for spec in plan(preset_name):
        params = dict(spec.params)
        curves.setdefault(params["depth"], {})[params["seed"]] = RunDir(runs_dir / spec.folder).metrics()
    from inductionlab.train import milestones

    by_depth: dict[str, Any] = {}
    for depth, runs in curves.items():
        finals = {seed: rows[-1] for seed, rows in runs.items()}
        keys = ["acc_in_context", "loss_global", "loss_global_bigram_optimum", "acc_global",
                *(m for m in MEMORIES if finals[min(finals)].get(m) is not None)]
        by_depth[depth] = {
            "final": {key: seed_spread([f[key] for f in finals.values()]) for key in keys},
            "untrained": {key: seed_spread([rows[0].get(key) for rows in runs.values()]) for key in keys},
            "milestones": {str(seed): milestones(rows) for seed, rows in runs.items()},
            "chance": {m: finals[min(finals)].get(f"{m}_chance") for m in MEMORIES},
        }
    cfg = RunDir(runs_dir / plan(preset_name)[0].folder).config()
    m, d, t = cfg.model, cfg.data, cfg.train
    results: dict[str, Any] = {
        "experiment": "birth", "preset": preset_name, "depths": by_depth,
        "runs": [spec.folder for spec in plan(preset_name)],
        "question": QUESTION,
        "setting": (f"Associative-memory transformers with 2 and 1 layers (d = {m.d_model}, {m.pos_enc} positions, "
                    f"{m.init} init, W_F {m.ff}) trained {t.steps} {t.optimizer.upper()} steps (batch {t.batch_size}, "
                    f"lr {t.lr}) on the {d.source} bigrams, T = {d.seq_len}, K = {d.n_triggers} {d.trigger_mode} "
                    f"triggers, loss on {t.loss_on} targets; {len(curves['two-layer'])} seeds each."),
    }
    results["claims"] = claims(results)
    results["figures"] = [write_figure(curves, out)]
    write_readme(results, out)
    write_results(results, out)
    return results


def _order(ms: dict[str, int | None]) -> str:
    steps = {m: ms.get(m) for m in MEMORIES}
    return ", ".join(f"{m} {s if s is not None else 'never'}" for m, s in steps.items())


def order_fraction(milestones: dict[str, dict[str, int | None]], keys: tuple[str, ...]) -> tuple[float | None, int]:
    """Fraction of seeds whose milestones ``keys`` come in this strict order, and how many seeds count.

    A seed with a milestone never reached is undetermined (SCIENCE §7): it counts neither for nor
    against the order. ``None`` when no seed is determined.
    """
    determined = [m for m in milestones.values() if all(m.get(k) is not None for k in keys)]
    if not determined:
        return None, 0
    in_order = [m for m in determined if all(m[a] < m[b] for a, b in zip(keys, keys[1:], strict=False))]
    return len(in_order) / len(determined), len(determined)


def claims(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The statements of SCIENCE §6 "birth", each a statistic against a null (SCIENCE §7)."""
    two, one = results["depths"]["two-layer"], results["depths"]["one-layer"]
    acc2, acc1 = two["final"]["acc_in_context"], one["final"]["acc_in_context"]
    ms = two["milestones"]
    first, first_n = order_fraction(ms, ("loss_global_fell", "acc_in_context_rose"))
    top_down, top_down_n = order_fraction(ms, MEMORIES)
    finals = {mem: two["final"][mem]["mean"] for mem in MEMORIES}
    untrained = {mem: two["untrained"][mem]["mean"] for mem in MEMORIES}
    weakest = min(finals, key=finals.get)
    return [
        claim("A two-layer model learns the in-context targets; a one-layer model of the same width cannot (it has "
              "no previous-token head to feed an induction head)", "two layers ≥ 0.9, ≥ 0.3 above one layer",
              "in-context accuracy at the end of training, mean over seeds", acc2["mean"], acc1["mean"],
              "the one-layer model of the same width, same evaluation batch", Rule("higher", 0.9, 0.3),
              per_seed={"two-layer": acc2, "one-layer": acc1}),
        claim("The global bigram is learnt first", "the global-bigram loss makes 90% of its fall before the "
              "in-context accuracy makes half its rise, on every seed",
              f"fraction of seeds in that order ({first_n} of {len(ms)} seeds have both milestones)",
              first, 0.5, "chance order of two milestones", Rule("higher", 1.0, 0.25),
              per_seed={s: {k: m.get(k) for k in ("loss_global_fell", "acc_in_context_rose")} for s, m in ms.items()}),
        claim("The memories form top-down: W_O², then W_K², then W_K¹ (first step with probe ≥ 0.9)",
              "wo < wk2 < wk1 on most seeds", f"fraction of seeds with wo < wk2 < wk1 ({top_down_n} of {len(ms)} "
              "seeds reach all three milestones; the others are undetermined)", top_down, 1 / 6,
              "chance that three milestones fall in one given order", Rule("higher", 0.75, 0.25),
              per_seed={s: _order(m) for s, m in ms.items()}),
        claim("At the end every memory is recalled (SCIENCE §4.1 probes)", "each of wo, wk2, wk1 ≥ 0.9",
              f"the weakest probe at the end, mean over seeds ({weakest})", finals[weakest], untrained[weakest],
              "the same probe of the untrained model (step 0)", Rule("higher", 0.9, 0.3),
              final=finals, untrained=untrained),
    ]


def _band(ax, runs: dict[int, list[dict[str, Any]]], key: str, **style) -> None:
    """Mean over seeds as a line, min–max over seeds as a band."""
    steps = [r["step"] for r in next(iter(runs.values()))]
    values = [[rows[i].get(key) for rows in runs.values()] for i in range(len(steps))]
    keep = [i for i, v in enumerate(values) if None not in v]
    if not keep:
        return
    xs = [steps[i] for i in keep]
    line, = ax.plot(xs, [statistics.fmean(values[i]) for i in keep], **style)
    ax.fill_between(xs, [min(values[i]) for i in keep], [max(values[i]) for i in keep], color=line.get_color(),
                    alpha=0.2, lw=0)


def write_figure(curves: dict[str, dict[int, list[dict[str, Any]]]], out: Path) -> str:
    """Losses, in-context accuracy, memory probes and attention probes against the training step."""
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    two, one = curves["two-layer"], curves["one-layer"]
    for runs, style, label in ((two, "-", "2 layers"), (one, "--", "1 layer")):
        _band(axes[0], runs, "loss_global", ls=style, color="tab:blue", label=f"global bigram, {label}")
        _band(axes[0], runs, "loss_in_context", ls=style, color="tab:red", label=f"in-context, {label}")
        _band(axes[1], runs, "acc_in_context", ls=style, color="black", label=label)
    optimum = next(iter(two.values()))[-1].get("loss_global_bigram_optimum")
    if optimum is not None:
        axes[0].axhline(optimum, color="tab:blue", lw=0.8, ls=":", label="bigram optimum")
    axes[0].set(xlabel="step", ylabel="loss", title="losses (mean, min–max over seeds)")
    axes[1].set(xlabel="step", ylabel="accuracy", title="in-context accuracy (label ≥ 2)", ylim=(0, 1.02))
    for mem, color in zip(MEMORIES, ("tab:green", "tab:orange", "tab:purple"), strict=True):
        _band(axes[2], two, mem, color=color, label=mem)
    axes[2].axhline(0.9, color="grey", lw=0.8, ls=":")
    axes[2].set(xlabel="step", ylabel="recall", title="memory probes, 2 layers (SCIENCE §4.1)", ylim=(0, 1.02))
    for key, color in (("attn1_prev_token", "tab:cyan"), ("attn2_induction", "tab:brown")):
        _band(axes[3], two, key, color=color, label=key)
    axes[3].set(xlabel="step", ylabel="attention mass", title="attention probes, 2 layers (SCIENCE §4.2)",
                ylim=(0, 1.02))
    for ax in axes:
        ax.legend(fontsize=7)
    return save_figure(fig, out, "birth_curves", dpi=110)


def write_readme(results: dict[str, Any], out: Path) -> None:
    lines = ["# Birth of an induction head (SCIENCE §6)", "", f"Preset `{results['preset']}`. {results['setting']}", "",
             "| depth | in-context accuracy | global loss | wo | wk2 | wk1 |", "|---|---|---|---|---|---|"]
    for depth, data in results["depths"].items():
        cells = [data["final"].get(k) for k in ("acc_in_context", "loss_global", *MEMORIES)]
        lines.append(f"| {depth} | " + " | ".join("–" if c is None else f"{c['mean']:.3f} ± {c['std']:.3f}"
                                                   for c in cells) + " |")
    lines += ["", claims_table(results["claims"])]
    lines += ["", "Figures: " + ", ".join(f"`{f}`" for f in results["figures"]), ""]
    (out / "README.md").write_text("\n".join(lines))
