"""Experiments of docs/science.md §6: each goes from a preset to a results folder through the sweep runner.

An experiment module defines

- ``PRESETS``: experiment presets (``quick``, ``paper``, ``smoke``), each naming training presets,
  seeds and evaluation sizes;
- ``plan(preset_name) -> list[RunSpec]``: the training runs it needs;
- ``analyse(runs_dir, out, preset_name) -> dict``: reads the finished runs from disk, evaluates
  them, writes ``results.json``, figures and ``README.md`` into ``out``, and returns the results,
  which carry ``question``, ``setting`` and ``claims`` (:mod:`~inductionlab.experiments.claims`: a
  statistic measured against the same statistic for a null, with the rule that gives the verdict).

:func:`run_experiment` runs the plan on a sweep backend, then the analysis.
"""

from __future__ import annotations

import importlib
import statistics
from pathlib import Path
from types import ModuleType
from typing import Any

from inductionlab import jsonio
from inductionlab.errors import ConfigError
from inductionlab.runs import RunSpec, atomic_write

EXPERIMENTS = ("birth", "hijack", "length", "nope3", "interventions", "icl-mc")
EXPERIMENT_PRESETS = ("quick", "paper", "smoke")


def experiment_module(name: str) -> ModuleType:
    """The module of experiment ``name`` (ConfigError for an unknown name)."""
    if name not in EXPERIMENTS:
        raise ConfigError(f"experiment: unknown experiment {name!r}; allowed: {', '.join(EXPERIMENTS)}")
    return importlib.import_module(f"inductionlab.experiments.{name.replace('-', '_')}")


def experiment_preset(presets: dict[str, dict[str, Any]], preset_name: str) -> dict[str, Any]:
    """The experiment preset ``preset_name`` (ConfigError naming the allowed presets)."""
    if preset_name not in presets:
        raise ConfigError(f"--preset: unknown preset {preset_name!r}; allowed: {', '.join(presets)}")
    return presets[preset_name]


def results_folder(out: str | Path) -> Path:
    """Create the results folder ``out`` (ConfigError when it cannot be written)."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"--out {out}: cannot write there ({err.strerror})") from None
    return out


def seed_spread(values: list[float | None]) -> dict[str, float | None]:
    """Mean, std, min, max and count over seeds, ignoring missing values."""
    present = [v for v in values if v is not None]
    if not present:
        return {"mean": None, "std": None, "min": None, "max": None, "seeds": 0}
    return {"mean": statistics.fmean(present), "std": statistics.pstdev(present), "min": min(present),
            "max": max(present), "seeds": len(present)}


def trained_runs(runs_dir: Path, specs: list[RunSpec]) -> tuple[list[RunSpec], list[dict[str, Any]]]:
    """The runs of ``specs`` that finished without diverging, and the diverged ones (name, step, cause).

    Diverged runs enter no statistic: analyses read only the first list and record the second as
    ``diverged_runs`` with :func:`mark_diverged`. ConfigError when every seed of
    a setting diverged: there is nothing left to measure it by.
    """
    from inductionlab.runs import RunDir
    from inductionlab.sweep import run_status

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


def write_results(results: dict[str, Any], out: Path) -> None:
    """``results.json`` written atomically (the last file an analysis writes), in strict JSON."""
    atomic_write(out / "results.json", jsonio.dumps(results, indent=2) + "\n")


def run_experiment(name: str, out: str | Path, preset_name: str = "quick", *, backend: str = "local",
                   workers: int | None = None, address: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train (or reuse) the runs of experiment ``name`` on ``backend``, then analyse them into ``out``."""
    from inductionlab.sweep import check_backend, run_sweep

    module = experiment_module(name)
    experiment_preset(module.PRESETS, preset_name)
    check_backend(backend, workers, None, address)
    out = results_folder(out)
    run_sweep(module.plan(preset_name), out, backend=backend, workers=workers, address=address,
              progress=progress, desc=name)
    return module.analyse(out / "runs", out, preset_name)
