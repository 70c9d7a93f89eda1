"""``--dry-run``: schedules counted exactly, the wall time scheduled as the local pool runs it."""

import pytest

from inductionlab.cli import main
from inductionlab.estimate import RunCost, estimate, schedule
from inductionlab.runs import RunSpec


def test_schedule_counts_evaluations_and_probe_rows(tiny):
    cfg = tiny(train={"steps": 10, "eval_every": 5, "eval_dense_until": 2, "probe_every": 1})
    # evaluations at 0 (start), 1, 2 (dense), 5, 10; probe rows at 3, 4, 6, 7, 8, 9
    assert schedule(cfg) == (5, 6)
    assert schedule(tiny(train={"steps": 6, "eval_every": 4})) == (3, 0)  # 0, 4, 6 (the last step)


def test_estimate_schedules_longest_first_on_the_workers(monkeypatch, tmp_path, tiny):
    from inductionlab import estimate as module
    from inductionlab.config import to_yaml

    monkeypatch.setattr(module, "measure", lambda cfg, threads: RunCost(step_s=1.0, eval_s=0.0, probe_s=0.0))
    specs = []
    for seed, (name, steps) in enumerate((("a", 30), ("b", 20), ("c", 20), ("d", 10))):
        path = tmp_path / f"{name}.yaml"
        path.write_text(to_yaml(tiny(train={"steps": steps}, seeds={"data": seed})))  # four trajectories
        specs.append(RunSpec(name, str(path)))
    result = estimate(specs, workers=2, threads=1)
    assert [r["estimated_s"] for r in result["runs"]] == [30, 20, 20, 10]
    assert result["worker_seconds"] == 80
    assert result["wall_seconds"] == 40  # a | b, then c after b and d after a: 30+10 and 20+20


def test_estimate_counts_a_shared_trajectory_once(monkeypatch, tmp_path, tiny):
    from inductionlab import estimate as module
    from inductionlab.config import to_yaml

    monkeypatch.setattr(module, "measure", lambda cfg, threads: RunCost(step_s=1.0, eval_s=0.5, probe_s=0.0))
    specs = []
    for name, steps, seed in (("long", 30, 0), ("short", 20, 0), ("other", 25, 1)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(to_yaml(tiny(train={"steps": steps, "eval_every": 10}, seeds={"data": seed})))
        specs.append(RunSpec(name, str(path)))
    result = estimate(specs, workers=2, threads=1)
    rows = {r["run"]: r for r in result["runs"]}
    assert rows["short"]["trained_along"] == "long" and rows["long"]["trained_along"] is None
    assert rows["short"]["estimated_s"] == 3 * 0.5  # its evaluations only (steps 0, 10, 20)
    assert rows["long"]["estimated_s"] == 30 + 4 * 0.5
    assert result["wall_seconds"] == 30 + 4 * 0.5 + 3 * 0.5  # the leader's job carries its follower


@pytest.mark.slow
def test_dry_run_prints_the_runs_and_trains_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["reproduce", "nope3", "--preset", "smoke", "--dry-run"])
    out = capsys.readouterr().out
    assert "nope3-smoke-attention-only" in out and "nope3-smoke-with-mlp" in out
    assert "estimated wall time" in out and not (tmp_path / "results").exists()
