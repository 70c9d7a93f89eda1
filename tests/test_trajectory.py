"""Progress measures on one time axis and the attention animation (docs/science.md §9).

One tiny run is trained with the real trainer (every checkpoint kept); the figure, the GIF and the
errors are checked on it, the panels of measures the trainer may not log yet on synthetic rows.
"""

import json
import xml.etree.ElementTree as ET

import matplotlib.pyplot as plt
import pytest
from PIL import Image

from inductionlab.config import load_config
from inductionlab.curves import first_crossing
from inductionlab.errors import RunDirError
from inductionlab.runs import METRICS_VERSION, RunDir
from inductionlab.tools.trajectory import (
    FAMILIES,
    draw_trajectory,
    gif_names,
    load_runs,
    milestones,
    run_labels,
    series,
    trajectory,
    trajectory_figure,
)
from inductionlab.train import train

TINY = ["model.d_model=32", "train.steps=20", "train.eval_every=5", "train.checkpoint_every=5", "train.batch_size=8",
        "train.eval_batch_size=16", "data.seq_len=24", "model.max_len=32", "train.keep_checkpoints=0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny trained runs (init seeds 0 and 1), every checkpoint kept."""
    root = tmp_path_factory.mktemp("runs")
    for seed in (0, 1):
        train(load_config("birth-topdown-quick", [*TINY, f"seeds.init={seed}"]), root / f"seed{seed}", progress=False)
    return [root / "seed0", root / "seed1"]


@pytest.fixture(scope="module")
def written(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    return trajectory([runs[0]], out), out


def _titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


def test_trajectory_writes_valid_png_svg_and_gif(runs, written):
    paths, out = written
    assert paths == {"trajectory": [str(out / "trajectory.png"), str(out / "trajectory.svg")],
                     "attention": [str(out / "attention.gif")]}
    png, svg = (out / "trajectory.png").read_bytes(), out / "trajectory.svg"
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert ET.parse(svg).getroot().tag.endswith("svg")
    steps = RunDir(runs[0]).checkpoint_steps()
    assert steps == [0, 5, 10, 15, 20]  # the initialisation is checkpointed too, and drawn once
    with Image.open(out / "attention.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == len(steps)


def test_two_runs_overlay_in_one_figure(runs):
    fig = trajectory_figure(load_runs(runs), ["zero", "random"])
    try:
        assert [t.get_text() for t in fig.legends[0].get_texts()] == ["zero", "random"]
        titles = _titles(fig)
        for family in ("losses", "accuracies", "memory probes", "attention probes"):
            assert any(t.startswith(family) for t in titles), (family, titles)
        losses = next(ax for ax in fig.axes if ax.get_title().startswith("losses"))
        colours = {tuple(line.get_color()) for line in losses.get_lines() if len(line.get_xdata()) > 1}
        assert len(colours) == 2  # one colour per run
        assert fig.axes[-1].get_xlabel() == "training step"
        assert run_labels(runs, None) == ["seed0", "seed1"]  # the default labels: the folder names
    finally:
        plt.close(fig)


def _row(step, **values):
    return {"metrics_version": METRICS_VERSION, "step": step, **values}


def test_milestone_is_first_step_at_threshold():
    rows = [_row(0, acc_in_context=0.1), _row(1, wo=0.95), _row(10, acc_in_context=0.89),
            _row(20, acc_in_context=0.9), _row(25, acc_in_context=None), _row(30, acc_in_context=0.95)]
    assert first_crossing(rows, "acc_in_context", 0.9) == 20
    assert first_crossing(rows, "acc_in_context", 0.99) is None
    assert first_crossing(rows, "wk1", 0.9) is None  # never logged
    assert milestones(rows) == {"acc_in_context": 20, "wo": 1}
    assert series(rows, "acc_in_context") == ([0, 10, 20, 30], [0.1, 0.89, 0.9, 0.95])


def test_every_family_is_drawn_from_synthetic_rows(tmp_path):
    """Probe-only rows feed the memory panel; head scores, ICL score, entropy and norms get their panels."""
    rows = []
    for step in range(0, 41):
        row = _row(step, wo=step / 40, wk2=step / 50, wk1=None)
        if step % 10 == 0:
            row.update(loss_global=3 - step / 40, loss_global_bigram_optimum=2.0, acc_in_context=step / 40,
                       attn1_prev_token=0.5, head_prev_token_L0H0=0.2, head_induction_L1H10=0.3,
                       head_induction_L1H2=0.4, icl_score=-step / 40, icl_score_in_context=-step / 20,
                       attn_entropy_L0H0=1.0, attn_entropy_L1H0=0.5, norm_wk1=step / 10, norm_wo2=1.0,
                       **{"kv_shift.0.0.alpha1": 0.5 - step / 100, "kv_shift.0.0.beta2": 0.3})
        rows.append(row)
    run = tmp_path / "synthetic"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    fig = trajectory_figure(load_runs([run]), ["synthetic"])
    try:
        assert len(fig.axes) == len(FAMILIES)
        memory = next(ax for ax in fig.axes if ax.get_title().startswith("memory probes"))
        assert max(len(line.get_xdata()) for line in memory.get_lines()) == 41  # probe-only rows used
        scores = next(ax for ax in fig.axes if ax.get_title().startswith("attention probes"))
        assert [t.get_text() for t in scores.get_legend().get_texts()] == [
            "attn1_prev_token", "head_induction_L1H2", "head_induction_L1H10", "head_prev_token_L0H0"]
        memory_keys = [t.get_text() for t in memory.get_legend().get_texts()]
        assert memory_keys == ["wo", "wk2"]  # wk1 is only ever None
        names = {t.get_text() for ax in fig.axes for t in ax.texts}
        assert {"in-context acc ≥ 0.9", "wo ≥ 0.9"} <= names  # milestones annotated where they are drawn
    finally:
        plt.close(fig)


def test_gif_names_per_run():
    assert gif_names(["a/r"]) == ["attention.gif"]
    assert gif_names(["a/r", "b/s", "c/r"]) == ["attention-r.gif", "attention-s.gif", "attention-r-2.gif"]


def test_missing_or_empty_run_is_a_run_dir_error(runs, tmp_path):
    with pytest.raises(RunDirError, match="no such run directory"):
        trajectory([runs[0], tmp_path / "missing"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match="empty.*no metrics"):
        draw_trajectory([tmp_path / "empty"], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing drawn before every run was checked


def test_run_without_checkpoint_is_a_run_dir_error(runs, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.yaml", "metrics.jsonl"):
        (bare / name).write_bytes((runs[0] / name).read_bytes())
    with pytest.raises(RunDirError, match="bare: no checkpoint"):
        trajectory([bare], tmp_path / "out")
