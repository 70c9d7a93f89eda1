"""The kv-shift experiment (docs/science.md §3.3, §6, §7): shared runs, milestones, scalar ratios, claims."""

from __future__ import annotations

import pytest

from inductionlab.experiments.birth.run import plan as birth_plan
from inductionlab.experiments.icl_mc.run import plan as icl_mc_plan
from inductionlab.experiments.kv_shift.claims import checks, claims
from inductionlab.experiments.kv_shift.measure import (
    induction_head,
    milestone_ratio,
    milestone_step,
    scalar_ratio,
    summarise,
)
from inductionlab.experiments.kv_shift.run import arm_of, plan
from inductionlab.models.names import kv_shift_metric
from inductionlab.reproduce import planned_runs


def test_the_vanilla_arms_are_birth_and_icl_mc_runs_trained_once():
    mine = plan("quick")
    others = set(birth_plan("quick")) | set(icl_mc_plan("quick"))
    shared = [s for s in mine if s in others]
    assert len(shared) == 12 and {arm_of(s) for s in shared} == {
        (task, arm) for task in ("bigram", "markov") for arm in ("one-layer", "two-layer")}
    new = [s for s in mine if s not in others]
    assert len(new) == 6 and all(s.config().model.kv_shift is True and s.config().model.n_layers == 1
                                 and s.config().model.pos_enc == "none" for s in new)
    # the KV-shift arm differs from the one-layer vanilla arm only in the shift and the positions
    kv, vanilla = (next(s for s in mine if arm_of(s) == ("markov", arm)).config() for arm in ("kv-shift", "one-layer"))
    assert kv.train == vanilla.train and kv.data == vanilla.data and kv.seeds == vanilla.seeds
    together = planned_runs("quick", ("birth", "icl-mc", "kv-shift"))
    assert len(together) == len(set(birth_plan("quick")) | set(icl_mc_plan("quick"))) + 6


def _rows(task, outcomes, step=10, scalars=None):
    rows = []
    for i, value in enumerate(outcomes):
        row = {"step": i * step, "loss_in_context": 1.0}
        if task == "bigram":
            row["acc_in_context"] = value
        else:
            row |= {"loss_in_context": 1.0 + value, "loss_bayes": 1.0, "loss_unigram": 2.0}
        if scalars is not None:
            row |= {kv_shift_metric(0, 0, k): v for k, v in zip(("alpha1", "alpha2", "beta1", "beta2"), scalars[i],
                                                                 strict=True)}
        rows.append(row)
    return rows


def test_milestones_and_scalar_ratios():
    assert milestone_step("bigram", _rows("bigram", [0.1, 0.5, 0.95, 0.99])) == 20
    assert milestone_step("markov", _rows("markov", [1.0, 0.5, 0.19])) == 20
    assert milestone_step("markov", _rows("markov", [1.0, 0.5, 0.21])) is None
    assert milestone_ratio(20, 40, never=110) == 0.5
    assert milestone_ratio(None, 40, never=110) > 1  # a KV-shift layer that never gets there counts against
    assert milestone_ratio(None, None, never=110) == 1.0
    assert milestone_ratio(100, None, never=110) == pytest.approx(100 / 110)
    row = {kv_shift_metric(0, h, k): v for h, vals in enumerate([(0.2, -0.6, 1.0, 0.0), (0.5, 0.5, 0.3, 0.1)])
           for k, v in zip(("alpha1", "alpha2", "beta1", "beta2"), vals, strict=True)}
    assert scalar_ratio(row, "alpha") == pytest.approx(0.25)  # |0.2| / (|0.2| + |−0.6|)
    assert scalar_ratio(row, "beta") == 0.0
    assert scalar_ratio(row, "beta", head=1) == pytest.approx(0.25)
    assert scalar_ratio({"step": 0}, "alpha") is None
    # the head is chosen by its induction score, not by its scalars
    assert induction_head(row | {"head_induction_L0H0": 0.1, "head_induction_L0H1": 0.8}) == 1
    assert induction_head(row) == 0


def _results(kv_learns: bool, kv_moves: bool):
    """Three seeds per arm; the KV-shift layer learns early (or as late as two layers, or not at all)."""
    good, late = [0.1, 0.95, 0.99, 0.99, 0.99, 0.99], [0.1, 0.1, 0.1, 0.1, 0.95, 0.99]
    never = [0.1, 0.2, 0.25, 0.3, 0.3, 0.3]
    moving = [(0.6, 0.4, 0.7, 0.3)] + [(0.02, 0.98, 0.97, 0.03)] * 5
    still = [(0.6, 0.4, 0.7, 0.3)] * 6
    curves = {}
    for task in ("bigram", "markov"):
        flip = (lambda xs: [1 - x for x in xs]) if task == "markov" else (lambda xs: xs)
        curves[task] = {
            "kv-shift": {s: _rows(task, flip(good if kv_learns else never), scalars=moving if kv_moves else still)
                         for s in range(3)},
            "one-layer": {s: _rows(task, flip([x + 0.01 * s for x in never])) for s in range(3)},
            "two-layer": {s: _rows(task, flip(late)) for s in range(3)},
        }
    longer = {str(s): {"train_len": 0.99, "long": 0.98, "length": 256, "train_length": 64} for s in range(3)}
    return {"tasks": summarise(curves, {"bigram": 60, "markov": 60}), "longer": longer}


def test_claims_hold_for_the_mechanism_and_fail_without_it():
    verdicts = [c["verdict"] for c in claims(_results(kv_learns=True, kv_moves=True))]
    # the Markov β-share claim: the synthetic scalars move every ratio, so all eight hold
    assert verdicts == ["holds"] * 8
    without = [c["verdict"] for c in claims(_results(kv_learns=False, kv_moves=False))]
    assert "holds" not in without and without.count("fails") >= 4
    assert checks(_results(True, True))[0]["passed"]
    bad = _results(True, True)
    bad["longer"]["1"]["long"] = 0.5
    assert not checks(bad)[0]["passed"]
