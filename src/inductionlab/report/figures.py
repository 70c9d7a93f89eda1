"""What every figure the package writes shares: the Agg backend and one way to save (PNG for the report, SVG);
and the one figure every experiment's report section opens with, the claims' forest plot."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(fig, out: Path, name: str, dpi: int = 120) -> str:
    """Lay out ``fig`` (unless it has a layout engine of its own), write ``out/name.png`` and ``out/name.svg``,
    close it; the PNG's file name."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(out / f"{name}.{ext}", dpi=dpi)
    plt.close(fig)
    return f"{name}.png"


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
