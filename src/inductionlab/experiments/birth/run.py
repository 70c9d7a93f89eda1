"""Experiment "birth" (docs/science.md §2, §3.1, §4.1, §6): watch an induction head being born, in two settings.

Bietti et al.'s two questions need two training settings, kept apart here:

- **(a) all targets** (``birth-quick``): loss on every target with a linear ``W_F``, two layers
  and one layer of the same width over seeds. Claims: the two-layer model learns the in-context
  targets and the one-layer model cannot; the global bigram is learnt before the in-context
  targets (*global knowledge first*).
- **(b) top-down** (``birth-topdown-quick``): Bietti's reference setting, loss on the in-context
  targets only, no ``W_F``, fixed triggers, frozen embeddings, SGD, with the trained matrices
  starting at zero and, separately, at random. The memory probes of §4.1 are logged at every
  step; the claim is the order in which they cross 0.8, 0.9 and 0.95: ``W_O²`` (``wo``), then
  ``W_K²`` (``wk2``), then ``W_K¹`` (``wk1``).

An order is a statement over seeds (docs/science.md §7, §7.1): the fraction of seeds in which it holds
strictly, against the chance that random milestones fall in that order, judged with its exact
(Clopper–Pearson) interval. A seed on which a milestone is never reached is *undetermined*: it is left
out of the count and named, neither for nor against the order. "Every memory is recalled" is taken
per init and seed: the weakest of the three probes at the end, against the same model's weakest probe
at step 0.
"""

from __future__ import annotations

import statistics
from functools import partial
from pathlib import Path
from typing import Any

from inductionlab.experiments.birth.report import readme, setting, write_figures
from inductionlab.experiments.kit.claims import Rule, SeedValues, claim
from inductionlab.experiments.kit.curves import final_values, last_evaluation, milestone, seed_spread
from inductionlab.experiments.kit.experiment import experiment_preset
from inductionlab.experiments.kit.finish import finish
from inductionlab.experiments.kit.runs import trained_runs
from inductionlab.runs import RunDir, RunSpec, seed_overrides

PRESETS = {
    "quick": {"all": "birth-quick", "topdown": "birth-topdown-quick", "all_seeds": (0, 1, 2),
              "topdown_seeds": (0, 1, 2, 3, 4)},
    "paper": {"all": "birth-paper", "topdown": "birth-topdown-paper", "all_seeds": (0, 1, 2, 3, 4),
              "topdown_seeds": tuple(range(10))},
    "smoke": {"all": "birth-quick", "topdown": "birth-topdown-quick",
              "set": ("train.steps=40", "model.d_model=64", "train.eval_every=10"),
              "all_seeds": (0,), "topdown_seeds": (0, 1)},
}
DEPTHS = {"two-layer": 2, "one-layer": 1}
INITS = {"zero": "model.zero_init=true", "random": "model.zero_init=false"}
MEMORIES = ("wo", "wk2", "wk1")
GLOBAL_FIRST_KEYS = ("global_within_optimum", "in_context_above_one_layer")  # setting (a): global knowledge first
THRESHOLDS = (0.8, 0.9, 0.95)
GLOBAL_NATS = 0.05  # "the global loss comes within 0.05 nats of the bigram optimum"
GLOBAL_NATS_ALSO = (0.1, 0.15, 0.25)  # reported beside it: how the order depends on that distance
ICL_MARGIN = 0.1  # "the in-context accuracy exceeds the one-layer model's final accuracy by 0.1"
ORDER_RULE = Rule("higher", 1.0, 0.1, level_from="the prediction: the order on every seed (docs/science.md §6)")
LEARNT_RULE = Rule("higher", 0.9, 0.3, level_from="0.9, the accuracy at which an in-context milestone is read "
                   "(docs/science.md §8)")
RECALLED_RULE = Rule("higher", 0.9, 0.3, level_from="0.9, the middle of the thresholds 0.8, 0.9, 0.95 at which the "
                     "probes' orders are read (docs/science.md §6)")
QUESTION = ("Does a two-layer transformer learn the in-context targets that a one-layer one cannot, is the global "
            "bigram learnt first, and do the memories form top-down (docs/science.md §6)?")


def plan(preset_name: str) -> list[RunSpec]:
    """Setting (a): two and one layers × seeds; setting (b): zero and random init × seeds."""
    preset = experiment_preset(PRESETS, preset_name)
    extra = preset.get("set", ())
    runs = [RunSpec(f"birth-{preset_name}-all-{depth}-s{seed}", preset["all"],
                    (*extra, f"model.n_layers={layers}", *seed_overrides(seed)),
                    (("setting", "all"), ("depth", depth), ("seed", seed)))
            for depth, layers in DEPTHS.items() for seed in preset["all_seeds"]]
    runs += [RunSpec(f"birth-{preset_name}-topdown-{init}-s{seed}", preset["topdown"],
                     (*extra, override, *seed_overrides(seed)),
                     (("setting", "topdown"), ("init", init), ("seed", seed)))
             for init, override in INITS.items() for seed in preset["topdown_seeds"]]
    return runs


def classify(ms: dict[str, int | None], keys: tuple[str, ...]) -> str:
    """``in_order``, ``tied``, ``other_order`` or ``undetermined`` for one seed's milestones.

    The order is broken as soon as a later milestone of ``keys`` is reached before an earlier one,
    or while the earlier one is never reached; a seed is *undetermined* only when the milestones it
    reached come in order and the missing ones are all at the end (they may still come in order).
    """
    steps = [ms.get(k) for k in keys]
    reached = [s for s in steps if s is not None]
    first_missing = next((i for i, s in enumerate(steps) if s is None), len(steps))
    if any(s is not None for s in steps[first_missing:]):
        return "other_order"  # a later milestone reached while an earlier one never is
    if any(a > b for a, b in zip(reached, reached[1:], strict=False)):
        return "other_order"
    if len(set(reached)) < len(reached):
        return "tied"
    return "in_order" if first_missing == len(steps) else "undetermined"


def order_statistic(milestones: dict[str, dict[str, int | None]], keys: tuple[str, ...]) -> dict[str, Any]:
    """How often the milestones ``keys`` come in this strict order, over seeds (docs/science.md §7, §7.1).

    Each seed is *in order* (strictly increasing steps), *tied*, in *another order* or
    *undetermined* (:func:`classify`). ``fraction``: the share in order of the determined seeds (an
    undetermined seed is left out of the count, as of the claim's interval, :func:`order_seeds`); None
    when no seed is determined.
    """
    counts = {"in_order": 0, "tied": 0, "other_order": 0, "undetermined": 0}
    for ms in milestones.values():
        counts[classify(ms, keys)] += 1
    determined = len(milestones) - counts["undetermined"]
    fraction = counts["in_order"] / determined if determined else None
    return {"fraction": fraction, "seeds": len(milestones), **counts}


def order_seeds(milestones: dict[str, dict[str, int | None]], keys: tuple[str, ...], chance: float) -> SeedValues:
    """Each seed's outcome for an order claim's interval (docs/science.md §7.1): 1 in order, 0 tied or in another
    order; an undetermined seed is left out (and named), not counted at the chance rate."""
    outcome = {"in_order": 1.0, "tied": 0.0, "other_order": 0.0, "undetermined": None}
    return SeedValues({seed: outcome[classify(ms, keys)] for seed, ms in milestones.items()}, chance, fraction=True)


FINAL_KEYS = ("acc_in_context", "acc_in_context_all", "loss_global", "loss_global_bigram_optimum", "loss_in_context",
              "degenerate_rows", "degenerate_in_context_share", "train_degenerate_rows",
              "train_degenerate_in_context_share", "wo", "wo_ff", "wk2", "wk2_triggers", "wk1")


def summarise_all_targets(curves: dict[str, dict[int, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Setting (a): final numbers per depth, and per seed when the global and in-context milestones fall."""
    two, one = curves["two-layer"], curves["one-layer"]
    one_final = {seed: last_evaluation(rows)["acc_in_context"] for seed, rows in one.items()}
    by_distance = {}
    for nats in (GLOBAL_NATS, *GLOBAL_NATS_ALSO):
        milestones = {}
        for seed, rows in two.items():
            milestones[str(seed)] = {
                "global_within_optimum": milestone(
                    rows, "loss_global", lambda r, nats=nats: r["loss_global_bigram_optimum"] + nats, below=True),
                "in_context_above_one_layer": milestone(rows, "acc_in_context", one_final[seed] + ICL_MARGIN),
            }
        by_distance[str(nats)] = {"milestones": milestones, "order": order_statistic(milestones, GLOBAL_FIRST_KEYS)}
    main = by_distance[str(GLOBAL_NATS)]
    return {"final": {depth: final_values(runs, FINAL_KEYS) for depth, runs in curves.items()},
            "untrained": _first_row(two, ("acc_in_context", "loss_global")), "milestones": main["milestones"],
            "global_first": main["order"], "global_first_by_distance": by_distance}


def _first_row(runs: dict[int, list[dict[str, Any]]], keys: tuple[str, ...]) -> dict[str, Any]:
    """Mean and spread over seeds of each key at step 0 (the untrained model), and the value per seed."""
    first = {str(seed): rows[0] for seed, rows in runs.items()}
    return {k: {**seed_spread([row.get(k) for row in first.values()]),
                "per_seed": {seed: row.get(k) for seed, row in first.items()}} for k in keys}


def weakest_probe(values: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """Per seed, the smallest of the memory probes ``wo``, ``wk2``, ``wk1`` (``values``: key → spread with
    ``per_seed``); None for a seed missing one of them."""
    seeds = values[MEMORIES[0]]["per_seed"]
    out = {}
    for seed in seeds:
        probes = [values[m]["per_seed"].get(seed) for m in MEMORIES]
        out[seed] = None if None in probes else min(probes)
    return out


def summarise_top_down(curves: dict[str, dict[int, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Setting (b): per init and threshold, each seed's milestones, the order statistic, medians and ranges."""
    out: dict[str, Any] = {}
    for init, runs in curves.items():
        by_threshold = {}
        for level in THRESHOLDS:
            milestones = {str(seed): {m: milestone(rows, m, level) for m in MEMORIES}
                          for seed, rows in runs.items()}
            steps = {m: [ms[m] for ms in milestones.values() if ms[m] is not None] for m in MEMORIES}
            by_threshold[str(level)] = {
                "milestones": milestones, "order": order_statistic(milestones, MEMORIES),
                "median_step": {m: statistics.median(v) if v else None for m, v in steps.items()},
                "range": {m: [min(v), max(v)] if v else None for m, v in steps.items()},
                "reached": {m: len(v) for m, v in steps.items()},
            }
        out[init] = {"by_threshold": by_threshold, "final": final_values(runs, FINAL_KEYS),
                     "untrained": _first_row(runs, MEMORIES)}
    return out


def analyse(runs_dir: Path, out: Path, preset_name: str) -> dict[str, Any]:
    """Both settings from the finished runs: milestones, orders, claims, figures, README."""
    all_targets: dict[str, dict[int, list[dict[str, Any]]]] = {}
    top_down: dict[str, dict[int, list[dict[str, Any]]]] = {}
    specs, diverged = trained_runs(runs_dir, plan(preset_name))
    for spec in specs:
        p = dict(spec.params)
        rows = RunDir(runs_dir / spec.folder).metrics()
        if p["setting"] == "all":
            all_targets.setdefault(p["depth"], {})[p["seed"]] = rows
        else:
            top_down.setdefault(p["init"], {})[p["seed"]] = rows
    results: dict[str, Any] = {
        "experiment": "birth", "preset": preset_name, "runs": [spec.folder for spec in specs],
        "all_targets": summarise_all_targets(all_targets), "top_down": summarise_top_down(top_down),
        "question": QUESTION, "setting": setting(runs_dir, specs),
    }
    return finish(out, results, claims=claims(results), diverged=diverged,
                  figures=partial(write_figures, all_targets, top_down), readme=readme)


def claims(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The statements of docs/science.md §6 "birth", each a statistic against a null (docs/science.md §7)."""
    a = results["all_targets"]
    two, one = a["final"]["two-layer"]["acc_in_context"], a["final"]["one-layer"]["acc_in_context"]
    first = a["global_first"]
    out = [
        claim("(a) A two-layer model learns the in-context targets; a one-layer model of the same width cannot (it "
              "has no previous-token head to feed an induction head)", "two layers ≥ 0.9, ≥ 0.3 above one layer",
              "in-context accuracy at the end, non-degenerate evaluation sequences, mean over seeds", two["mean"],
              one["mean"], "the one-layer model of the same width on the same sequences", LEARNT_RULE,
              seeds=SeedValues(two["per_seed"], one["per_seed"]), per_seed={"two-layer": two, "one-layer": one},
              degenerate_in_context_share=a["final"]["two-layer"]["degenerate_in_context_share"]["mean"]),
        claim(f"(a) Global knowledge first: the global loss comes within {GLOBAL_NATS} nats of the bigram optimum "
              f"before the in-context accuracy exceeds the one-layer model's final accuracy by {ICL_MARGIN}",
              "in that order on every seed", _order_text(first), first["fraction"], 0.5,
              "no preferred order (½)", ORDER_RULE, per_seed=a["milestones"],
              seeds=order_seeds(a["milestones"], GLOBAL_FIRST_KEYS, 0.5)),
    ]
    for init, data in results["top_down"].items():
        for level, row in data["by_threshold"].items():
            out.append(claim(
                f"(b, {init} init) The memories form top-down: W_O² (wo), then W_K² (wk2), then W_K¹ (wk1), first "
                f"step with probe ≥ {level}", "wo < wk2 < wk1 on every seed", _order_text(row["order"]),
                row["order"]["fraction"], 1 / 6, "chance that three milestones fall in one given order (1/6)",
                ORDER_RULE, seeds=order_seeds(row["milestones"], MEMORIES, 1 / 6), milestones=row["milestones"],
                median_step=row["median_step"], range=row["range"]))
    for init, data in results["top_down"].items():
        final, untrained = weakest_probe(data["final"]), weakest_probe(data["untrained"])
        out.append(claim(
            f"(b, {init} init) At the end every memory is recalled (docs/science.md §4.1 probes)",
            "each of wo, wk2, wk1 ≥ 0.9", "the weakest of the three probes at the end, per seed, mean over seeds",
            _mean(final), _mean(untrained),
            "the weakest probe of the same model at step 0 (untrained)", RECALLED_RULE,
            seeds=SeedValues(final, untrained), weakest=final, untrained_weakest=untrained,
            final={m: data["final"][m]["per_seed"] for m in MEMORIES}))
    return out


def _mean(values: dict[str, float | None]) -> float | None:
    present = [v for v in values.values() if v is not None]
    return statistics.fmean(present) if present else None


def _order_text(order: dict[str, Any]) -> str:
    return (f"fraction of the determined seeds in that order, an undetermined seed left out ({order['in_order']} in "
            f"order, {order['tied']} tied, {order['other_order']} in another order, {order['undetermined']} "
            f"undetermined, of {order['seeds']})")
