"""The task protocol and registry: a task defined outside the package, named by import path or registered,
trains through the normal trainer; each task validates its own data fields; old run directories open."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from inductionlab.cli import main
from inductionlab.config import SHARED_DATA_FIELDS, load_config, to_yaml, validate
from inductionlab.errors import ConfigError
from inductionlab.runs import RunDir
from inductionlab.tasks.build import make_task
from inductionlab.tasks.registry import register_task, task_class, task_names
from inductionlab.train import train
from toy_plugin import TASK, RepeatConfig, RepeatTask

SRC = Path(__file__).resolve().parents[1] / "src" / "inductionlab"


def repeat_config(tiny, task=TASK, **train_fields):
    return tiny(data={"task": task, "vocab": 8}, train={"loss_on": "in-context", **train_fields})


def test_a_task_named_by_import_path_trains_and_resumes_exactly(tmp_path, tiny):
    cfg = repeat_config(tiny)
    assert isinstance(cfg.data, RepeatConfig) and cfg.data.n_tokens == 8
    summary = train(cfg, tmp_path / "whole", progress=False)
    assert summary["finished"] and "acc_in_context" in summary
    assert set(summary["milestones"]) == {"acc_in_context", "loss_in_context_fell"}
    assert yaml.safe_load((tmp_path / "whole" / "config.yaml").read_text())["data"] == {
        "task": TASK, "seq_len": 24, "vocab": 8}
    assert RunDir(tmp_path / "whole").config() == cfg
    train(cfg, tmp_path / "parts", stop_after=3, progress=False)
    train(cfg, tmp_path / "parts", progress=False)

    def rows(name):
        return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in RunDir(tmp_path / name).metrics()]
    assert rows("whole") == rows("parts")
    assert not any(k.startswith("train_degenerate") for k in rows("whole")[-1])  # the task counts nothing


def test_a_registered_task_is_found_by_name(tiny):
    assert register_task(TASK) is RepeatTask
    assert "repeat-segment" in task_names() and task_class("repeat-segment") is RepeatTask
    assert isinstance(make_task(repeat_config(tiny, task="repeat-segment")), RepeatTask)
    with pytest.raises(ConfigError, match="not an import path"):
        register_task("repeat-segment")
    with pytest.raises(ConfigError, match="'icl-mc' is the name of a built-in task"):
        register_task("inductionlab.tasks.markov:MarkovTask")


def test_the_batch_declares_its_loss_mask_and_moves_every_tensor(tiny):
    task = make_task(repeat_config(tiny))
    batch = task.evaluation_batch(4, seed=2).to("cpu")
    assert batch.inputs.shape == batch.loss_mask.shape == (4, 24) and batch.tokens.shape == (4, 25)
    assert torch.equal(batch.probe_labels(), torch.where(batch.loss_mask, 2, 1))
    assert batch.rows_measured().all()
    again = task.sample(4, torch.Generator().manual_seed(2))  # the evaluation batch: the first draw from the seed
    assert torch.equal(again.tokens, batch.tokens)


@pytest.mark.parametrize("task,message", [
    ("nope", "data.task: unknown task 'nope'; allowed: bigram-triggers, icl-mc"),
    ("no_such_module:Task", "data.task: cannot import 'no_such_module'"),
    ("toy_plugin:plan", "data.task: 'toy_plugin:plan' is not a task"),
])
def test_an_unknown_task_is_one_line_naming_the_allowed_ones(tmp_path, capsys, task, message):
    with pytest.raises(SystemExit) as info:
        main(["train", "icl-mc-quick", "--set", f"data.task={task}", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and len(err.strip().splitlines()) == 1 and message in err


def test_each_task_owns_its_data_fields():
    bigram = load_config("birth-quick")
    assert "k" not in bigram.data.model_dump() and "order" not in yaml.safe_load(to_yaml(bigram))["data"]
    mc = load_config("icl-mc-quick")
    assert "n_triggers" not in yaml.safe_load(to_yaml(mc))["data"] and mc.data.n_tokens == 3
    with pytest.raises(ConfigError, match=r"unknown field 'data\.n_triggers'"):
        load_config("icl-mc-quick", ["data.n_triggers=3"])
    with pytest.raises(ConfigError, match=r"unknown field 'data\.k'"):
        load_config("birth-quick", ["data.k=3"])
    with pytest.raises(ConfigError, match=r"data\.seq_len: T=3 must be at least the order n=4"):
        load_config("icl-mc-quick", ["data.order=4", "data.seq_len=3"])
    assert validate({}).data == validate({"data": {"task": "bigram-triggers"}}).data  # the default task


def test_validating_a_config_imports_no_torch():
    """The built-in tasks' config models live apart from the tasks: `inductionlab presets` starts fast."""
    code = ("import sys; from inductionlab.config import load_config; "
            "assert load_config('icl-mc-quick').data.n_tokens == 3 and load_config('birth-quick').data.n_tokens == 65; "
            "assert 'torch' not in sys.modules")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_a_run_directory_in_the_old_layout_opens_and_resumes(tmp_path, tiny):
    """config.yaml written when every run carried every task's data fields: it opens, and the run resumes."""
    cases = {"bigram": tiny(train={"steps": 4}),
             "mc": tiny(data={"task": "icl-mc", "k": 3}, train={"steps": 4, "loss_on": "all"})}
    for name, cfg in cases.items():
        out = tmp_path / name
        train(cfg, out, stop_after=2, progress=False)
        raw = yaml.safe_load((out / "config.yaml").read_text())
        other = "mc" if name == "bigram" else "bigram"
        foreign = {k: v for k, v in cases[other].data.model_dump().items() if k in SHARED_DATA_FIELDS}
        raw["data"] = {**foreign, **raw["data"]}
        (out / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        assert set(foreign) <= set(yaml.safe_load((out / "config.yaml").read_text())["data"])
        assert RunDir(out).config() == cfg
        assert train(cfg, out, progress=False)["finished"]  # the same config: resumed, not refused
        with pytest.raises(ConfigError, match="unknown field"):
            validate(raw)  # a config a user writes gets no such leniency


def test_no_module_outside_the_tasks_compares_a_task_name():
    """Training, evaluation, the memory estimate, the CLI, the experiments and the tools read a task through its
    class: no module outside tasks/ compares a task's name or tells tasks apart by what they hold."""
    forbidden = {
        "a task name": re.compile(r"""["'](icl-mc|bigram-triggers)["']\s*(==|!=|\bin\b)|"""
                                  r"""(==|!=|\bin\b|\bnot in\b)\s*\(?["'](icl-mc|bigram-triggers)["']|"""
                                  r"""\.task\s*(==|!=|\bin\b)"""),
        "a task told apart by its fields": re.compile(r"task\.source is (not )?None|hasattr\([^)]*task"),
    }
    found = []
    for path in SRC.rglob("*.py"):
        if path.parent.name == "tasks":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            found += [f"{path.relative_to(SRC)}:{number}: {what}" for what, rx in forbidden.items() if rx.search(line)]
    assert not found, "\n".join(found)


class SilentTask(RepeatTask):
    """Logs no ``loss_in_context``: the analyses could not tell its evaluation rows."""

    def evaluate(self, model, batch, train_len, forward=None):
        return {"acc_in_context": 0.0}


def test_a_task_whose_evaluation_logs_no_in_context_loss_is_refused_at_the_first_evaluation(tmp_path, tiny):
    with pytest.raises(ConfigError, match="SilentTask.evaluate logs no 'loss_in_context'"):
        train(repeat_config(tiny, task="test_tasks:SilentTask"), tmp_path / "r", progress=False)
