"""Runs on one trajectory are trained once: a follower rides along its leader and ends exactly as if trained alone."""

import pytest
import torch

from inductionlab.config import to_yaml
from inductionlab.runs import RunDir, RunSpec
from inductionlab.sweep import run_sweep, shared_trajectories
from inductionlab.train import shared_trajectory, train


def _checkpoint(run_dir, step=None):
    tensors, state = RunDir(run_dir).load_checkpoint(step) if step is not None else RunDir(run_dir).load_checkpoint()
    return tensors, state


def _metrics(run_dir):
    return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in RunDir(run_dir).metrics()]


def _summary(run_dir):
    return {k: v for k, v in RunDir(run_dir).summary().items() if k not in ("elapsed_s", "trained_along")}


def _pair(tiny, **leader_train):
    """A leader and a follower: the follower trains fewer steps and is watched differently."""
    leader = tiny(name="leader", train={"steps": 10, "eval_every": 5, "checkpoint_every": 5, "lr": 0.05,
                                        **leader_train})
    follower = tiny(name="follower", model={"max_rel_dist": 7},  # unused by ape
                    train={"steps": 6, "eval_every": 3, "eval_batch_size": 4, "checkpoint_every": 4,
                           "keep_checkpoints": 0, "lr": 0.05, "probe_every": 1}, seeds={"eval": 9})
    return leader, follower


def _assert_same_run(alone, along):
    assert _metrics(alone) == _metrics(along)
    assert _summary(alone) == _summary(along)
    assert RunDir(alone).checkpoint_steps() == RunDir(along).checkpoint_steps()
    for step in RunDir(alone).checkpoint_steps():
        (a, sa), (b, sb) = _checkpoint(alone, step), _checkpoint(along, step)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), step
        assert sa == sb


def test_trajectory_key_ignores_only_what_does_not_train(tiny):
    leader, follower = _pair(tiny)
    assert shared_trajectory(leader) == shared_trajectory(follower)
    for other in (tiny(train={"lr": 0.06}), tiny(seeds={"data": 5}), tiny(model={"max_len": 65}),
                  tiny(model={"pos_enc": "rpe", "max_rel_dist": 7}), tiny(train={"batch_size": 4})):
        assert shared_trajectory(other) != shared_trajectory(tiny()), other
    assert shared_trajectory(tiny(model={"pos_enc": "rpe"})) == shared_trajectory(
        tiny(model={"pos_enc": "rpe", "max_len": 65}))  # max_len sizes only absolute encodings
    ablated = tiny(interventions=[{"target": "blocks.0.hook_attn_out", "op": "zero-ablate"}])
    assert shared_trajectory(ablated) is None


def test_follower_ends_exactly_as_if_trained_alone(tmp_path, tiny):
    leader, follower = _pair(tiny)
    train(follower, tmp_path / "alone", progress=False)
    train(leader, tmp_path / "leader_alone", progress=False)
    summary = train(leader, tmp_path / "leader", progress=False, followers=((follower, tmp_path / "along"),))
    _assert_same_run(tmp_path / "alone", tmp_path / "along")
    _assert_same_run(tmp_path / "leader_alone", tmp_path / "leader")  # the leader is untouched by its rider
    assert RunDir(tmp_path / "along").summary()["trained_along"] == "leader"
    assert summary["step"] == 10


def test_interrupted_leader_and_follower_resume_in_step(tmp_path, tiny):
    leader, follower = _pair(tiny)
    train(follower, tmp_path / "alone", progress=False, stop_after=3)  # stopped where the leader is stopped
    train(follower, tmp_path / "alone", progress=False)
    along = ((follower, tmp_path / "along"),)
    assert not train(leader, tmp_path / "leader", progress=False, stop_after=3, followers=along)["finished"]
    assert RunDir(tmp_path / "along").latest_step() == 3
    train(leader, tmp_path / "leader", progress=False, followers=along)
    _assert_same_run(tmp_path / "alone", tmp_path / "along")


def test_a_follower_out_of_step_is_left_for_its_own_run(tmp_path, tiny):
    leader, follower = _pair(tiny)
    train(follower, tmp_path / "along", progress=False, stop_after=4)  # checkpointed at 4, the leader at 0
    train(leader, tmp_path / "leader", progress=False, followers=((follower, tmp_path / "along"),))
    assert RunDir(tmp_path / "along").summary() is None
    assert RunDir(tmp_path / "along").latest_step() == 4


@pytest.mark.parametrize("leader_fails", [False, True])
def test_sweep_trains_a_trajectory_once_and_a_stranded_follower_alone(tmp_path, tiny, leader_fails):
    leader, follower = _pair(tiny, **({"lr": 1e38} if leader_fails else {}))  # lr 1e38 diverges at once
    if leader_fails:
        follower = follower.model_copy(update={"train": follower.train.model_copy(update={"lr": 1e38})})
    paths = {}
    for cfg in (leader, follower):
        paths[cfg.name] = tmp_path / f"{cfg.name}.yaml"
        paths[cfg.name].write_text(to_yaml(cfg))
    specs = [RunSpec(name, str(path)) for name, path in paths.items()]
    assert [s.folder for group in shared_trajectories(specs, {s.folder: s.config() for s in specs}).values()
            for s in group] == ["follower"]
    table = run_sweep(specs, tmp_path / "out", workers=1, progress=False)
    along = RunDir(tmp_path / "out" / "runs" / "follower").summary()
    if leader_fails:  # both diverge: the follower, stranded before its end, diverges again on its own
        assert set(table["status"]) == {"diverged"}
        assert "trained_along" not in along
    else:
        assert set(table["status"]) == {"finished"}
        assert along["trained_along"] == "leader"
        train(follower, tmp_path / "alone", progress=False)
        _assert_same_run(tmp_path / "alone", tmp_path / "out" / "runs" / "follower")
