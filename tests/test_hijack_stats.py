"""The hijack statistics and their nulls on cases whose values are known by hand (SCIENCE §5, §7)."""

import math

import pytest
import torch

from inductionlab.experiments.hijack_analysis import crossover_summary, growth_with_length
from inductionlab.experiments.hijack_eval import count_features
from inductionlab.experiments.hijack_prompts import Setting, SettingPrompts
from inductionlab.experiments.hijack_stats import (
    best_constant,
    crossover,
    group_means,
    least_squares,
    permutation_quantile,
    r_squared,
    spearman,
    within_r_squared,
    within_slope,
)

GROUPS = torch.tensor([0, 0, 1, 1])
MEASURED = torch.tensor([1.0, 3.0, 10.0, 14.0])


def test_r_squared_of_perfect_mean_and_constant_predictions():
    assert r_squared(MEASURED, MEASURED) == 1.0
    assert r_squared(torch.full((4,), 7.0), MEASURED) == 0.0  # the overall mean
    assert math.isnan(r_squared(MEASURED, torch.ones(4)))  # nothing to explain


def test_setting_mean_oracle_pooled_and_within():
    """The oracle knows each setting's mean: pooled R² = between-setting share, within-setting R² = 0."""
    oracle = group_means(MEASURED, GROUPS)
    assert oracle.tolist() == [2.0, 2.0, 12.0, 12.0]
    # SS_tot = 36 + 16 + 9 + 49 = 110 around the mean 7; SS_res = 1 + 1 + 4 + 4 = 10
    assert r_squared(oracle, MEASURED) == pytest.approx(1 - 10 / 110)
    assert within_r_squared(oracle, MEASURED, GROUPS) == 0.0


def test_within_setting_r_squared_ignores_setting_offsets_but_not_scale():
    shifted = torch.tensor([0.0, 2.0, 20.0, 24.0])  # right inside each setting, wrong setting means
    assert within_r_squared(shifted, MEASURED, GROUPS) == pytest.approx(1.0)
    assert r_squared(shifted, MEASURED) < 0
    doubled = torch.tensor([0.0, 4.0, 8.0, 16.0])  # centred: (-2, 2, -4, 4) against (-1, 1, -2, 2)
    assert within_r_squared(doubled, MEASURED, GROUPS) == pytest.approx(1 - 10 / 10)


def test_count_features_by_hand():
    """a=0, b=1, rival=2: ``0 1 3 0 1 2 0`` holds two (a, b) pairs; b and rival counted per §4.4."""
    tokens = torch.tensor([[0, 1, 3, 0, 1, 2, 0]])
    prompts = SettingPrompts(Setting("count", 7, n=2), tokens, pair=torch.tensor([0]), a=torch.tensor([0]),
                             favoured=torch.tensor([1]), rival=torch.tensor([2]), last_pair_end=torch.tensor([4]))
    g = torch.zeros(4, 4)
    g[0, 1], g[0, 2] = -3.0, 1.5
    features = count_features(prompts, g)[0].tolist()
    # keys matching a: s with z_{s-1} = 0 (and s = 0 by the z_0 := z_1 convention): positions 0, 1, 4
    # c_b = 2 (positions 1, 4), c_rival = 0; u_b = 0, u_rival = 1 (position 5); n = 3
    assert features == pytest.approx([2.0, -1.0, 3 / 7, 5 / 7, -4.5, 1.0])


def test_count_regression_recovers_a_linear_gap():
    features = torch.randn(50, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    features[:, 2] = 1.0
    coef = least_squares(features, features @ torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64))
    assert coef.tolist() == pytest.approx([2.0, -1.0, 0.5], abs=1e-9)


def test_crossover_is_the_first_count_whose_mean_gap_is_positive():
    counts = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    assert crossover(counts, torch.tensor([-2.0, -1, -1, 0.5, 1, -0.5, 3, 3])) == 2
    assert crossover(counts, torch.full((8,), -1.0)) is None


def test_best_constant_and_crossover_errors_by_hand():
    assert best_constant([1, 1, 2, 5], range(0, 9)) == 1  # the median; ties go to the smaller
    assert best_constant([1, 2], range(0, 9)) == 1
    points = {  # two seeds, n_max = 8
        0: [{"T": 32, "pair": 0, "model": 1, "scalar": 1, "weights_only": 1, "readout": 1},
            {"T": 128, "pair": 0, "model": 3, "scalar": None, "weights_only": 3, "readout": 2},
            {"T": 512, "pair": 0, "model": None, "scalar": None, "weights_only": 4, "readout": None}],
        1: [{"T": 32, "pair": 0, "model": 2, "scalar": 1, "weights_only": 2, "readout": 2},
            {"T": 128, "pair": 0, "model": 2, "scalar": 2, "weights_only": 2, "readout": 2},
            {"T": 512, "pair": 0, "model": 6, "scalar": 6, "weights_only": 6, "readout": 6}],
    }
    summary = crossover_summary(points, n_max=8)
    s0, s1 = summary["per_seed"]["0"], summary["per_seed"]["1"]
    # seed 0: constant from seed 1's n* {2, 2, 6} = 2; errors where the model crosses: T=32 |1-1|, T=128 never → 9-3
    assert s0["constant"] == 2 and s0["mae"]["scalar"] == pytest.approx((0 + 6) / 2)
    assert s0["constant_mae"] == pytest.approx((1 + 1) / 2)
    assert s0["mae"]["weights_only"] == 0.0 and s0["mae"]["readout"] == pytest.approx(0.5)
    assert s0["model_never_crosses"] == 1  # neither crossing is set apart, not counted as agreement
    assert s0["crosses_where_model_does_not"] == {"scalar": 0, "weights_only": 1, "readout": 0}
    # seed 1: constant from seed 0's n* {1, 3} = 1 (tie → smaller)
    assert s1["constant"] == 1 and s1["mae"]["scalar"] == pytest.approx(1 / 3)
    assert s1["constant_mae"] == pytest.approx((1 + 1 + 5) / 3)
    assert summary["mae"]["scalar"]["mean"] == pytest.approx((3 + 1 / 3) / 2)


def test_spearman_and_its_permutation_null_by_hand():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert spearman(x, x ** 3) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert spearman(x, torch.tensor([1.0, 1.0, 2.0, 2.0])) == pytest.approx(2 / math.sqrt(5))  # average ranks
    # groups of one member cannot be shuffled: the null is the observed value itself
    y = torch.tensor([2.0, 1.0, 4.0, 3.0])
    assert permutation_quantile(x, y, torch.arange(4)) == pytest.approx(spearman(x, y))
    # one group of two: the shuffle gives ρ = ±1 with probability ½ each, so the 95% quantile is 1
    assert permutation_quantile(x[:2], x[:2], torch.zeros(2, dtype=torch.int64)) == pytest.approx(1.0)


def test_growth_with_length_of_a_constant_n_star_is_not_growth():
    points = {0: [{"T": t, "pair": p, "model": 2} for t in (32, 128, 512) for p in range(4)]}
    growth = growth_with_length(points, n_max=8)
    assert math.isnan(growth["spearman"])  # constant n*: no correlation to speak of
    rising = {0: [{"T": t, "pair": p, "model": i} for i, t in enumerate((32, 128, 512)) for p in range(4)]}
    growth = growth_with_length(rising, n_max=8)
    assert growth["spearman"] == pytest.approx(1.0) and growth["null_q95"] < 1.0


def test_within_slope_removes_group_intercepts():
    x = torch.tensor([0.0, 1.0, 2.0, 0.0, 1.0, 2.0])
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    y = 3 * x + torch.tensor([5.0, 5.0, 5.0, -7.0, -7.0, -7.0])
    assert within_slope(x, y, groups) == pytest.approx(3.0)
    assert within_slope(x, torch.zeros(6), groups) == 0.0  # the null slope
