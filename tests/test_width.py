"""The width experiment's pieces (docs/science.md §11, §7): the ideal twin, the disagreement, convergence, claims."""

import math
from types import SimpleNamespace

import pytest
import torch

from inductionlab.experiments.hijack.run import plan as hijack_plan
from inductionlab.experiments.width.measure import disagreement, recall_margin
from inductionlab.experiments.width.report import claims
from inductionlab.experiments.width.run import PRESETS, convergence, plan
from inductionlab.theory.ideal import ideal_amt, ideal_twin
from inductionlab.theory.scalar import read_off_scalars
from inductionlab.theory.trained import recall_matrices
from inductionlab.train import shared_trajectory

N, T = 24, 32


@pytest.mark.parametrize("pos_enc", ["ape", "rpe"])
def test_the_ideal_twin_of_an_ideal_amt_stores_the_scalars_read_off_it(pos_enc):
    """Scalars read off an ideal AMT, written into a twin and read off again, come back up to the cross-talk of
    both (largest in ``α_3``, which ``W_F`` also reads at finite d); the twin has its own width and embeddings."""
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(N, N, generator=gen)
    g = g - g.mean(1, keepdim=True)
    alpha2 = 1 + torch.rand(N, generator=gen)
    alpha3 = 2 + torch.rand(N, generator=gen)
    source = ideal_amt(N, 1024, (3.0, 1.0, 1.0), g, pos_enc=pos_enc, train_len=T, max_len=T, init_seed=1,
                       alpha2_a=alpha2, alpha3_j=alpha3)
    rec = recall_matrices(source, T)
    twin = ideal_twin(rec, 512, T, init_seed=2, max_len=T)
    assert twin.d_model == 512 and not torch.equal(twin.emb[:, :8], source.emb[:, :8])
    first, second = read_off_scalars(rec, T), read_off_scalars(recall_matrices(twin, T), T)
    for key in ("alpha2_a", "alpha3_j", "g", "alpha1_t" if pos_enc == "ape" else "alpha1"):
        x, y = first[key].double().flatten(), second[key].double().flatten()
        assert abs(float(y.mean() - x.mean())) <= 0.12 * float(x.abs().mean()), key  # g: row-centred, mean 0
        if x.numel() > 1:
            assert torch.corrcoef(torch.stack((x, y)))[0, 1] > (0.6 if key == "alpha3_j" else 0.85), key


def _table(model_gaps, predictions, setting):
    return SimpleNamespace(gaps={"model": torch.tensor(model_gaps, dtype=torch.float64),
                                 **{k: torch.tensor(v, dtype=torch.float64) for k, v in predictions.items()}},
                           setting=torch.tensor(setting))


def test_disagreement_is_within_setting_and_scale_free():
    model = [1.0, 2.0, 4.0, 10.0, 11.0, 15.0]
    setting = [0, 0, 0, 1, 1, 1]
    shifted = [v + 100 * s for v, s in zip(model, setting, strict=True)]  # right up to one constant per setting
    noisy = [1.5, 2.0, 3.0, 10.0, 12.0, 14.0]
    out = disagreement(_table(model, {"weights_only": shifted, "scalar_read_off": noisy, "readout": model}, setting))
    assert out["weights_only"]["rmse"] == pytest.approx(0.0, abs=1e-12)
    assert out["weights_only"]["within_r2"] == pytest.approx(1.0)
    r2 = out["scalar_read_off"]["within_r2"]
    assert 0 < r2 < 1 and out["scalar_read_off"]["relative_rmse"] == pytest.approx(math.sqrt(1 - r2))
    tenfold = disagreement(_table([10 * v for v in model], {"weights_only": shifted, "readout": model,
                                                            "scalar_read_off": [10 * v for v in noisy]}, setting))
    assert tenfold["scalar_read_off"]["relative_rmse"] == pytest.approx(out["scalar_read_off"]["relative_rmse"])
    assert tenfold["scalar_read_off"]["rmse"] == pytest.approx(10 * out["scalar_read_off"]["rmse"])


def test_convergence_reads_the_last_fifth_of_the_evaluation_loss():
    def rows(losses):
        return [{"step": 10 * i, "loss_all": loss, "loss_in_context": loss} for i, loss in enumerate(losses)]

    flat = convergence(rows([4.0, 3.0, 2.5, 2.4, 2.3, 2.3, 2.3, 2.3, 2.3, 2.3, 2.3]), 100)
    assert flat["converged"] and flat["relative_change"] == pytest.approx(0.0, abs=1e-12)
    falling = convergence(rows([4.0, 3.6, 3.3, 3.1, 2.9, 2.8, 2.7, 2.6, 2.5, 2.45, 2.4]), 100)
    assert not falling["converged"] and falling["relative_change"] == pytest.approx(-0.1 / 2.4)
    assert not convergence(rows([4.0, 3.0]), 100)["converged"]  # no evaluation in the last fifth: not shown


def test_the_width_hijack_trains_rides_along_its_runs():
    shared = [s for s in plan("quick") if dict(s.params)["d_model"] == 128]
    hijack = {s.name: s for s in hijack_plan("quick")}
    assert len(shared) == len(PRESETS["quick"]["seeds"]) >= 3 and len(PRESETS["quick"]["widths"]) >= 4
    for spec in shared:
        seed = dict(spec.params)["seed"]
        leader = hijack[f"hijack-quick-random-rpe-s{seed}"].config()
        assert shared_trajectory(spec.config()) == shared_trajectory(leader)
        assert spec.config().train.steps <= leader.train.steps
    assert sum(d >= 65 for d in PRESETS["quick"]["widths"]) >= 3 and max(PRESETS["paper"]["widths"]) == 1024


def _results(excess_by_width, factor_by_width):
    widths = sorted(int(d) for d in excess_by_width)
    summary = {"excess": {p: excess_by_width for p in ("weights_only", "scalar_read_off")},
               "factor": {p: factor_by_width for p in ("weights_only", "scalar_read_off")}}
    return {"summary": summary, "widths": widths}


def test_claims_hold_for_a_closing_gap_and_fail_for_a_widening_one():
    seeds = ("0", "1", "2")
    closing = _results({"64": dict.fromkeys(seeds, 0.8), "128": {"0": 0.6, "1": 0.5, "2": 0.55},
                        "256": {"0": 0.3, "1": 0.35, "2": 0.2}, "512": {"0": 0.1, "1": 0.05, "2": 0.0}},
                       {"64": dict.fromkeys(seeds, 5.0), "512": {"0": 1.1, "1": 1.05, "2": 1.0}})
    verdicts = [c["verdict"] for c in claims(closing)]
    assert verdicts == ["holds"] * 4
    widening = _results({"64": dict.fromkeys(seeds, 0.1), "128": {"0": 0.3, "1": 0.35, "2": 0.2},
                         "256": {"0": 0.5, "1": 0.55, "2": 0.6}, "512": dict.fromkeys(seeds, 0.8)},
                        {"64": dict.fromkeys(seeds, 1.1), "512": {"0": 5.0, "1": 5.5, "2": 6.0}})
    assert [c["verdict"] for c in claims(widening)] == ["fails"] * 4
    # a null passes none: the same factor at both ends, no trend
    same = _results({d: {"0": 0.5, "1": 0.3, "2": 0.4} for d in ("64", "128", "256", "512")},
                    {"64": {"0": 1.5, "1": 1.4, "2": 1.6}, "512": {"0": 1.5, "1": 1.4, "2": 1.6}})
    assert "holds" not in [c["verdict"] for c in claims(same)]


def test_recall_margin_is_in_units_of_the_stored_strength():
    perfect = 3 * torch.eye(5)
    assert recall_margin(perfect, True) == pytest.approx(1.0)
    assert recall_margin(10 * perfect, False) == pytest.approx(1.0)
    m = torch.eye(3) + torch.tensor([[0.0, 0.5, 0.0], [0.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    assert recall_margin(m, True) == pytest.approx((0.5 + 1.0 - 1.0) / 3)  # rows: 1 − 0.5, 1 − 0, 1 − 2
    assert recall_margin(m, False) == pytest.approx((-1.0 + 0.5 + 1.0) / 3)  # columns: 1 − 2, 1 − 0.5, 1 − 0
