"""Numbers over the seeds of an experiment (docs/science.md §7): spreads, censored medians, milestones.

- :func:`evaluations`, :func:`last_evaluation`: the rows evaluation steps logged, and the last of
  them (probe-only rows hold the memory probes alone, a diverged step its cause; an evaluation row
  of every task holds ``loss_in_context``);
- :func:`seed_spread`: mean, sample std, min, max and count over seeds, a missing value left out;
  :func:`final_values`: that spread of each key at every run's last evaluation, and the value per seed;
- :func:`censored_median`: the median of milestone steps where a milestone never reached counts as
  later than every step;
- :func:`milestone` and :func:`interpolated_milestone`: :mod:`inductionlab.curves`' crossings of a
  metric every run must log (RunDirError when no row holds it).
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from inductionlab.curves import Level, Rows, first_crossing, interpolated_crossing
from inductionlab.errors import RunDirError
from inductionlab.tasks.base import EVALUATION_KEY  # logged at every evaluation step of every task


def evaluations(rows: Rows) -> Rows:
    """The metrics rows evaluation steps logged, in order (no probe-only or divergence row)."""
    return [r for r in rows if EVALUATION_KEY in r]


def last_evaluation(rows: Rows) -> dict[str, Any]:
    """The last metrics row an evaluation step logged (RunDirError when there is none)."""
    row = next((r for r in reversed(rows) if EVALUATION_KEY in r), None)
    if row is None:
        raise RunDirError("metrics: no evaluation row logged; train the run first")
    return row


def seed_spread(values: list[float | None]) -> dict[str, float | None]:
    """Mean, sample standard deviation (``n − 1``; ``None`` for one seed), min, max and count over seeds,
    ignoring missing and non-finite values (docs/science.md §7.1)."""
    present = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not present:
        return {"mean": None, "std": None, "min": None, "max": None, "seeds": 0}
    std = statistics.stdev(present) if len(present) > 1 else None
    return {"mean": statistics.fmean(present), "std": std, "min": min(present), "max": max(present),
            "seeds": len(present)}


def final_values(runs: dict[int, Rows], keys: tuple[str, ...]) -> dict[str, Any]:
    """Mean and spread over seeds (:func:`seed_spread`) of each key at every run's last evaluation row, and the value
    per seed (``per_seed``, seed → value) for the claims' intervals; a key no run logs is left out."""
    last = {seed: last_evaluation(rows) for seed, rows in runs.items()}
    return {k: {**seed_spread([row.get(k) for row in last.values()]),
                "per_seed": {str(seed): row.get(k) for seed, row in last.items()}}
            for k in keys if any(row.get(k) is not None for row in last.values())}


def seed_mean(values: dict[str, float | None]) -> float | None:
    """The mean over the seeds that have a value (seed → value, None: missing); None when none has."""
    present = [v for v in values.values() if v is not None]
    return statistics.fmean(present) if present else None


def censored_median(steps: list[float | None]) -> float | None:
    """Median with a never-reached milestone later than every step; None when the median is one of those."""
    values = sorted(math.inf if s is None else s for s in steps)
    if not values:
        return None
    median = statistics.median(values)
    return None if math.isinf(median) else float(median)


def milestone(rows: Rows, key: str, level: Level, *, below: bool = False) -> int | None:
    """The first logged step with ``key ≥ level`` (``≤`` with ``below``); None: never reached."""
    return first_crossing(rows, key, level, below=below, required=True)


def interpolated_milestone(rows: Rows, key: str, level: float) -> float | None:
    """The step at which ``key`` first reaches ``level``, interpolated between evaluations; None: never reached."""
    return interpolated_crossing(rows, key, level, required=True)
