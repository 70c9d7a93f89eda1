"""Any input, a clean outcome: generated values thrown at every config field, the ``--set`` parser, config
and grid files (random bytes, wrong types, deep nesting), every CLI verb's arguments and run directories
with missing, truncated or foreign files.

Each case ends in one of two ways: it runs, or it exits 2 with one line on stderr. An exception that
escapes ``main`` (a traceback for the user) fails the test, and Hypothesis shrinks it to the smallest input.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import tiny_config
from inductionlab.cli import main
from inductionlab.config import InterventionConfig, ModelConfig, Seeds, TrainConfig, to_yaml, validate
from inductionlab.errors import ConfigError
from inductionlab.experiments import EXPERIMENTS
from inductionlab.tasks.configs import BigramConfig, MarkovConfig
from inductionlab.train import train

SECTIONS = {"data": BigramConfig, "model": ModelConfig, "train": TrainConfig, "seeds": Seeds}
FIELDS = [f"{section}.{name}" for section, model in SECTIONS.items() for name in model.model_fields]
FIELDS += [f"data.{name}" for name in MarkovConfig.model_fields if name not in BigramConfig.model_fields]
FIELDS += ["name", "description", "interventions"]
INTERVENTION_FIELDS = list(InterventionConfig.model_fields)
# what keeps a run that is valid small enough to finish in a moment (generated values come before them)
CAPS = ["--set", "train.steps=2", "--set", "train.eval_every=1", "--max-memory", "16MB", "--quiet"]
# The same examples on every run (CI must not turn red at random); HYPOTHESIS_PROFILE=explore draws new ones
EXPLORE = os.environ.get("HYPOTHESIS_PROFILE") == "explore"
SETTINGS = settings(max_examples=300 if EXPLORE else 60, deadline=None, derandomize=not EXPLORE,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 40), st.sampled_from([0, 2**31, 2**63, 10**30, -(2**70)]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["ape", "rpe", "rope", "none", "bias", "transformer", "amt", "icl-mc", "random", "fixed",
                     "adamw", "sgd", "mlp", "linear", "dirichlet", "clamp", "freeze", "blocks.0.attn.hook_pattern",
                     "wk2", "previous-token", "uniform", "stationary", "all", "in-context"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=8) | st.sampled_from(INTERVENTION_FIELDS), inner, max_size=4),
                      max_leaves=8)


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """Exit code and stderr of ``inductionlab ARGV`` in this process; an escaping exception fails the test."""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    err = capsys.readouterr().err
    return code, err


def assert_clean(code: int, err: str) -> None:
    """It ran (exit 0), or it stopped with exit 2 and exactly one line (no traceback)."""
    assert "Traceback" not in err
    if code != 0:
        assert code == 2, err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), err


@pytest.fixture(autouse=True)
def _work_in_tmp(tmp_path, monkeypatch):
    """Generated arguments may name relative folders (``--out --out``): they land here, not in the checkout."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(to_yaml(tiny_config(train={"steps": 2, "eval_every": 1})))
    return path


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run") / "run"
    train(tiny_config(train={"steps": 4, "eval_every": 2, "checkpoint_every": 2}), run, progress=False)
    return run


def _fresh(tmp_path: Path) -> Path:
    return tmp_path / uuid.uuid4().hex[:12]


# ------------------------------------------------------------------------------ config fields, in the library


@SETTINGS
@given(field=st.sampled_from(FIELDS), value=values)
def test_every_config_field_validates_or_names_the_problem(field, value):
    raw = yaml.safe_load(to_yaml(tiny_config()))
    *sections, name = field.split(".")
    node = raw
    for section in sections:
        node = node.setdefault(section, {})
    node[name] = value
    try:
        validate(raw)
    except ConfigError as err:
        message = str(err)
        assert "\n" not in message and message.startswith("config: ")


@SETTINGS
@given(field=st.sampled_from(INTERVENTION_FIELDS), value=values)
def test_every_intervention_field_validates_or_names_the_problem(field, value):
    spec = {"target": "blocks.0.attn.hook_pattern", "op": "clamp", "pattern": "previous-token", field: value}
    try:
        validate({**yaml.safe_load(to_yaml(tiny_config())), "interventions": [spec]})
    except ConfigError as err:
        assert "\n" not in str(err) and ("interventions" in str(err) or field in str(err)), str(err)


# ------------------------------------------------------------------------------ the CLI: train


@SETTINGS
@given(sets=st.lists(st.tuples(st.sampled_from(FIELDS) | st.text(max_size=10), values), min_size=1, max_size=3))
def test_train_with_any_set_runs_or_says_one_line(sets, tiny_file, tmp_path, capsys):
    argv = ["train", str(tiny_file), "--out", str(_fresh(tmp_path))]
    for key, value in sets:
        argv += ["--set", f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...')}"]
    assert_clean(*run_cli(argv + CAPS, capsys))


@SETTINGS
@given(text=st.text(max_size=40))
def test_any_set_text_runs_or_says_one_line(text, tiny_file, tmp_path, capsys):
    assert_clean(*run_cli(["train", str(tiny_file), "--out", str(_fresh(tmp_path)), "--set", text] + CAPS, capsys))


# ------------------------------------------------------------------------------ config and grid files

deep = st.integers(1, 3000).map(lambda n: "model: " + "[" * n + "]" * n + "\n")


@pytest.mark.slow  # trains or validates whole grids for many examples
@SETTINGS
@given(content=st.binary(max_size=200) | deep.map(str.encode)
       | st.dictionaries(st.sampled_from([*SECTIONS, "name", "interventions"]) | st.text(max_size=6),
                         values, max_size=4).map(lambda d: yaml.safe_dump(d).encode()))
def test_any_config_file_runs_or_says_one_line(content, tmp_path, capsys):
    path = _fresh(tmp_path).with_suffix(".yaml")
    path.write_bytes(content)
    assert_clean(*run_cli(["train", str(path), "--out", str(_fresh(tmp_path))] + CAPS, capsys))


@pytest.mark.slow  # trains or validates whole grids for many examples
@SETTINGS
@given(content=st.binary(max_size=200) | deep.map(str.encode)
       | st.dictionaries(st.sampled_from(["name", "base", "set", "grid", "seeds"]) | st.text(max_size=6),
                         values, max_size=5).map(lambda d: yaml.safe_dump(d).encode()))
def test_any_grid_file_says_one_line(content, tmp_path, capsys):
    path = _fresh(tmp_path).with_suffix(".yaml")
    path.write_bytes(content)
    assert_clean(*run_cli(["sweep", str(path), "--out", str(_fresh(tmp_path)), "--quiet"], capsys))


# ------------------------------------------------------------------------------ every verb's arguments

words = st.text(max_size=12) | st.integers(-5, 50).map(str) | st.sampled_from(
    ["--preset", "--out", "--workers", "--backend", "--address", "--name", "--seed", "--prompts", "--pairs",
     "--seq-len", "--threshold", "--label", "--device", "--set", "--steps", "quick", "paper", "smoke", "ray",
     "local", "cpu", "cuda", "-1", "0", "nan", "x=y"])
unknown_experiment = st.text(max_size=12).filter(lambda s: s not in EXPERIMENTS and not s.startswith("-"))


@SETTINGS
@given(verb=st.sampled_from(["experiment", "reproduce"]), name=unknown_experiment, args=st.lists(words, max_size=5))
def test_experiment_verbs_with_any_arguments_say_one_line(verb, name, args, tmp_path, capsys):
    # a name that is no experiment, so that nothing long trains; every other argument is free
    assert_clean(*run_cli([verb, name, *args, "--out", str(_fresh(tmp_path)), "--quiet"], capsys))


@SETTINGS
@given(verb=st.sampled_from(["probe", "trajectory", "patch"]), use_run=st.booleans(), args=st.lists(words, max_size=5))
def test_run_verbs_with_any_arguments_run_or_say_one_line(verb, use_run, args, finished_run, tmp_path, capsys):
    target = str(finished_run) if use_run else str(tmp_path / "nothing-here")
    out = ["--out", str(_fresh(tmp_path))] if verb != "probe" else []
    assert_clean(*run_cli([verb, target, *args, *out], capsys))


@SETTINGS
@given(args=st.lists(words.filter(lambda w: w not in ("--steps",)), max_size=4),
       steps=st.integers(-5, 0).map(str) | st.text(max_size=5).filter(lambda s: not s.strip().isdigit()))
def test_bench_and_other_verbs_refuse_bad_arguments_in_one_line(args, steps, capsys):
    # a valid bench takes seconds; an invalid --steps is refused before anything runs
    assert_clean(*run_cli(["bench", "--steps", steps, *args], capsys))
    assert_clean(*run_cli(["presets", *args], capsys))


# ------------------------------------------------------------------------------ run directories


@pytest.mark.slow  # draws figures for every example
@settings(SETTINGS, max_examples=30)
@given(data=st.data())
def test_a_run_directory_with_missing_truncated_or_foreign_files(data, finished_run, tmp_path, capsys):
    run = _fresh(tmp_path)
    shutil.copytree(finished_run, run)
    files = sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file())
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(["delete", "truncate", "garble", "foreign"]))
        if op == "foreign":
            name = data.draw(st.sampled_from(["checkpoints/step_00000099.json", "checkpoints/step_abc.json",
                                              "checkpoints/step_00000099.safetensors", "summary.json", "config.yaml",
                                              "metrics.jsonl", "checkpoints", "notes.txt"]))
            target = run / name
            if target.is_dir():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data.draw(st.binary(max_size=64) | st.sampled_from(
                [b"{}", b"[1, 2]", b'{"step": 99}', b"step: 3\n", b"NaN", b'{"step": "x"}\n'])))
            continue
        path = run / data.draw(st.sampled_from(files))
        if not path.exists():
            continue
        if op == "delete":
            path.unlink()
        elif op == "truncate":
            size = path.stat().st_size
            path.write_bytes(path.read_bytes()[:data.draw(st.integers(0, max(0, size - 1)))])
        else:
            raw = bytearray(path.read_bytes())
            if raw:
                at = data.draw(st.integers(0, len(raw) - 1))
                raw[at] = (raw[at] + data.draw(st.integers(1, 255))) % 256
                path.write_bytes(bytes(raw))
    config = run.parent / f"{run.name}.yaml"
    config.write_text(to_yaml(tiny_config(train={"steps": 4, "eval_every": 2, "checkpoint_every": 2})))
    assert_clean(*run_cli(["probe", str(run)], capsys))
    assert_clean(*run_cli(["trajectory", str(run), "--out", str(_fresh(tmp_path))], capsys))
    assert_clean(*run_cli(["train", str(config), "--out", str(run), "--quiet"], capsys))
