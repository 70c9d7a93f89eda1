"""The interventions experiment's claims and its check (docs/science.md §7, §7.1, §8), seed by seed.

Every arm runs the same seeds, and seed ``s`` of an arm shares its initialisation and its training
batches with seed ``s`` of every other arm, so each statistic is taken per seed and paired on the seed:

- **milestone ratios** (claims 1 and 4): the seed's milestone in the clamped arm over its milestone in
  the unclamped arm (lower is earlier); null: no effect, ratio 1;
- **delay** (claim 2): ``|delay − s| / s`` with the seed's delay its frozen milestone minus its unfrozen
  one; null: no delay, relative error 1;
- **layer 1 removed at evaluation** (claims 3, zero and mean ablation): a two-sided equivalence,
  ``|ablated accuracy − the one-layer model's|`` per seed, which must lie within :data:`ONE_LAYER_GAP`;
  null: the same model without the ablation, ``|intact − one-layer|``;
- the **check**: layer 1 ablated throughout training makes layer 2 a one-layer model, so its accuracy is
  the one-layer model's by construction.

Milestones are interpolated (:func:`~inductionlab.experiments.kit.curves.interpolated_milestone`). A
milestone never reached counts at the run's last step, the earliest it could have come, and its seed is
named as censored: a censored clamped milestone then gives the smallest ratio it could have (still above 1
when the unclamped seed reached its milestone), a censored unclamped one the largest. A seed where neither
arm reaches the milestone is undetermined and left out (named), and so is a seed whose clamped arm already
stands at the milestone at step 0: a clamp that satisfies the measure by itself says nothing about learning.
"""

from __future__ import annotations

from typing import Any

from inductionlab.experiments.kit.checks import check
from inductionlab.experiments.kit.claims import Rule, SeedValues, claim
from inductionlab.experiments.kit.curves import seed_mean

MILESTONE = 0.9
RATIO_LEVEL = 0.7  # "the clamped milestone comes at most 0.7 times as late as the unclamped one"
DELAY_TOLERANCE = 0.3  # "delays that milestone by s within ±30 %"
ONE_LAYER_GAP = 0.05  # "the in-context accuracy down to the one-layer model's": within 0.05
EVALUATION_ABLATIONS = ("zero-ablate", "mean-ablate")  # layer 1's attention output at evaluation
RATIO_RULE = Rule("lower", RATIO_LEVEL, 0.1, level_from="docs/science.md §8: 'earlier' read as at least 30 % earlier")
DELAY_RULE = Rule("lower", DELAY_TOLERANCE, 0.1,
                  level_from="docs/science.md §8: the milestone moves by s within ±30 %")
EQUIVALENCE_RULE = Rule(
    "lower", ONE_LAYER_GAP, 0.3, level_from="'down to the one-layer model's' read as within 0.05 in accuracy, about "
    "three binomial standard errors of a difference of two accuracies near 0.25 on the quick evaluation batch's "
    "~1,500 in-context targets")


def _step(value: float | None, steps: int) -> tuple[float, bool]:
    """A milestone, or the run's last step when it was never reached (and whether it was censored)."""
    return (float(steps), True) if value is None else (value, False)


def milestone_ratios(arm: dict[str, Any], base: dict[str, Any], key: str) -> dict[str, Any]:
    """Per seed, the ``key`` milestone of ``arm`` over that of ``base`` on the same seed (see the module
    docstring for censored, undetermined and at-start seeds): ``ratio`` (seed → value or None), ``censored``
    and ``left_out`` (seed → why), and the milestones themselves."""
    steps = max(arm["steps"], base["steps"])
    ratio, censored, left_out = {}, [], {}
    for seed, ms in arm["milestones"].items():
        start = arm["at_step_0"].get(key, {}).get(seed)
        mine, theirs = ms.get(key), base["milestones"].get(seed, {}).get(key)
        if start is not None and start >= MILESTONE:
            ratio[seed], left_out[seed] = None, f"{key} already ≥ {MILESTONE} at step 0"
        elif mine is None and theirs is None:
            ratio[seed], left_out[seed] = None, "neither arm reaches the milestone (undetermined)"
        else:
            (a, a_censored), (b, b_censored) = _step(mine, steps), _step(theirs, steps)
            ratio[seed] = a / b if b > 0 else None
            if b <= 0:
                left_out[seed] = "the unclamped arm stands at the milestone at step 0"
            if a_censored or b_censored:
                censored.append(seed)
    return {"ratio": ratio, "censored": censored, "left_out": left_out,
            "arm": {s: m.get(key) for s, m in arm["milestones"].items()},
            "unclamped": {s: m.get(key) for s, m in base["milestones"].items()},
            "median": arm["median"][key], "unclamped_median": base["median"][key]}


def delays(frozen: dict[str, Any], free: dict[str, Any], s: int) -> dict[str, Any]:
    """Per seed, the frozen arm's in-context milestone minus the free arm's (a censored one at the last step),
    and ``|delay − s| / s``; None where neither reaches it."""
    steps = max(frozen["steps"], free["steps"])
    delay, error, censored = {}, {}, []
    for seed, ms in frozen["milestones"].items():
        mine, theirs = ms["acc_in_context"], free["milestones"].get(seed, {}).get("acc_in_context")
        if mine is None and theirs is None:
            delay[seed] = error[seed] = None
            continue
        (a, a_censored), (b, b_censored) = _step(mine, steps), _step(theirs, steps)
        delay[seed], error[seed] = a - b, abs(a - b - s) / s
        if a_censored or b_censored:
            censored.append(seed)
    return {"delays": delay, "relative_error": error, "censored": censored}


def _gaps(accuracy: dict[str, float | None], one_layer: dict[str, float | None]) -> dict[str, float | None]:
    """|accuracy − the one-layer model's| per seed (None where either is missing)."""
    return {seed: None if acc is None or one_layer.get(seed) is None else abs(acc - one_layer[seed])
            for seed, acc in accuracy.items()}


def arm_runs(*arms: str) -> tuple[dict[str, str], ...]:
    """The run params of ``arms`` (what a claim reads, :func:`~inductionlab.experiments.kit.claims.claim`)."""
    return tuple({"arm": arm} for arm in arms)


def claims(results: dict[str, Any]) -> list[dict[str, Any]]:
    """docs/science.md §8's causal statements, each against a null (§7), judged over seeds (§7.1)."""
    a, s = results["arms"], results["freeze_until"]
    out = []
    ratios = milestone_ratios(a["clamp-previous-token"], a["none"], "acc_in_context")
    out.append(claim(
        "A perfect previous-token pattern clamped in layer 1 from step 0 makes the in-context accuracy milestone "
        "earlier", f"ratio ≤ {RATIO_LEVEL}", f"step at which in-context accuracy reaches {MILESTONE}, clamped / "
        "unclamped on the same seed, mean over seeds", seed_mean(ratios["ratio"]), 1.0,
        "no effect: the unclamped arm against itself (ratio 1)", RATIO_RULE, seeds=SeedValues(ratios["ratio"], 1.0),
        reads=arm_runs("clamp-previous-token", "none"), **ratios))

    delay = delays(a["freeze-wk2"], a["none"], s)
    out.append(claim(
        f"W_K² frozen at zero until step {s} delays the in-context accuracy milestone by about {s} steps",
        f"delay within ±{DELAY_TOLERANCE:.0%} of {s}", "abs(delay − s) / s, the delay the frozen minus the unfrozen "
        "milestone on the same seed, mean over seeds", seed_mean(delay["relative_error"]), 1.0,
        "no delay (relative error 1)", DELAY_RULE, seeds=SeedValues(delay["relative_error"], 1.0),
        reads=arm_runs("freeze-wk2", "none"), **delay))

    one = a["one-layer"]["final"]["acc_in_context"]["per_seed"]
    intact = a["none"]["final"]["acc_in_context"]["per_seed"]
    null_gap = _gaps(intact, one)
    for op in EVALUATION_ABLATIONS:
        removed = results["none_ablated_at_evaluation"][op]["per_seed"]
        gap = _gaps(removed, one)
        how = "zeroed" if op == "zero-ablate" else "replaced by its mean over the evaluation batch"
        out.append(claim(
            f"Layer 1 removed at evaluation ({op}) from the trained two-layer model (no intervention in training): "
            "the in-context accuracy falls to the one-layer model's, neither above nor below it, so what layer 2 "
            "learnt relies on layer 1", f"within ±{ONE_LAYER_GAP} of the one-layer model",
            f"abs(final in-context accuracy with layer 1's attention output {how} − the one-layer model's), same "
            "seed, "
            "mean over seeds", seed_mean(gap), seed_mean(null_gap), "the same model without the ablation",
            EQUIVALENCE_RULE,
            seeds=SeedValues(gap, null_gap), reads=arm_runs("none", "one-layer"), ablated=removed, one_layer=one,
            unablated=intact))

    ratios = milestone_ratios(a["clamp-induction"], a["none"], "wo")
    out.append(claim(
        "A perfect induction pattern clamped in layer 2 lets W_O² form earlier", f"ratio ≤ {RATIO_LEVEL}",
        f"step at which the wo probe reaches {MILESTONE}, clamped / unclamped on the same seed, mean over seeds",
        seed_mean(ratios["ratio"]), 1.0, "no effect: the unclamped arm against itself (ratio 1)", RATIO_RULE,
        seeds=SeedValues(ratios["ratio"], 1.0), reads=arm_runs("clamp-induction", "none"), **ratios))
    return out


def checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    """What holds by construction (docs/science.md §7.1): with layer 1's attention output zeroed in training and
    evaluation, layer 2 reads the embeddings alone, as the one layer of a one-layer model does."""
    a = results["arms"]
    one = a["one-layer"]["final"]["acc_in_context"]["per_seed"]
    gap = _gaps(a["ablate-layer1"]["final"]["acc_in_context"]["per_seed"], one)
    present = [v for v in gap.values() if v is not None]
    largest = max(present) if present else None
    return [check(
        "Layer 1 ablated throughout (training and evaluation) leaves the in-context accuracy of a one-layer model",
        "largest abs(final in-context accuracy − the one-layer model's) over seeds (same seed)", largest,
        f"≤ {ONE_LAYER_GAP} on every seed", largest is not None and len(present) == len(gap)
        and largest <= ONE_LAYER_GAP, per_seed=gap, ablated=a["ablate-layer1"]["final"]["acc_in_context"]["per_seed"],
        one_layer=one, unablated=a["none"]["final"]["acc_in_context"]["per_seed"])]
