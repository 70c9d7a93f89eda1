"""Faults end cleanly: a diverging run, a worker killed mid-run, files that are not what they claim.

Each fault is injected the way it happens: a learning rate that makes the loss non-finite, SIGKILL
of the worker process that trains a run (what the out-of-memory killer does), bytes that are not
UTF-8 text. What the user sees is one line and a non-zero exit; nothing good is lost.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import tiny_config
from inductionlab import jsonio
from inductionlab.backends import LocalBackend, death_cause
from inductionlab.cli import main
from inductionlab.config import to_yaml
from inductionlab.errors import DivergenceError, SweepError
from inductionlab.runs import RunDir, RunSpec
from inductionlab.sweep import grid_runs, run_sweep
from inductionlab.train import train

DIVERGES = {"lr": 1e38, "steps": 12, "eval_every": 4, "checkpoint_every": 4}


def _exit(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def _strict_json_files(run: Path) -> list[Path]:
    files = [p for p in run.rglob("*.json")] + [run / "metrics.jsonl"]
    for path in files:
        lines = path.read_text().splitlines() if path.suffix == ".jsonl" else [path.read_text()]
        for line in lines:
            jsonio.loads(line)  # raises on NaN / Infinity
    return files


def _checkpoint_is_finite(run: RunDir) -> bool:
    step = run.latest_step()
    tensors = load_file(str(run.checkpoint_dir / f"step_{step:08d}.safetensors"))
    return all(torch.isfinite(v).all() for k, v in tensors.items() if v.is_floating_point())


# ------------------------------------------------------------------------------ divergence


def test_a_diverging_run_stops_at_the_step_with_one_line(tmp_path, capsys):
    cfg = tmp_path / "diverges.yaml"
    cfg.write_text(to_yaml(tiny_config(train=DIVERGES)))
    run = tmp_path / "run"
    code, out, err = _exit(["train", str(cfg), "--out", str(run), "--quiet"], capsys)
    summary = json.loads((run / "summary.json").read_text())
    assert code != 0 and out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"diverged at step {summary['diverged_step']} (" in err
    assert summary["diverged"] is True and summary["finished"] is False and summary["diverged_step"] <= 4
    rundir = RunDir(run)
    assert rundir.latest_step() < summary["diverged_step"] and _checkpoint_is_finite(rundir)
    assert len(_strict_json_files(run)) >= 3
    last = rundir.metrics()[-1]
    assert last["step"] == summary["diverged_step"] and last["train_loss"] is None
    assert last["train_loss_nonfinite"] in ("nan", "inf")

    # the same command again: the same line at once, nothing retrained or overwritten
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    code2, _, err2 = _exit(["train", str(cfg), "--out", str(run), "--quiet"], capsys)
    assert code2 == code and err2 == err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_keep_going_trains_through_and_keeps_the_last_finite_checkpoint(tmp_path):
    cfg = tiny_config(train={**DIVERGES, "keep_checkpoints": 1})
    with pytest.raises(DivergenceError) as info:
        train(cfg, tmp_path, progress=False)
    summary = train(cfg, tmp_path, progress=False, keep_going=True)
    assert summary["finished"] and summary["diverged"] and summary["diverged_step"] == info.value.step
    run = RunDir(tmp_path)
    steps = run.checkpoint_steps()
    assert steps[-1] == 12 and len(steps) == 2  # keep 1, plus the newest finite one
    assert run._finite(steps[0]) and not run._finite(steps[1])
    _strict_json_files(tmp_path)


@pytest.mark.slow  # spawns sweep workers
def test_a_sweep_reports_diverged_runs_and_leaves_them_out_of_the_statistics(tmp_path, capsys):
    base = tmp_path / "base.yaml"
    base.write_text(to_yaml(tiny_config(train={"steps": 12, "eval_every": 4, "checkpoint_every": 4})))
    specs = grid_runs("g", str(base), {"train.lr": [0.1, 1e38]}, [0, 1])
    table = run_sweep(specs, tmp_path / "out", workers=2, threads=1, progress=True)
    assert sorted(table["status"]) == ["diverged", "diverged", "finished", "finished"]
    summary = pd.read_parquet(tmp_path / "out" / "summary.parquet")
    assert list(summary["n_seeds"]) == [2]  # the diverged grid point has no finished seed: no row at all
    assert "2 of 4 runs diverged and are left out of the statistics" in capsys.readouterr().err
    # a diverged run is an outcome: the sweep again retrains nothing
    again = run_sweep(specs, tmp_path / "out", workers=1, threads=1, progress=False)
    assert list(again["status"]) == list(table["status"])


# ------------------------------------------------------------------------------ workers that die


def _wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _long_tiny(**train) -> str:
    return yaml.safe_dump(tiny_config(train={"steps": 400, "eval_every": 20, "checkpoint_every": 20,
                                             **train}).model_dump(mode="json"))


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_its_run_resumes_exactly(tmp_path):
    (tmp_path / "cfg.yaml").write_text(_long_tiny())
    spec = RunSpec("killed", str(tmp_path / "cfg.yaml"))
    backend = LocalBackend(1)
    try:
        job = backend.submit(spec, tmp_path / "killed", 1)
        run = RunDir(tmp_path / "killed")
        _wait_for(lambda: (run.latest_step() or 0) >= 40)
        os.kill(backend.pids()[0], signal.SIGKILL)
        events: list[str] = []
        _wait_for(lambda: events.extend(backend.poll()) or backend.ready(job))
        killed = backend.result(job)
        undisturbed = backend.submit(spec, tmp_path / "fresh", 1)
        _wait_for(lambda: backend.poll() is not None and backend.ready(undisturbed))
        fresh = backend.result(undisturbed)
    finally:
        backend.close()
    assert events == ["killed: worker killed by signal 9 (SIGKILL): out of memory?; the run resumes from its last "
                      "checkpoint (attempt 2 of 3)"]
    assert {k: v for k, v in killed.items() if k != "elapsed_s"} == {k: v for k, v in fresh.items() if k != "elapsed_s"}
    strip = [{k: v for k, v in r.items() if k != "elapsed_s"} for r in RunDir(tmp_path / "fresh").metrics()]
    assert [{k: v for k, v in r.items() if k != "elapsed_s"} for r in run.metrics()] == strip


@pytest.mark.slow
def test_a_run_whose_worker_keeps_dying_fails_with_the_cause_and_the_rest_finish(tmp_path):
    (tmp_path / "cfg.yaml").write_text(_long_tiny())
    doomed = RunSpec("doomed", str(tmp_path / "cfg.yaml"))
    backend = LocalBackend(1, retries=1)
    try:
        job = backend.submit(doomed, tmp_path / "doomed", 1)
        for _ in range(2):  # the first attempt and the one retry
            pid = backend.pids()[0]
            _wait_for(lambda: (RunDir(tmp_path / "doomed").latest_step() or 0) > 0)
            os.kill(pid, signal.SIGKILL)
            _wait_for(lambda pid=pid: backend.poll() is not None and backend.pids()[0] != pid)
        _wait_for(lambda: backend.poll() is not None and backend.ready(job))
        with pytest.raises(SweepError, match=r"worker killed by signal 9 \(SIGKILL\): out of memory\? \(the run "
                                             r"was started 2 times\)"):
            backend.result(job)
        # the replaced worker serves the next run
        other = backend.submit(RunSpec("other", str(tmp_path / "cfg.yaml"), ("train.steps=20",)), tmp_path / "o", 1)
        _wait_for(lambda: backend.poll() is not None and backend.ready(other))
        assert backend.result(other)["finished"]
    finally:
        backend.close()


def test_death_causes_read_as_words():
    assert death_cause(-9) == "worker killed by signal 9 (SIGKILL): out of memory?"
    assert death_cause(-15) == "worker killed by signal 15 (SIGTERM)"
    assert death_cause(3) == "worker exited with status 3"


# ------------------------------------------------------------------------------ files that are not text


def test_a_config_that_is_not_utf8_gets_one_line(tmp_path, capsys):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"model:\n  d_model: \xff\xfe\x00\x81\n")
    code, out, err = _exit(["train", str(path), "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and out == "" and err == f"error: {path}: not UTF-8 text; a config is a YAML file\n"
    grid = tmp_path / "grid.yaml"
    grid.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    code, _, err = _exit(["sweep", str(grid), "--out", str(tmp_path / "s")], capsys)
    assert code == 2 and err == f"error: {grid}: not UTF-8 text; a grid file is YAML\n"
    assert not (tmp_path / "run").exists()


def _ray_workers_running(function: str) -> list[int]:
    """Process ids whose title says they run ``function`` as a Ray task (Ray titles them ``ray::NAME``)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(f"ray::{function}".encode()):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.mark.slow
def test_ray_retries_a_run_whose_worker_was_killed(tmp_path):
    from inductionlab.backends import RayBackend

    (tmp_path / "cfg.yaml").write_text(_long_tiny())
    spec = RunSpec("killed", str(tmp_path / "cfg.yaml"))
    backend = RayBackend(1, 1)
    try:
        handle = backend.submit(spec, tmp_path / "killed", 1)
        _wait_for(lambda: (RunDir(tmp_path / "killed").latest_step() or 0) >= 40)
        (pid,) = _ray_workers_running("execute_run")
        os.kill(pid, signal.SIGKILL)
        killed = backend.result(handle)  # Ray's own retry: the run resumes from its checkpoint
        fresh = backend.result(backend.submit(spec, tmp_path / "fresh", 1))
    finally:
        backend.close()
    assert pid not in _ray_workers_running("execute_run")
    drop = ("elapsed_s",)
    assert {k: v for k, v in killed.items() if k not in drop} == {k: v for k, v in fresh.items() if k not in drop}
    assert RunDir(tmp_path / "killed").metrics()[0]["step"] == 0


@pytest.mark.slow
def test_the_acceptance_command_diverges_in_one_line(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "inductionlab", "train", "birth-quick", "--set", "train.lr=1e12",
                           "--set", "train.steps=30"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    shown = [line for line in done.stderr.replace("\r", "\n").splitlines()
             if line.strip() and not line.startswith("birth-quick:")]  # the progress bar, cleared on a terminal
    assert done.returncode != 0 and len(shown) == 1 and "Traceback" not in done.stderr
    assert shown[0].startswith("error: runs/birth-quick: diverged at step ")
    run = RunDir(tmp_path / "runs" / "birth-quick")
    assert _checkpoint_is_finite(run) and len(_strict_json_files(run.path)) >= 3


def test_an_interrupted_keep_going_run_is_not_trained_on_without_it(tmp_path):
    cfg = tiny_config(train={**DIVERGES, "checkpoint_every": 1})
    assert not train(cfg, tmp_path, progress=False, keep_going=True, stop_after=6)["finished"]  # as Ctrl-C leaves it
    with pytest.raises(DivergenceError, match=r"diverged at step \d+"):
        train(cfg, tmp_path, progress=False)
    assert RunDir(tmp_path).latest_step() == 6  # nothing trained on


@pytest.mark.slow  # spawns sweep workers
def test_grid_values_that_are_lists_make_tables(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text(to_yaml(tiny_config(train={"steps": 2, "eval_every": 1})))
    specs = grid_runs("g", str(base), {"model.trained": [["wk1", "wk2"], ["wk2"]]}, [0])
    table = run_sweep(specs, tmp_path / "out", workers=1, threads=1, progress=False)
    assert list(table["model.trained"]) == ["[wk1, wk2]", "[wk2]"]
    assert len(pd.read_parquet(tmp_path / "out" / "summary.parquet")) == 2
