"""An experiment's trained runs, read back from disk: the finished ones, and the diverged ones set aside.

Diverged runs enter no statistic (docs/science.md §7): an analysis reads only the runs
:func:`trained_runs` keeps and records the others with :func:`mark_diverged`, which names on each claim
the diverged runs of the arms it reads (the claim's ``reads``, :func:`~.claims.claim`).
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
                             "cause": summary.get("divergence"), "params": dict(spec.params)})
        else:
            kept.append(spec)
            settings[setting] += 1
    empty = [setting for setting, n in settings.items() if n == 0]
    if empty:
        where = ", ".join(f"{k}={v}" for k, v in empty[0]) or "the experiment"
        raise ConfigError(f"every seed of {where} diverged ({', '.join(d['run'] for d in diverged)}); nothing "
                          "to analyse; lower its train.lr")
    return kept, diverged


def reads_run(reads: list[dict[str, Any]] | None, params: dict[str, Any] | None) -> bool:
    """Whether a claim that reads the arms ``reads`` (:func:`~.claims.claim`) reads the run of ``params``: one arm
    whose every param the run has (``None`` for either: not known, so it may)."""
    if reads is None or params is None:
        return True
    return any(all(k in params and params[k] == v for k, v in arm.items()) for arm in reads)


def mark_diverged(results: dict[str, Any], diverged: list[dict[str, Any]]) -> None:
    """Record the diverged runs in ``results`` and, on every claim, those of them it would have read
    (``diverged_runs``, their names; :func:`reads_run`) with a note naming them. A claim that does not say which
    arms it reads gets every diverged run of the experiment, and its note says so."""
    results["diverged_runs"] = diverged
    for claim in results.get("claims", []):
        reads = claim.get("reads")
        missing = [d["run"] for d in diverged if reads_run(reads, d.get("params"))]
        claim["diverged_runs"] = missing
        claim.pop("diverged_note", None)
        if missing:
            whose = ("of the runs it reads" if reads is not None else
                     "of the experiment's runs (the claim does not say which runs it reads, so all are named)")
            verb = "diverged and are" if len(missing) > 1 else "diverged and is"
            claim["diverged_note"] = f"{len(missing)} {whose} {verb} left out: {', '.join(missing)}"
