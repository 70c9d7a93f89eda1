"""Intervals over seeds and the three verdicts (experiments/kit/intervals.py): known values, and a simulation of
1,000 experiments with no effect and with a large one, at 3 and at 5 seeds."""

import math

import numpy as np
import pytest

from inductionlab.experiments.kit.claims import Rule
from inductionlab.experiments.kit.intervals import (
    Interval,
    binomial_p_value,
    bootstrap_interval,
    clopper_pearson,
    holm,
    interval_verdict,
    paired_differences,
    paired_p_value,
    sensitivity,
    t_interval,
)

RULE = Rule("higher", level=0.6, margin=0.1, level_from="a test level")


def test_t_interval_uses_the_sample_sd_and_n_minus_one_degrees_of_freedom():
    got = t_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t_{0.975, 2}; sd with n − 1 is 1
    assert got.estimate == pytest.approx(2.0) and got.sd == pytest.approx(1.0) and got.n == 3
    assert (got.low, got.high) == pytest.approx((2.0 - half, 2.0 + half))
    one = t_interval([0.7])
    assert (one.low, one.high, one.sd) == (None, None, None)
    with pytest.raises(ValueError):
        t_interval([1.0, float("nan")])


def test_clopper_pearson_is_exact_at_the_edges_and_known_values():
    assert clopper_pearson(5, 5).high == 1.0 and clopper_pearson(5, 5).low == pytest.approx(0.025 ** (1 / 5))
    assert clopper_pearson(0, 5).low == 0.0 and clopper_pearson(0, 5).high == pytest.approx(1 - 0.025 ** (1 / 5))
    mid = clopper_pearson(3, 5)
    assert mid.estimate == 0.6 and 0.146 < mid.low < 0.147 and 0.947 < mid.high < 0.948
    with pytest.raises(ValueError):
        clopper_pearson(6, 5)


def test_bootstrap_interval_is_reproducible_and_brackets_the_estimate():
    values = np.random.default_rng(1).normal(0.3, 0.1, 200)
    a, b = bootstrap_interval(values, seed=3), bootstrap_interval(values, seed=3)
    assert a == b and a.low < a.estimate < a.high
    assert a.high - a.low == pytest.approx(2 * 1.96 * values.std(ddof=1) / math.sqrt(200), rel=0.2)


def test_verdicts_from_the_intervals():
    sure = Interval(0.9, 0.85, 0.95, 5, 0.05)
    assert interval_verdict(RULE, sure, Interval(0.3, 0.2, 0.4, 5)) == "holds"
    assert interval_verdict(RULE, sure, Interval(0.15, 0.05, 0.25, 5)) == "inconclusive"  # straddles the margin
    assert interval_verdict(RULE, sure, Interval(0.05, 0.0, 0.09, 5)) == "fails"  # wholly below the margin
    assert interval_verdict(RULE, Interval(0.5, 0.45, 0.55, 5), Interval(0.3, 0.2, 0.4, 5)) == "fails"  # level
    assert interval_verdict(RULE, Interval(0.62, 0.55, 0.7, 5), Interval(0.3, 0.2, 0.4, 5)) == "inconclusive"
    assert interval_verdict(RULE, Interval(0.9, None, None, 1), Interval(0.3, None, None, 1)) == "inconclusive"
    lower = Rule("lower", level=0.2, margin=0.1, level_from="a test level")
    assert paired_differences([0.1, 0.15], [0.5, 0.4], "lower") == pytest.approx([0.4, 0.25])
    assert interval_verdict(lower, Interval(0.1, 0.05, 0.15, 3), Interval(0.3, 0.2, 0.4, 3)) == "holds"
    assert interval_verdict(lower, Interval(0.3, 0.25, 0.35, 3), Interval(0.3, 0.2, 0.4, 3)) == "fails"


def test_sensitivity_shows_the_verdict_at_neighbouring_levels():
    row = sensitivity(RULE, Interval(0.66, 0.62, 0.70, 5), Interval(0.3, 0.2, 0.4, 5))
    assert row == {"level 0.48": "holds", "level 0.54": "holds", "level 0.66": "inconclusive", "level 0.72": "fails"}


def test_p_values_and_holm():
    assert paired_p_value([0.3, 0.3, 0.3], 0.1) == 0.0 and paired_p_value([0.1], 0.1) is None
    assert paired_p_value([0.2, 0.3, 0.4], 0.1) == pytest.approx(0.0371, abs=1e-4)  # t = 2√3, 2 df
    assert binomial_p_value(5, 5, 0.5) == pytest.approx(1 / 32)
    assert holm([0.01, None, 0.04, 0.03]) == pytest.approx([0.03, None, 0.06, 0.06])


@pytest.mark.parametrize("seeds", [3, 5])
@pytest.mark.parametrize("effect", [0.0, 0.4])
def test_intervals_cover_the_true_effect_and_verdicts_follow_it(seeds, effect):
    """1,000 simulated experiments: per seed a null score and a measured score that beats it by ``effect`` plus
    noise (s.d. 0.05 each). The difference's interval covers the true effect at least 90 % of the time; with
    no effect the claim (level 0.5, margin 0.1) almost never holds, and at 5 seeds it fails; with a large one
    (8 noise s.d.) it holds."""
    rng = np.random.default_rng(seeds * 10 + int(effect * 10))
    rule = Rule("higher", level=0.5, margin=0.1, level_from="a test level")
    covered, verdicts = 0, {v: 0 for v in ("holds", "inconclusive", "fails")}
    for _ in range(1000):
        null = rng.normal(0.4, 0.05, seeds)
        measured = null + effect + rng.normal(0.0, 0.05, seeds)
        difference = t_interval(paired_differences(measured, null, "higher"))
        covered += difference.low <= effect <= difference.high
        verdicts[interval_verdict(rule, t_interval(measured), difference)] += 1
    assert covered >= 900
    if effect == 0.0:
        assert verdicts["holds"] <= 10
        if seeds == 5:
            assert verdicts["fails"] >= 900
    else:
        assert verdicts["holds"] >= 900 and verdicts["fails"] <= 10


def test_a_claim_with_its_seeds_carries_intervals_beside_the_verdict():
    from inductionlab.experiments.kit.claims import SeedValues, claim

    seeds = SeedValues({"0": 0.9, "1": 0.95, "2": 0.92}, {"0": 0.3, "1": 0.25, "2": None})
    c = claim("t", "p", "s", 0.923, 0.275, "n", RULE, seeds=seeds)
    got = c["intervals"]
    assert got["n_seeds"] == 2 and got["seeds_left_out"] == ["2"]  # seed 2 has no null value
    assert got["measured_ci"]["n"] == 2 and got["difference_ci"]["estimate"] == pytest.approx(0.65)
    assert c["verdict"] == got["interval_verdict"] == "inconclusive"  # two seeds: t(1) makes the interval wide
    fixed = claim("t", "p", "s", 0.3, 1.0, "slope 0", Rule("lower", 0.5, 0.25, "a test level"),
                  seeds=SeedValues({"0": 0.28, "1": 0.3, "2": 0.32}, 1.0))["intervals"]
    assert fixed["null_ci"] == {"estimate": 1.0, "low": 1.0, "high": 1.0, "sd": None, "n": 3}
    assert fixed["difference_ci"]["estimate"] == pytest.approx(0.7) and fixed["interval_verdict"] == "holds"


def test_a_fraction_of_seeds_gets_the_exact_interval_against_its_chance_rate():
    from inductionlab.experiments.kit.claims import SeedValues, uncertainty

    rule = Rule("higher", 1.0, 0.1, "a test level")
    all_five = uncertainty(rule, SeedValues({str(s): 1.0 for s in range(5)}, 1 / 6, fraction=True))
    assert all_five["measured_ci"]["low"] == pytest.approx(0.025 ** (1 / 5))
    assert all_five["difference_ci"]["low"] == pytest.approx(0.025 ** (1 / 5) - 1 / 6)
    assert all_five["interval_verdict"] == "holds"  # every seed, and the exact interval clear of chance
    assert all_five["p_value"] == pytest.approx((1 / 6) ** 5)
    four = uncertainty(rule, SeedValues({str(s): float(s > 0) for s in range(5)}, 1 / 6, fraction=True))
    assert four["interval_verdict"] == "fails"  # a level of 1 is "on every seed": one seed out of order fails it
    none = uncertainty(rule, SeedValues({str(s): 0.0 for s in range(5)}, 1 / 6, fraction=True))
    assert none["interval_verdict"] == "fails"
    coin = uncertainty(rule, SeedValues({str(s): 1.0 for s in range(3)}, 0.5, fraction=True))
    assert coin["interval_verdict"] == "inconclusive"  # three of three is not enough to beat a coin


def test_p_values_are_adjusted_across_the_report():
    from inductionlab.experiments.kit.intervals import adjust_p_values

    experiments = {"a": {"claims": [{"intervals": {"p_value": 0.01}}, {"verdict": "holds"}]},
                   "b": {"claims": [{"intervals": {"p_value": 0.04}}, {"intervals": {"p_value": None}}]}}
    adjust_p_values(experiments)
    assert experiments["a"]["claims"][0]["intervals"]["p_holm"] == pytest.approx(0.02)
    assert experiments["b"]["claims"][0]["intervals"]["p_holm"] == pytest.approx(0.04)
    assert experiments["b"]["claims"][1]["intervals"]["p_holm"] is None


def test_interval_text_says_the_intervals_the_verdict_and_the_seeds():
    from inductionlab.experiments.kit.claims import SeedValues, claim
    from inductionlab.report.format import interval_text

    c = claim("t", "p", "s", 0.923, 0.275, "n", RULE, seeds=SeedValues({"0": 0.9, "1": 0.95, "2": 0.92},
                                                                          {"0": 0.3, "1": 0.25, "2": 0.28}))
    text = interval_text(c)
    assert text.startswith(f"{c['intervals']['measured_ci']['low']:.3f} to ") and "difference " in text
    assert "(n = 3 seeds, p " in text and "; at level 0.48: " in text
    c["intervals"]["p_holm"] = 0.5
    assert text != interval_text(c) and "p (Holm) 0.500)" in interval_text(c)
    one = claim("t", "p", "s", 0.9, 0.3, "n", RULE, seeds=SeedValues({"0": 0.9}, {"0": 0.3}))
    assert interval_text(one).startswith("none (one seed); difference none (one seed) (n = 1 seeds")
    assert interval_text({"claim": "a claim without intervals"}) == "–"
    with pytest.raises(TypeError, match="seeds"):  # every claim carries its seeds
        claim("t", "p", "s", 0.9, 0.3, "n", RULE)
