"""What every figure the package writes shares: the Agg backend and one way to save (PNG for the report, SVG)."""

from __future__ import annotations

from pathlib import Path

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
