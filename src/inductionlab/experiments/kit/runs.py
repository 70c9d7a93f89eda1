"""An experiment's trained runs, read back from disk: the finished ones, and the diverged ones set aside.

Diverged runs enter no statistic (docs/science.md §7): an analysis reads only the runs
:func:`trained_runs` keeps and records the others with :func:`mark_diverged`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inductionlab.errors import ConfigError
from inductionlab.runs import RunDir, RunSpec
from inductionlab.sweep import run_status


def trained_runs(runs_dir: Path, specs: list[RunSpec]) -> tuple[list[RunSpec], list[dict[str, Any]]]:
    """The runs of ``specs`` that finished without diverging, and the diverged ones (name, step, cause).

    ConfigError when every seed of a setting diverged: there is nothing left to measure it by.
    """
    kept, diverged, settings = [], [], {}
    for spec in specs:
        summary = RunDir(runs_dir / spec.folder).summary() or {}
        setting = tuple((k, v) for k, v in spec.params if k != "seed")
        settings.setdefault(setting, 0)
        if run_status(summary) == "diverged":
            diverged.append({"run": spec.name, "step": summary.get("diverged_step"),
                             "cause": summary.get("divergence")})
        else:
            kept.append(spec)
            settings[setting] += 1
    empty = [setting for setting, n in settings.items() if n == 0]
    if empty:
        where = ", ".join(f"{k}={v}" for k, v in empty[0]) or "the experiment"
        raise ConfigError(f"every seed of {where} diverged ({', '.join(d['run'] for d in diverged)}); nothing "
                          "to analyse; lower its train.lr")
    return kept, diverged


def mark_diverged(results: dict[str, Any], diverged: list[dict[str, Any]]) -> None:
    """Record the diverged runs in ``results`` and say on every claim how many of the runs were left out."""
    results["diverged_runs"] = diverged
    for claim in results.get("claims", []) if diverged else []:
        claim["diverged_runs"] = len(diverged)
        claim["diverged_note"] = (f"{len(diverged)} of the experiment's runs diverged and are left out: "
                                  f"{', '.join(d['run'] for d in diverged)}")
