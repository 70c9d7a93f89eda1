"""The claims of birth from handmade results: statistics and nulls by hand (docs/science.md §7)."""

import math

import pytest
import torch

from inductionlab.config import load_config
from inductionlab.errors import RunDirError
from inductionlab.experiments.birth.all_targets import progress_step, summarise_all_targets, unigram_loss
from inductionlab.experiments.birth.order import classify, order_distribution, order_statistic
from inductionlab.experiments.birth.run import claims
from inductionlab.experiments.birth.topdown import summarise_top_down
from inductionlab.experiments.kit.curves import milestone
from inductionlab.tasks.bigram_task import make_sampler


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


def _top_down_rows(wo, wk2, wk1, steps=100):
    """Probe rows at every step and evaluations every 10 steps, where each memory's argmax probe and functional
    measurement jump from 0.2 to 1 at its step (None: never)."""
    def level(at, s):
        return 1.0 if at is not None and s >= at else 0.2
    rows = []
    for s in range(steps + 1):
        row = {"step": s, "wo": level(wo, s), "wk2_triggers": level(wk2, s), "wk1_all": level(wk1, s),
               "wk1_all_64": level(wk1, s)}
        if s % 10 == 0:
            row |= {**_eval_row(s, 0.99, 2.0), "wo": row["wo"], "fn_wo": level(wo, s), "fn_wk2": level(wk2, s),
                    "fn_wk1": level(wk1, s)}
        rows.append(row)
    return rows


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


def test_order_distribution_counts_each_of_the_six_orders():
    ms = {"0": {"a": 1, "b": 2, "c": 3}, "1": {"a": 2, "b": 1, "c": 3}, "2": {"a": 3, "b": 2, "c": 1},
          "3": {"a": 1, "b": 1, "c": 3}, "4": {"a": 1, "b": None, "c": 3}}
    out = order_distribution(ms, ("a", "b", "c"))
    assert len(out) == 8 and sum(out.values()) == 5
    counts = (out["a < b < c"], out["b < a < c"], out["c < b < a"], out["tied"], out["not all reached"])
    assert counts == (1, 1, 1, 1, 1)


def test_unigram_loss_is_the_frequency_entropy_above_the_bigram_one():
    cfg = load_config("birth-quick")
    source = make_sampler(cfg, torch.device("cpu"))[0]
    pi, bigram = source.unigram.double(), source.bigram.double()
    conditional = -(pi[:, None] * bigram * bigram.clamp_min(1e-300).log()).sum().item()  # H(Y | X), the bigram's
    assert conditional < unigram_loss(cfg) < math.log(cfg.data.n_tokens)


def test_progress_step_reads_each_curve_on_its_own_scale():
    loss = [{"step": s, "loss_in_context": 1.0, "loss": 3.0 - 0.01 * s} for s in range(0, 101, 10)]  # falls 3 → 2
    acc = [{"step": s, "loss_in_context": 1.0, "acc": 0.2 + 0.006 * s} for s in range(0, 101, 10)]  # rises 0.2 → 0.8
    assert progress_step(loss, "loss", 0.8, falling=True) == pytest.approx(80)
    assert progress_step(acc, "acc", 0.5, falling=False) == pytest.approx(50)
    flat = [{"step": s, "loss_in_context": 1.0, "acc": 0.5} for s in range(0, 101, 10)]
    assert progress_step(flat, "acc", 0.5, falling=False) is None  # no improvement: no progress to read


def test_birth_claims_from_handmade_runs():
    two, one = {}, {}
    for seed, (g, a) in enumerate(((30, 60), (20, 50), (70, 40))):  # seed 2: in-context first
        two[seed], one[seed] = _all_targets(g, a)
    all_targets = summarise_all_targets({"two-layer": two, "one-layer": one}, 2.5)
    assert all_targets["global_first_by_distance"]["0.05"]["milestones"]["0"] == {
        "global_within_optimum": 30, "in_context_above_one_layer": 60}
    # step curves: 80 % of either improvement is made at the jump, interpolated from the evaluation before it; from
    # the unigram loss 2.5 the global loss (3 → 2) has made 80 % of its way at 2.1, from step 0 at 2.2
    assert all_targets["global_first_by_progress"]["0.8"]["steps"]["0"] == {"global": 29.0, "in_context": 58.0}
    assert all_targets["global_first_from_step_0"]["0.8"]["steps"]["0"] == {"global": 28.0, "in_context": 58.0}
    arms = {"T256-random": {0: _top_down_rows(10, 20, 30), 1: _top_down_rows(10, 20, 60),
                            2: _top_down_rows(10, 20, None)},
            "T64-random": {0: _top_down_rows(20, 10, 30), 1: _top_down_rows(10, 10, 30)},
            "T64-freeze-wo2": {0: _top_down_rows(60, 80, 90), 1: _top_down_rows(60, 40, 90)},
            "T64-freeze-wk1": {0: _top_down_rows(10, 30, 90), 1: _top_down_rows(10, 60, 90)}}
    distances = {"T64-random": {"0": {"wk1": 3.0, "wk2": 4.0, "wo2": 1.0},
                                "1": {"wk1": 6.0, "wk2": 8.0, "wo2": 1.0}},
                 "T64-freeze-wo2": {"0": {"wk1": 0.3, "wk2": 0.4, "wo2": 0.0},
                                    "1": {"wk1": 0.6, "wk2": 0.8, "wo2": 0.0}}}
    top_down = summarise_top_down(arms, distances, 50)
    main = top_down["arms"]["T256-random"]["functional"]["0.5"]
    # interpolated: 0.2 → 1 over the 10 steps before the jump, so ½ at 3/8 of them
    assert main["median_step"] == pytest.approx({"fn_wo": 3.75, "fn_wk2": 13.75, "fn_wk1": 38.75})
    out = claims({"all_targets": all_targets, "top_down": top_down})
    learns, first, t256, t64, still, waits, on_time = out
    assert all(c["intervals"]["n_seeds"] >= 2 for c in out)
    assert (learns["measured"], learns["null"], learns["verdict"]) == (0.85, 0.3, "fails")  # 0.9 missed on every seed
    assert first["ratio"]["2"] > 1 and first["verdict"] != "holds"  # one seed in-context first
    assert t256["measured"] == 1.0 and t256["null"] == pytest.approx(1 / 6)
    assert t256["intervals"]["seeds_left_out"] == ["2"]  # wk1 never reached: undetermined, left out
    assert t256["verdict"] == "inconclusive"  # 2 of 2 seeds: the exact interval reaches down to 0.16
    assert t256["orders"]["fn_wo < fn_wk2 < fn_wk1"] == 2 and t256["orders"]["not all reached"] == 1
    assert set(t256["by_level"]) == {"0.3", "0.4", "0.5", "0.6", "0.7"}
    assert t256["argmax_order"]["L = T"]["fraction"] == 1.0
    assert t64["measured"] == 0.0 and t64["verdict"] == "fails"  # one other order, one tie
    assert still["ratio_per_key"]["0"] == pytest.approx({"wk1": 0.1, "wk2": 0.1})
    assert still["measured"] == pytest.approx(0.1) and still["verdict"] == "holds"  # both keys a tenth as far
    assert still["functional_at_s"]["frozen"]["0"] == {"fn_wo": 0.2, "fn_wk2": 0.2, "fn_wk1": 0.2}  # none formed by 50
    assert still["functional_at_s"]["unfrozen"]["1"] == {"fn_wo": 1.0, "fn_wk2": 1.0, "fn_wk1": 1.0}
    assert waits["delay_over_s"] == pytest.approx({"0": 1.4, "1": 0.6})  # (80 − 10) / 50, (40 − 10) / 50
    assert waits["null"] == 0.0 and waits["verdict"] != "fails"
    assert on_time["delay_over_s"] == pytest.approx({"0": 0.4, "1": 1.0})  # (30 − 10) / 50, (60 − 10) / 50
    assert on_time["verdict"] != "holds"  # seed 1 waited the whole of s
