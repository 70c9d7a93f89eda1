"""The interventions experiment's statistics on hand-made milestones (docs/science.md §7, §8): censoring,
interpolated crossings, and every claim's verdict moving with what it measures."""

import pytest

from inductionlab.experiments.interventions.run import claims, plan
from inductionlab.experiments.kit.curves import censored_median, interpolated_milestone


def _arm(acc, wo=None, final=0.9, start=0.0):
    ms = {str(i): {"acc_in_context": a, "wo": (wo or acc)[i]} for i, a in enumerate(acc)}
    return {"milestones": ms, "at_step_0": {"acc_in_context": start, "wo": start},
            "median": {k: censored_median([m[k] for m in ms.values()]) for k in ("acc_in_context", "wo")},
            "final": {"acc_in_context": {"mean": final}}, "steps": 240}


def _results(**arms):
    base = {"none": _arm([160, 150, 170, 160, 140], final=0.98),
            "clamp-previous-token": _arm([90, 90, 80, 90, 80], final=0.99),
            "freeze-wk2": _arm([210, 200, 220, 210, 190], final=0.96),
            "ablate-layer1": _arm([None] * 5, final=0.24), "one-layer": _arm([None] * 5, final=0.23),
            "clamp-induction": _arm([40] * 5, wo=[20] * 5, final=1.0)}
    base.update(arms)
    return {"arms": base, "freeze_until": 50, "none_ablated_at_evaluation": {"mean": 0.235}}


def _verdicts(results):
    return [c["verdict"] for c in claims(results)]


def test_crossing_is_interpolated_and_censored():
    rows = [{"step": 0, "acc": 0.1}, {"step": 10, "acc": 0.5}, {"step": 15}, {"step": 20, "acc": 0.95}]
    assert interpolated_milestone(rows, "acc", 0.9) == pytest.approx(10 + 0.4 / 0.45 * 10)
    assert interpolated_milestone(rows[:3], "acc", 0.9) is None
    assert interpolated_milestone([{"step": 0, "acc": 0.93}], "acc", 0.9) == 0.0


def test_censored_median():
    assert censored_median([1, None, None]) is None  # the median falls on a never-reached milestone
    assert censored_median([1, 2, None]) == 2 and censored_median([]) is None


def test_every_claim_holds_on_the_predicted_pattern():
    assert _verdicts(_results()) == ["holds"] * 5


def test_no_effect_fails_every_claim():
    same = _results(**{"clamp-previous-token": _arm([160, 150, 170, 160, 140]),
                       "freeze-wk2": _arm([160, 150, 170, 160, 140]),
                       "ablate-layer1": _arm([160] * 5, final=0.98),
                       "clamp-induction": _arm([160] * 5, wo=[160, 150, 170, 160, 140])})
    same["none_ablated_at_evaluation"] = {"mean": 0.98}
    assert _verdicts(same) == ["fails"] * 5


def test_censoring_and_start_conditions():
    one_late = _results(**{"clamp-previous-token": _arm([90, 90, 80, 90, None])})
    assert _verdicts(one_late)[0] == "partly"  # the median holds, one seed never reaches it
    at_start = _results(**{"clamp-induction": _arm([0] * 5, wo=[0] * 5, start=0.95)})
    assert _verdicts(at_start)[-1] == "partly"  # a clamp that satisfies the measure at step 0 proves nothing
    unfrozen_censored = _results(none=_arm([160, 150, 170, 160, None], final=0.98))
    assert claims(unfrozen_censored)[1]["measured"] is None and _verdicts(unfrozen_censored)[1] == "fails"


def test_the_delay_and_the_margin_bind():
    doubled = _results(**{"freeze-wk2": _arm([260, 250, 270, 260, 240])})  # delay 100 for s = 50
    assert _verdicts(doubled)[1] == "fails"
    near = _results(**{"freeze-wk2": _arm([195, 185, 205, 195, 175])})  # delay 35: 30 % short
    assert _verdicts(near)[1] == "holds" and claims(near)[1]["measured"] == pytest.approx(0.3)
    weak_layer1 = _results(none=_arm([160, 150, 170, 160, 140], final=0.4))  # layer 1 barely matters
    assert _verdicts(weak_layer1)[2] == "partly"


def test_plan_has_five_seeds_per_arm_and_the_same_seeds_everywhere():
    by_arm: dict[str, set] = {}
    for spec in plan("quick"):
        p = dict(spec.params)
        by_arm.setdefault(p["arm"], set()).add(p["seed"])
    assert len(by_arm) == 6 and all(seeds == by_arm["none"] and len(seeds) >= 5 for seeds in by_arm.values())
