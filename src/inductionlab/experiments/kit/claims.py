"""Claims and their nulls (docs/science.md §7): every verdict is computed, never written by hand.

A claim states three numbers and a rule:

- ``measured``: a statistic of the trained models (over seeds);
- ``null``: the same statistic, on the same prompts and seeds, for a **null**: a predictor or a
  model that lacks the mechanism the claim is about (a constant, a setting mean, the bigram alone,
  a one-layer model, an untrained model, a shuffled assignment, …);
- ``rule``: which direction favours the claim, an absolute level the measured value must reach,
  and a margin by which it must beat the null.

:meth:`Rule.verdict` turns them into ``holds`` (level reached and null beaten by the margin),
``partly`` (null beaten, and exactly one of level and margin met) or ``fails`` (null not beaten,
or both missed). The margin is always positive, so a null can never pass its own rule: a claim
whose null would pass is not a claim.

Given the statistic per seed (:class:`SeedValues`), a claim also carries its uncertainty
(docs/science.md §7.1, :mod:`.intervals`): the intervals of the measured value, the null and their
paired difference, the verdict those intervals give (holds / inconclusive / fails), the verdict at
neighbouring levels and a p-value, under ``intervals``. The ``verdict`` above is still the one of the means.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inductionlab.experiments.kit import intervals as iv
from inductionlab.jsonio import to_strict
from inductionlab.report.format import interval_text, number

VERDICTS = ("holds", "partly", "fails")


@dataclass(frozen=True)
class Rule:
    """When a claim holds (see the module docstring).

    better:    ``"higher"`` or ``"lower"``: which direction of the statistic favours the claim.
    level:     the measured value must reach it (``≥`` for higher, ``≤`` for lower); ``None``: no level.
    margin:    the measured value must beat the null by at least this much (> 0, statistic units).
    """

    better: str
    level: float | None
    margin: float

    def __post_init__(self) -> None:
        if self.better not in ("higher", "lower"):
            raise ValueError(f"Rule.better must be 'higher' or 'lower', got {self.better!r}")
        if not self.margin > 0:
            raise ValueError(f"Rule.margin must be > 0 (a null must not pass its own rule), got {self.margin}")

    def _beats(self, measured: float, null: float, by: float) -> bool:
        return measured - null >= by if self.better == "higher" else null - measured >= by

    def _reaches(self, measured: float) -> bool:
        if self.level is None:
            return True
        return measured >= self.level if self.better == "higher" else measured <= self.level

    def verdict(self, measured: float | None, null: float | None) -> str:
        """``holds`` / ``partly`` / ``fails`` from the two numbers; a missing or non-finite one fails."""
        if not (_finite(measured) and _finite(null)):
            return "fails"
        if not (measured > null if self.better == "higher" else measured < null):
            return "fails"
        met = [self._beats(measured, null, self.margin)] + ([self._reaches(measured)] if self.level is not None else [])
        if all(met):
            return "holds"
        return "partly" if any(met) or len(met) == 1 else "fails"  # with no level, beating the null is partly

    def text(self) -> str:
        """The rule in words, as the report shows it."""
        sign = "≥" if self.better == "higher" else "≤"
        beat = "measured − null" if self.better == "higher" else "null − measured"
        side = "above" if self.better == "higher" else "below"
        if self.level is None:
            return (f"holds when {beat} ≥ {self.margin:g}; partly when measured is {side} the null by less; "
                    "fails otherwise")
        return (f"holds when measured {sign} {self.level:g} and {beat} ≥ {self.margin:g}; partly when measured is "
                f"{side} the null and exactly one of the two holds; fails otherwise")


def _finite(value: float | None) -> bool:
    return value is not None and isinstance(value, int | float) and math.isfinite(value)


@dataclass(frozen=True)
class SeedValues:
    """A claim's statistic seed by seed: ``measured`` (seed → value) and ``null``, paired on the same seeds
    (seed → value) or one number for a null that does not vary (a chance rate, a zero slope). ``fraction``:
    the statistic is the fraction of seeds in which something holds (``measured`` 1 or 0 per seed), judged
    with the exact binomial interval against ``null`` as the chance rate. A seed without a value on either
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
    if not pairs:
        return out | {"interval_verdict": "inconclusive"}
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
    else:
        measured_ci = iv.t_interval(measured)
        paired = isinstance(seeds.null, Mapping)
        null_ci = iv.t_interval(null) if paired else iv.Interval(null[0], null[0], null[0], len(null))
        differences = iv.paired_differences(measured, null, rule.better)
        difference_ci = iv.t_interval(differences)
        p_value = iv.paired_p_value(differences, rule.margin)
    return out | {
        "measured_ci": measured_ci.as_dict(), "null_ci": null_ci.as_dict(), "difference_ci": difference_ci.as_dict(),
        "interval_verdict": iv.interval_verdict(rule, measured_ci, difference_ci),
        "sensitivity": iv.sensitivity(rule, measured_ci, difference_ci), "p_value": p_value,
    }


def claim(text: str, predicted: str, statistic: str, measured: float | None, null: float | None, null_name: str,
          rule: Rule, also: tuple[str, bool] | None = None, seeds: SeedValues | None = None,
          **detail: Any) -> dict[str, Any]:
    """One claim of a report (docs/science.md §7), its verdict computed by ``rule``.

    text: what is claimed; predicted: what the science predicts, in words; statistic: what
    ``measured`` and ``null`` are; also: a further condition ``(words, met)`` a claim needs to hold
    (unmet, a ``holds`` becomes ``partly``); seeds: the statistic seed by seed, for its intervals
    (:func:`uncertainty`); detail: per-seed values and notes kept beside them. A value that could not be
    measured is ``None`` (strict JSON) and the verdict is ``fails``.
    """
    verdict, rule_text = rule.verdict(measured, null), rule.text()
    if also is not None:
        rule_text = rule_text.replace("holds when", f"holds when {also[0]} and", 1)
        if verdict == "holds" and not also[1]:
            verdict = "partly"
    out = {
        "claim": text, "predicted": predicted, "statistic": statistic,
        "measured": float(measured) if _finite(measured) else None,
        "null": float(null) if _finite(null) else None, "null_name": null_name,
        "rule": rule_text, "verdict": verdict,
    }
    if also is not None:
        out["condition"], out["condition_met"] = also[0], bool(also[1])
    if seeds is not None:
        out["intervals"] = to_strict(uncertainty(rule, seeds))
    out.update(to_strict(detail))
    return out


def claims_section(results: dict[str, Any]) -> list[str]:
    """The end of every experiment's README: its claims (:func:`claims_table`) and the figures it wrote."""
    return ["## Claims", "", claims_table(results["claims"]), "",
            "Figures: " + ", ".join(f"`{f}`" for f in results["figures"]), ""]


def claims_table(claims: list[dict[str, Any]]) -> str:
    """The claims as a Markdown table: measured, null and rule side by side, then the verdict."""
    lines = ["| claim | statistic | measured | null | rule | verdict | over seeds (95 %) |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {c['claim']} | {c['statistic']} | {number(c['measured'])} | {number(c['null'])} ({c['null_name']}) "
              f"| {c['rule']} | {c['verdict']} | {interval_text(c)} |" for c in claims]
    notes = dict.fromkeys(c["diverged_note"] for c in claims if c.get("diverged_note"))
    lines += ["", *(f"Every claim above: {note}." for note in notes)] if notes else []
    return "\n".join(lines)
