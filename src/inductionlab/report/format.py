"""One way to write a number in a report or a README: a missing value is a dash, never ``None``."""

from __future__ import annotations

from typing import Any

MISSING = "–"
VERDICTS = ("holds", "inconclusive", "fails")  # a claim's verdict from its intervals (docs/science.md §7.1)


def number(value: Any, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals: ``–`` for None or NaN, ``yes``/``no`` for a bool, whole numbers
    from 1000 up; anything else as ``str``."""
    if value is None or (isinstance(value, float) and value != value):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def spread(stats: dict[str, Any] | None, digits: int = 3) -> str:
    """A seed spread (:func:`~inductionlab.experiments.kit.curves.seed_spread`) as ``mean ± sd`` (the sample
    standard deviation), ``mean (one seed)`` with one seed; ``–`` when nothing was measured."""
    if not stats or stats.get("mean") is None:
        return MISSING
    if stats.get("std") is None:
        return f"{number(stats['mean'], digits)} (one seed)"
    return f"{number(stats['mean'], digits)} ± {number(stats['std'], digits)}"


def interval_text(claim: dict[str, Any]) -> str:
    """A claim's uncertainty over seeds in one line (docs/science.md §7.1): the measured value's and the paired
    difference's 95 % intervals, the seeds (and prompts per seed), the p-value (Holm-adjusted across the report
    where it has been) and the verdict at neighbouring thresholds; ``–`` for a claim without intervals."""
    found = claim.get("intervals")
    if not found:
        return MISSING

    def span(interval: dict[str, Any]) -> str:
        if interval["estimate"] is None:
            return "not measured"
        if interval["low"] is None:
            return "none (one seed)"
        return f"{number(interval['low'])} to {number(interval['high'])}"

    p_holm, p = found.get("p_holm"), found.get("p_value")
    shown = f", p (Holm) {number(p_holm)}" if p_holm is not None else (f", p {number(p)}" if p is not None else "")
    prompts = f" × {found['n_prompts']} prompts" if found.get("n_prompts") else ""
    left = f", left out: {', '.join(found['seeds_left_out'])}" if found.get("seeds_left_out") else ""
    near = ", ".join(f"{k}: {v}" for k, v in (found.get("sensitivity") or {}).items())
    return (f"{span(found['measured_ci'])}; difference {span(found['difference_ci'])} "
            f"(n = {found['n_seeds']} seeds{prompts}{left}{shown})" + (f"; at {near}" if near else ""))
