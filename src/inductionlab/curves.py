"""When a logged curve first crosses a level: the milestones of docs/science.md §6, §8 and §9.

A run's ``metrics.jsonl`` holds one row per evaluation step (and per probe step); a row may lack
a key (probe-only rows hold the memory probes alone) or hold None for it. Both functions read the
rows in the order they were logged (increasing steps) and skip every row without a number for
``key``:

- :func:`first_crossing`: the first logged step at which ``key`` is at or above ``level`` (at or
  below with ``below=True``); ``level`` is a number, or a function of the row for a level that
  moves with another logged value;
- :func:`interpolated_crossing`: the same crossing placed between the last logged value short of
  the level and the first that reaches it, linearly (the evaluation grid would otherwise round
  every milestone up to its next evaluation).

Both return None for a level never reached; with ``required=True`` a key that no row holds is a
RunDirError (a misnamed metric must not pass for a milestone never reached).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from inductionlab.errors import RunDirError

Rows = list[dict[str, Any]]
Level = float | Callable[[dict[str, Any]], float]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_logged(rows: Rows, key: str) -> None:
    if not any(key in row for row in rows):
        raise RunDirError(f"metrics: no logged row has {key!r}; cannot place its milestone")


def first_crossing(rows: Rows, key: str, level: Level, *, below: bool = False, required: bool = False) -> int | None:
    """The first logged step whose ``key`` is ``≥ level`` (``≤ level`` with ``below``); None if none is.

    level: a number, or a function of the row (e.g. an optimum logged beside ``key`` plus a margin).
    required: raise RunDirError when no row holds ``key`` at all.
    """
    if required:
        _check_logged(rows, key)
    for row in rows:
        value = row.get(key)
        if not _is_number(value):
            continue
        bound = level(row) if callable(level) else level
        if (value <= bound) if below else (value >= bound):
            return row["step"]
    return None


def interpolated_crossing(rows: Rows, key: str, level: float, *, required: bool = False) -> float | None:
    """The step at which ``key`` first reaches ``level``, interpolated linearly between the last logged
    value below it and the first at or above it; the first logged step itself when that one already
    reaches it; None when never reached."""
    reached = first_crossing(rows, key, level, required=required)
    if reached is None:
        return None
    logged = [(r["step"], r[key]) for r in rows if _is_number(r.get(key))]
    index = next(i for i, (step, _) in enumerate(logged) if step == reached)
    if index == 0:
        return float(reached)
    (s0, v0), (s1, v1) = logged[index - 1], logged[index]
    return s0 + (level - v0) / (v1 - v0) * (s1 - s0)
