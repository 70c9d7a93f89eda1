"""What the experiments' figures share beyond :mod:`inductionlab.report.figures`: a metric over seeds as a band,
and the claims' forest plot."""

from __future__ import annotations

import statistics
import textwrap
from pathlib import Path
from typing import Any

from inductionlab.curves import Rows
from inductionlab.report.figures import plt, save_figure


def seed_band(ax, runs: dict[int, Rows], key: str, **style) -> None:
    """Mean over seeds as a line, min–max over seeds as a band (steps where every seed logged ``key``).

    runs: seed → the run's metric rows; style: passed to ``ax.plot`` (the band takes the line's colour).
    """
    by_step: dict[int, list[float]] = {}
    for rows in runs.values():
        for r in rows:
            if r.get(key) is not None:
                by_step.setdefault(r["step"], []).append(r[key])
    steps = [s for s, v in sorted(by_step.items()) if len(v) == len(runs)]
    if not steps:
        return
    line, = ax.plot(steps, [statistics.fmean(by_step[s]) for s in steps], **style)
    ax.fill_between(steps, [min(by_step[s]) for s in steps], [max(by_step[s]) for s in steps],
                    color=line.get_color(), alpha=0.2, lw=0)


VERDICT_COLOURS = {"holds": "#1b7f3b", "inconclusive": "#a46a00", "fails": "#b3261e"}
FOREST_FIGURE = "claims_forest"


def forest_plot(claims: list[dict[str, Any]], out: Path) -> str | None:
    """Each claim's paired difference with the null (favourable side to the right) and its 95 % interval over
    seeds, divided by the claim's margin so that every row shares one axis: the margin is the line at 1, the null
    the line at 0. A row without an interval shows its estimate alone. ``out/claims_forest.png``, or ``None``
    when no claim has a difference."""
    rows = []
    for c in claims:
        found, margin = c.get("intervals") or {}, c.get("margin")
        diff = found.get("difference_ci") or {}
        if diff.get("estimate") is None or not margin:
            continue
        scale = 1.0 / margin
        low, high = diff.get("low"), diff.get("high")
        rows.append((c["claim"], diff["estimate"] * scale, None if low is None else low * scale,
                     None if high is None else high * scale, c["verdict"]))
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8.5, 0.45 * len(rows) + 1.2))
    for y, (_, est, low, high, verdict) in enumerate(reversed(rows)):
        colour = VERDICT_COLOURS.get(verdict, "grey")
        if low is not None:
            ax.plot([low, high], [y, y], color=colour, lw=2)
        ax.plot([est], [y], "o", color=colour)
    ax.axvline(0, color="grey", lw=1, ls=":")
    ax.axvline(1, color="black", lw=1, ls="--")
    ax.set_yticks(range(len(rows)), [textwrap.shorten(r[0], 70, placeholder=" …") for r in reversed(rows)],
                  fontsize=7)
    ax.set_xlabel("(measured − null) / margin, favourable → ; dotted: the null, dashed: the margin")
    ax.set_xscale("symlog", linthresh=2)
    return save_figure(fig, out, FOREST_FIGURE)
