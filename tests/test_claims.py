"""Verdicts come from the intervals over seeds (docs/science.md §7, §7.1); a null never passes its own rule."""

import json
import math

import pytest

from inductionlab.experiments.kit.claims import VERDICTS, Rule, SeedValues, claim

LEVEL = "a test's level"


def _seeds(measured, null):
    return SeedValues(dict(enumerate(measured)), dict(enumerate(null)) if isinstance(null, list) else null)


@pytest.mark.parametrize("rule, measured, null, verdict", [
    (Rule("higher", 0.5, 0.1, LEVEL), [0.80, 0.82, 0.78], [0.60, 0.61, 0.59], "holds"),
    (Rule("higher", 0.5, 0.1, LEVEL), [0.80, 0.82, 0.78], [0.75, 0.77, 0.73], "fails"),  # the margin missed
    (Rule("higher", 0.5, 0.1, LEVEL), [0.45, 0.44, 0.46], [0.20, 0.21, 0.19], "fails"),  # the level missed
    (Rule("higher", 0.5, 0.1, LEVEL), [0.9, 0.3, 0.8], [0.6, 0.2, 0.5], "inconclusive"),  # the level straddled
    (Rule("higher", 0.5, 0.1, LEVEL), [0.6, 0.6, 0.6], [0.6, 0.6, 0.6], "fails"),  # equal to the null
    (Rule("lower", 1.0, 0.25, LEVEL), [0.5, 0.55, 0.45], [2.0, 2.1, 1.9], "holds"),
    (Rule("lower", 1.0, 0.25, LEVEL), [1.5, 1.6, 1.4], [3.0, 3.1, 2.9], "fails"),
    (Rule("higher", None, 0.1), [0.3, 0.31, 0.29], [0.05, 0.06, 0.04], "holds"),
    (Rule("higher", None, 0.1), [0.2, 0.6, 0.1], [0.05, 0.1, 0.04], "inconclusive"),  # seeds disagree
    (Rule("higher", 0.5, 0.1, LEVEL), [0.9], [0.1], "inconclusive"),  # one seed has no interval
])
def test_verdict_from_the_intervals_over_seeds(rule, measured, null, verdict):
    c = claim("text", "prediction", "statistic", None, None, "a null", rule, seeds=_seeds(measured, null))
    assert c["verdict"] == verdict and c["verdict"] in VERDICTS
    assert set(c["intervals"]) >= {"measured_ci", "null_ci", "difference_ci", "n_seeds", "sensitivity"}


@pytest.mark.parametrize("rule", [Rule("higher", 0.5, 0.1, LEVEL), Rule("lower", 0.05, 0.5, LEVEL),
                                  Rule("higher", None, 0.01)])
@pytest.mark.parametrize("values", [[-1.0, 0.0, 0.03], [0.5, 0.9, 2.0], [0.9, 0.9, 0.9]])
def test_a_null_never_passes_its_own_rule(rule, values):
    c = claim("text", "prediction", "statistic", None, None, "itself", rule, seeds=_seeds(values, values))
    assert c["verdict"] == "fails"


def test_rule_needs_a_positive_margin_a_direction_and_where_its_level_comes_from():
    with pytest.raises(ValueError, match="margin"):
        Rule("higher", 0.5, 0.0, LEVEL)
    with pytest.raises(ValueError, match="better"):
        Rule("up", 0.5, 0.1, LEVEL)
    with pytest.raises(ValueError, match="level_from"):
        Rule("higher", 0.5, 0.1)
    assert "level: a test's level" in Rule("higher", 0.5, 0.1, LEVEL).text()


def test_an_unmet_condition_keeps_a_claim_from_holding():
    seeds = _seeds([0.80, 0.82, 0.78], [0.60, 0.61, 0.59])
    rule = Rule("higher", 0.5, 0.1, LEVEL)
    assert claim("t", "p", "s", 0.8, 0.6, "n", rule, ("a condition", True), seeds=seeds)["verdict"] == "holds"
    unmet = claim("t", "p", "s", 0.8, 0.6, "n", rule, ("a condition", False), seeds=seeds)
    assert unmet["verdict"] == "inconclusive" and unmet["condition_met"] is False


def test_a_claim_with_no_seed_measured_is_inconclusive_and_still_has_its_fields():
    c = claim("t", "p", "s", math.nan, 0.2, "n", Rule("higher", 0.5, 0.1, LEVEL), seeds=_seeds([math.nan], [0.2]),
              n_prompts=64, per_seed={"0": math.nan})
    text = json.dumps(c, allow_nan=False)
    back = json.loads(text)
    assert back["measured"] is None and back["verdict"] == "inconclusive" and back["per_seed"]["0"] is None
    assert back["intervals"]["measured_ci"]["estimate"] is None and back["intervals"]["seeds_left_out"] == ["0"]
    assert back["intervals"]["n_prompts"] == 64 and len(back["intervals"]["sensitivity"]) == 4


def test_the_sensitivity_row_moves_the_margin_when_a_rule_has_no_level():
    c = claim("t", "p", "s", None, None, "n", Rule("higher", None, 0.1),
              seeds=_seeds([0.2, 0.21, 0.19], [0.09, 0.1, 0.08]))
    assert list(c["intervals"]["sensitivity"]) == ["margin 0.08", "margin 0.09", "margin 0.11", "margin 0.12"]
    assert c["intervals"]["sensitivity"]["margin 0.08"] == "holds"
    assert c["intervals"]["sensitivity"]["margin 0.12"] == "fails"
