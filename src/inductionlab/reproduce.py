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
again finishes only what is missing (delete ``OUT/EXPERIMENT`` to redo one analysis).
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
from inductionlab.errors import ConfigError, InductionLabError
from inductionlab.experiments import (
    EXPERIMENT_PRESETS,
    EXPERIMENTS,
    experiment_module,
    results_folder,
)
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
    """Every run the named experiments need at ``preset``, validated (ConfigError for a bad name)."""
    if preset not in EXPERIMENT_PRESETS:
        raise ConfigError(f"--preset: unknown preset {preset!r}; allowed: {', '.join(EXPERIMENT_PRESETS)}")
    if not experiments:
        raise ConfigError(f"experiments: name at least one of {', '.join(EXPERIMENTS)}")
    specs = [spec for exp in experiments for spec in experiment_module(exp).plan(preset)]
    check_specs(specs, f"--preset {preset}")
    return specs


ANALYSIS_ORDER = ("hijack", "length", "nope3", "interventions", "icl-mc", "birth")  # longest analysis first


def _analyse(exp: str, out: Path, preset: str, threads: int) -> dict[str, Any]:
    """One experiment's analysis (in a pool worker): ``out/exp/results.json`` and its figures."""
    torch.set_num_threads(threads)
    exp_dir = out / exp
    exp_dir.mkdir(exist_ok=True)
    return jsonio.loads(jsonio.dumps(experiment_module(exp).analyse(out / "runs", exp_dir, preset)))


def analyse_all(out: Path, preset: str, experiments: tuple[str, ...], workers: int | None,
                progress: bool) -> dict[str, Any]:
    """Every experiment's results: read when its ``results.json`` exists, else analysed, several at once
    (a process per core, the longest analysis first)."""
    from inductionlab.backends import default_workers, quiet_pool

    pending = sorted((e for e in experiments if not (out / e / "results.json").exists()),
                     key=lambda e: ANALYSIS_ORDER.index(e) if e in ANALYSIS_ORDER else len(ANALYSIS_ORDER))
    done: dict[str, Any] = {}
    if pending:
        cores = default_workers()
        processes = max(1, min(workers or cores, cores, len(pending)))
        if progress:
            print(f"analysing {', '.join(pending)} ({processes} at once) …", file=sys.stderr, flush=True)
        pool = quiet_pool(processes)  # as the sweep's: Ctrl-C stops it here, with one line
        try:
            handles = {e: pool.apply_async(_analyse, (e, out, preset, max(1, cores // processes))) for e in pending}
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
    from inductionlab.backends import default_workers
    from inductionlab.estimate import estimate

    specs = planned_runs(preset, experiments)
    check_backend("local", workers)
    workers = workers or default_workers()
    return estimate(specs, workers, max(1, default_workers() // workers))


def reproduce(out: str | Path, preset: str = "quick", experiments: tuple[str, ...] = EXPERIMENTS, *,
              backend: str = "local", workers: int | None = None, address: str | None = None,
              name: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train every run of ``experiments`` at ``preset`` on ``backend``, analyse them, write the report."""
    specs = planned_runs(preset, experiments)
    modules = {exp: experiment_module(exp) for exp in experiments}
    check_backend(backend, workers, None, address)
    out = results_folder(out)
    start = time.perf_counter()
    run_sweep(specs, out, backend=backend, workers=workers, address=address, progress=progress,
              desc=f"reproduce {preset}")
    results: dict[str, Any] = {"name": name or f"inductionlab reproduce --preset {preset}", "preset": preset,
                               "experiments": analyse_all(out, preset, tuple(modules), workers, progress),
                               "environment": environment()}
    atomic_write(out / "results.json", jsonio.dumps(results, indent=2) + "\n")
    from inductionlab.report.html import write_report

    write_report(results, pd.read_parquet(out / "runs.parquet"), out, wall_s=time.perf_counter() - start)
    return results
