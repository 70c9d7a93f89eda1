"""What the kv-shift experiment reads off each run (docs/science.md §3.3, §6): outcomes, milestones, scalars.

Per task, seed by seed:

- **outcome**: bigram: the in-context accuracy at the last evaluation; markov: the excess loss over the Bayes
  predictor in units of the unigram–Bayes gap, ``(L − L_Bayes) / (L_unigram − L_Bayes)`` (the row's own
  references);
- **milestone**: the first evaluation step where the outcome reaches its level (accuracy ≥ 0.9; excess < 0.2);
  the **milestone ratio** is the KV-shift layer's step over the two vanilla layers' on the same seed, judged
  on its logarithm (a mean of ratios is pulled up by one slow seed, and its no-difference value is not 1).
  A milestone never reached counts as the evaluation after the last one (``never``), the earliest it could
  have come: a two-layer model that never gets there makes the ratio larger than it is (against the claim);
  a KV-shift layer that never gets there gets a ratio above 1 (against the claim in direction, though a
  lower bound of its true size); neither getting there gives 1, the null;
- **scalars**: the α-share ``|α1| / (|α1| + |α2|)`` (0: each key carries only its predecessor) and the
  β-share ``|β2| / (|β1| + |β2|)`` (0: each value carries only its own token) of one head, at step 0 and at
  the last evaluation: the head with the highest induction score (``head_induction_L0H{h}``) at the last
  evaluation, the same head for both shares and both steps (chosen on the head's behaviour, not on its
  scalars, so that heads drifting apart cannot make a fall by picking the lowest). Both are 0 in the
  construction (``α1 = 0, α2 = 1, β1 = 1, β2 = 0``) and free of the scalars' overall scale, which the
  weights around them can absorb.
"""

from __future__ import annotations

import re
from typing import Any

from inductionlab.experiments.kit.curves import evaluations, last_evaluation
from inductionlab.models.names import kv_shift_metric

Rows = list[dict[str, Any]]
LEARNT_LEVEL = 0.9  # in-context accuracy at which the bigram milestone is read (birth's level, docs/science.md §8)
REACH_LEVEL = 0.2  # excess over Bayes, in units of Δ, at which the Markov milestone is read (icl-mc's level)
INDUCTION_KEY = re.compile(r"head_induction_L0H(\d+)")  # block 0's per-head induction scores (probes/progress.py)
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
    """The KV-shift layer's milestone step over the two vanilla layers', a never-reached one at ``never``
    (the claim reads its logarithm)."""
    kv_step, two_step = (never if s is None else s for s in (kv, two))
    return max(kv_step, 1) / max(two_step, 1)


def induction_head(row: dict[str, Any]) -> int:
    """The head of block 0 with the highest induction score in ``row`` (head 0 where none is logged)."""
    scores = {int(m.group(1)): v for k, v in row.items() if (m := INDUCTION_KEY.fullmatch(k)) and v is not None}
    return max(scores, key=scores.get) if scores else 0


def scalar_ratio(row: dict[str, Any], which: str, head: int = 0) -> float | None:
    """``|α1| / (|α1| + |α2|)`` (``which="alpha"``) or ``|β2| / (|β1| + |β2|)`` (``"beta"``) of head ``head`` of
    block 0; None where the row holds no scalars."""
    top, other = RATIOS[which]
    if kv_shift_metric(0, head, top) not in row:
        return None
    a, b = abs(row[kv_shift_metric(0, head, top)]), abs(row[kv_shift_metric(0, head, other)])
    return a / (a + b) if a + b > 0 else 0.5


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
        heads = {seed: induction_head(last_evaluation(rows)) for seed, rows in arms.get("kv-shift", {}).items()}
        entry["scalars"] = {which: {str(seed): {"head": heads[seed],
                                                "initial": scalar_ratio(evaluations(rows)[0], which, heads[seed]),
                                                "final": scalar_ratio(last_evaluation(rows), which, heads[seed])}
                                    for seed, rows in arms.get("kv-shift", {}).items()} for which in RATIOS}
        out[task] = entry
    return out
