"""One way to write a number in a report or a README: a missing value is a dash, never ``None``."""

from __future__ import annotations

from typing import Any

MISSING = "–"


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
    """A seed spread (:func:`~inductionlab.experiments.kit.curves.seed_spread`) as ``mean ± std``; ``–``
    when nothing was measured."""
    if not stats or stats.get("mean") is None:
        return MISSING
    return f"{number(stats['mean'], digits)} ± {number(stats['std'], digits)}"
