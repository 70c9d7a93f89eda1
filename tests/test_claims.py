"""Verdicts are computed from measured, null and rule (docs/science.md §7); a null never passes its own rule."""

import json
import math

import pytest

from inductionlab.experiments.kit.claims import Rule, claim


@pytest.mark.parametrize("rule, measured, null, verdict", [
    (Rule("higher", 0.5, 0.1), 0.8, 0.6, "holds"),
    (Rule("higher", 0.5, 0.1), 0.8, 0.75, "partly"),  # beats the null, misses the margin
    (Rule("higher", 0.5, 0.1), 0.45, 0.2, "partly"),  # beats the null by far, misses the level
    (Rule("higher", 0.5, 0.1), 0.03, 0.01, "fails"),  # above the null, but misses both
    (Rule("higher", 0.5, 0.1), 0.6, 0.6, "fails"),  # equal to the null
    (Rule("higher", 0.5, 0.1), 0.9, 0.95, "fails"),
    (Rule("lower", 1.0, 0.25), 0.5, 2.0, "holds"),
    (Rule("lower", 1.0, 0.25), 0.9, 1.0, "partly"),
    (Rule("lower", 1.0, 0.25), 1.5, 3.0, "partly"),
    (Rule("lower", 1.0, 0.25), 1.3, 1.45, "fails"),
    (Rule("lower", 1.0, 0.25), 2.0, 1.0, "fails"),
    (Rule("higher", None, 0.1), 0.2, 0.05, "holds"),
    (Rule("higher", None, 0.1), 0.2, 0.15, "partly"),
    (Rule("higher", 0.5, 0.1), math.nan, 0.1, "fails"),
    (Rule("higher", 0.5, 0.1), 0.9, None, "fails"),
])
def test_verdict_from_measured_null_and_rule(rule, measured, null, verdict):
    assert rule.verdict(measured, null) == verdict


@pytest.mark.parametrize("rule", [Rule("higher", 0.5, 0.1), Rule("lower", 0.05, 0.5), Rule("higher", None, 0.01)])
@pytest.mark.parametrize("value", [-1.0, 0.0, 0.03, 0.5, 0.9, 2.0])
def test_a_null_never_passes_its_own_rule(rule, value):
    assert rule.verdict(value, value) == "fails"


def test_rule_needs_a_positive_margin_and_a_direction():
    with pytest.raises(ValueError, match="margin"):
        Rule("higher", 0.5, 0.0)
    with pytest.raises(ValueError, match="better"):
        Rule("up", 0.5, 0.1)


def test_claim_fields_are_strict_json():
    c = claim("text", "prediction", "statistic", math.nan, 0.2, "a null", Rule("higher", 0.5, 0.1), per_seed={"0": 1})
    text = json.dumps(c, allow_nan=False)
    assert json.loads(text)["measured"] is None and c["verdict"] == "fails"
    c = claim("text", "prediction", "statistic", 0.7, 0.2, "a null", Rule("higher", 0.5, 0.1))
    assert {k: c[k] for k in ("measured", "null", "null_name", "verdict")} == {
        "measured": 0.7, "null": 0.2, "null_name": "a null", "verdict": "holds"}
    assert "measured ≥ 0.5" in c["rule"] and "measured − null ≥ 0.1" in c["rule"]
