"""The kv-shift experiment's claims and its check (docs/science.md §3.3, §7, §7.1), each seed by seed.

With the quantities of :mod:`.measure`:

- **learns** (bigram): the KV-shift layer's final in-context accuracy; null: one vanilla layer on the same
  seed; birth's rule (level 0.9, margin 0.3);
- **reaches Bayes** (markov): its excess over Bayes in units of Δ; null: one vanilla layer on the same seed;
  icl-mc's rule (level 0.2, margin 0.3);
- **earlier** (each task): the logarithm of its milestone step over two vanilla layers' on the same seed;
  null: 0 (no difference); it must be at least a quarter earlier (margin ``−log 0.75``);
- **toward the construction** (each task, each of the two scalar ratios): the ratio at the end; null: the same
  ratio at step 0; it must fall by at least 0.1.

The **check**: with no positional encoding no position is out of range, so the layer's in-context accuracy at
4× the training length stays within 0.1 of that at the training length on every seed (bigram). That follows
from the shift being relative rather than from anything learnt, so it is a check; what it measures is what a
longer prompt does change: more keys in the softmax.
"""

from __future__ import annotations

import math
from typing import Any

from inductionlab.experiments.birth.all_targets import LEARNT_RULE
from inductionlab.experiments.icl_mc.claims import REACH_RULE
from inductionlab.experiments.kit.checks import check
from inductionlab.experiments.kit.claims import Rule, SeedValues, claim
from inductionlab.experiments.kit.curves import seed_mean
from inductionlab.experiments.kv_shift.measure import LEARNT_LEVEL, REACH_LEVEL

EARLIER_RULE = Rule("lower", None, -math.log(0.75))  # log ratio ≤ log 0.75: at most 0.75 × the two layers' step
TOWARD_RULE = Rule("lower", None, 0.1)  # a scalar ratio falls by at least 0.1 from its initial value
LONGER_DROP = 0.1  # the check: accuracy at 4× the training length at most this much below
RATIO_TEXT = {"alpha": ("the α-share abs(α1) / (abs(α1) + abs(α2))", "each key carries its predecessor's token"),
              "beta": ("the β-share abs(β2) / (abs(β1) + abs(β2))", "each value carries its own token")}
MILESTONE_TEXT = {"bigram": f"in-context accuracy ≥ {LEARNT_LEVEL}",
                  "markov": f"excess loss over Bayes < {REACH_LEVEL} Δ"}


def arm_runs(task: str, *arms: str) -> tuple[dict[str, Any], ...]:
    """The run params of ``arms`` of ``task`` (what a claim reads, :func:`~inductionlab.experiments.kit.claims.claim`):
    the KV-shift layer's own runs, or the vanilla runs of birth (setting (a)) and icl-mc (order 2) that
    :func:`~.run.plan` reads, as :func:`~.run.arm_of` tells them apart."""
    def one(arm: str) -> dict[str, Any]:
        if arm == "kv-shift":
            return {"task": task, "arm": arm}
        return {"setting": "all", "depth": arm} if task == "bigram" else {"order": 2, "depth": arm}
    return tuple(one(arm) for arm in arms)


def _paired(arms: dict[str, Any], arm: str, null_arm: str) -> SeedValues:
    return SeedValues(arms[arm]["final"], {s: arms[null_arm]["final"].get(s) for s in arms[arm]["final"]})


def claims(results: dict[str, Any]) -> list[dict[str, Any]]:
    """docs/science.md §3.3's statements, each against a null (§7), judged over seeds (§7.1)."""
    tasks = results["tasks"]
    out = []
    bigram, markov = tasks["bigram"]["arms"], tasks["markov"]["arms"]
    seeds = _paired(bigram, "kv-shift", "one-layer")
    out.append(claim(
        "One KV-shift attention layer (no positions) learns the in-context targets of the bigram task",
        f"accuracy ≥ {LEARNT_LEVEL}; one vanilla layer cannot", "final in-context accuracy, mean over seeds",
        seed_mean(seeds.measured), seed_mean(seeds.null), "one vanilla AMT layer (birth's one-layer runs)",
        LEARNT_RULE, seeds=seeds, reads=arm_runs("bigram", "kv-shift", "one-layer")))
    seeds = _paired(markov, "kv-shift", "one-layer")
    out.append(claim(
        "One KV-shift attention layer (no positions) reaches the in-context Bayes loss on Markov chains",
        f"within {REACH_LEVEL} Δ of L_Bayes; one vanilla layer cannot",
        "(final loss − L_Bayes) / Δ, Δ = L_unigram − L_Bayes, mean over seeds", seed_mean(seeds.measured),
        seed_mean(seeds.null), "one vanilla attention-only layer (icl-mc's one-layer runs)", REACH_RULE, seeds=seeds,
        reads=arm_runs("markov", "kv-shift", "one-layer")))
    for task in ("bigram", "markov"):
        ratio = tasks[task]["milestone_ratio"]
        log_ratio = {s: math.log(r) for s, r in ratio.items()}
        mean_log = seed_mean(log_ratio)
        out.append(claim(
            f"One KV-shift layer reaches the {task} milestone ({MILESTONE_TEXT[task]}) earlier than two vanilla "
            "layers", "a ratio well below 1 (their toy runs: much faster)",
            "log(its milestone step / the two vanilla layers' on the same seed; never reached: the evaluation "
            "after the last), mean over seeds", mean_log, 0.0, "no difference (log ratio 0)", EARLIER_RULE,
            seeds=SeedValues(log_ratio, 0.0), reads=arm_runs(task, "kv-shift", "two-layer"), ratio=ratio,
            geometric_mean_ratio=None if mean_log is None else math.exp(mean_log),
            milestones={arm: a["milestone"] for arm, a in tasks[task]["arms"].items()}))
    for task in ("bigram", "markov"):
        for which, (text, meaning) in RATIO_TEXT.items():
            values = tasks[task]["scalars"][which]
            final = {s: v["final"] for s, v in values.items()}
            initial = {s: v["initial"] for s, v in values.items()}
            out.append(claim(
                f"The KV-shift layer's scalars move toward the construction ({task}): {text} falls toward 0 "
                f"({meaning})", "toward 0 (α1 = 0, α2 = 1, β1 = 1, β2 = 0)",
                f"{text} at the last evaluation (the head with the highest induction score), mean over seeds",
                seed_mean(final),
                seed_mean(initial), "the same ratio at step 0 (the initialisation)", TOWARD_RULE,
                seeds=SeedValues(final, initial), reads=arm_runs(task, "kv-shift")))
    return out


def checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The module docstring's check: no positions, so the head keeps at 4× the training length."""
    longer = results["longer"]
    drops = {s: v["train_len"] - v["long"] for s, v in longer.items()}
    worst = max(drops.values()) if drops else None
    length = next(iter(longer.values()))["length"] if longer else None
    return [check(
        f"With no positional encoding, one KV-shift layer keeps its in-context accuracy at {length} tokens, 4× the "
        "training length (bigram task)", "largest drop of in-context accuracy from the training length to 4× it, "
        "over seeds", worst, f"≤ {LONGER_DROP} on every seed", worst is not None and worst <= LONGER_DROP,
        per_seed=longer)]
