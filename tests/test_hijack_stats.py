"""The hijack statistics and their nulls on cases whose values are known by hand (docs/science.md §5, §7, §7.1)."""

import math

import pytest
import torch

from inductionlab.experiments.hijack.analysis import crossover_summary, growth_with_length
from inductionlab.experiments.hijack.eval import count_features
from inductionlab.experiments.hijack.stats import (
    best_constant,
    crossover,
    fixed_effects_regression,
    group_means,
    least_squares,
    noise_ceiling,
    other_settings_lookup,
    permutation_quantile,
    r_squared,
    relative_slope_error,
    spearman,
    within_r_squared,
    within_slope,
)
from inductionlab.experiments.kit.curves import seed_spread
from inductionlab.prompts.query_pairs import Setting, SettingPrompts

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
        0: [{"T": 32, "pair": 0, "model": 1, "scalar": 1, "weights_only": 1, "theta_readout": 1},
            {"T": 128, "pair": 0, "model": 3, "scalar": None, "weights_only": 3, "theta_readout": 2},
            {"T": 512, "pair": 0, "model": None, "scalar": None, "weights_only": 4, "theta_readout": None}],
        1: [{"T": 32, "pair": 0, "model": 2, "scalar": 1, "weights_only": 2, "theta_readout": 2},
            {"T": 128, "pair": 0, "model": 2, "scalar": 2, "weights_only": 2, "theta_readout": 2},
            {"T": 512, "pair": 0, "model": 6, "scalar": 6, "weights_only": 6, "theta_readout": 6}],
    }
    summary = crossover_summary(points, n_max=8)
    s0, s1 = summary["per_seed"]["0"], summary["per_seed"]["1"]
    # seed 0: the constant of each T is seed 1's n* there: 2, 2, 6; errors where the model crosses:
    # T=32 |1-1| = 0, T=128 never crosses → |9-3| = 6
    assert s0["constant_by_T"] == {"32": 2, "128": 2, "512": 6}
    assert s0["mae"]["scalar"] == pytest.approx((0 + 6) / 2) and s0["constant_mae"] == pytest.approx((1 + 1) / 2)
    assert s0["mae"]["weights_only"] == 0.0 and s0["mae"]["theta_readout"] == pytest.approx(0.5)
    assert s0["model_never_crosses"] == 1  # neither crossing is set apart, not counted as agreement
    assert s0["crosses_where_model_does_not"] == {"scalar": 0, "weights_only": 1, "theta_readout": 0}
    # seed 1: seed 0 crosses at 32 (1) and 128 (3); at 512 it never does, so the constant is "never" (9)
    assert s1["constant_by_T"] == {"32": 1, "128": 3, "512": 9}
    assert s1["mae"]["scalar"] == pytest.approx(1 / 3) and s1["constant_mae"] == pytest.approx((1 + 1 + 3) / 3)
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


def _table(seed: int, gaps: torch.Tensor):
    """A hand-made prompt table: two settings × two pairs × two prompts."""
    from inductionlab.experiments.hijack.eval import PromptTable

    gen = torch.Generator().manual_seed(seed)
    p = len(gaps)
    features = torch.randn(p, 6, generator=gen, dtype=torch.float64)
    features[:, 5] = 1.0
    return PromptTable(
        setting=torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]), pair=torch.tensor([0, 0, 1, 1, 0, 0, 1, 1]),
        count=torch.zeros(p, dtype=torch.int64), seq_len=torch.full((p,), 32), inside=torch.ones(p, dtype=torch.bool),
        favoured=torch.ones(p, dtype=torch.int64), gaps={"model": gaps.double()},
        argmax={}, p_b=torch.zeros(p, dtype=torch.float64), features=features,
        copies_fraction=torch.zeros(p, dtype=torch.float64),
        attention_gap=torch.randn(p, generator=gen, dtype=torch.float64),
        terms=torch.randn(49, 2, p, generator=gen, dtype=torch.float64))


def test_pair_lookup_and_attention_regression_are_fitted_on_the_other_seeds():
    from inductionlab.experiments.hijack.analysis import add_fitted_gaps

    tables = {0: _table(0, torch.arange(8.0)), 1: _table(1, torch.tensor([1.0, 3, 5, 7, 10, 20, 30, 40]))}
    # make seed 1's gaps an exact linear function of its attention features: the regression must find it
    t1 = tables[1]
    t1.gaps["model"] = 2.0 * t1.attention_gap + 0.5 * t1.features[:, 4] - 1.0
    core = {s: torch.ones(8, dtype=torch.bool) for s in tables}
    fits = add_fitted_gaps(tables, core, family=torch.tensor([0, 0]))
    assert fits["attention_regression"]["0"]["coefficients"] == pytest.approx([2.0, 0.5, -1.0])
    assert torch.allclose(tables[0].gaps["attention_regression"],
                          2.0 * tables[0].attention_gap + 0.5 * tables[0].features[:, 4] - 1.0)
    # seed 0's lookup is seed 1's mean gap on the same (setting, pair); seed 1's is seed 0's
    expected = group_means(t1.gaps["model"], tables[1].setting * 10 + tables[1].pair)
    assert torch.allclose(tables[0].gaps["pair_lookup"], expected)
    assert tables[1].gaps["pair_lookup"].tolist() == [0.5, 0.5, 2.5, 2.5, 4.5, 4.5, 6.5, 6.5]
    # the same-seed lookup reads seed 0's own gaps: setting 0 (pairs 0.5, 2.5; mean 1.5) gets its mean plus the
    # pair's deviation in setting 1 (pairs 4.5, 6.5; mean 5.5): 1.5 ∓ 1; setting 1 gets 5.5 ∓ 1
    assert tables[0].gaps["other_settings_lookup"].tolist() == pytest.approx([0.5, 0.5, 2.5, 2.5, 4.5, 4.5, 6.5, 6.5])
    assert fits["count_fixed_effects"]["1"]["fitted_on_seeds"] == [0]
    assert fits["count_fixed_effects"]["0"]["fitted_on_seeds"] == [1]


def test_seed_spread_uses_n_minus_one():
    spread = seed_spread([1.0, 2.0, 3.0, None])
    assert spread["mean"] == 2.0 and spread["std"] == pytest.approx(1.0)  # population sd would be 0.816
    assert spread["seeds"] == 3 and seed_spread([4.0])["std"] is None
    assert seed_spread([None, math.nan])["mean"] is None


def test_other_settings_lookup_on_a_made_up_table():
    """Three settings of one family and one of another, two pairs each, one prompt per cell.

    Family 0, cell gaps (pair 0, pair 1): S0 (1, 3), S1 (10, 10), S2 (0, 4); setting means 2, 10, 2, so the
    pair deviations are (−1, 1), (0, 0), (−2, 2). S0's lookup is its mean plus the mean deviation in S1, S2:
    pair 0: 2 + (0 − 2)/2 = 1, pair 1: 2 + (0 + 2)/2 = 3. Family 1 holds one setting: the setting mean.
    """
    setting = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    pair = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    family = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])
    gaps = torch.tensor([1.0, 3.0, 10.0, 10.0, 0.0, 4.0, 7.0, 9.0])
    lookup = other_settings_lookup(gaps, setting, pair, family)
    # S1: 10 + mean of (−1, −2) and (1, 2); S2: 2 + mean of (−1, 0) and (1, 0)
    assert lookup.tolist() == pytest.approx([1.0, 3.0, 8.5, 11.5, 1.5, 2.5, 8.0, 8.0])
    # the prompts' order does not matter, and repeated prompts in a cell are averaged first
    order = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    assert other_settings_lookup(gaps[order], setting[order], pair[order], family[order]).tolist() == pytest.approx(
        lookup[order].tolist())
    twice = other_settings_lookup(gaps.repeat(2), setting.repeat(2), pair.repeat(2), family.repeat(2))
    assert twice.tolist() == pytest.approx(lookup.repeat(2).tolist())


def test_a_pair_that_behaves_alike_in_every_setting_is_found_by_the_lookup():
    """If this model's pair deviation is the same in every setting, the lookup has within-setting R² 1."""
    setting = torch.arange(4).repeat_interleave(6)
    pair = torch.arange(3).repeat(8)
    gaps = 5.0 * setting + torch.tensor([-2.0, 0.5, 1.5])[pair]
    lookup = other_settings_lookup(gaps, setting, pair, torch.zeros_like(setting))
    assert within_r_squared(lookup, gaps, setting) == pytest.approx(1.0)
    assert torch.allclose(lookup, gaps.double())


def test_fixed_effects_regression_recovers_slopes_under_setting_intercepts():
    gen = torch.Generator().manual_seed(1)
    groups = torch.arange(5).repeat_interleave(20)
    features = torch.randn(100, 2, generator=gen, dtype=torch.float64)
    features[:, 1] += 3.0 * groups  # a feature correlated with the settings: a pooled fit would be biased
    offsets = torch.tensor([4.0, -2.0, 0.0, 7.0, 1.0], dtype=torch.float64)
    target = offsets[groups] + features @ torch.tensor([1.5, -0.5], dtype=torch.float64)
    coef, intercepts = fixed_effects_regression(features, target, groups, n_groups=6)
    assert coef.tolist() == pytest.approx([1.5, -0.5], abs=1e-9)
    assert intercepts[:5].tolist() == pytest.approx(offsets.tolist(), abs=1e-9)
    assert math.isnan(float(intercepts[5]))  # a setting without prompts has no intercept


def test_noise_ceiling_of_noiseless_and_of_pure_noise_gaps():
    setting = torch.arange(2).repeat_interleave(8)
    pair = torch.arange(2).repeat_interleave(4).repeat(2)
    keep = torch.ones(16, dtype=torch.bool)
    pair_effect = torch.tensor([-1.0, 1.0])[pair] + 10.0 * setting
    exact = noise_ceiling(pair_effect, pair_effect.clone(), setting, pair, keep, keep)
    assert exact["r2"] == pytest.approx(1.0) and exact["correlation"] == pytest.approx(1.0)
    assert exact["prompts"] == 16
    # the filler alone decides the gap: a re-draw reproduces nothing of it (here exactly anti-correlated)
    noise = torch.tensor([1.0, -1.0, 2.0, -2.0]).repeat(4)
    none = noise_ceiling(noise, -noise, setting, pair, keep, keep)
    assert none["correlation"] == pytest.approx(-1.0)
    assert none["r2"] == pytest.approx(0.0)  # every cell mean of the re-draw is 0: no skill
    # a subset: a cell whose re-drawn prompts are all left out leaves its prompts out of r2
    keep_redrawn = pair != 1
    part = noise_ceiling(pair_effect, pair_effect.clone(), setting, pair, keep, keep_redrawn)
    assert part["prompts"] == 8


def test_noise_ceiling_needs_matching_rows():
    from inductionlab.errors import ShapeError

    with pytest.raises(ShapeError):
        noise_ceiling(torch.zeros(4), torch.zeros(3), torch.zeros(4), torch.zeros(4), torch.ones(4, dtype=torch.bool),
                      torch.ones(4, dtype=torch.bool))


def test_slope_error_is_relative_to_the_theory_slope():
    """Family 4: a model slope near zero must not blow the statistic up; the theory that predicts 10 misses it."""
    assert relative_slope_error(0.7, 10.9, 10.9) == pytest.approx(10.2 / 10.9)  # the theory's error
    assert relative_slope_error(0.7, 0.0, 10.9) == pytest.approx(0.7 / 10.9)  # the null slope 0: better here
    assert relative_slope_error(8.2, 8.6, 8.6) == pytest.approx(0.4 / 8.6)
    assert relative_slope_error(8.2, 0.0, 8.6) == pytest.approx(8.2 / 8.6)
    assert relative_slope_error(1.0, 0.0, 0.0) is None and relative_slope_error(math.nan, 1.0, 1.0) is None
