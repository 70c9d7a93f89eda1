"""What an experiment is (docs/science.md §6): presets, the runs it trains, and how it reads them back.

An experiment goes from a preset to a results folder in two steps kept apart, so that the runs of
every experiment can share one sweep and a finished run is re-analysed without retraining:

- ``plan(preset) -> list[RunSpec]``: the training runs it needs (run folders are named
  ``{name}-{preset}-…``, which the report uses to list them);
- ``analyse(runs_dir, out, preset) -> dict``: reads the finished runs from disk, evaluates them
  and ends with :func:`~inductionlab.experiments.kit.finish.finish`, which writes the claims,
  figures, ``README.md`` and, last, ``results.json``; the results carry ``question``, ``setting``
  and ``claims`` (:mod:`~inductionlab.experiments.kit.claims`).

An experiment is registered by the import path of its :class:`Experiment` (``"package.module:NAME"``,
:func:`inductionlab.experiments.register_experiment`), which is how worker processes find it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inductionlab.config import check_folder_name
from inductionlab.errors import ConfigError
from inductionlab.runs import RunSpec

EXPERIMENT_PRESETS = ("quick", "paper", "smoke")


def experiment_preset(presets: Mapping[str, dict[str, Any]], preset_name: str) -> dict[str, Any]:
    """The experiment preset ``preset_name`` (ConfigError naming the allowed presets)."""
    if preset_name not in presets:
        raise ConfigError(f"--preset: unknown preset {preset_name!r}; allowed: {', '.join(presets)}")
    return presets[preset_name]


@dataclass(frozen=True)
class Experiment:
    """One experiment (module docstring).

    name:          the results folder's name and the prefix of its run folders (e.g. ``birth``);
    title:         the heading of its section in the report;
    presets:       experiment presets (``quick``, ``paper``, ``smoke``), each naming training presets,
                   seeds and evaluation sizes;
    plan:          ``plan(preset_name) -> list[RunSpec]``;
    analyse:       ``analyse(runs_dir, out, preset_name) -> dict`` (the results, also in ``out/results.json``);
    analysis_cost: how long its analysis takes relative to the others: ``reproduce`` starts the
                   costliest first, so that the longest analysis does not start last.
    """

    name: str
    title: str
    presets: Mapping[str, dict[str, Any]]
    plan: Callable[[str], list[RunSpec]]
    analyse: Callable[[Path, Path, str], dict[str, Any]]
    analysis_cost: int = 0

    def __post_init__(self) -> None:
        check_folder_name(self.name, f"experiment {self.name!r}: name")  # its results folder, inside --out

    def preset(self, preset_name: str) -> dict[str, Any]:
        """The experiment preset ``preset_name`` (ConfigError naming the allowed presets)."""
        return experiment_preset(self.presets, preset_name)
