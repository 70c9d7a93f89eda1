"""The claims of birth, length and nope3 from handmade results: the statistics and nulls by hand (SCIENCE §7)."""

import pytest

from inductionlab.experiments.birth import claims as birth_claims
from inductionlab.experiments.birth import order_fraction
from inductionlab.experiments.length_report import claims as length_claims
from inductionlab.experiments.nope3 import claims as nope3_claims


def stat(v):
    return {"mean": v, "std": 0.0, "min": v, "max": v, "seeds": 1}


def _birth(milestones: dict[str, dict], acc2=0.99, acc1=0.45, wk1=0.95, untrained=0.02) -> dict:
    final = {"acc_in_context": stat(acc2), "wo": stat(1.0), "wk2": stat(1.0), "wk1": stat(wk1)}
    start = {m: stat(untrained) for m in ("wo", "wk2", "wk1")}
    return {"depths": {"two-layer": {"final": final, "untrained": start, "milestones": milestones},
                       "one-layer": {"final": {"acc_in_context": stat(acc1)}, "milestones": {}}}}


def _ms(wo, wk2, wk1, fell=30, rose=90):
    return {"wo": wo, "wk2": wk2, "wk1": wk1, "loss_global_fell": fell, "acc_in_context_rose": rose}


def test_order_fraction_leaves_undetermined_seeds_out():
    ms = {"0": _ms(80, 120, 700), "1": _ms(90, 50, 500), "2": _ms(60, 90, None)}
    assert order_fraction(ms, ("wo", "wk2", "wk1")) == (0.5, 2)  # seed 2 never reaches wk1: undetermined
    assert order_fraction({"0": _ms(None, 1, 2)}, ("wo", "wk2", "wk1")) == (None, 0)


@pytest.mark.parametrize("milestones, measured, verdict", [
    ({"0": _ms(80, 120, 700), "1": _ms(60, 90, 500)}, 1.0, "holds"),
    ({"0": _ms(80, 120, 700), "1": _ms(90, 90, 500)}, 0.5, "partly"),  # wo and wk2 together on seed 1
    ({"0": _ms(90, 50, None)}, None, "fails"),  # nothing determined: no evidence for the order
    ({"0": _ms(300, 90, 100)}, 0.0, "fails"),
])
def test_top_down_order_against_chance(milestones, measured, verdict):
    order = next(c for c in birth_claims(_birth(milestones)) if "top-down" in c["claim"])
    assert order["measured"] == measured and order["null"] == pytest.approx(1 / 6)
    assert order["verdict"] == verdict


def test_birth_nulls_are_the_one_layer_and_the_untrained_model():
    out = {c["claim"][:20]: c for c in birth_claims(_birth({"0": _ms(80, 120, 700, fell=100, rose=90)},
                                                           acc2=0.95, acc1=0.7, wk1=0.8))}
    learns, first, _, recalled = out.values()
    assert (learns["measured"], learns["null"], learns["verdict"]) == (0.95, 0.7, "partly")  # margin 0.25 < 0.3
    assert (first["measured"], first["null"], first["verdict"]) == (0.0, 0.5, "fails")
    assert (recalled["measured"], recalled["null"], recalled["verdict"]) == (0.8, 0.02, "partly")


def _length(acc: dict[str, tuple[float, float]]) -> dict:
    """acc: encoding → (before, beyond) at the longest length; 4 × T_train uses the same numbers."""
    encodings = {}
    for pos_enc, (before, beyond) in acc.items():
        row = {"acc_in_context_before_train_len": before, "acc_in_context_beyond_train_len": beyond}
        entry = {"acc_in_context_before_train_len": stat(before), "acc_in_context_beyond_train_len": stat(beyond),
                 "acc_in_context": stat((before + beyond) / 2), "per_seed": {"0": row}}
        encodings[pos_enc] = {"256": entry, "512": entry}
    return {"test_lengths": [32, 64, 128, 256, 512], "train_len": 64, "encodings": encodings}


def test_length_claims_compare_encodings():
    out = {c["claim"].split("`")[1]: c for c in length_claims(_length({"ape": (0.99, 0.3), "rpe": (0.98, 0.96)}))}
    assert out["ape"]["measured"] == pytest.approx(0.69) and out["ape"]["null"] == pytest.approx(0.02)
    assert out["ape"]["verdict"] == "holds"
    assert (out["rpe"]["measured"], out["rpe"]["null"], out["rpe"]["verdict"]) == (0.96, 0.3, "holds")
    # an rpe model that loses as much beyond T_train as ape is no evidence for either claim
    same = {c["claim"].split("`")[1]: c for c in length_claims(_length({"ape": (0.99, 0.3), "rpe": (0.99, 0.3)}))}
    assert same["ape"]["verdict"] == "fails" and same["rpe"]["verdict"] == "fails"


def test_nope3_claims_use_the_untrained_model():
    scores = {"previous_token": [[0.9, 0.1], [0.2, 0.0]], "induction": [[0.0, 0.1], [0.7, 0.0]]}
    untrained = {"previous_token": [[0.1, 0.1]], "induction": [[0.05, 0.0]]}
    variant = {"config": {"train_len": 64}, "final_acc_in_context_train_len": 0.95,
               "by_length": {"64": {"acc_in_context": 0.94}, "512": {"acc_in_context": 0.9}},
               "head_scores": scores, "untrained": {"acc_in_context_by_length": {"64": 0.05, "512": 0.04},
                                                     "head_scores": untrained}}
    out = nope3_claims({"variants": {"with-mlp": variant, "attention-only": variant}, "test_lengths": [64, 512]})
    assert [(c["measured"], c["null"], c["verdict"]) for c in out] == [
        (0.94, 0.05, "holds"), (0.9, 0.04, "holds"), (0.7, 0.05, "holds")]
