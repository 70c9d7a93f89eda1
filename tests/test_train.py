"""Training, checkpoints and exact resume."""

import json

import pytest
import torch

from inductionlab.errors import CheckpointError, RunDirError
from inductionlab.runs import RunDir
from inductionlab.train import open_trained, train


def _weights(run_dir):
    tensors, _ = RunDir(run_dir).load_checkpoint()
    return {k: v for k, v in tensors.items() if k.startswith(("model.", "optim."))}


def _metrics(run_dir):
    return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in RunDir(run_dir).metrics()]


@pytest.mark.parametrize("optimizer,loss_on", [("sgd", "in-context"), ("adamw", "all")])
def test_resume_is_exact(tmp_path, tiny, optimizer, loss_on):
    cfg = tiny(train={"optimizer": optimizer, "loss_on": loss_on, "steps": 8, "lr": 0.05,
                      "checkpoint_every": 3, "eval_every": 2})
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train(cfg, whole, progress=False)
    first = train(cfg, parts, stop_after=4, progress=False)
    assert first == {"step": 4, "finished": False}
    assert RunDir(parts).latest_step() == 4
    train(cfg, parts, progress=False)
    a, b = _weights(whole), _weights(parts)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert _metrics(whole) == _metrics(parts)
    assert [r["step"] for r in RunDir(parts).metrics()] == [0, 2, 4, 6, 8]


def test_finished_run_is_not_retrained(tmp_path, tiny):
    cfg = tiny()
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["finished"] and summary["step"] == 6
    mtime = (tmp_path / "run" / "metrics.jsonl").stat().st_mtime_ns
    assert train(cfg, tmp_path / "run", progress=False) == summary
    assert (tmp_path / "run" / "metrics.jsonl").stat().st_mtime_ns == mtime


def test_same_seeds_same_numbers_and_seeds_are_separate(tmp_path, tiny):
    base = tiny()
    train(base, tmp_path / "a", progress=False)
    train(base, tmp_path / "b", progress=False)
    assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")
    other_eval = tiny(seeds={"eval": 7})
    train(other_eval, tmp_path / "c", progress=False)
    wa, wc = _weights(tmp_path / "a"), _weights(tmp_path / "c")
    assert all(torch.equal(wa[k], wc[k]) for k in wa)  # eval seed does not touch training
    assert _metrics(tmp_path / "a") != _metrics(tmp_path / "c")


def test_run_directory_layout(tmp_path, tiny):
    run = tmp_path / "run"
    train(tiny(), run, progress=False)
    assert (run / "config.yaml").exists() and (run / "summary.json").exists()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for key in ("loss_global", "acc_global", "acc_first", "acc_in_context", "wo", "wo_chance", "wk2", "wk1",
                "attn1_prev_token", "attn2_induction"):
        assert key in rows[-1], key
    assert len(list((run / "checkpoints").glob("*.safetensors"))) <= 2


def test_other_config_in_same_dir_is_refused(tmp_path, tiny):
    train(tiny(), tmp_path / "run", progress=False)
    with pytest.raises(RunDirError, match="different config"):
        train(tiny(model={"d_model": 8}), tmp_path / "run", progress=False)


def test_corrupt_checkpoint_is_named(tmp_path, tiny):
    run = tmp_path / "run"
    train(tiny(), run, progress=False)
    step = RunDir(run).latest_step()
    path = run / "checkpoints" / f"step_{step:08d}.safetensors"
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(CheckpointError, match=path.name):
        open_trained(run)
    (run / "checkpoints" / f"step_{step:08d}.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        open_trained(run)


def test_unreadable_run_dir(tmp_path):
    with pytest.raises(RunDirError, match="no such run directory"):
        open_trained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match="config.yaml"):
        open_trained(tmp_path / "empty")


def test_dense_evaluation_early_then_every_eval_every(tmp_path, tiny):
    cfg = tiny(train={"eval_every": 3, "eval_dense_until": 2, "steps": 7})
    train(cfg, tmp_path / "run", progress=False)
    assert [r["step"] for r in RunDir(tmp_path / "run").metrics()] == [0, 1, 2, 3, 6, 7]


def test_resume_inside_a_probe_schedule_is_exact(tmp_path, tiny):
    """Probe rows at every step and the checkpointed training-batch counters survive an interruption."""
    cfg = tiny(train={"steps": 9, "eval_every": 4, "probe_every": 1, "checkpoint_every": 3})
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train(cfg, whole, progress=False)
    train(cfg, parts, stop_after=5, progress=False)
    train(cfg, parts, progress=False)
    assert _metrics(whole) == _metrics(parts)
    rows = RunDir(whole).metrics()
    assert [r["step"] for r in rows] == list(range(10))
    assert [r["step"] for r in rows if "loss_all" in r] == [0, 4, 8, 9]  # evaluations; the rest probe rows
    assert all("wo" in r and r["metrics_version"] == 2 for r in rows)
    assert 0 <= rows[-1]["train_degenerate_rows"] <= 1


def test_metrics_of_another_version_are_refused_in_one_line(tmp_path, tiny, capsys):
    from inductionlab.cli import main

    cfg = tiny()
    train(cfg, tmp_path / "run", progress=False)
    path = tmp_path / "run" / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "metrics_version"}) + "\n" for r in rows))
    with pytest.raises(RunDirError, match="metrics of version 1"):
        RunDir.create(tmp_path / "run", cfg)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    del summary["metrics_version"]
    (tmp_path / "run" / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(RunDirError, match="summary of metrics version 1"):  # what a sweep reads of finished runs
        RunDir(tmp_path / "run").summary()
    (tmp_path / "tiny.yaml").write_text(__import__("inductionlab.config", fromlist=["to_yaml"]).to_yaml(cfg))
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "run"), "--quiet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "metrics of version 1" in err[0]


@pytest.mark.parametrize("kind,sections,expected", [
    ("amt", {}, {"train_loss": 2.938952684402466, "loss_all": 2.861388433547247, "loss_in_context": 3.274418354034424}),
    ("transformer", {"model": {"arch": "transformer", "n_heads": 2, "pos_enc": "rpe", "max_rel_dist": 16},
                     "train": {"loss_on": "all", "optimizer": "adamw", "lr": 0.01}},
     {"train_loss": 2.121290922164917, "loss_all": 1.9500528971354167, "loss_in_context": 2.6828644275665283}),
])
def test_bigram_task_numbers_are_pinned(tmp_path, tiny, kind, sections, expected):
    """The same seeds give the same numbers as before the task interface (measured on the 2-core CPU)."""
    train(tiny(**sections), tmp_path / kind, progress=False)
    last = RunDir(tmp_path / kind).metrics()[-1]
    assert last["step"] == 6
    for key, value in expected.items():
        assert last[key] == pytest.approx(value, rel=1e-6), key
