"""The icl-mc experiment's statistics on hand-made numbers (docs/science.md §7, §7.1, §10)."""

import pytest
import torch

from inductionlab.experiments.icl_mc.claims import checks, claims
from inductionlab.experiments.icl_mc.path import straight_path
from inductionlab.experiments.icl_mc.run import left_for_bayes, plan, plateau_share
from inductionlab.tasks.markov import ICLMarkovSampler, reference_losses


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


def test_the_straight_path_follows_the_loss_curve_between_uniform_and_bayes():
    batch = ICLMarkovSampler(3, seq_len=60).sample(32, torch.Generator().manual_seed(0))
    refs = {name: r["loss"] for name, r in reference_losses(batch, 3, 1.0).items()}
    middle = (refs["uniform"] + refs["bayes"]) / 2
    rows = [{"step": 10 * i, "loss_in_context": loss} for i, loss in enumerate(
        (refs["uniform"] + 0.05, refs["uniform"], middle, refs["unigram"], refs["bayes"] + 1e-3))]
    path = straight_path(rows, batch, 3, 1.0)
    assert [r["lambda"] for r in path[:2]] == pytest.approx([0.0, 0.0], abs=1e-9)  # at or above L_uniform: λ = 0
    assert [r["loss_path"] for r in path[1:]] == pytest.approx([r["loss_in_context"] for r in rows[1:]], abs=1e-9)
    assert 0 < path[2]["lambda"] < path[4]["lambda"] <= 1
    assert path[4]["kl_bayes"] < 0.05 * path[0]["kl_bayes"]  # at the Bayes loss the mixture is near Bayes itself
    # at the unigram loss the mixture is not the unigram strategy: it is as far from it as from Bayes, or further
    assert path[3]["kl_unigram"] > 0.25 * path[3]["kl_unigram_to_bayes"] and plateau_share(path, 40) == 0.0


def _model(loss, shares=(0.2, 0.25, 0.3), prev=0.9, induction=0.8, left=True, kl_unigram=0.01,
           path_shares=(0.0, 0.0, 0.0)):
    stats = {"loss_in_context": loss, "loss_bayes": 0.9, "loss_unigram": 1.0, "kl_unigram": kl_unigram,
             "kl_unigram_to_bayes": 0.15}
    heads = {str(s): {"trained": {"previous_token_layer1": prev + d, "induction_layer2": induction - d},
                      "untrained": {"previous_token_layer1": 0.04, "induction_layer2": 0.39}}
             for s, d in enumerate((-0.01, 0.0, 0.01))}
    jitter = {"loss_in_context": (-0.002, 0.0, 0.002)}  # the seeds differ a little in their final loss
    final = {k: {"mean": v, "per_seed": {str(s): v + d for s, d in enumerate(jitter.get(k, (0.0, 0.0, 0.0)))}}
             for k, v in stats.items()}
    return {"final": final, "plateau_share": {str(s): v for s, v in enumerate(shares)},
            "left_for_bayes": {str(s): left for s in range(len(shares))}, "heads": heads,
            "straight_path": {str(s): {"plateau_share": v, "left_for_bayes": left} for s, v in enumerate(path_shares)}}


ONE_LAYER = _model(0.99, shares=(1.0, 1.0, 1.0), left=False)


def _verdicts(two, one=ONE_LAYER):
    return [c["verdict"] for c in claims({"models": {"n2-two-layer": two, "n2-one-layer": one}})]


def test_claims_hold_on_the_predicted_pattern_and_fail_without_it():
    assert _verdicts(_model(0.91)) == ["holds"] * 3
    out = claims({"models": {"n2-two-layer": _model(0.91), "n2-one-layer": ONE_LAYER}})
    assert all(c["intervals"]["n_seeds"] == 3 and c["level_from"] for c in out)
    flat = _model(0.99, shares=(1.0, 1.0, 1.0), left=False, prev=0.05, induction=0.4)
    assert _verdicts(flat) == ["fails"] * 3  # sitting on the plateau is not passing it


def test_the_plateau_is_judged_against_the_straight_path():
    # a path along the same loss curve that registers as long a plateau: the loss curve alone explains it
    assert _verdicts(_model(0.91, path_shares=(0.21, 0.24, 0.31)))[1] == "fails"
    # a plateau shorter than 5 % on one seed of three: the interval over seeds cannot tell
    assert _verdicts(_model(0.91, shares=(0.02, 0.2, 0.3)))[1] == "inconclusive"


def test_the_heads_claim_needs_both_heads():
    # layer 2 scoring what a previous-token head would (0.46): the weaker head is below 0.5
    assert _verdicts(_model(0.91, induction=0.46))[2] == "fails"
    assert _verdicts(_model(0.91, prev=0.52, induction=0.52))[2] == "inconclusive"  # 0.51–0.53 over seeds


def test_the_one_layer_control_is_a_check():
    results = {"models": {"n2-two-layer": _model(0.91), "n2-one-layer": ONE_LAYER}}
    (control,) = checks(results)
    assert control["passed"] and control["value"] == pytest.approx(0.88)
    reaches = {"models": {"n2-two-layer": _model(0.91), "n2-one-layer": _model(0.92)}}
    assert not checks(reaches)[0]["passed"]  # it would mean the model or the references are wrong


def test_plan_two_depths_three_seeds_at_quick_and_order_three_at_paper():
    quick = [dict(s.params) for s in plan("quick")]
    assert sorted({(p["depth"], p["seed"]) for p in quick}) == sorted(
        (d, s) for d in ("one-layer", "two-layer") for s in (0, 1, 2))
    assert any(dict(s.params)["order"] == 3 for s in plan("paper"))
