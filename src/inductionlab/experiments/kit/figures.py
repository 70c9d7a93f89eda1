"""What the experiments' figures share beyond :mod:`inductionlab.report.figures`: a metric over seeds as a band."""

from __future__ import annotations

import statistics

from inductionlab.curves import Rows


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

