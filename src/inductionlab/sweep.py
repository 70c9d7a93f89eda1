"""Grids of runs on a local process pool or a Ray cluster, aggregated into Parquet tables.

A sweep is a list of :class:`RunSpec` (a preset or YAML file plus ``--set`` overrides). Each run
trains into ``OUT/runs/FOLDER`` with :func:`inductionlab.train.train`, which makes runs idempotent
(a finished run is skipped) and resumable (an interrupted run continues from its last
checkpoint). Runs on one trajectory (the same run but for how long it trains and how it is
evaluated) are trained once: the shorter ride along the longest (:func:`shared_trajectories`).
Results go to two tables:

``OUT/runs.parquet``      one row per run: name, grid values, seed, final metrics, milestones
``OUT/summary.parquet``   one row per grid point: mean, std, min and max of every metric over seeds

Every run sets its own number of torch threads, so the same specs give the same numbers on either
backend. A grid file (``inductionlab sweep GRID.yaml``)::

    name: lr-by-encoding
    base: length-quick            # a preset or a config YAML
    set: [train.steps=200]        # overrides for every run (optional)
    grid:                         # the product of these axes (optional)
      model.pos_enc: [ape, rpe]
      train.lr: [0.2, 0.5]
    seeds: [0, 1, 2]              # seeds.init = s, seeds.data = s + 100 (default [0])
"""

from __future__ import annotations

import itertools
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from tqdm.auto import tqdm

from inductionlab.backends import BACKENDS, LocalBackend, RayBackend, default_workers
from inductionlab.config import FOLDER_NAME_RULE, MAX_DEPTH, RunConfig, check_depth, folder_name_problem, read_text_file
from inductionlab.errors import ConfigError, RunDirError, SweepError
from inductionlab.footprint import check_concurrent_memory
from inductionlab.heartbeat import StallLimit
from inductionlab.models.families import family
from inductionlab.runs import RunDir, RunSpec, atomic_write, first_line, seed_overrides
from inductionlab.train import shared_trajectory

POLL_S = 0.5


# ------------------------------------------------------------------------------ grid files


class GridFile(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1)
    base: str = Field(min_length=1)
    overrides: list[str] = Field(default_factory=list, alias="set")
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)

    @field_validator("name")
    @classmethod
    def _folder_name(cls, value: str) -> str:
        problem = folder_name_problem(value)
        if problem:  # the runs are named after it
            raise ValueError(f"{value!r} {problem}; a name is one folder name: {FOLDER_NAME_RULE}")
        return value


def grid_runs(name: str, base: str, axes: dict[str, list[Any]], seeds: Iterable[int],
              overrides: Iterable[str] = ()) -> list[RunSpec]:
    """The product of ``axes`` × ``seeds`` on top of ``base`` with ``overrides``."""
    for key, values in axes.items():
        if not values:
            raise ConfigError(f"grid.{key}: give at least one value")
    keys = list(axes)
    specs = []
    for values in itertools.product(*(axes[k] for k in keys)):
        point = list(zip(keys, values, strict=True))
        for seed in seeds:
            label = "-".join([name, *(f"{k.split('.')[-1]}={v}" for k, v in point), f"s{seed}"])
            sets = [*overrides, *(f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}" for k, v in point)]
            specs.append(RunSpec(label, base, (*sets, *seed_overrides(seed)), (*point, ("seed", seed))))
    return specs


def load_grid(path: str | Path) -> list[RunSpec]:
    """The runs of a grid file, each config validated (ConfigError names the file and the run)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(read_text_file(path, "grid"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; a grid file is YAML") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read grid file ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested more than {MAX_DEPTH} levels deep; not a grid file") from None
    check_depth(raw, str(path))
    try:
        grid = GridFile.model_validate(raw if raw is not None else {})
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "grid file"
        raise ConfigError(f"{path}: {loc}: {first['msg'].removeprefix('Value error, ')}") from None
    specs = grid_runs(grid.name, grid.base, grid.grid, grid.seeds, grid.overrides)
    check_specs(specs, origin=str(path))
    return specs


def check_specs(specs: list[RunSpec], origin: str = "sweep") -> dict[str, RunConfig]:
    """Validate every run's config up front and check that run folders are distinct."""
    configs: dict[str, RunConfig] = {}
    for spec in specs:
        if spec.folder in configs:
            raise ConfigError(f"{origin}: two runs share the folder {spec.folder!r}; give them distinct names")
        try:
            configs[spec.folder] = spec.config()
        except ConfigError as err:
            raise ConfigError(f"{origin}: run {spec.name!r}: {err}") from None
    return configs


# ------------------------------------------------------------------------------ the sweep


@dataclass
class _Progress:
    """Work done across the grid: each run's logged steps weighted by its estimated cost per step,
    so that the bar's percentage and time left stay honest when runs differ in size."""

    configs: dict[str, RunConfig]
    bar: Any = None
    steps: dict[str, int] = field(default_factory=dict)

    def permille(self) -> int:
        total = sum(run_cost(c) for c in self.configs.values())
        done = sum(run_cost(self.configs[f]) * min(1.0, s / self.configs[f].train.steps) for f, s in self.steps.items())
        return round(1000 * done / total)

    def update(self, done: int, running: int, left: int) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"runs {done} done, {running} running, {left} left", refresh=False)
            self.bar.update(self.permille() - self.bar.n)  # redraws at most every `mininterval` seconds


def _latest_step(run_dir: Path) -> int:
    """The last logged step of a run (0 when nothing is logged yet); cheap: reads the file's tail."""
    path = RunDir(run_dir).metrics_path
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - 4096))
            lines = fh.read().splitlines()
    except OSError:
        return 0
    match = re.search(rb'"step": *(\d+)', lines[-1]) if lines else None
    return int(match.group(1)) if match else 0


def check_backend(backend: str, workers: int | None = None, threads: int | None = None,
                  address: str | None = None) -> None:
    """ConfigError for a bad backend choice, before anything is written."""
    if backend not in BACKENDS:
        raise ConfigError(f"--backend: unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers: must be at least 1 (got {workers})")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads: must be at least 1 (got {threads})")
    if address and backend != "ray":
        raise ConfigError("--address: only with --backend ray")


def run_sweep(specs: list[RunSpec], out: str | Path, *, backend: str = "local", workers: int | None = None,
              threads: int | None = None, address: str | None = None, progress: bool = True,
              desc: str = "sweep", stall_limit: float | None = None) -> pd.DataFrame:
    """Run every spec into ``out/runs/`` on ``backend``; write and return the runs table.

    Finished runs are skipped and interrupted runs resume. ``workers`` runs go at once (default:
    one per core), each with ``threads`` torch threads (default: cores // workers); runs that together would
    not fit the memory available are refused before any starts. A run whose worker dies or stays silent past
    its stall limit (``stall_limit``: the floor in seconds, heartbeat.py) resumes on a new worker. A failed run
    does not stop the others; a SweepError names the failures once all have ended.
    """
    check_backend(backend, workers, threads, address)
    stall = StallLimit(stall_limit) if stall_limit is not None else StallLimit()
    out = Path(out)
    configs = check_specs(specs)
    runs_dir = out / "runs"
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunDirError(f"{out}: cannot create the output directory ({err.strerror})") from None
    workers = workers or default_workers()
    threads = threads or max(1, default_workers() // workers)
    summaries: dict[str, dict[str, Any]] = {}
    todo = []
    for spec in specs:
        run = RunDir(runs_dir / spec.folder)
        if run.config_path.exists() and run.config() != configs[spec.folder]:
            raise RunDirError(f"{run.path}: holds a run of a different config; choose another output folder")
        finished = run.summary()
        if finished is not None and (finished.get("finished") or finished.get("diverged")):
            summaries[spec.folder] = finished  # a diverged run diverges again: an outcome, not retried
        else:
            todo.append(spec)
    state = _Progress(configs, steps={s.folder: configs[s.folder].train.steps for s in specs
                                      if s.folder in summaries})
    if todo:
        if backend == "local" or not address:  # the runs share this machine
            check_concurrent_memory([configs[spec.folder] for spec in todo], workers)
        runner = (LocalBackend(workers, stall=stall) if backend == "local"
                  else RayBackend(workers, threads, address, stall=stall))
        state.bar = tqdm(total=1000, initial=state.permille(), desc=desc, dynamic_ncols=True, disable=not progress,
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}",
                         smoothing=0.05, mininterval=1 if sys.stderr.isatty() else 30)  # a log: a line per 30 s
        try:
            failures = _drive(runner, todo, runs_dir, configs, summaries, state, workers, threads)
        finally:
            state.bar.close()
    else:
        failures = {}
    table = runs_table(specs, summaries, failures)
    write_tables(table, list(dict.fromkeys(k for spec in specs for k, _ in spec.params)), out)
    diverged = table.loc[table["status"] == "diverged", "name"].tolist()
    if diverged:  # a warning, shown also without the progress bar
        tqdm.write(f"{desc}: {len(diverged)} of {len(specs)} runs diverged and are left out of the statistics: "
                   f"{', '.join(diverged)}", file=sys.stderr)
    if failures:
        listed = "; ".join(f"{name}: {msg}" for name, msg in list(failures.items())[:3])
        more = f" and {len(failures) - 3} more (see {out / 'runs.parquet'})" if len(failures) > 3 else ""
        raise SweepError(f"{len(failures)} of {len(specs)} runs failed ({listed}{more}); rerun to retry them")
    return table


def run_cost(cfg: RunConfig) -> float:
    """A run's rough cost, for scheduling and progress: steps × tokens per batch × width × depth,
    × the model family's cost factor (models/families.py)."""
    t, m = cfg.train, cfg.model
    return t.steps * t.batch_size * cfg.data.seq_len * m.d_model * m.n_layers * family(m.arch).cost_factor(m)


def shared_trajectories(todo: list[RunSpec], configs: dict[str, RunConfig]) -> dict[str, list[RunSpec]]:
    """Runs on one trajectory (:func:`~inductionlab.train.shared_trajectory`): the longest of each group (its
    folder) → the others, which ride along its training."""
    groups: dict[str, list[RunSpec]] = {}
    for spec in todo:
        key = shared_trajectory(configs[spec.folder])
        if key is not None:
            groups.setdefault(key, []).append(spec)
    out = {}
    for group in groups.values():
        if len(group) > 1:
            leader = max(group, key=lambda spec: configs[spec.folder].train.steps)
            out[leader.folder] = [spec for spec in group if spec is not leader]
    return out


def _drive(runner, todo, runs_dir, configs, summaries, state, workers, threads) -> dict[str, str]:
    """Submit ``todo`` to ``runner`` and wait, updating progress; the failures (run name → cause).

    A run on another's trajectory rides along that run's training (:func:`shared_trajectories`); one left
    unfinished by it (its leader failed or diverged first, or it was checkpointed at another step) then runs
    on its own."""
    riding = shared_trajectories(todo, configs)
    followers = {spec.folder for group in riding.values() for spec in group}
    order = sorted((s for s in todo if s.folder not in followers), key=lambda spec: -run_cost(configs[spec.folder]))

    def submit(spec: RunSpec, along: list[RunSpec]):
        return spec, along, runner.submit(spec, runs_dir / spec.folder, threads,
                                          tuple((f, runs_dir / f.folder) for f in along))

    handles = {spec.folder: submit(spec, riding.get(spec.folder, [])) for spec in order}  # longest first
    failures: dict[str, str] = {}
    try:
        while handles:
            for event in runner.poll():
                tqdm.write(event, file=sys.stderr)
            for folder, (spec, along, handle) in list(handles.items()):
                if runner.ready(handle):
                    del handles[folder]
                    try:
                        summaries[folder] = runner.result(handle)
                        state.steps[folder] = configs[folder].train.steps
                    except Exception as err:  # a failed run is reported, the others go on
                        failures[spec.name] = first_line(err)
                    for follower in along:
                        done = RunDir(runs_dir / follower.folder).summary()
                        if done is not None and (done.get("finished") or done.get("diverged")):
                            summaries[follower.folder] = done
                            state.steps[follower.folder] = configs[follower.folder].train.steps
                        else:
                            handles[follower.folder] = submit(follower, [])
                else:
                    for run in (spec, *along):
                        state.steps[run.folder] = _latest_step(runs_dir / run.folder)
            running = min(workers, len(handles))
            state.update(len(summaries), running, len(handles) - running)
            if handles:
                time.sleep(POLL_S)
    except BaseException:
        runner.close(interrupted=True)
        raise
    runner.close()
    return failures


# ------------------------------------------------------------------------------ tables

TABLE_SKIP = ("name", "finished", "milestones", "train_loss", "diverged")


def run_status(summary: dict[str, Any] | None, failure: str | None = None) -> str:
    """``finished``, ``diverged`` (stopped at a non-finite loss or weight, or trained on through one),
    ``failed`` (an error or a worker that kept dying) or ``missing`` (not run)."""
    if failure is not None:
        return "failed"
    if summary and summary.get("diverged"):
        return "diverged"
    return "finished" if summary and summary.get("finished") else "missing"


def runs_table(specs: list[RunSpec], summaries: dict[str, dict[str, Any]],
               failures: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per run: name, folder, status (and the failure's cause), grid values and seed, then every
    final scalar metric. Only ``finished`` rows enter the summary table."""
    failures = failures or {}
    rows = []
    for spec in specs:
        summary = summaries.get(spec.folder, {})
        status = run_status(summary, failures.get(spec.name))
        row: dict[str, Any] = {"name": spec.name, "folder": spec.folder, "finished": status == "finished",
                               "status": status, "failure": failures.get(spec.name)}
        row.update({key: value if not isinstance(value, list | dict | tuple)  # a grid value that is a list:
                    else yaml.safe_dump(value, default_flow_style=True).strip()  # its YAML text, hashable
                    for key, value in spec.params})
        for key, value in summary.items():
            if key not in TABLE_SKIP and (value is None or isinstance(value, (int, float, str, bool))):
                row[key] = value
        for key, value in (summary.get("milestones") or {}).items():
            row[f"milestone.{key}"] = value
        rows.append(row)
    return pd.DataFrame(rows)


def summary_table(table: pd.DataFrame, params: list[str]) -> pd.DataFrame:
    """Mean, std, min, max and count over seeds of every numeric metric, per grid point; finished runs only
    (a diverged or failed run never enters a statistic)."""
    if "status" in table.columns:
        table = table[table["status"] == "finished"]
    keys = [p for p in params if p != "seed" and p in table.columns]
    numeric = [c for c in table.select_dtypes("number").columns
               if c not in (*params, "seed", "diverged_step", "last_checkpoint")]
    if not numeric:
        return pd.DataFrame()
    grouped = table.groupby(keys, dropna=False, sort=False) if keys else table.assign(_all=0).groupby("_all")
    stats = grouped[numeric].agg(["mean", "std", "min", "max"])
    stats.columns = [f"{metric}_{stat}" for metric, stat in stats.columns]
    stats = pd.concat([stats, grouped.size().rename("n_seeds")], axis=1).copy()  # one block: no fragmentation
    return stats.reset_index().drop(columns="_all", errors="ignore")


def write_tables(table: pd.DataFrame, params: list[str], out: Path) -> None:
    """``runs.parquet`` and ``summary.parquet`` (grouped by ``params``) in ``out``, written atomically."""
    for name, frame in (("runs.parquet", table), ("summary.parquet", summary_table(table, params))):
        atomic_write(out / name, frame.to_parquet(index=False))
