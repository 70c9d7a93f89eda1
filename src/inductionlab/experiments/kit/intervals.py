"""Intervals over seeds, paired differences and the three verdicts (docs/science.md §7.1).

A claim's statistic is measured once per seed, for the trained model and for its null on the same prompts,
so each seed gives a pair and a **paired difference** ``d_s`` (``measured − null``, or ``null − measured``
when lower is better: positive always favours the claim). Over the ``n`` seeds:

- :func:`t_interval`: ``mean ± t_{n−1} · sd / √n``, ``sd`` the sample standard deviation (``n − 1``); one
  seed gives no interval (bounds ``None``);
- :func:`clopper_pearson`: the exact interval of a fraction of seeds (``k`` of ``n`` in an order);
- :func:`bootstrap_interval`: a statistic over prompts inside one seed, prompts resampled, for that seed's
  own interval;
- :func:`interval_verdict`: **holds** when the difference's interval lies wholly beyond the rule's margin
  and the measured interval wholly beyond its level; **fails** when either lies wholly on the wrong side;
  **inconclusive** otherwise (more seeds or prompts would decide it);
- :func:`paired_p_value` (one-sided t-test of the difference against the margin), :func:`binomial_p_value`
  and :func:`holm` (the adjustment across a report's claims): information beside the verdict, not the
  verdict.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from inductionlab.report.format import VERDICTS

if TYPE_CHECKING:  # claims.py computes its intervals here; a Rule is only read (better, level, margin)
    from inductionlab.experiments.kit.claims import Rule

CONFIDENCE = 0.95
INTERVAL_VERDICTS = VERDICTS


@dataclass(frozen=True)
class Interval:
    """An estimate and its interval over ``n`` units (seeds, or prompts inside a seed); ``low``/``high`` are
    ``None`` where no interval exists (one unit). ``sd``: the sample standard deviation, where one is defined."""

    estimate: float
    low: float | None
    high: float | None
    n: int
    sd: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """Strict JSON: a non-finite number becomes ``None``."""
        return {key: _finite_or_none(getattr(self, key)) for key in ("estimate", "low", "high", "sd")} | {"n": self.n}


def _finite_or_none(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """The two-sided Student-t interval of the mean of ``values`` (one per seed), ``n − 1`` degrees of freedom."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0 or not np.isfinite(x).all():
        raise ValueError(f"t_interval: need one finite value per seed, got {values!r}")
    mean = float(x.mean())
    if x.size == 1:
        return Interval(mean, None, None, 1)
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1)) * sd / math.sqrt(x.size)
    return Interval(mean, mean - half, mean + half, int(x.size), sd)


def clopper_pearson(successes: int, n: int, confidence: float = CONFIDENCE) -> Interval:
    """The exact (Clopper–Pearson) interval of a fraction ``successes / n`` (e.g. seeds in an order)."""
    if not 0 <= successes <= n or n < 1:
        raise ValueError(f"clopper_pearson: need 0 ≤ successes ≤ n and n ≥ 1, got {successes} of {n}")
    alpha = 1 - confidence
    low = 0.0 if successes == 0 else float(stats.beta.ppf(alpha / 2, successes, n - successes + 1))
    high = 1.0 if successes == n else float(stats.beta.ppf(1 - alpha / 2, successes + 1, n - successes))
    return Interval(successes / n, low, high, n)


def bootstrap_interval(values: Sequence[float], statistic: Callable[[np.ndarray], float] = np.mean,
                       resamples: int = 2000, seed: int = 0, confidence: float = CONFIDENCE) -> Interval:
    """A percentile bootstrap interval of ``statistic`` over ``values`` (the prompts of one seed), resampled
    with replacement ``resamples`` times from a generator seeded by ``seed`` (the same numbers every time)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("bootstrap_interval: need a non-empty 1-D array of values")
    estimate = float(statistic(x))
    if x.size == 1:
        return Interval(estimate, None, None, 1)
    rng = np.random.default_rng(seed)
    draws = np.array([statistic(x[rng.integers(0, x.size, x.size)]) for _ in range(resamples)])
    low, high = np.quantile(draws, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(estimate, float(low), float(high), int(x.size), float(x.std(ddof=1)))


def paired_differences(measured: Sequence[float], null: Sequence[float], better: str) -> list[float]:
    """Per-seed ``measured − null`` (``null − measured`` when lower is better): positive favours the claim."""
    if len(measured) != len(null):
        raise ValueError(f"paired_differences: {len(measured)} measured against {len(null)} null values")
    sign = 1.0 if better == "higher" else -1.0
    return [sign * (m - n) for m, n in zip(measured, null, strict=True)]


def interval_verdict(rule: Rule, measured: Interval, difference: Interval, level: float | None = None,
                     margin: float | None = None) -> str:
    """``holds`` / ``inconclusive`` / ``fails`` from the measured interval and the paired difference's
    (:func:`paired_differences`, so its favourable side is always above); ``level`` and ``margin`` override
    the rule's (for the sensitivity row)."""
    level = rule.level if level is None else level
    margin = rule.margin if margin is None else margin
    if difference.low is None or difference.high is None or measured.low is None or measured.high is None:
        return "inconclusive"
    higher = rule.better == "higher"
    level_met = level is None or (measured.low >= level if higher else measured.high <= level)
    level_missed = level is not None and (measured.high < level if higher else measured.low > level)
    if difference.high < margin or level_missed:
        return "fails"
    if difference.low >= margin and level_met:
        return "holds"
    return "inconclusive"


SENSITIVITY_FACTORS = (0.8, 0.9, 1.1, 1.2)


def sensitivity(rule: Rule, measured: Interval | None, difference: Interval | None,
                factors: Sequence[float] = SENSITIVITY_FACTORS) -> dict[str, str]:
    """The verdict at neighbouring thresholds, the rule's level times each factor (its margin where it has no
    level): does the verdict hang on the choice? Keys name the threshold, e.g. ``"level 0.72"``."""
    which = "level" if rule.level is not None else "margin"
    base = rule.level if rule.level is not None else rule.margin
    out = {}
    for f in factors:
        if measured is None or difference is None:
            out[f"{which} {base * f:g}"] = "inconclusive"
        else:
            out[f"{which} {base * f:g}"] = interval_verdict(rule, measured, difference, **{which: base * f})
    return out


def paired_p_value(differences: Sequence[float], margin: float) -> float | None:
    """One-sided p-value of the paired differences exceeding ``margin`` (t-test, ``n − 1`` degrees of freedom);
    ``None`` with fewer than two seeds."""
    d = np.asarray(differences, dtype=np.float64)
    if d.size < 2:
        return None
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        return 0.0 if float(d.mean()) > margin else 1.0
    t = (float(d.mean()) - margin) / (sd / math.sqrt(d.size))
    return float(stats.t.sf(t, d.size - 1))


def binomial_p_value(successes: int, n: int, chance: float) -> float:
    """One-sided p-value of ``successes`` of ``n`` seeds or more under the chance rate ``chance``."""
    return float(stats.binomtest(successes, n, chance, alternative="greater").pvalue)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment across a report's claims (``None`` entries are left out and kept ``None``)."""
    present = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(present)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def adjust_p_values(experiments: dict[str, Any]) -> None:
    """Add ``p_holm`` beside every claim's ``intervals.p_value``, Holm-adjusted across all the claims of
    ``experiments`` (a report's ``{name: results}``), in place."""
    found = [c["intervals"] for results in experiments.values() for c in results.get("claims", [])
             if isinstance(c.get("intervals"), dict)]
    for entry, adjusted in zip(found, holm([entry.get("p_value") for entry in found]), strict=True):
        entry["p_holm"] = adjusted
