"""One command reproduces every experiment of docs/science.md §6 and writes the report.

``reproduce`` gathers the runs of every experiment into one sweep (so a process pool or a Ray
cluster works on all of them at once), analyses each experiment from the finished runs, and
writes::

    OUT/runs/                 one run directory per training run
    OUT/runs.parquet          one row per run (final metrics, milestones)
    OUT/summary.parquet       mean, std, min, max over seeds per grid point
    OUT/EXPERIMENT/           results.json, figures (PNG and SVG), README.md of each experiment
    OUT/results.json          every experiment's results, the claims, the environment
    OUT/report.html           a self-contained report (figures embedded, no network needed)

Runs and analyses that are already finished are skipped, so an interrupted ``reproduce`` run
again finishes only what is missing. Each ``OUT/EXPERIMENT/results.json`` records what its analysis was
computed from (``inputs``: a fingerprint of the runs it read and of the code,
:mod:`~inductionlab.experiments.kit.fingerprint`), taken before the analysis reads its runs; an analysis whose
runs were retrained or whose code changed since is done again, with one line on stderr that says why, and
``reanalyse=True`` (``--reanalyse``) does every named analysis again.

Experiments are named as the registry knows them (:mod:`inductionlab.experiments`) or by an import
path ``"package.module:NAME"``; each analysis runs in a spawned worker process, which is handed the
experiment's import path and imports it itself.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from inductionlab import jsonio
from inductionlab.allocator import keep_freed_memory
from inductionlab.backends import default_workers, quiet_pool
from inductionlab.errors import ConfigError, InductionLabError
from inductionlab.estimate import estimate
from inductionlab.experiments import EXPERIMENT_PRESETS, EXPERIMENTS, experiment_path, load_experiment
from inductionlab.experiments.kit.fingerprint import PACKAGE_DIR, analysis_inputs, changed, source_hash
from inductionlab.experiments.kit.finish import write_results
from inductionlab.experiments.kit.intervals import adjust_p_values
from inductionlab.report.html import write_report
from inductionlab.report.output import results_folder
from inductionlab.runs import atomic_write
from inductionlab.sweep import check_backend, check_specs, run_sweep


def environment() -> dict[str, Any]:
    """Package versions and the machine, for the report (nothing that changes between runs)."""
    versions = {}
    for package in ("inductionlab", "torch", "numpy", "pandas", "pyarrow", "matplotlib", "safetensors", "ray"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU: {_cpu_name()}"
    return {"python": sys.version.split()[0], "platform": platform.platform(terse=True), "device": device,
            "packages": versions}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def planned_runs(preset: str, experiments: tuple[str, ...] = EXPERIMENTS) -> list:
    """Every run the named experiments need at ``preset``, validated (ConfigError for a bad name). A run two
    experiments both plan (the same name, preset and overrides: one experiment reads another's runs, as kv-shift
    reads birth's and icl-mc's) is trained once."""
    if preset not in EXPERIMENT_PRESETS:
        raise ConfigError(f"--preset: unknown preset {preset!r}; allowed: {', '.join(EXPERIMENT_PRESETS)}")
    if not experiments:
        raise ConfigError(f"experiments: name at least one of {', '.join(EXPERIMENTS)}")
    specs = [spec for path in _paths(experiments).values() for spec in load_experiment(path).plan(preset)]
    specs = list(dict.fromkeys(specs))  # identical specs once, in order; different runs in one folder still clash
    check_specs(specs, f"--preset {preset}")
    return specs


def _paths(experiments: tuple[str, ...]) -> dict[str, str]:
    """Each named experiment's name → its import path (ConfigError for an unknown one, or one named twice)."""
    paths: dict[str, str] = {}
    for name in experiments:
        path = experiment_path(name)
        found = load_experiment(path).name
        if found in paths:
            raise ConfigError(f"experiments: {found!r} is named twice")
        paths[found] = path
    return paths


def inputs_of(path: str, runs_dir: Path, preset: str) -> dict[str, Any]:
    """What the analysis of the experiment at import path ``path`` reads now: its planned runs at ``preset`` and
    the code (the package, and the experiment's module when it lies outside the package), as
    :func:`~inductionlab.experiments.kit.fingerprint.analysis_inputs`."""
    experiment = load_experiment(path)
    module = sys.modules[path.partition(":")[0]]
    own = Path(module.__file__).resolve() if getattr(module, "__file__", None) else None
    outside = [own] if own is not None and not own.is_relative_to(PACKAGE_DIR) else []
    return analysis_inputs(runs_dir, experiment.plan(preset), preset, source_hash(outside))


def analyse_one(path: str, out: Path, preset: str) -> dict[str, Any]:
    """The analysis of the experiment at import path ``path``: ``out/NAME/results.json`` and its figures, with
    ``inputs`` (:func:`inputs_of`, taken before the analysis reads the runs) recorded in the results."""
    experiment = load_experiment(path)
    exp_dir = out / experiment.name
    exp_dir.mkdir(exist_ok=True)
    inputs = inputs_of(path, out / "runs", preset)
    results = experiment.analyse(out / "runs", exp_dir, preset)
    results["inputs"] = inputs
    write_results(results, exp_dir)  # again, atomically: a results.json without inputs is analysed again
    return jsonio.loads(jsonio.dumps(results))


def _analyse(path: str, out: Path, preset: str, threads: int) -> dict[str, Any]:
    """:func:`analyse_one` in a pool worker, given the experiment's import path."""
    torch.set_num_threads(threads)
    keep_freed_memory()  # as a training worker (allocator.py): large evaluation tensors reuse freed memory
    return analyse_one(path, out, preset)


def out_of_date(out: Path, name: str, path: str, preset: str) -> str | None:
    """Why the existing analysis ``out/name/results.json`` no longer describes the runs and the code (None: it
    does), in words."""
    try:
        stored = json.loads((out / name / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return "its results.json is unreadable"
    return changed(stored.get("inputs") if isinstance(stored, dict) else None, inputs_of(path, out / "runs", preset))


def analyse_all(out: Path, preset: str, experiments: dict[str, str], workers: int | None,
                progress: bool, reanalyse: bool = False) -> dict[str, Any]:
    """Every experiment's results (``experiments``: name → import path): read when its ``results.json`` exists
    and was computed from the runs and the code as they are now (:func:`out_of_date`), else analysed, several at
    once (a process per core, the costliest analysis first); ``reanalyse``: every one analysed again."""
    cost = {e: load_experiment(path).analysis_cost for e, path in experiments.items()}
    pending = []
    for e, path in experiments.items():
        if reanalyse or not (out / e / "results.json").exists():
            pending.append(e)
        elif (why := out_of_date(out, e, path, preset)) is not None:  # a warning, shown also without progress
            print(f"{e}: {why}; analysing again", file=sys.stderr, flush=True)
            pending.append(e)
    pending.sort(key=lambda e: -cost[e])
    done: dict[str, Any] = {}
    if pending:
        cores = default_workers()
        processes = max(1, min(workers or cores, cores, len(pending)))
        if progress:
            print(f"analysing {', '.join(pending)} ({processes} at once) …", file=sys.stderr, flush=True)
        pool = quiet_pool(processes)  # as the sweep's: Ctrl-C stops it here, with one line
        try:
            handles = {e: pool.apply_async(_analyse, (experiments[e], out, preset, max(1, cores // processes)))
                       for e in pending}
            for e, handle in handles.items():
                try:
                    done[e] = handle.get()
                except InductionLabError as err:  # e.g. every seed of a setting diverged: the others go on
                    done[e] = {"experiment": e, "error": str(err), "claims": []}
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.close()
            pool.join()
    return {e: done[e] if e in done else json.loads((out / e / "results.json").read_text()) for e in experiments}


def dry_run(preset: str, experiments: tuple[str, ...] = EXPERIMENTS, *, workers: int | None = None) -> dict[str, Any]:
    """The planned runs with their sizes and their estimated time on this machine; nothing is trained."""
    specs = planned_runs(preset, experiments)
    check_backend("local", workers)
    workers = workers or default_workers()
    return estimate(specs, workers, max(1, default_workers() // workers))


def reproduce(out: str | Path, preset: str = "quick", experiments: tuple[str, ...] = EXPERIMENTS, *,
              backend: str = "local", workers: int | None = None, address: str | None = None,
              name: str | None = None, progress: bool = True, reanalyse: bool = False,
              stall_limit: float | None = None) -> dict[str, Any]:
    """Train every run of ``experiments`` at ``preset`` on ``backend``, analyse them, write the report;
    ``reanalyse``: analyse every one of them again, even where its results match its runs and the code;
    ``stall_limit``: sweep.run_sweep."""
    specs = planned_runs(preset, experiments)
    paths = _paths(experiments)
    check_backend(backend, workers, None, address)
    out = results_folder(out)
    start = time.perf_counter()
    run_sweep(specs, out, backend=backend, workers=workers, address=address, progress=progress,
              desc=f"reproduce {preset}", stall_limit=stall_limit)
    results: dict[str, Any] = {"name": name or f"inductionlab reproduce --preset {preset}", "preset": preset,
                               "experiments": analyse_all(out, preset, paths, workers, progress, reanalyse),
                               "environment": environment()}
    adjust_p_values(results["experiments"])  # Holm across every claim of the report (docs/science.md §7.1)
    atomic_write(out / "results.json", jsonio.dumps(results, indent=2) + "\n")
    titles = {name: load_experiment(path).title for name, path in paths.items()}
    write_report(results, pd.read_parquet(out / "runs.parquet"), out, titles, wall_s=time.perf_counter() - start)
    return results
