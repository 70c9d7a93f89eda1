"""Verdicts of the birth experiment's claims from handmade results (the real runs are in test_birth)."""

import pytest

from inductionlab.experiments.birth import claims


def _results(milestones: dict[str, dict], acc2=0.99, acc1=0.45, wk1_min=0.95) -> dict:
    stat = lambda v: {"mean": v, "std": 0.0, "min": v, "max": v, "seeds": 1}  # noqa: E731
    final = {"acc_in_context": stat(acc2), "wo": stat(1.0), "wk2": stat(1.0), "wk1": stat(wk1_min)}
    return {"depths": {"two-layer": {"final": final, "milestones": milestones},
                       "one-layer": {"final": {"acc_in_context": stat(acc1)}, "milestones": {}}}}


def _ms(wo, wk2, wk1, fell=30, rose=90):
    return {"wo": wo, "wk2": wk2, "wk1": wk1, "loss_global_fell": fell, "acc_in_context_rose": rose}


@pytest.mark.parametrize("milestones, verdict", [
    ({"0": _ms(80, 120, 700), "1": _ms(60, 90, 500)}, "holds"),
    ({"0": _ms(90, 90, 700)}, "partly"),  # wo and wk2 together
    ({"0": _ms(90, 50, None)}, "partly"),  # wk1 not formed yet: still last
    ({"0": _ms(80, 120, 700), "1": _ms(None, 90, 500)}, "fails"),
    ({"0": _ms(300, 90, 100)}, "fails"),
])
def test_top_down_order_verdict(milestones, verdict):
    order = next(c for c in claims(_results(milestones)) if "top-down" in c["claim"])
    assert order["verdict"] == verdict


def test_accuracy_gap_and_loss_order_verdicts():
    by_claim = {c["claim"][:20]: c["verdict"] for c in claims(_results({"0": _ms(80, 120, 700, fell=100, rose=90)},
                                                                       acc2=0.95, acc1=0.6, wk1_min=0.8))}
    assert list(by_claim.values()) == ["fails", "fails", "fails", "holds", "partly"]
