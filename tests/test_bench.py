"""``inductionlab bench``'s steps against the machine's peak (bench_steps.py): counted FLOPs, the fraction of the
GEMM rate, the evaluation share from estimate.py's cost model, the table, and bad preset names."""

import json

import pytest
import torch

from inductionlab.bench import PAPER_SCALE, run_benchmarks
from inductionlab.bench_steps import (
    PAPER_ROW,
    count_flops,
    eval_share,
    format_table,
    fraction,
    measure_step,
    parse_presets,
    quick_presets,
    step_runner,
    steps_vs_peak,
)
from inductionlab.cli import main
from inductionlab.config import preset_names
from inductionlab.errors import ConfigError
from inductionlab.estimate import RunCost

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny steps on one thread: their time is then not at the mercy of a busy second core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def step_flops(cfg) -> int:
    step = step_runner(cfg, CPU)
    step(0)
    return count_flops(lambda: step(1))


def test_a_linear_training_step_counts_its_hand_count():
    batch, n_in, n_out = 8, 16, 4
    layer = torch.nn.Linear(n_in, n_out, bias=False)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    x = torch.randn(batch, n_in)

    def step():
        optimizer.zero_grad()
        layer(x).square().sum().backward()
        optimizer.step()

    # forward x @ Wᵀ and backward gradᵀ @ x: 2·B·n_in·n_out each (x needs no gradient; the rest is element-wise)
    assert count_flops(step) == 4 * batch * n_in * n_out


def test_the_step_flops_grow_linearly_with_the_batch(tiny):
    for model in ({"arch": "transformer"}, {"arch": "amt"}):
        flops = [step_flops(tiny(model=model, train={"batch_size": b, "loss_on": "all"})) for b in (8, 16, 32)]
        assert flops[0] > 0
        # every product is per sequence, except the AMT's folded weight products, which no batch size changes
        assert flops[2] - flops[1] == 2 * (flops[1] - flops[0])
        if model["arch"] == "transformer":
            assert flops[1] == 2 * flops[0]
        else:
            assert flops[1] < 2 * flops[0]


def test_fraction_is_the_rate_over_the_peak():
    assert fraction(30.0, 60.0) == 0.5
    assert fraction(90.0, 60.0) == 1.5  # a diagnostic, not bounded: the counter counts products only
    with pytest.raises(ValueError):
        fraction(1.0, 0.0)


def test_eval_share_reads_the_estimate_schedule(tiny):
    cfg = tiny(train={"steps": 10, "eval_every": 5, "eval_dense_until": 2, "probe_every": 1})
    # 10 steps of 1 s; evaluations at 0, 1, 2, 5, 10 (2 s each) and probe rows at 3, 4, 6, 7, 8, 9 (0.5 s each)
    assert eval_share(cfg, RunCost(step_s=1.0, eval_s=2.0, probe_s=0.5)) == pytest.approx(13 / 23)
    assert eval_share(cfg, RunCost(step_s=1.0, eval_s=0.0, probe_s=0.0)) == 0.0


def test_measure_step_reports_consistent_figures(tiny):
    row = measure_step(tiny(train={"loss_on": "all"}), CPU, steps=3, peak_gflops=50.0)
    assert round(row["gflop_per_step"] * 1e9) == step_flops(tiny(train={"loss_on": "all"}))
    assert row["median_ms"] > 0 and row["steps"] == 3
    assert row["gflops"] == pytest.approx(row["gflop_per_step"] / (row["median_ms"] / 1e3))
    assert row["fraction_of_gemm"] == pytest.approx(row["gflops"] / 50.0)


def test_steps_vs_peak_measures_a_preset_and_restores_the_threads():
    torch.set_num_threads(2)
    result = steps_vs_peak(CPU, 1, ["icl-mc-quick"], None, threads=1)
    assert torch.get_num_threads() == 2 and result["threads"] == 1
    (row,) = result["rows"]
    assert row["preset"] == "icl-mc-quick" and row["steps"] >= 20  # a quick step is timed at least 20 times
    assert result["gemm_gflops"] > 0 and row["gflop_per_step"] > 0
    assert 0 < row["eval_probe_share"] < 1  # icl-mc-quick evaluates every 10 steps
    assert result["quick_median_step_total_ms"] == row["median_ms"]


def test_the_table_names_every_preset():
    rows = [{"preset": name, "gflop_per_step": 1.25, "median_ms": 40.0, "gflops": 31.25, "fraction_of_gemm": 0.5,
             "eval_probe_share": 0.1} for name in (PAPER_ROW, *quick_presets())]
    rows[0]["eval_probe_share"] = None
    table = format_table({"threads": 1, "gemm_shape": [4096, 256, 256], "gemm_gflops": 62.5, "rows": rows,
                          "quick_median_step_total_ms": 40.0 * (len(rows) - 1)})
    lines = table.splitlines()
    for row, line in zip(rows, lines[1:], strict=False):
        assert line.split()[0] == row["preset"]
    assert "50.0%" in lines[2] and "10.0%" in lines[2] and lines[1].split()[-1] == "–"
    assert "62.5 GFLOP/s" in table and f"{40.0 * (len(rows) - 1):.1f}" in lines[-1]


def test_the_quick_presets_are_every_quick_preset_file():
    assert quick_presets() == sorted(n for n in preset_names() if n.endswith("-quick"))
    assert "birth-quick" in quick_presets() and "birth-paper" not in quick_presets()
    assert parse_presets(None) == quick_presets()
    assert parse_presets(" nope3-quick,birth-quick,nope3-quick ") == ["nope3-quick", "birth-quick"]


@pytest.mark.parametrize("names", ["birth-quick,nope", "birth-paper", ",", ""])
def test_a_bad_preset_name_is_one_line_before_anything_runs(names, capsys, monkeypatch):
    import inductionlab.bench as bench

    monkeypatch.setattr(bench, "run_benchmarks", lambda **kw: pytest.fail("measured despite a bad name"))
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--no-paper", "--presets", names])
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --presets:"), lines
    if names.strip(","):
        assert repr(names.split(",")[-1]) in lines[0] and "birth-quick" in lines[0]  # the name, and what is allowed
    with pytest.raises(ConfigError):
        run_benchmarks(device="cpu", presets=[names], paper=False)


@pytest.mark.slow
def test_bench_without_the_paper_scale_prints_the_table_and_the_json(capsys, tmp_path):
    out = tmp_path / "bench.json"
    main(["bench", "--no-paper", "--device", "cpu", "--steps", "1", "--out", str(out)])
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert json.loads(out.read_text()) == result
    assert "train_step_paper_scale" not in result and result["sampler"]["sequences_per_s"] > 0
    rows = result["steps_vs_peak"]["rows"]
    assert [r["preset"] for r in rows] == quick_presets()
    assert result["quick_median_step_total_ms"] == pytest.approx(sum(r["median_ms"] for r in rows))
    table = captured.err.splitlines()
    for name in quick_presets():
        assert any(line.split()[0] == name for line in table[1:])
    assert PAPER_SCALE["name"] not in captured.err and PAPER_ROW not in captured.err
