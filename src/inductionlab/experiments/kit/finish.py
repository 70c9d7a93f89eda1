"""How every analysis ends: claims, diverged runs, figures, README and ``results.json``, in that order.

``results.json`` is written last and atomically: ``reproduce`` takes it as the sign that an
experiment's analysis is done, so a folder without it is analysed again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inductionlab import jsonio
from inductionlab.experiments.kit.runs import mark_diverged
from inductionlab.report.figures import forest_plot
from inductionlab.runs import atomic_write

log = logging.getLogger(__name__)


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
           figures: Callable[[dict[str, Any], Path], list[str]], readme: Callable[[dict[str, Any]], str],
           checks: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """Complete ``results`` and write them into ``out``; return them.

    In this order: ``results["claims"] = claims`` and ``results["checks"] = checks`` (what holds by
    construction, :mod:`.checks`; a failed one is logged as an error); the diverged runs marked on the
    results and every claim (:func:`~inductionlab.experiments.kit.runs.mark_diverged`);
    ``results["figures"]``: the claims' forest plot (:func:`~inductionlab.report.figures.forest_plot`) and then
    ``figures(results, out)`` (the PNG names they wrote); ``out/README.md`` from ``readme(results)``;
    ``out/results.json``. Every file is written atomically.
    """
    results["claims"], results["checks"] = claims, list(checks)
    for c in results["checks"]:
        if not c["passed"]:
            log.error("check failed in %s: %s (%s = %s, expected %s)", results.get("experiment", out.name),
                      c["check"], c["statistic"], c["value"], c["expected"])
    mark_diverged(results, diverged)
    forest = forest_plot(claims, out)
    results["figures"] = ([forest] if forest else []) + figures(results, out)
    atomic_write(out / "README.md", readme(results))
    write_results(results, out)
    return results
