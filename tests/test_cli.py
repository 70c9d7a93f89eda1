"""The CLI: one-line errors with exit code 2 for every kind of bad input (issue "Core")."""

import json
import subprocess
import sys

import pytest

from inductionlab.cli import main
from inductionlab.config import to_yaml


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.mark.parametrize(
    "args,needle",
    [
        (["train", "birth-quick", "--set", "model.d_model=0"], "model.d_model"),
        (["train", "birth-quick", "--set", "data.seq_len=-5"], "data.seq_len"),
        (["train", "birth-quick", "--set", "data.n_triggers=70"], "data.n_triggers"),
        (["train", "birth-quick", "--set", "model.pos_enc=learned"], "model.pos_enc"),
        (["train", "birth-quick", "--set", "data.seq_len=600"], "max_len"),
        (["train", "no-such-preset"], "unknown preset"),
        (["train", "birth-quick", "--set", "oops"], "--set"),
        (["train", "birth-quick", "--set", "model.d_model=[1"], "--set"),
        (["train", "birth-quick", "--device", "tpu"], "--device"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, tmp_path, args, needle):
    code, out, err = run_cli(capsys, *args, *(["--out", str(tmp_path / "r")] if args[0] == "train" else []))
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_probe_errors(capsys, tmp_path, tiny):
    code, _, err = run_cli(capsys, "probe", str(tmp_path / "missing"))
    assert code == 2 and "no such run directory" in err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.yaml").write_text("data: {seq_len: -1}\n")
    code, _, err = run_cli(capsys, "probe", str(tmp_path / "bad"))
    assert code == 2 and "data.seq_len" in err
    (tmp_path / "nock").mkdir()
    (tmp_path / "nock" / "config.yaml").write_text(to_yaml(tiny()))
    code, _, err = run_cli(capsys, "probe", str(tmp_path / "nock"))
    assert code == 2 and "no checkpoint" in err


def test_train_then_probe(capsys, tmp_path, tiny):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(to_yaml(tiny()))
    main(["train", str(cfg), "--out", str(tmp_path / "run"), "--quiet", "--set", "train.steps=4"])
    assert "acc_in_context" in capsys.readouterr().out
    main(["probe", str(tmp_path / "run")])
    probes = json.loads(capsys.readouterr().out)
    assert probes["step"] == 4 and "wo" in probes and "attn2_induction" in probes


def test_presets_listed(capsys):
    main(["presets"])
    out = capsys.readouterr().out
    assert "birth-quick" in out


def test_real_entry_point_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "inductionlab.cli", "train", "birth-quick", "--set",
                           "model.n_layers=0", "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "model.n_layers" in proc.stderr


@pytest.mark.parametrize(
    "args,needle",
    [(["experiment", "telepathy"], "unknown experiment"), (["experiment", "hijack", "--preset", "huge"], "--preset")],
)
def test_experiment_bad_input(capsys, tmp_path, args, needle):
    code, _, err = run_cli(capsys, *args, "--out", str(tmp_path / "x"))
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_trajectory_and_patch_commands(capsys, tmp_path, tiny):
    cfg = tiny(data={"trigger_mode": "random"}, model={"pos_enc": "rpe", "max_rel_dist": 16},
               train={"steps": 8, "loss_on": "all", "eval_every": 4, "checkpoint_every": 4, "keep_checkpoints": 0},
               interventions=[{"target": "blocks.0.attn.hook_pattern", "op": "clamp", "pattern": "previous-token",
                               "strength": 0.5, "stop": 4}])
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(cfg))
    main(["train", str(path), "--out", str(tmp_path / "run"), "--quiet"])
    capsys.readouterr()
    main(["trajectory", str(tmp_path / "run"), "--out", str(tmp_path / "fig")])
    written = capsys.readouterr().out.split()
    assert {p.rsplit("/", 1)[-1] for p in written} == {"trajectory.png", "trajectory.svg", "attention.gif"}
    main(["patch", str(tmp_path / "run"), "--prompts", "6", "--pairs", "2", "--threshold", "0"])
    out = capsys.readouterr().out
    assert "prompts kept" in out and (tmp_path / "run" / "patching" / "patching.json").is_file()
    for args in (["trajectory", str(tmp_path / "missing")], ["patch", str(tmp_path / "missing")]):
        code, _, err = run_cli(capsys, *args)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "missing" in err
