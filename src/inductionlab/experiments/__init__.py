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
from inductionlab.runs import atomic_write

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
