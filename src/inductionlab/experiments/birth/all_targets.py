"""Birth, setting (a): all targets with ``W_F`` (docs/science.md §6): does a two-layer model learn the in-context
targets that a one-layer one cannot, and is the global bigram learnt first?

*Global knowledge first* is read on normalised progress: the step at which each curve has made ``x`` of its
improvement (the global loss falling, the in-context accuracy rising), ``x`` = 80 %, with 50 and 90 % beside
it, per seed; the statistic is their ratio, global over in-context, against 1 (no preferred order). The global
loss's way is counted from the **unigram loss** (what the token frequencies alone give, :func:`unigram_loss`)
to its final value, so that the fall from the initial guess to the frequencies, which needs no bigram, does
not count as bigram knowledge; the reading from step 0 is kept beside it, and so is the one-layer model's ratio
(its in-context accuracy rises without an induction head). A distance to the bigram optimum is on another
scale than an accuracy, so the older reading, "the global loss within so many nats of the optimum before the
in-context accuracy beats the one-layer model", is kept as a curve of the outcome against the distance, not as
a verdict.
"""

from __future__ import annotations

from typing import Any

import torch

from inductionlab.config import RunConfig
from inductionlab.curves import interpolated_crossing
from inductionlab.experiments.birth.order import order_statistic
from inductionlab.experiments.kit.claims import Rule, SeedValues, claim, uncertainty
from inductionlab.experiments.kit.curves import (
    evaluations,
    final_values,
    last_evaluation,
    milestone,
    seed_mean,
    seed_spread,
)
from inductionlab.tasks.bigram_task import make_sampler

Rows = list[dict[str, Any]]
PROGRESS = 0.8  # the judged fraction of each curve's own improvement
PROGRESS_ALSO = (0.5, 0.9)  # the sensitivity row
DISTANCES = (0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4)  # nats from the bigram optimum (the curve, no verdict)
ICL_MARGIN = 0.1  # the in-context milestone of the distance curve: the one-layer model's final accuracy + 0.1
DISTANCE_KEYS = ("global_within_optimum", "in_context_above_one_layer")
FINAL_KEYS = ("acc_in_context", "acc_in_context_all", "loss_global", "loss_global_bigram_optimum", "loss_in_context",
              "degenerate_rows", "degenerate_in_context_share", "train_degenerate_rows",
              "train_degenerate_in_context_share", "wo", "wo_ff", "wk2", "wk2_triggers", "wk1")
LEARNT_RULE = Rule("higher", 0.9, 0.3, level_from="0.9, the accuracy at which an in-context milestone is read "
                   "(docs/science.md §8)")
FIRST_RULE = Rule("lower", None, 0.2)  # global at most 0.8 × the in-context step: a lead, not a tie
SETTING_A = {depth: {"setting": "all", "depth": depth} for depth in ("two-layer", "one-layer")}  # each arm's params


def unigram_loss(cfg: RunConfig) -> float:
    """The cross-entropy of predicting every target by the token frequencies, ``H(π) = −Σ π log π`` of the
    config's bigram source: a global target follows a token drawn (near) the stationary distribution, so its
    marginal is ``π``."""
    pi = make_sampler(cfg, torch.device("cpu"))[0].unigram.to(torch.float64)
    return float(-(pi[pi > 0] * pi[pi > 0].log()).sum())


def progress_step(rows: Rows, key: str, fraction: float, *, falling: bool, start: float | None = None) -> float | None:
    """The step (interpolated between evaluations) at which ``key`` has made ``fraction`` of its improvement from
    ``start`` (default: the first evaluation) to the last evaluation (falling: a loss; rising: an accuracy); None
    when it never improves."""
    rows = evaluations(rows)
    start, final = rows[0][key] if start is None else start, rows[-1][key]
    gain = (start - final) if falling else (final - start)
    if not gain > 0:
        return None
    done = [{"step": r["step"], "progress": ((start - r[key]) if falling else (r[key] - start)) / gain}
            for r in rows]
    return interpolated_crossing(done, "progress", fraction)


def global_first_by_progress(runs: dict[int, Rows], unigram: float | None) -> dict[str, Any]:
    """Per progress fraction: each seed's steps (global loss from ``unigram``, or from step 0 with None; in-context
    accuracy) and their ratio."""
    out = {}
    for x in (PROGRESS, *PROGRESS_ALSO):
        steps = {str(seed): {"global": progress_step(rows, "loss_global", x, falling=True, start=unigram),
                             "in_context": progress_step(rows, "acc_in_context", x, falling=False)}
                 for seed, rows in runs.items()}
        ratio = {seed: s["global"] / s["in_context"] if s["global"] is not None and s["in_context"] else None
                 for seed, s in steps.items()}
        out[str(x)] = {"steps": steps, "ratio": ratio}
    return out


def global_first_by_distance(two: dict[int, Rows], one_final: dict[int, float]) -> dict[str, Any]:
    """Per distance to the bigram optimum: each seed's milestones and the order statistic (a curve, no verdict)."""
    out = {}
    for nats in DISTANCES:
        ms = {str(seed): {
            "global_within_optimum": milestone(
                rows, "loss_global", lambda r, nats=nats: r["loss_global_bigram_optimum"] + nats, below=True),
            "in_context_above_one_layer": milestone(rows, "acc_in_context", one_final[seed] + ICL_MARGIN)}
            for seed, rows in two.items()}
        out[str(nats)] = {"milestones": ms, "order": order_statistic(ms, DISTANCE_KEYS)}
    return out


def summarise_all_targets(curves: dict[str, dict[int, Rows]], unigram: float) -> dict[str, Any]:
    """Setting (a): final numbers per depth, the untrained model, global first by progress (from the unigram loss
    ``unigram``, from step 0, and the one-layer model's) and by distance."""
    two, one = curves["two-layer"], curves["one-layer"]
    one_final = {seed: last_evaluation(rows)["acc_in_context"] for seed, rows in one.items()}
    first = {str(seed): evaluations(rows)[0] for seed, rows in two.items()}
    return {"final": {depth: final_values(runs, FINAL_KEYS) for depth, runs in curves.items()},
            "untrained": {k: {**seed_spread([r.get(k) for r in first.values()]),
                              "per_seed": {s: r.get(k) for s, r in first.items()}}
                          for k in ("acc_in_context", "loss_global")},
            "unigram_loss": unigram,
            "global_first_by_progress": global_first_by_progress(two, unigram),
            "global_first_from_step_0": global_first_by_progress(two, None),
            "global_first_one_layer": global_first_by_progress(one, unigram),
            "global_first_by_distance": global_first_by_distance(two, one_final)}


def claims_all_targets(a: dict[str, Any]) -> list[dict[str, Any]]:
    """(a)'s two claims: the two-layer model learns the in-context targets; the global bigram is learnt first."""
    two, one = a["final"]["two-layer"]["acc_in_context"], a["final"]["one-layer"]["acc_in_context"]
    progress = a["global_first_by_progress"]
    main = progress[str(PROGRESS)]
    also = {x: {"mean_ratio": seed_mean(row["ratio"]),
                "verdict": uncertainty(FIRST_RULE, SeedValues(row["ratio"], 1.0))["interval_verdict"]}
            for x, row in progress.items()}
    return [
        claim("(a) A two-layer model learns the in-context targets; a one-layer model of the same width cannot (it "
              "has no previous-token head to feed an induction head)", "two layers ≥ 0.9, ≥ 0.3 above one layer",
              "in-context accuracy at the end, non-degenerate evaluation sequences, mean over seeds", two["mean"],
              one["mean"], "the one-layer model of the same width on the same sequences", LEARNT_RULE,
              seeds=SeedValues(two["per_seed"], one["per_seed"]), reads=tuple(SETTING_A.values()),
              per_seed={"two-layer": two, "one-layer": one},
              degenerate_in_context_share=a["final"]["two-layer"]["degenerate_in_context_share"]["mean"]),
        claim(f"(a) Global knowledge first: the two-layer model's global loss makes {PROGRESS:.0%} of its way from "
              f"the unigram loss to its final value before its in-context accuracy makes {PROGRESS:.0%} of its rise",
              "ratio < 1 on every seed", f"step at which the global loss has made {PROGRESS:.0%} of its fall from the "
              f"unigram loss ({a['unigram_loss']:.3f} nats) / the step at which the in-context accuracy has made "
              f"{PROGRESS:.0%} of its rise from step 0, per seed, mean over seeds", seed_mean(main["ratio"]), 1.0,
              "no preferred order (ratio 1)", FIRST_RULE, seeds=SeedValues(main["ratio"], 1.0),
              reads=(SETTING_A["two-layer"],), steps=main["steps"],
              ratio=main["ratio"], by_progress=also,
              from_step_0={x: row["ratio"] for x, row in a["global_first_from_step_0"].items()},
              one_layer={x: row["ratio"] for x, row in a["global_first_one_layer"].items()}),
    ]
