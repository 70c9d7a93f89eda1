"""The interventions experiment's statistics on hand-made milestones (docs/science.md §7, §7.1, §8): censoring,
interpolated crossings, per-seed pairing, and every claim's verdict moving with what it measures."""

import statistics

import pytest

from inductionlab.experiments.interventions.claims import checks, claims, delays, milestone_ratios
from inductionlab.experiments.interventions.run import plan
from inductionlab.experiments.kit.curves import censored_median, interpolated_milestone

NONE_MS = [160, 150, 170, 160, 140]


def _per_seed(values):
    return {str(i): v for i, v in enumerate(values)}


def _arm(acc, wo=None, final=0.9, start=0.0):
    """An arm as :func:`~inductionlab.experiments.interventions.run.summarise` writes it: per-seed milestones
    (None: never reached), values at step 0 and final accuracies (one number or one per seed)."""
    wo = wo or acc
    ms = {str(i): {"acc_in_context": a, "wo": wo[i]} for i, a in enumerate(acc)}
    finals = final if isinstance(final, list) else [final + 0.002 * (i - 2) for i in range(len(acc))]
    return {"milestones": ms, "at_step_0": {k: _per_seed([start] * len(acc)) for k in ("acc_in_context", "wo")},
            "median": {k: censored_median([m[k] for m in ms.values()]) for k in ("acc_in_context", "wo")},
            "final": {"acc_in_context": {"mean": statistics.fmean(finals), "per_seed": _per_seed(finals)}},
            "steps": 240}


def _results(removed=(0.24, 0.22, 0.25, 0.23, 0.24), mean_removed=None, **arms):
    base = {"none": _arm(NONE_MS, wo=[120, 115, 130, 120, 105], final=0.98),
            "clamp-previous-token": _arm([85, 80, 88, 78, 76], wo=[58, 53, 59, 51, 52], final=0.99),
            "freeze-wk2": _arm([208, 199, 222, 212, 189], final=0.96),
            "ablate-layer1": _arm([None] * 5, final=[0.23, 0.24, 0.25, 0.24, 0.23]),
            "one-layer": _arm([None] * 5, final=[0.22, 0.23, 0.24, 0.25, 0.23]),
            "clamp-induction": _arm([40, 39, 41, 38, 38], wo=[20, 18, 17, 19, 24], final=1.0)}
    base.update(arms)
    mean_removed = removed if mean_removed is None else mean_removed
    return {"arms": base, "freeze_until": 50,
            "none_ablated_at_evaluation": {"zero-ablate": {"per_seed": _per_seed(list(removed))},
                                           "mean-ablate": {"per_seed": _per_seed(list(mean_removed))}}}


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


def test_every_claim_holds_on_the_predicted_pattern_and_every_statistic_is_per_seed():
    out = claims(_results())
    assert [c["verdict"] for c in out] == ["holds"] * 5
    assert all(c["intervals"]["n_seeds"] == 5 and c["level_from"] for c in out)
    assert out[0]["ratio"]["0"] == pytest.approx(85 / 160)  # paired on the seed, not a ratio of medians
    assert out[1]["delays"]["4"] == pytest.approx(49)
    assert checks(_results())[0]["passed"]


def test_no_effect_fails_every_claim():
    same = _results(removed=(0.98, 0.97, 0.98, 0.99, 0.98),
                    **{"clamp-previous-token": _arm([161, 149, 172, 158, 141]),
                       "freeze-wk2": _arm([162, 149, 171, 161, 139]),
                       "clamp-induction": _arm([160] * 5, wo=[121, 114, 131, 119, 106])})
    assert _verdicts(same) == ["fails"] * 5


def test_censored_undetermined_and_at_start_seeds():
    one_late = milestone_ratios(_arm([85, 80, 88, 78, None]), _arm(NONE_MS), "acc_in_context")
    assert one_late["censored"] == ["4"] and one_late["ratio"]["4"] == pytest.approx(240 / 140)  # at least this
    assert _verdicts(_results(**{"clamp-previous-token": _arm([85, 80, 88, 78, None])}))[0] != "holds"
    neither = milestone_ratios(_arm([None] * 5), _arm([None] * 5), "acc_in_context")
    assert set(neither["left_out"]) == {"0", "1", "2", "3", "4"}
    at_start = claims(_results(**{"clamp-induction": _arm([0] * 5, wo=[0] * 5, start=0.95)}))[-1]
    assert at_start["verdict"] == "inconclusive"  # a clamp that satisfies the measure at step 0 proves nothing
    assert at_start["intervals"]["seeds_left_out"] == ["0", "1", "2", "3", "4"]
    unfrozen_censored = delays(_arm([208, 199, 222, 212, 189]), _arm([160, 150, 170, 160, None]), 50)
    assert unfrozen_censored["censored"] == ["4"] and unfrozen_censored["delays"]["4"] == pytest.approx(189 - 240)


def test_the_delay_binds_both_ways():
    doubled = _results(**{"freeze-wk2": _arm([260, 250, 270, 260, 240])})  # delay 100 for s = 50
    assert _verdicts(doubled)[1] == "fails"
    spread = _results(**{"freeze-wk2": _arm([185, 210, 215, 170, 190])})  # delays 25 to 60: the mean is near s
    assert _verdicts(spread)[1] == "inconclusive"


def test_removal_at_evaluation_is_an_equivalence_on_both_sides():
    below = _results(removed=(0.02, 0.03, 0.01, 0.02, 0.03))  # far below one layer: not the one-layer model
    assert _verdicts(below)[2] == "fails"
    halfway = _results(mean_removed=(0.6, 0.55, 0.62, 0.58, 0.6))
    assert _verdicts(halfway)[2:4] == ["holds", "fails"]  # zero ablation equivalent, mean ablation not
    noisy = _results(removed=(0.30, 0.22, 0.17, 0.29, 0.24))  # within 0.05 on average, not surely
    assert _verdicts(noisy)[2] == "inconclusive"


def test_the_ablated_arm_is_checked_against_the_one_layer_model():
    off = _results(**{"ablate-layer1": _arm([None] * 5, final=[0.23, 0.24, 0.35, 0.24, 0.23])})
    assert not checks(off)[0]["passed"] and checks(off)[0]["value"] == pytest.approx(0.11)


def test_plan_has_five_seeds_per_arm_and_the_same_seeds_everywhere():
    by_arm: dict[str, set] = {}
    for spec in plan("quick"):
        p = dict(spec.params)
        by_arm.setdefault(p["arm"], set()).add(p["seed"])
    assert len(by_arm) == 6 and all(seeds == by_arm["none"] and len(seeds) >= 5 for seeds in by_arm.values())
