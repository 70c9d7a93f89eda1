"""Analyses that know their inputs: each ``results.json`` records a fingerprint of the runs it read and of the code,
and ``reproduce`` analyses again what no longer matches (a run retrained, inductionlab changed) or what
``--reanalyse`` names, saying why in one line.

The experiment is ``tests/toy_plugin.py``'s (two seeds of a tiny model, a second each), trained here in this process;
the end-to-end test at the bottom runs ``reproduce`` itself (spawned workers) and is marked slow.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from inductionlab.cli import main
from inductionlab.experiments import load_experiment
from inductionlab.experiments.kit import fingerprint
from inductionlab.report.format import number
from inductionlab.reproduce import analyse_all, analyse_one, inputs_of, out_of_date, reproduce
from inductionlab.runs import RunDir, RunSpec
from inductionlab.train import train

TOY = "toy_plugin:TOY"  # tests/ is on sys.path under pytest, and so in the processes it spawns
PRESET = "smoke"


def _specs():
    return load_experiment(TOY).plan(PRESET)


def _train(spec, run_dir: Path, *overrides: str) -> None:
    cfg = spec.config()
    if overrides:  # the same run trained to other weights: another init seed and learning rate
        cfg = RunSpec(spec.name, spec.preset, (*spec.overrides, *overrides), spec.params).config()
    train(cfg, run_dir, progress=False)


def retrain_to_other_weights(runs_dir: Path, spec) -> None:
    """The run of ``spec`` trained again and ending elsewhere, as under another version of the training code or on
    another device: a run of another init seed and learning rate stands in, its metrics, checkpoints and summary
    replacing the run's under the run's own config (which the sweep checks, so it is kept)."""
    scratch = runs_dir.parent / "scratch" / spec.folder
    _train(spec, scratch, "seeds.init=77", "train.lr=0.003")
    run = RunDir(runs_dir / spec.folder)
    shutil.rmtree(run.checkpoint_dir)
    shutil.copytree(scratch / run.checkpoint_dir.name, run.checkpoint_dir)
    for name in (run.metrics_path.name, run.summary_path.name):
        shutil.copy2(scratch / name, run.path / name)
    shutil.rmtree(scratch.parent)


def _final_loss_mean(runs_dir: Path) -> float:
    """The toy claim's measured value read straight from the runs: the last evaluation's in-context loss, mean
    over the two seeds."""
    finals = [RunDir(runs_dir / s.folder).summary()["loss_in_context"] for s in _specs()]
    return sum(finals) / len(finals)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory) -> Path:
    """The toy's runs trained and analysed once (in this process); each test works on a copy."""
    out = tmp_path_factory.mktemp("analysed")
    for spec in _specs():
        _train(spec, out / "runs" / spec.folder)
    analyse_one(TOY, out, PRESET)
    return out


@pytest.fixture
def out(analysed, tmp_path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(analysed, copy)
    return copy


def _stored(out: Path) -> dict:
    return json.loads((out / "toy" / "results.json").read_text())


def test_an_analysis_records_what_it_read_and_the_code_that_read_it(out):
    inputs = _stored(out)["inputs"]
    assert inputs == inputs_of(TOY, out / "runs", PRESET) and inputs["runs"] == 2
    # the toy's module lies outside the package: its file is part of the code, beside the package's
    assert inputs["source"] != fingerprint.package_source_hash()
    assert inputs["source"] == fingerprint.source_hash([Path(__file__).with_name("toy_plugin.py")])
    assert out_of_date(out, "toy", TOY, PRESET) is None


def test_unchanged_inputs_are_read_back_not_analysed_again(out, capsys):
    before = (out / "toy" / "results.json").stat().st_mtime_ns
    results = analyse_all(out, PRESET, {"toy": TOY}, workers=1, progress=True)
    assert results == {"toy": _stored(out)} and (out / "toy" / "results.json").stat().st_mtime_ns == before
    assert capsys.readouterr().err == ""  # nothing analysed, nothing to say


def test_a_run_trained_again_to_the_same_weights_leaves_the_analysis_as_it_is(out):
    spec = _specs()[1]
    shutil.rmtree(out / "runs" / spec.folder)
    _train(spec, out / "runs" / spec.folder)  # the same config: the same weights, another wall-clock time
    assert out_of_date(out, "toy", TOY, PRESET) is None


def test_a_run_trained_again_to_other_weights_makes_its_analysis_out_of_date(out):
    runs_dir, spec = out / "runs", _specs()[1]
    before = {s.folder: fingerprint.run_hash(runs_dir / s.folder) for s in _specs()}
    retrain_to_other_weights(runs_dir, spec)
    after = {s.folder: fingerprint.run_hash(runs_dir / s.folder) for s in _specs()}
    assert after[_specs()[0].folder] == before[_specs()[0].folder]
    assert all(after[spec.folder][part] != before[spec.folder][part] for part in ("summary", "metrics", "checkpoint"))
    assert out_of_date(out, "toy", TOY, PRESET) == "its runs changed since its analysis"


def test_a_change_of_the_code_makes_every_analysis_out_of_date(out, monkeypatch):
    monkeypatch.setattr(fingerprint, "package_source_hash", lambda: "another version")
    assert out_of_date(out, "toy", TOY, PRESET) == (
        "the code (inductionlab or the experiment's module) changed since its analysis")
    retrain_to_other_weights(out / "runs", _specs()[0])
    assert out_of_date(out, "toy", TOY, PRESET) == "its runs and the code changed since its analysis"


def test_a_results_json_that_records_no_inputs_or_cannot_be_read_is_out_of_date(out):
    load_experiment(TOY).analyse(out / "runs", out / "toy", PRESET)  # the analysis alone records no inputs
    assert "inputs" not in _stored(out)
    assert out_of_date(out, "toy", TOY, PRESET) == "its results.json does not record what it was computed from"
    (out / "toy" / "results.json").write_text('{"experiment": "toy", "cla')  # cut short by hand
    assert out_of_date(out, "toy", TOY, PRESET) == "its results.json is unreadable"


def test_the_fingerprint_reads_the_newest_checkpoint_by_its_stored_checksum(out):
    run = RunDir(out / "runs" / _specs()[0].folder)
    before = fingerprint.run_hash(run.path)
    newest = run.checkpoint_dir / f"step_{run.latest_step():08d}.json"
    state = json.loads(newest.read_text())
    assert len(state["sha256"]) == 64  # the checksum of its tensors, written by RunDir.save_checkpoint
    newest.write_text(json.dumps({**state, "sha256": "0" * 64}))  # another file of tensors under the same step
    after = fingerprint.run_hash(run.path)
    assert after["checkpoint"] != before["checkpoint"]
    assert (after["summary"], after["metrics"]) == (before["summary"], before["metrics"])


def test_the_package_hash_covers_its_code_and_shipped_files():
    files = {p.relative_to(fingerprint.PACKAGE_DIR).as_posix() for p in fingerprint.PACKAGE_DIR.rglob("*")
             if p.is_file() and "__pycache__" not in p.parts}
    assert {"reproduce.py", "report/template.html.j2"} <= files and any(f.startswith("presets/") for f in files)
    assert fingerprint.package_source_hash() == fingerprint.files_hash(
        fingerprint.PACKAGE_DIR / f for f in files if not f.endswith((".pyc", ".pyo")))


@pytest.mark.slow  # four reproductions, three of which spawn workers: about 35 s
def test_reproduce_analyses_again_what_changed_and_the_report_shows_the_new_numbers(tmp_path, capsys):
    out = tmp_path / "out"
    first = reproduce(out, PRESET, (TOY,), workers=2, progress=False)["experiments"]["toy"]
    capsys.readouterr()
    old = first["claims"][0]["measured"]
    assert old == pytest.approx(_final_loss_mean(out / "runs"))

    retrain_to_other_weights(out / "runs", _specs()[1])
    new = _final_loss_mean(out / "runs")
    assert number(new) != number(old)
    second = reproduce(out, PRESET, (TOY,), workers=2, progress=False)
    assert "toy: its runs changed since its analysis; analysing again" in capsys.readouterr().err
    toy = second["experiments"]["toy"]
    assert toy["claims"][0]["measured"] == pytest.approx(new) and toy["inputs"] == inputs_of(TOY, out / "runs", PRESET)
    assert _stored(out)["claims"][0]["measured"] == pytest.approx(new)
    report = json.loads((out / "results.json").read_text())["experiments"]["toy"]
    assert report["claims"][0]["measured"] == pytest.approx(new)
    html = (out / "report.html").read_text()
    assert f'<td class="num">{number(new)}</td>' in html and f'<td class="num">{number(old)}</td>' not in html

    written = (out / "toy" / "results.json").stat().st_mtime_ns
    reproduce(out, PRESET, (TOY,), workers=2, progress=False)  # nothing changed: read back
    assert "analysing again" not in capsys.readouterr().err
    assert (out / "toy" / "results.json").stat().st_mtime_ns == written

    # --reanalyse: analysed again though nothing changed
    main(["reproduce", TOY, "--preset", PRESET, "--out", str(out), "--workers", "2", "--quiet", "--reanalyse"])
    shown = capsys.readouterr()
    assert f"report: {out / 'report.html'}" in shown.out and "analysing again" not in shown.err
    assert (out / "toy" / "results.json").stat().st_mtime_ns != written
    assert _stored(out)["claims"][0]["measured"] == pytest.approx(new)
