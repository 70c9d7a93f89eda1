"""Sweeps: grid files, the local pool, a local Ray instance, idempotence, tables and errors."""

from __future__ import annotations

import socket

import pandas as pd
import pytest
import torch

import toy_plugin
from inductionlab.backends import check_ray_address
from inductionlab.cli import main
from inductionlab.config import to_yaml
from inductionlab.errors import ConfigError, SweepError
from inductionlab.runs import RunDir
from inductionlab.sweep import load_grid, run_sweep


@pytest.fixture
def grid_file(tmp_path, tiny):
    base = tmp_path / "tiny.yaml"
    base.write_text(to_yaml(tiny()))
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"name: g\nbase: {base}\nset: [train.steps=4]\ngrid:\n  model.n_layers: [1, 2]\nseeds: [0, 1]\n")
    return grid


def test_grid_file_is_the_product_of_axes_and_seeds(grid_file):
    specs = load_grid(grid_file)
    assert [s.name for s in specs] == ["g-n_layers=1-s0", "g-n_layers=1-s1", "g-n_layers=2-s0", "g-n_layers=2-s1"]
    cfg = specs[3].config()
    assert (cfg.model.n_layers, cfg.seeds.init, cfg.seeds.data, cfg.train.steps) == (2, 1, 101, 4)
    assert cfg.name == "g-n_layers=2-s1"


@pytest.mark.parametrize("text, expected", [
    ("name: g\nbase: birth-quick\ncolour: red\n", "colour"),
    ("name: g\nbase: birth-quick\ngrid:\n  model.pos_enc: [ape, sideways]\n", "model.pos_enc"),
    ("name: g\nbase: birth-quick\ngrid:\n  model.d_model: []\n", "grid.model.d_model"),
    ("name: g\nbase: no-such-preset\n", "no-such-preset"),
    ("[1, 2", "not valid YAML"),
])
def test_bad_grid_files_name_the_problem(tmp_path, text, expected):
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_grid(path)


def _comparable(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=["elapsed_s"]).sort_values("name").reset_index(drop=True)


@pytest.mark.slow  # spawns worker processes
def test_local_sweep_writes_tables_and_skips_finished_runs(grid_file, tmp_path):
    out = tmp_path / "out"
    table = run_sweep(load_grid(grid_file), out, workers=2, threads=1, progress=False)
    assert len(table) == 4 and table["finished"].all() and (table["step"] == 4).all()
    summary = pd.read_parquet(out / "summary.parquet")
    assert list(summary["model.n_layers"]) == [1, 2] and list(summary["n_seeds"]) == [2, 2]
    mean = table.groupby("model.n_layers")["acc_in_context"].mean()
    assert summary["acc_in_context_mean"].tolist() == pytest.approx(mean.tolist())
    assert pd.read_parquet(out / "runs.parquet").equals(table)
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/summary.json")}
    again = run_sweep(load_grid(grid_file), out, workers=2, threads=1, progress=False)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing retrained
    pd.testing.assert_frame_equal(again, table)


@pytest.mark.slow  # spawns worker processes
def test_interrupted_run_in_a_sweep_resumes(grid_file, tmp_path):
    from inductionlab.train import train

    specs = load_grid(grid_file)
    out = tmp_path / "out"
    train(specs[2].config(), out / "runs" / specs[2].folder, stop_after=2, progress=False)
    resumed = run_sweep(specs, out, workers=1, threads=1, progress=False)
    fresh = run_sweep(specs, tmp_path / "fresh", workers=1, threads=1, progress=False)
    pd.testing.assert_frame_equal(_comparable(resumed), _comparable(fresh))


@pytest.mark.slow  # spawns worker processes
def test_ray_backend_matches_the_local_backend(grid_file, tmp_path):
    """The same numbers on both backends, also for runs of a task outside the package named by its import path
    (tests/toy_plugin.py), which Ray workers and spawned local workers import themselves."""
    grid = load_grid(grid_file)
    specs = grid + toy_plugin.plan("smoke")
    local = run_sweep(specs, tmp_path / "local", backend="local", workers=2, threads=1, progress=False)
    ray = run_sweep(specs, tmp_path / "ray", backend="ray", workers=2, threads=1, progress=False)
    assert set(ray["status"]) == {"finished"}
    pd.testing.assert_frame_equal(_comparable(ray), _comparable(local))
    for spec in grid:
        assert RunDir(tmp_path / "ray" / "runs" / spec.folder).metrics()[-1]["wo"] == (
            RunDir(tmp_path / "local" / "runs" / spec.folder).metrics()[-1]["wo"])


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_ray_address_fails_fast():
    with pytest.raises(SweepError, match="no Ray cluster reachable"):
        check_ray_address(f"127.0.0.1:{_closed_port()}", timeout=2)
    with pytest.raises(SweepError, match="expected host:port"):
        check_ray_address("nowhere")


@pytest.mark.slow  # spawns worker processes
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA to make a run fail")
def test_a_failing_run_is_reported_and_the_others_finish(grid_file, tmp_path):
    specs = load_grid(grid_file)
    broken = specs[0].__class__(specs[0].name, specs[0].preset, (*specs[0].overrides, "train.device=cuda"))
    with pytest.raises(SweepError, match=r"1 of 2 runs failed .*g-n_layers=1-s0: train.device"):
        run_sweep([broken, specs[1]], tmp_path / "out", workers=1, threads=1, progress=False)
    assert RunDir(tmp_path / "out" / "runs" / specs[1].folder).summary()["finished"]


@pytest.mark.parametrize("args, expected", [
    (["sweep", "missing.yaml", "--out", "x"], "missing.yaml: cannot read grid file"),
    (["reproduce", "birthday"], "unknown experiment 'birthday'; allowed: birth, hijack, length, nope3"),
    (["reproduce", "--preset", "huge"], "--preset: unknown preset 'huge'; allowed: quick, paper, smoke"),
    (["experiment", "hijack", "--preset", "huge"], "--preset: unknown preset 'huge'"),
    (["reproduce", "--backend", "slurm"], "--backend: unknown backend 'slurm'; allowed: local, ray"),
    (["reproduce", "--backend", "ray", "--address", "127.0.0.1:{port}"], "no Ray cluster reachable"),
    (["reproduce", "--out", "{file}/sub"], "cannot write there"),
])
def test_cli_bad_input_is_one_line(args, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("")
    args = [a.format(port=_closed_port(), file=tmp_path / "file") for a in args]
    if "--out" not in args and args[0] == "reproduce":
        args += ["--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.count("\n") == 1 and expected in err and "Traceback" not in err


@pytest.mark.slow  # spawns worker processes
def test_cli_sweep_writes_both_tables(grid_file, tmp_path, capsys):
    out = tmp_path / "cli"
    main(["sweep", str(grid_file), "--out", str(out), "--workers", "2", "--quiet"])
    assert capsys.readouterr().out.startswith("4 runs; tables:")
    assert len(pd.read_parquet(out / "runs.parquet")) == 4 and len(pd.read_parquet(out / "summary.parquet")) == 2
