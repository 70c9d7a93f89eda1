"""How long a sweep will take on this machine, measured, without training anything (``--dry-run``).

Each kind of run (a config up to its seeds and name) is measured once, the way a sweep worker runs
it (its device, ``threads`` torch threads): one warm-up training step, then a few timed steps, one
evaluation and, when the run logs memory probes between evaluations, one probe row. A run's
estimate is ``steps × step time + evaluations × evaluation time + probe rows × probe time`` with
the counts taken from its schedule; a run that rides along another's training
(:func:`~inductionlab.sweep.shared_trajectories`) costs only its evaluations and probe rows, added to that
run's. The sweep's wall time is the schedule of those estimates on
``workers`` workers, longest run first, as the local backend runs them. Analyses and the report
are not included.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import torch

from inductionlab.config import RunConfig
from inductionlab.runs import RunSpec
from inductionlab.sweep import run_cost, shared_trajectories
from inductionlab.train import prepare


@dataclass(frozen=True)
class RunCost:
    """Seconds per training step, per evaluation and per probe-only row of one kind of run."""

    step_s: float
    eval_s: float
    probe_s: float


def schedule(cfg: RunConfig) -> tuple[int, int]:
    """How many evaluations (the one at step 0 included) and probe-only rows a run logs."""
    t = cfg.train
    evals, probes = 1, 0
    for step in range(1, t.steps + 1):
        if step % t.eval_every == 0 or step <= t.eval_dense_until or step == t.steps:
            evals += 1
        elif t.probe_every and step % t.probe_every == 0:
            probes += 1
    return evals, probes


def run_seconds(cfg: RunConfig, cost: RunCost) -> tuple[float, float]:
    """Estimated seconds of a run's training steps, and of its evaluations and probe rows (:func:`schedule`)."""
    evals, probes = schedule(cfg)
    return cfg.train.steps * cost.step_s, evals * cost.eval_s + probes * cost.probe_s


def _shape_key(cfg: RunConfig) -> str:
    raw = cfg.model_dump(mode="json")
    for key in ("name", "description", "seeds"):
        raw.pop(key, None)
    raw["model"].pop("zero_init", None)
    return json.dumps(raw, sort_keys=True)


def measure(cfg: RunConfig, threads: int, min_seconds: float = 1.0, max_steps: int = 5) -> RunCost:
    """Time one kind of run on this machine (a throw-away run directory; nothing kept)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            trainer = prepare(cfg, tmp)
            trainer.train_step()  # warm-up
            start, steps = time.perf_counter(), 0
            while steps < max_steps and (steps < 1 or time.perf_counter() - start < min_seconds):
                trainer.train_step()
                steps += 1
            step_s = (time.perf_counter() - start) / steps
            start = time.perf_counter()
            trainer.log_eval(0.0, 0.0)
            eval_s = time.perf_counter() - start
            start = time.perf_counter()
            trainer.log_probes(0.0, 0.0)
            probe_s = time.perf_counter() - start
    finally:
        torch.set_num_threads(before)
    return RunCost(step_s, eval_s, probe_s)


def estimate(specs: list[RunSpec], workers: int, threads: int) -> dict[str, Any]:
    """Every run's resolved sizes and estimated seconds, and the sweep's estimated wall time."""
    costs: dict[str, RunCost] = {}
    configs = {spec.folder: spec.config() for spec in specs}
    leader_of = {f.folder: leader for leader, group in shared_trajectories(specs, configs).items() for f in group}
    rows = []
    for spec in specs:
        cfg = configs[spec.folder]
        key = _shape_key(cfg)
        if key not in costs:
            costs[key] = measure(cfg, threads)
        cost = costs[key]
        evals, probes = schedule(cfg)
        training, watching = run_seconds(cfg, cost)
        rows.append({"run": spec.folder, "d_model": cfg.model.d_model, "seq_len": cfg.data.seq_len,
                     "batch_size": cfg.train.batch_size, "steps": cfg.train.steps, "seed_init": cfg.seeds.init,
                     "seed_data": cfg.seeds.data, "evaluations": evals, "probe_rows": probes,
                     "trained_along": leader_of.get(spec.folder),
                     "estimated_s": watching + (0.0 if spec.folder in leader_of else training),
                     "_cost": run_cost(cfg)})
    by_run = {row["run"]: row for row in rows}
    jobs = {row["run"]: row["estimated_s"] for row in rows if row["trained_along"] is None}
    for row in rows:
        if row["trained_along"] is not None:  # one job with its leader
            jobs[row["trained_along"]] += row["estimated_s"]
    free = [0.0] * workers  # the local pool: longest first, each run to the first free worker
    for run in sorted(jobs, key=lambda run: -by_run[run]["_cost"]):
        i = free.index(min(free))
        free[i] += jobs[run]
    for row in rows:
        del row["_cost"]
    return {"runs": rows, "workers": workers, "threads": threads, "kinds_measured": len(costs),
            "worker_seconds": sum(r["estimated_s"] for r in rows), "wall_seconds": max(free) if rows else 0.0}


def format_estimate(result: dict[str, Any], device: str) -> str:
    """The dry-run table: one line per run, then the totals."""
    header = f"{'run':44s} {'d_model':>7s} {'seq_len':>7s} {'batch':>5s} {'steps':>6s} {'seeds':>9s} {'est.':>8s}"
    lines = [header]
    for r in result["runs"]:
        lines.append(f"{r['run'][:44]:44s} {r['d_model']:7d} {r['seq_len']:7d} {r['batch_size']:5d} {r['steps']:6d} "
                     f"{r['seed_init']:>4d}/{r['seed_data']:<4d} {_duration(r['estimated_s']):>8s}"
                     + (f"  along {r['trained_along']}" if r["trained_along"] else ""))
    lines.append(f"{len(result['runs'])} runs ({result['kinds_measured']} kinds measured on {device}): "
                 f"{_duration(result['worker_seconds'])} of training in all; estimated wall time "
                 f"{_duration(result['wall_seconds'])} on {result['workers']} workers × {result['threads']} threads "
                 "(analyses and the report not included)")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
