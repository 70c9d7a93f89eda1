"""Claims and their nulls (docs/science.md §7, §7.1): every verdict is computed, never written by hand.

A claim states its statistic seed by seed and a rule:

- ``measured``: a statistic of the trained models, one value per seed (:class:`SeedValues`);
- ``null``: the same statistic, on the same prompts and seeds, for a **null**: a predictor or a
  model that lacks the mechanism the claim is about (a constant, a setting mean, the bigram alone,
  a one-layer model, an untrained model, a shuffled assignment, …);
- ``rule``: which direction favours the claim, an absolute level the measured value must reach (and
  where that level comes from), and a margin by which it must beat the null.

The verdict comes from the intervals over seeds (:func:`uncertainty`, :mod:`.intervals`): **holds** when
the 95 % interval of the paired difference (measured − null, favourable side up) lies wholly beyond the
margin and the measured interval wholly beyond the level; **fails** when either lies wholly on the wrong
side; **inconclusive** otherwise. The margin is always positive, so a null can never pass its own rule: a
claim whose null would pass is not a claim. What holds by construction is not a claim but a check
(:mod:`.checks`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from inductionlab.experiments.kit import intervals as iv
from inductionlab.experiments.kit.checks import checks_table
from inductionlab.jsonio import to_strict
from inductionlab.report.format import interval_text, number

VERDICTS = iv.INTERVAL_VERDICTS


@dataclass(frozen=True)
class Rule:
    """When a claim holds (see the module docstring).

    better:     ``"higher"`` or ``"lower"``: which direction of the statistic favours the claim.
    level:      the measured value must reach it (``≥`` for higher, ``≤`` for lower); ``None``: no level.
    margin:     the measured value must beat the null by at least this much (> 0, statistic units).
    level_from: where the level comes from (the science's prediction, a paper's figure, a chance rate, …);
                required with a level, so that the report can say why this number and not a neighbour.
    """

    better: str
    level: float | None
    margin: float
    level_from: str = ""

    def __post_init__(self) -> None:
        if self.better not in ("higher", "lower"):
            raise ValueError(f"Rule.better must be 'higher' or 'lower', got {self.better!r}")
        if not self.margin > 0:
            raise ValueError(f"Rule.margin must be > 0 (a null must not pass its own rule), got {self.margin}")
        if self.level is not None and not self.level_from:
            raise ValueError("Rule.level_from must say where the level comes from when a level is given")

    def text(self) -> str:
        """The rule in words, as the report shows it."""
        sign = "≥" if self.better == "higher" else "≤"
        beat = "measured − null" if self.better == "higher" else "null − measured"
        rule = f"holds when the 95 % interval of {beat} lies ≥ {self.margin:g}"
        if self.level is not None:
            rule += f" and the measured interval {sign} {self.level:g} (level: {self.level_from})"
        return rule + "; fails when either lies wholly on the wrong side; inconclusive otherwise"


def _finite(value: float | None) -> bool:
    return value is not None and isinstance(value, int | float) and math.isfinite(value)


@dataclass(frozen=True)
class SeedValues:
    """A claim's statistic seed by seed: ``measured`` (seed → value) and ``null``, paired on the same seeds
    (seed → value) or one number for a null that does not vary (a chance rate, a zero slope). ``fraction``:
    the statistic is the fraction of seeds in which something holds (``measured`` 1 or 0 per seed), judged
    with the exact binomial interval against ``null`` as the chance rate; its level is read on the count
    itself (a level 1 is "on every seed": one seed out of order fails it). A seed without a value on either
    side is left out and named."""

    measured: Mapping[str, float | None]
    null: Mapping[str, float | None] | float
    fraction: bool = False

    def pairs(self) -> tuple[list[tuple[float, float]], list[str]]:
        """The (measured, null) pairs of the seeds that have both, and the seeds left out."""
        kept, left_out = [], []
        for seed, value in self.measured.items():
            other = self.null.get(seed) if isinstance(self.null, Mapping) else self.null
            if _finite(value) and _finite(other):
                kept.append((float(value), float(other)))
            else:
                left_out.append(str(seed))
        return kept, left_out


def uncertainty(rule: Rule, seeds: SeedValues) -> dict[str, Any]:
    """The intervals of a claim over its seeds and the verdict they give (docs/science.md §7.1)."""
    pairs, left_out = seeds.pairs()
    out: dict[str, Any] = {"n_seeds": len(pairs), "seeds_left_out": left_out}
    if not pairs:  # nothing measured on any seed: no interval, and no verdict but inconclusive
        nothing = iv.Interval(math.nan, None, None, 0).as_dict()
        return out | {"measured_ci": nothing, "null_ci": nothing, "difference_ci": nothing,
                      "interval_verdict": "inconclusive", "sensitivity": iv.sensitivity(rule, None, None),
                      "p_value": None}
    measured, null = [m for m, _ in pairs], [n for _, n in pairs]
    sign = 1.0 if rule.better == "higher" else -1.0
    if seeds.fraction:
        chance, k = null[0], sum(m >= 0.5 for m in measured)
        measured_ci = iv.clopper_pearson(k, len(measured))
        null_ci = iv.Interval(chance, chance, chance, len(measured))
        bounds = sorted(sign * (b - chance) for b in (measured_ci.low, measured_ci.high))
        difference_ci = iv.Interval(sign * (measured_ci.estimate - chance), bounds[0], bounds[1], len(measured))
        # a chance rate of 0 or 1 makes any other count impossible: no p-value to speak of
        p_value = iv.binomial_p_value(k, len(measured), chance) if rule.better == "higher" and 0 < chance < 1 else None
        # the level is read on the count itself ("in order on every seed": the seeds are all there is to count);
        # the margin over chance on the exact interval
        level_ci = iv.Interval(measured_ci.estimate, measured_ci.estimate, measured_ci.estimate, len(measured))
    else:
        measured_ci = iv.t_interval(measured)
        paired = isinstance(seeds.null, Mapping)
        null_ci = iv.t_interval(null) if paired else iv.Interval(null[0], null[0], null[0], len(null))
        differences = iv.paired_differences(measured, null, rule.better)
        difference_ci = iv.t_interval(differences)
        p_value = iv.paired_p_value(differences, rule.margin)
        level_ci = measured_ci
    return out | {
        "measured_ci": measured_ci.as_dict(), "null_ci": null_ci.as_dict(), "difference_ci": difference_ci.as_dict(),
        "interval_verdict": iv.interval_verdict(rule, level_ci, difference_ci),
        "sensitivity": iv.sensitivity(rule, level_ci, difference_ci), "p_value": p_value,
    }


def claim(text: str, predicted: str, statistic: str, measured: float | None, null: float | None, null_name: str,
          rule: Rule, also: tuple[str, bool] | None = None, *, seeds: SeedValues, n_prompts: int | None = None,
          reads: Sequence[Mapping[str, Any]] | None = None, **detail: Any) -> dict[str, Any]:
    """One claim of a report (docs/science.md §7), its verdict computed from its intervals over seeds.

    text: what is claimed; predicted: what the science predicts, in words; statistic: what
    ``measured`` and ``null`` are (their values over all seeds, as the tables show them); seeds: the
    statistic seed by seed, which gives the intervals and the verdict (:func:`uncertainty`); n_prompts:
    the prompts per seed the statistic rests on, where it is over prompts; also: a further condition
    ``(words, met)`` a claim needs to hold (unmet, a ``holds`` becomes ``inconclusive``); reads: the arms
    its values come from, each as run params (``{"pos_enc": "rpe"}``: every run whose ``RunSpec.params``
    hold ``pos_enc = rpe``; ``{}``: every run), which say the diverged runs it is missing
    (:func:`~inductionlab.experiments.kit.runs.mark_diverged`; ``None``: not said, so every diverged run of
    the experiment is listed on it); detail: per-seed values and notes kept beside them. A value that could
    not be measured is ``None`` (strict JSON).
    """
    found = to_strict(uncertainty(rule, seeds))
    if n_prompts is not None:
        found["n_prompts"] = int(n_prompts)
    verdict, rule_text = found["interval_verdict"], rule.text()
    if also is not None:
        rule_text = rule_text.replace("holds when", f"holds when {also[0]} and", 1)
        if verdict == "holds" and not also[1]:
            verdict = "inconclusive"
    out = {
        "claim": text, "predicted": predicted, "statistic": statistic,
        "measured": float(measured) if _finite(measured) else None,
        "null": float(null) if _finite(null) else None, "null_name": null_name,
        "rule": rule_text, "better": rule.better, "level": rule.level, "margin": rule.margin,
        "level_from": rule.level_from or None, "verdict": verdict, "intervals": found,
    }
    if also is not None:
        out["condition"], out["condition_met"] = also[0], bool(also[1])
    if reads is not None:
        out["reads"] = [dict(arm) for arm in reads]
    out.update(to_strict(detail))
    return out


def claims_section(results: dict[str, Any]) -> list[str]:
    """The end of every experiment's README: its claims (:func:`claims_table`), its checks apart
    (:func:`~.checks.checks_table`) and the figures it wrote."""
    lines = ["## Claims", "", claims_table(results["claims"]), ""]
    if results.get("checks"):
        lines += ["## Checks", "", "What holds by construction, computed on every run and not counted as a claim.",
                  "", checks_table(results["checks"]), ""]
    return lines + ["Figures: " + ", ".join(f"`{f}`" for f in results["figures"]), ""]


def claims_table(claims: list[dict[str, Any]]) -> str:
    """The claims as a Markdown table: measured, null and rule side by side, then the verdict."""
    lines = ["| claim | statistic | measured | null | rule | verdict | over seeds (95 %) |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {c['claim']} | {c['statistic']} | {number(c['measured'])} | {number(c['null'])} ({c['null_name']}) "
              f"| {c['rule']} | {c['verdict']} | {interval_text(c)} |" for c in claims]
    notes = [f"- {c['claim']}: {c['diverged_note']}." for c in claims if c.get("diverged_note")]
    lines += ["", "Diverged runs left out, claim by claim:", "", *notes] if notes else []
    return "\n".join(lines)
