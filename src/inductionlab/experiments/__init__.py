"""Experiments of docs/science.md §6, and the one registry of them.

Each experiment is an :class:`~inductionlab.experiments.kit.experiment.Experiment` (name, title,
presets, ``plan``, ``analyse``, analysis cost) in its own folder (``birth/``, ``hijack/``, …: an
``__init__.py`` that declares it, ``run.py`` with ``plan`` and ``analyse``, ``report.py`` with its
setting, figures and README); what they share is in :mod:`~inductionlab.experiments.kit`.

The registry maps a name to the import path of an experiment, ``"package.module:NAME"``. An
experiment defined anywhere (a module outside this package) joins it with
:func:`register_experiment`, or is named by its import path wherever a name is accepted
(``reproduce(out, experiments=("mypackage.toy:TOY",))``): worker processes are handed the path and
import it themselves, so a spawned process or a Ray worker finds it too.

:func:`run_experiment` runs an experiment's plan on a sweep backend, then its analysis.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from inductionlab.errors import ConfigError
from inductionlab.experiments.kit.experiment import EXPERIMENT_PRESETS, Experiment
from inductionlab.report.output import results_folder
from inductionlab.sweep import check_backend, run_sweep

__all__ = ["EXPERIMENTS", "EXPERIMENT_PRESETS", "Experiment", "experiment_names", "experiment_path",
           "get_experiment", "load_experiment", "register_experiment", "run_experiment"]

_REGISTRY: dict[str, str] = {
    "birth": "inductionlab.experiments.birth:EXPERIMENT",
    "hijack": "inductionlab.experiments.hijack:EXPERIMENT",
    "length": "inductionlab.experiments.length:EXPERIMENT",
    "nope3": "inductionlab.experiments.nope3:EXPERIMENT",
    "interventions": "inductionlab.experiments.interventions:EXPERIMENT",
    "icl-mc": "inductionlab.experiments.icl_mc:EXPERIMENT",
    "width": "inductionlab.experiments.width:EXPERIMENT",
    "kv-shift": "inductionlab.experiments.kv_shift:EXPERIMENT",
}
EXPERIMENTS = tuple(_REGISTRY)  # the package's own, in report order: what ``reproduce`` runs by default


def load_experiment(path: str) -> Experiment:
    """The :class:`Experiment` at import path ``"package.module:NAME"`` (ConfigError when there is none)."""
    module_name, sep, attr = path.partition(":")
    if not sep or not attr.isidentifier() or not all(part.isidentifier() for part in module_name.split(".")):
        raise ConfigError(f"experiment {path!r}: an import path is 'package.module:NAME'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"experiment {path!r}: cannot import {module_name} ({err})") from None
    found = getattr(module, attr, None)
    if not isinstance(found, Experiment):
        raise ConfigError(f"experiment {path!r}: {module_name} defines no Experiment named {attr}")
    return found


def register_experiment(path: str) -> Experiment:
    """Add the experiment at import path ``"package.module:NAME"`` to the registry under its name; return it.

    ConfigError when another experiment of the same name is registered.
    """
    found = load_experiment(path)
    known = _REGISTRY.get(found.name)
    if known is not None and known != path:
        raise ConfigError(f"experiment {path!r}: the name {found.name!r} is taken by {known}")
    _REGISTRY[found.name] = path
    return found


def experiment_names() -> tuple[str, ...]:
    """Every registered experiment's name, the package's own first."""
    return tuple(_REGISTRY)


def experiment_path(name: str) -> str:
    """The import path of experiment ``name``, a registered name or an import path (registered on the way)."""
    if ":" in name:
        register_experiment(name)
        return name
    if name not in _REGISTRY:
        raise ConfigError(f"experiment: unknown experiment {name!r}; allowed: {', '.join(_REGISTRY)} "
                          "(or an import path 'package.module:NAME')")
    return _REGISTRY[name]


def get_experiment(name: str) -> Experiment:
    """Experiment ``name`` (a registered name or an import path; ConfigError for an unknown one)."""
    return load_experiment(experiment_path(name))


def run_experiment(name: str, out: str | Path, preset_name: str = "quick", *, backend: str = "local",
                   workers: int | None = None, address: str | None = None, progress: bool = True,
                   stall_limit: float | None = None) -> dict[str, Any]:
    """Train (or reuse) the runs of experiment ``name`` on ``backend``, then analyse them into ``out``
    (``stall_limit``: sweep.run_sweep)."""
    experiment = get_experiment(name)
    experiment.preset(preset_name)
    check_backend(backend, workers, None, address)
    out = results_folder(out)
    run_sweep(experiment.plan(preset_name), out, backend=backend, workers=workers, address=address,
              progress=progress, desc=experiment.name, stall_limit=stall_limit)
    return experiment.analyse(out / "runs", out, preset_name)
