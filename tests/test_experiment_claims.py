"""The claims of birth from handmade results: statistics and nulls by hand (docs/science.md §7)."""

import pytest

from inductionlab.errors import RunDirError
from inductionlab.experiments.birth.run import (
    claims,
    classify,
    order_statistic,
    summarise_all_targets,
    summarise_top_down,
)
from inductionlab.experiments.kit.curves import milestone


def stat(v):
    return {"mean": v, "std": 0.0, "min": v, "max": v, "seeds": 1}


def _eval_row(step, acc, loss_global, optimum=2.0):
    return {"step": step, "loss_all": 1.0, "loss_in_context": 1.0, "acc_in_context": acc, "loss_global": loss_global,
            "loss_global_bigram_optimum": optimum, "degenerate_in_context_share": 0.2, "wo": 0.0, "wk2": 0.0,
            "wk1": 0.0}


def _all_targets(global_at: int, acc_at: int, one_layer_final=0.3):
    """Two-layer rows whose global loss reaches the optimum at ``global_at`` and whose accuracy jumps at
    ``acc_at``; one-layer rows ending at ``one_layer_final``."""
    two = [_eval_row(s, 0.85 if s >= acc_at else 0.1, 2.0 if s >= global_at else 3.0) for s in range(0, 101, 10)]
    one = [_eval_row(s, one_layer_final, 2.2) for s in range(0, 101, 10)]
    return two, one


def _probe_rows(wo, wk2, wk1, steps=100):
    """Probe-only rows (as with train.probe_every) where each memory jumps to 1 at its step (None: never)."""
    def level(at, s):
        return 1.0 if at is not None and s >= at else 0.5
    return [{"step": s, "wo": level(wo, s), "wk2": level(wk2, s), "wk1": level(wk1, s)} for s in range(steps + 1)] + [
        {**_eval_row(steps, 0.99, 2.0), "wo": level(wo, steps), "wk2": level(wk2, steps), "wk1": level(wk1, steps)}]


@pytest.mark.parametrize("ms, kind", [
    ({"a": 1, "b": 2, "c": 3}, "in_order"),
    ({"a": 2, "b": 1, "c": 3}, "other_order"),
    ({"a": 1, "b": 1, "c": 3}, "tied"),
    ({"a": 1, "b": 2, "c": None}, "undetermined"),  # c may still come last
    ({"a": 1, "b": None, "c": None}, "undetermined"),
    ({"a": 2, "b": 1, "c": None}, "other_order"),  # already broken, whenever c comes
    ({"a": None, "b": 1, "c": 2}, "other_order"),  # b and c reached, a not: a cannot come first
    ({"a": 1, "b": None, "c": 3}, "other_order"),
])
def test_classify_a_seed(ms, kind):
    assert classify(ms, ("a", "b", "c")) == kind


def test_order_statistic_leaves_undetermined_seeds_out():
    ms = {"0": {"a": 1, "b": 2, "c": 3}, "1": {"a": 2, "b": 1, "c": 3}, "2": {"a": 1, "b": 1, "c": 3},
          "3": {"a": 1, "b": 2, "c": None}}
    stat = order_statistic(ms, ("a", "b", "c"))
    assert (stat["in_order"], stat["other_order"], stat["tied"], stat["undetermined"]) == (1, 1, 1, 1)
    assert stat["fraction"] == pytest.approx(1 / 3)  # of the three determined seeds
    only_undetermined = order_statistic({"0": {"a": 1, "b": None, "c": None}}, ("a", "b", "c"))
    assert only_undetermined["fraction"] is None  # no evidence either way


def test_milestone_refuses_a_metric_no_row_has():
    rows = [{"step": 0, "wo": 0.1}, {"step": 1, "wo": 0.95}]
    assert milestone(rows, "wo", 0.9) == 1
    assert milestone(rows, "wo", 0.99) is None  # never reached
    with pytest.raises(RunDirError, match="wk9"):
        milestone(rows, "wk9", 0.9)


def test_birth_claims_from_handmade_runs():
    two, one = {}, {}
    for seed, (g, a) in enumerate(((30, 60), (20, 50), (70, 40))):  # seed 2: in-context first
        two[seed], one[seed] = _all_targets(g, a)
    all_targets = summarise_all_targets({"two-layer": two, "one-layer": one})
    assert all_targets["milestones"]["0"] == {"global_within_optimum": 30, "in_context_above_one_layer": 60}
    assert set(all_targets["global_first_by_distance"]) == {"0.05", "0.1", "0.15", "0.25"}
    top_down = summarise_top_down({
        "zero": {0: _probe_rows(10, 20, 30), 1: _probe_rows(5, 20, 60), 2: _probe_rows(10, 20, None)},
        "random": {0: _probe_rows(20, 10, 30), 1: _probe_rows(10, 10, 30)},
    })
    assert top_down["zero"]["by_threshold"]["0.9"]["median_step"] == {"wo": 10, "wk2": 20, "wk1": 45}
    assert top_down["zero"]["by_threshold"]["0.9"]["range"]["wk1"] == [30, 60]
    out = claims({"all_targets": all_targets, "top_down": top_down})
    learns, first, *orders, recalled_zero, recalled_random = out
    assert len(orders) == 6  # two inits × three thresholds, the seed as the unit
    assert all(c["level_from"] and c["intervals"]["n_seeds"] >= 2 for c in out)
    assert (learns["measured"], learns["null"], learns["verdict"]) == (0.85, 0.3, "fails")  # 0.9 missed on every seed
    # two of three seeds in order: one seed out of order is enough against "on every seed"
    assert first["measured"] == pytest.approx(2 / 3) and first["verdict"] == "fails"
    zero_09 = next(c for c in orders if "zero init" in c["claim"] and c["claim"].endswith("0.9"))
    assert zero_09["measured"] == 1.0 and zero_09["null"] == pytest.approx(1 / 6)
    assert zero_09["intervals"]["seeds_left_out"] == ["2"]  # wk1 never reached: undetermined, left out
    assert zero_09["verdict"] == "inconclusive"  # 2 of 2 seeds: the exact interval reaches down to 0.16
    random_09 = next(c for c in orders if "random init" in c["claim"] and c["claim"].endswith("0.9"))
    assert random_09["measured"] == 0.0 and random_09["verdict"] == "fails"  # one other order, one tie
    # the weakest probe per seed against the same model's at step 0 (0.5 in these rows)
    assert recalled_zero["weakest"] == {"0": 1.0, "1": 1.0, "2": 0.5} and recalled_zero["null"] == pytest.approx(0.5)
    assert recalled_zero["verdict"] == "inconclusive"  # one seed of three never recalls wk1
    assert recalled_random["verdict"] == "holds"

