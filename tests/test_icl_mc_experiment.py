"""The icl-mc experiment's statistics on hand-made numbers (docs/science.md §7, §10)."""

import pytest

from inductionlab.experiments.icl_mc.run import claims, left_for_bayes, plan, plateau_share


def _row(step, kl_unigram, kl_bayes, kappa=0.2):
    """An evaluation row as the trainer logs it (every evaluation row holds ``loss_in_context``)."""
    return {"step": step, "loss_in_context": 1.0, "kl_unigram": kl_unigram, "kl_bayes": kl_bayes,
            "kl_unigram_to_bayes": kappa}


def test_plateau_share_counts_the_intervals_spent_near_unigram_and_far_from_bayes():
    rows = [_row(0, 0.3, 0.3), _row(10, 0.01, 0.2), _row(20, 0.02, 0.15), {"step": 25, "wo": 1.0},
            _row(30, 0.015, 0.12), _row(40, 0.2, 0.01)]
    assert plateau_share(rows, 40) == pytest.approx(20 / 40)  # (10, 20] and (20, 30]: both ends on it
    assert plateau_share([_row(0, 0.3, 0.3), _row(10, 0.01, 0.2), _row(20, 0.3, 0.05)], 20) == 0.0
    assert left_for_bayes(rows) and not left_for_bayes(rows[:3])


def _model(loss, shares=(0.2, 0.2, 0.2), prev=0.9, induction=0.8, left=True, kl_unigram=0.01):
    stats = {"loss_in_context": loss, "loss_bayes": 0.9, "loss_unigram": 1.0, "kl_unigram": kl_unigram,
             "kl_unigram_to_bayes": 0.15}
    heads = {str(s): {"trained": {"previous_token_layer1": prev, "induction_layer2": induction},
                      "untrained": {"previous_token_layer1": 0.05, "induction_layer2": 0.3}} for s in range(3)}
    jitter = {"loss_in_context": (-0.002, 0.0, 0.002)}  # the seeds differ a little in their final loss
    final = {k: {"mean": v, "per_seed": {str(s): v + d for s, d in enumerate(jitter.get(k, (0.0, 0.0, 0.0)))}}
             for k, v in stats.items()}
    return {"final": final,
            "plateau_share": {str(s): v for s, v in enumerate(shares)},
            "left_for_bayes": {str(s): left for s in range(len(shares))}, "heads": heads}


def test_claims_hold_on_the_predicted_pattern_and_fail_without_it():
    one_layer = _model(0.99, shares=(1.0, 1.0, 1.0), left=False)
    good = {"models": {"n2-two-layer": _model(0.91), "n2-one-layer": one_layer}}
    assert [c["verdict"] for c in claims(good)] == ["holds"] * 4
    intervals = [c.get("intervals", {}).get("interval_verdict") for c in claims(good)]
    assert intervals == ["holds", "holds", "inconclusive", None]  # 3 of 3 seeds cannot show a rate ≥ 2/3
    flat = {"models": {"n2-two-layer": _model(0.99, shares=(1.0, 1.0, 1.0), left=False, prev=0.05, induction=0.3),
                       "n2-one-layer": one_layer}}
    assert [c["verdict"] for c in claims(flat)] == ["fails"] * 4  # sitting on the plateau is not passing it
    # 0 of 3 seeds: the exact interval [0, 0.71] still reaches the 2/3 level, so that one is open
    assert [c.get("intervals", {}).get("interval_verdict") for c in claims(flat)] == ["fails", "fails", "inconclusive",
                                                                                     None]
    one_seed = {"models": {"n2-two-layer": _model(0.91, shares=(0.2, 0, 0)), "n2-one-layer": one_layer}}
    assert claims(one_seed)[2]["verdict"] == "partly"  # a third of the seeds: above the null, below the level
    untrained_control = {"models": {"n2-two-layer": _model(0.91), "n2-one-layer": _model(1.09, kl_unigram=0.12)}}
    assert claims(untrained_control)[1]["verdict"] == "partly"  # high loss, but it never learnt the unigram
    both_previous = {"models": {"n2-two-layer": _model(0.91, induction=0.46), "n2-one-layer": one_layer}}
    assert claims(both_previous)[3]["verdict"] == "fails"  # layer 2 barely above its step-0 score


def test_plan_two_depths_three_seeds_at_quick_and_order_three_at_paper():
    quick = [dict(s.params) for s in plan("quick")]
    assert sorted({(p["depth"], p["seed"]) for p in quick}) == sorted(
        (d, s) for d in ("one-layer", "two-layer") for s in (0, 1, 2))
    assert any(dict(s.params)["order"] == 3 for s in plan("paper"))
