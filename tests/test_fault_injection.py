"""Faults injected as they happen: names that would escape the output folder, a worker stopped mid-run, two
commands on one run folder, an optimiser state that does not fit, runs that together do not fit in memory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import tiny_config
from inductionlab.cli import main
from inductionlab.errors import ConfigError, MemoryEstimateError, RunInUseError
from inductionlab.heartbeat import FILE, Heartbeat, StallLimit, stalled
from inductionlab.runs import RunDir, RunSpec, hold_run
from inductionlab.sweep import grid_runs, run_sweep
from inductionlab.train import train


def _exit(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def _files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _without_time(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in rows]


def _long_tiny(path: Path, **train) -> Path:
    cfg = tiny_config(train={"steps": 400, "eval_every": 20, "checkpoint_every": 20, **train})
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return path


# ------------------------------------------------------------------------------ names are names


@pytest.mark.parametrize("name", ["../x", "../../escaped", "a/b", "..", ".hidden", "\"tab\\there\"", "back\\slash"])
def test_a_run_name_that_is_a_path_is_refused_before_anything_is_written(name, tmp_path, monkeypatch, capsys):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    code, out, err = _exit(["train", "birth-quick", "--set", f"name={name}", "--quiet"], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "name:" in err and "one folder name: letters, digits" in err
    assert list(tmp_path.rglob("*")) == [tmp_path / "a", work]  # nothing written, here or above


def test_a_grid_whose_runs_would_escape_is_refused(tmp_path, monkeypatch, capsys):
    work = tmp_path / "w"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "grid.yaml").write_text("name: ../../escaped\nbase: birth-quick\nseeds: [0]\n")
    code, _, err = _exit(["sweep", "grid.yaml", "--out", "out", "--quiet"], capsys)
    assert code == 2 and "grid.yaml: name: '../../escaped' holds a path separator" in err
    (work / "grid.yaml").write_text("name: g\nbase: birth-quick\ngrid:\n  description: ['../../x']\nseeds: [0]\n")
    code, _, err = _exit(["sweep", "grid.yaml", "--out", "out", "--quiet"], capsys)  # a value in the run's name
    assert code == 2 and "run 'g-description=../../x-s0': " in err and "holds a path separator" in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["grid.yaml", "w"]


def test_an_experiment_name_that_is_a_path_is_refused():
    from inductionlab.experiments.kit.experiment import Experiment

    with pytest.raises(ConfigError, match=r"name: '\.\./up' holds a path separator"):
        Experiment("../up", "t", {}, lambda preset: [], lambda *args: {})


def test_grid_labels_stay_names():
    specs = grid_runs("g", "birth-quick", {"train.lr": [0.1, 1e-3]}, [0, 1])
    assert all(spec.config().name == spec.name for spec in specs)


# ------------------------------------------------------------------------------ one writer per run folder


def test_a_run_in_use_is_refused_in_one_line_and_left_alone(tmp_path, capsys):
    cfg = _long_tiny(tmp_path / "cfg.yaml", steps=6, eval_every=2, checkpoint_every=2)
    run = tmp_path / "run"
    train(tiny_config(train={"steps": 6, "eval_every": 2, "checkpoint_every": 2}), run, progress=False, stop_after=2)
    before = _files(run)
    with hold_run(run):  # as another process training it holds it
        code, _, err = _exit(["train", str(cfg), "--out", str(run), "--quiet"], capsys)
        with pytest.raises(RunInUseError):
            train(tiny_config(train={"steps": 6, "eval_every": 2, "checkpoint_every": 2}), run, progress=False)
    assert code == 2 and err.startswith(f"error: {run}: in use by another process") and len(err.splitlines()) == 1
    assert _files(run) == before
    assert train(tiny_config(train={"steps": 6, "eval_every": 2, "checkpoint_every": 2}), run,
                 progress=False)["finished"]  # released: it resumes


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom inductionlab.runs import hold_run\n"
                               f"with hold_run({str(run)!r}):\n    print('held', flush=True)\n    time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunInUseError), hold_run(run):
            pass
    finally:
        holder.kill()
        holder.wait()
    with hold_run(run):  # the kernel let go of the dead process's lock
        pass


@pytest.mark.slow
def test_two_train_commands_on_one_folder_started_together(tmp_path):
    cfg = _long_tiny(tmp_path / "cfg.yaml")
    command = [sys.executable, "-m", "inductionlab", "train", str(cfg), "--out", str(tmp_path / "run"), "--quiet"]
    both = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = sorted((p.wait(timeout=300), p.stderr.read()) for p in both)
    assert [code for code, _ in outcomes] == [0, 2]
    assert "in use by another process" in outcomes[1][1] and len(outcomes[1][1].strip().splitlines()) == 1
    lone = tmp_path / "lone"
    subprocess.run([*command[:-3], "--out", str(lone), "--quiet"], check=True, capture_output=True, timeout=300)
    assert _without_time(RunDir(tmp_path / "run").metrics()) == _without_time(RunDir(lone).metrics())


# ------------------------------------------------------------------------------ hung workers


def test_the_stall_limit_counts_from_the_last_beat_and_its_longest_gap(tmp_path):
    limit = StallLimit(floor_s=10, factor=20)
    since = time.time()
    assert stalled(tmp_path, since, limit, now=since + 9) is None
    assert "silent for 11 s, past its stall limit of 10 s" in stalled(tmp_path, since, limit, now=since + 11)
    pulse = Heartbeat(tmp_path)
    pulse.longest_s = 2.0  # a 2 s evaluation seen: 40 s allowed
    pulse.write(5)
    stamp = (tmp_path / FILE).stat().st_mtime
    assert stalled(tmp_path, since - 1, limit, now=stamp + 39) is None
    assert stalled(tmp_path, since - 1, limit, now=stamp + 41) is not None
    assert stalled(tmp_path, stamp + 100, limit, now=stamp + 105) is None  # an earlier attempt's beat: from since
    pulse.stop()
    assert not (tmp_path / FILE).exists()
    with pytest.raises(ConfigError, match="--stall-limit: at least 3 seconds"):
        StallLimit(floor_s=0.5)


def test_a_sweep_run_beats_and_clears_its_heartbeat(tmp_path, monkeypatch):
    written = []
    monkeypatch.setattr(Heartbeat, "write", lambda self, step: written.append((step, self.path.name)))
    train(tiny_config(train={"steps": 6}), tmp_path / "run", progress=False, heartbeat=True, stop_after=3)
    assert written and written[0] == (0, FILE)  # a beat as training starts (later ones at most once a second)
    assert not (tmp_path / "run" / FILE).exists()  # the run ended: nothing left to watch


@pytest.mark.slow  # spawns a sweep worker and waits out a stall limit
def test_a_stopped_worker_is_ended_and_the_sweep_finishes_on_its_own(tmp_path):
    cfg = _long_tiny(tmp_path / "cfg.yaml")
    stopped: list[int] = []

    def stop_the_worker() -> None:
        beat = tmp_path / "out" / "runs" / "stopped" / FILE
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                state = json.loads(beat.read_text())
            except (OSError, ValueError):
                state = {}
            if state.get("step", 0) >= 60:
                os.kill(state["pid"], signal.SIGSTOP)  # stopped, not dead: only its silence tells
                stopped.append(state["pid"])
                return
            time.sleep(0.02)

    thread = threading.Thread(target=stop_the_worker)
    thread.start()
    table = run_sweep([RunSpec("stopped", str(cfg))], tmp_path / "out", workers=1, threads=1, progress=False,
                      stall_limit=10)
    thread.join()
    assert stopped and list(table["status"]) == ["finished"]
    with pytest.raises(ProcessLookupError):
        os.kill(stopped[0], 0)  # ended, not left behind
    run_sweep([RunSpec("stopped", str(cfg))], tmp_path / "lone", workers=1, threads=1, progress=False)
    assert _without_time(RunDir(tmp_path / "out" / "runs" / "stopped").metrics()) == _without_time(
        RunDir(tmp_path / "lone" / "runs" / "stopped").metrics())
    assert not (tmp_path / "out" / "runs" / "stopped" / FILE).exists()


# ------------------------------------------------------------------------------ state that does not fit


def test_an_adamw_checkpoint_resumed_as_sgd_gets_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_config(train={"optimizer": "adamw", "steps": 6}), run, progress=False, stop_after=4)
    stored = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(stored.replace("optimizer: adamw", "optimizer: sgd"))  # edited by hand
    before = _files(run)
    code, out, err = _exit(["train", str(run / "config.yaml"), "--out", str(run), "--quiet"], capsys)
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert "its optimiser state is not SGD's" in err and "train.optimizer" in err
    assert _files(run) == before  # the checkpoint untouched


def test_optimiser_tensors_of_the_wrong_shape_get_one_line(tmp_path):
    import torch

    from inductionlab.errors import CheckpointError
    from inductionlab.train import check_optimizer_state

    param = torch.nn.Parameter(torch.zeros(3, 4))
    sgd = torch.optim.SGD([param], lr=0.1, momentum=0.9)
    groups = sgd.state_dict()["param_groups"]
    check_optimizer_state(sgd, groups, {0: {"momentum_buffer": torch.zeros(3, 4)}}, "ckpt")
    with pytest.raises(CheckpointError, match=r"ckpt: optimiser tensor momentum_buffer of parameter 0 has shape "
                                              r"\(4, 3\), the parameter \(3, 4\)"):
        check_optimizer_state(sgd, groups, {0: {"momentum_buffer": torch.zeros(4, 3)}}, "ckpt")
    with pytest.raises(CheckpointError, match="covers other parameters"):
        check_optimizer_state(sgd, groups, {1: {"momentum_buffer": torch.zeros(3, 4)}}, "ckpt")


# ------------------------------------------------------------------------------ memory of concurrent workers


def test_runs_that_fit_alone_but_not_together_are_refused_before_any_starts(tmp_path, monkeypatch, capsys):
    from inductionlab import footprint

    one = footprint.footprint(tiny_config()).total
    monkeypatch.setattr(footprint, "available_memory", lambda device: int(2.5 * one))
    grid = tmp_path / "grid.yaml"
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(tiny_config().model_dump(mode="json")))
    grid.write_text(f"name: g\nbase: {base}\nseeds: [0, 1, 2]\n")
    code, _, err = _exit(["sweep", str(grid), "--out", str(tmp_path / "out"), "--workers", "3", "--quiet"], capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert "--workers: the 3 largest runs that would train at once need about" in err and "use --workers 2" in err
    assert not (tmp_path / "out" / "runs" / "g-s0").exists()
    with pytest.raises(MemoryEstimateError):
        footprint.check_concurrent_memory([tiny_config()] * 3, 3)
    footprint.check_concurrent_memory([tiny_config()] * 3, 2)  # two at once fit


@pytest.mark.slow  # starts Ray
def test_ray_cancels_and_resubmits_a_stopped_task(tmp_path):
    from inductionlab.backends import RayBackend

    cfg = _long_tiny(tmp_path / "cfg.yaml")
    spec = RunSpec("stopped", str(cfg))
    backend = RayBackend(1, 1, stall=StallLimit(floor_s=10))
    try:
        job = backend.submit(spec, tmp_path / "stopped", 1)
        beat, events = tmp_path / "stopped" / FILE, []
        deadline = time.monotonic() + 120
        while not (beat.exists() and json.loads(beat.read_text() or "{}").get("step", 0) >= 60):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        pid = json.loads(beat.read_text())["pid"]
        os.kill(pid, signal.SIGSTOP)
        while not backend.ready(job):
            events += backend.poll()
            time.sleep(0.2)
        stopped = backend.result(job)
        fresh = backend.result(backend.submit(spec, tmp_path / "fresh", 1))
    finally:
        backend.close()
    assert len(events) == 1 and "worker silent for" in events[0] and "(attempt 2 of 3)" in events[0]
    drop = ("elapsed_s",)
    assert {k: v for k, v in stopped.items() if k not in drop} == {k: v for k, v in fresh.items() if k not in drop}
