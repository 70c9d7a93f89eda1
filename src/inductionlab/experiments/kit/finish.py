"""How every analysis ends: claims, diverged runs, figures, README and ``results.json``, in that order.

``results.json`` is written last and atomically: ``reproduce`` takes it as the sign that an
experiment's analysis is done, so a folder without it is analysed again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from inductionlab import jsonio
from inductionlab.experiments.kit.runs import mark_diverged
from inductionlab.runs import atomic_write


def readme_heading(title: str, results: dict[str, Any], *columns: str) -> list[str]:
    """The first lines of an experiment's README.md: its title, the preset and setting, and the header of a
    Markdown table with ``columns`` when some are given."""
    lines = [f"# {title}", "", f"Preset `{results['preset']}`. {results['setting']}", ""]
    if columns:
        lines += ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    return lines


def write_results(results: dict[str, Any], out: Path) -> None:
    """``results.json`` written atomically, in strict JSON."""
    atomic_write(out / "results.json", jsonio.dumps(results, indent=2) + "\n")


def finish(out: Path, results: dict[str, Any], *, claims: list[dict[str, Any]], diverged: list[dict[str, Any]],
           figures: Callable[[dict[str, Any], Path], list[str]], readme: Callable[[dict[str, Any]], str]
           ) -> dict[str, Any]:
    """Complete ``results`` and write them into ``out``; return them.

    In this order: ``results["claims"] = claims``; the diverged runs marked on the results and every
    claim (:func:`~inductionlab.experiments.kit.runs.mark_diverged`); ``results["figures"] =
    figures(results, out)`` (the PNG names it wrote); ``out/README.md`` from ``readme(results)``;
    ``out/results.json``. Every file is written atomically.
    """
    results["claims"] = claims
    mark_diverged(results, diverged)
    results["figures"] = figures(results, out)
    atomic_write(out / "README.md", readme(results))
    write_results(results, out)
    return results
