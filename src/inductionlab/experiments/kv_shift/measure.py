"""What the kv-shift experiment reads off each run (docs/science.md §3.3, §6): outcomes, milestones, scalars.

Per task, seed by seed:

- **outcome**: bigram: the in-context accuracy at the last evaluation; markov: the excess loss over the Bayes
  predictor in units of the unigram–Bayes gap, ``(L − L_Bayes) / (L_unigram − L_Bayes)`` (the row's own
  references);
- **milestone**: the first evaluation step where the outcome reaches its level (accuracy ≥ 0.9; excess < 0.2);
  the **milestone ratio** is the KV-shift layer's step over the two vanilla layers' on the same seed. A
  milestone never reached counts as the evaluation after the last one, the earliest it could have come, so
  the ratio errs against the claim: a KV-shift layer that never gets there has a ratio > 1, a two-layer
  model that never does makes it larger than it is, and neither getting there gives 1, the null;
- **scalars**: ``|α1| / (|α1| + |α2|)`` (0: each key carries only its predecessor) and ``|β2| / (|β1| + |β2|)``
  (0: each value carries only its own token), the smallest over the heads of the layer, at step 0 and at the
  last evaluation. Both are 0 in the construction (``α1 = 0, α2 = 1, β1 = 1, β2 = 0``) and free of the
  scalars' overall scale, which the weights around them can absorb.
"""

from __future__ import annotations

from typing import Any

from inductionlab.experiments.kit.curves import evaluations, last_evaluation
from inductionlab.models.names import kv_shift_metric

Rows = list[dict[str, Any]]
LEARNT_LEVEL = 0.9  # in-context accuracy at which the bigram milestone is read (birth's level, docs/science.md §8)
REACH_LEVEL = 0.2  # excess over Bayes, in units of Δ, at which the Markov milestone is read (icl-mc's level)
RATIOS = {"alpha": ("alpha1", "alpha2"), "beta": ("beta2", "beta1")}  # (numerator, the other) of each ratio


def outcome(task: str, row: dict[str, Any]) -> float | None:
    """The task's outcome in one evaluation row (module docstring); None where it cannot be computed."""
    if task == "bigram":
        return row.get("acc_in_context")
    loss, bayes, unigram = (row.get(k) for k in ("loss_in_context", "loss_bayes", "loss_unigram"))
    if None in (loss, bayes, unigram) or not unigram > bayes:
        return None
    return (loss - bayes) / (unigram - bayes)


def milestone_step(task: str, rows: Rows) -> int | None:
    """The first evaluation step where the outcome reaches its level; None: never."""
    for row in evaluations(rows):
        value = outcome(task, row)
        if value is not None and (value >= LEARNT_LEVEL if task == "bigram" else value < REACH_LEVEL):
            return int(row["step"])
    return None


def milestone_ratio(kv: int | None, two: int | None, never: int) -> float:
    """The KV-shift layer's milestone step over the two vanilla layers', a never-reached one at ``never``."""
    kv_step, two_step = (never if s is None else s for s in (kv, two))
    return max(kv_step, 1) / max(two_step, 1)


def scalar_ratio(row: dict[str, Any], which: str) -> float | None:
    """``|α1| / (|α1| + |α2|)`` (``which="alpha"``) or ``|β2| / (|β1| + |β2|)`` (``"beta"``) of block 0, the
    smallest over its heads; None where the row holds no scalars."""
    top, other = RATIOS[which]
    values = []
    head = 0
    while kv_shift_metric(0, head, top) in row:
        a, b = abs(row[kv_shift_metric(0, head, top)]), abs(row[kv_shift_metric(0, head, other)])
        values.append(a / (a + b) if a + b > 0 else 0.5)
        head += 1
    return min(values) if values else None


def summarise(curves: dict[str, dict[str, dict[int, Rows]]], never: dict[str, int]) -> dict[str, Any]:
    """Per task and arm, per seed: final outcome, milestone step; per task, the milestone ratios (a milestone
    never reached at the task's ``never``: the evaluation after the last) and the KV-shift layer's scalar
    ratios at step 0 and at the end."""
    out: dict[str, Any] = {}
    for task, arms in curves.items():
        entry: dict[str, Any] = {"arms": {}}
        for arm, runs in arms.items():
            entry["arms"][arm] = {
                "final": {str(seed): outcome(task, last_evaluation(rows)) for seed, rows in runs.items()},
                "milestone": {str(seed): milestone_step(task, rows) for seed, rows in runs.items()},
            }
        kv, two = entry["arms"].get("kv-shift"), entry["arms"].get("two-layer")
        if kv and two:
            entry["milestone_ratio"] = {seed: milestone_ratio(step, two["milestone"].get(seed), never[task])
                                        for seed, step in kv["milestone"].items() if seed in two["milestone"]}
        entry["scalars"] = {which: {str(seed): {"initial": scalar_ratio(evaluations(rows)[0], which),
                                                "final": scalar_ratio(last_evaluation(rows), which)}
                                    for seed, rows in arms.get("kv-shift", {}).items()} for which in RATIOS}
        out[task] = entry
    return out
