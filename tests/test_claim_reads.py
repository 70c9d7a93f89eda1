"""Each claim lists the diverged runs of the arms it reads, not every diverged run of its experiment
(docs/science.md §7): a claim names its arms (``reads``, as run params), and ``mark_diverged`` keeps, on each
claim, the diverged runs among them."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import tiny_config
from inductionlab.config import to_yaml
from inductionlab.errors import DivergenceError
from inductionlab.experiments.icl_mc.claims import claims as icl_mc_claims
from inductionlab.experiments.icl_mc.run import plan as icl_mc_plan
from inductionlab.experiments.interventions.claims import claims as interventions_claims
from inductionlab.experiments.interventions.run import plan as interventions_plan
from inductionlab.experiments.kit.claims import Rule, SeedValues, claim, claims_table
from inductionlab.experiments.kit.finish import finish
from inductionlab.experiments.kit.runs import mark_diverged, reads_run, trained_runs
from inductionlab.experiments.kv_shift.claims import claims as kv_shift_claims
from inductionlab.experiments.kv_shift.run import plan as kv_shift_plan
from inductionlab.report.html import write_report
from inductionlab.runs import RunSpec
from inductionlab.train import train
from test_icl_mc_experiment import ONE_LAYER
from test_icl_mc_experiment import _model as icl_mc_model
from test_interventions_experiment import _results as interventions_results
from test_kv_shift_experiment import _results as kv_shift_results

RULE = Rule("lower", None, 0.01)


def _claim(text: str, reads=None) -> dict:
    return claim(text, "lower", "final loss", 1.0, 2.0, "step 0", RULE,
                 seeds=SeedValues({"0": 1.0, "1": 1.1}, {"0": 2.0, "1": 2.1}), reads=reads)


@pytest.fixture(scope="module")
def one_arm_diverged(tmp_path_factory):
    """Arm ``a`` (one seed) and arm ``b`` (two seeds), trained; ``b``'s second seed diverges (its lr overflows)."""
    root = tmp_path_factory.mktemp("arms")
    base = root / "base.yaml"
    base.write_text(to_yaml(tiny_config(train={"steps": 4, "eval_every": 2, "checkpoint_every": 2})))
    specs = [RunSpec("x-a-s0", str(base), (), (("arm", "a"), ("seed", 0))),
             RunSpec("x-b-s0", str(base), (), (("arm", "b"), ("seed", 0))),
             RunSpec("x-b-s1", str(base), ("train.lr=1e38",), (("arm", "b"), ("seed", 1)))]
    for spec in specs:
        try:
            train(spec.config(), root / "runs" / spec.folder, progress=False)
        except DivergenceError:
            pass
    return root, specs


def test_each_claim_lists_the_diverged_runs_of_the_arms_it_reads(one_arm_diverged, tmp_path):
    root, specs = one_arm_diverged
    kept, diverged = trained_runs(root / "runs", specs)
    assert [s.name for s in kept] == ["x-a-s0", "x-b-s0"]
    assert [(d["run"], d["params"]) for d in diverged] == [("x-b-s1", {"arm": "b", "seed": 1})]
    found = [_claim("reads a", ({"arm": "a"},)), _claim("reads b", ({"arm": "b"},)),
             _claim("reads a and b", ({"arm": "a"}, {"arm": "b"})), _claim("reads every run", ({},)),
             _claim("reads seed 0 of b", ({"arm": "b", "seed": 0},)), _claim("says nothing")]
    out = tmp_path / "x"
    out.mkdir()
    results = finish(out, {"experiment": "x"}, claims=found, diverged=diverged, figures=lambda r, o: [],
                     readme=lambda r: claims_table(r["claims"]))
    assert json.loads((out / "results.json").read_text()) == results
    listed = {c["claim"]: c["diverged_runs"] for c in results["claims"]}
    assert listed == {"reads a": [], "reads b": ["x-b-s1"], "reads a and b": ["x-b-s1"],
                      "reads every run": ["x-b-s1"], "reads seed 0 of b": [], "says nothing": ["x-b-s1"]}
    notes = {c["claim"]: c.get("diverged_note") for c in results["claims"]}
    assert notes["reads a"] is None and notes["reads seed 0 of b"] is None
    assert notes["reads b"] == "1 of the runs it reads diverged and is left out: x-b-s1"
    assert "does not say which runs it reads" in notes["says nothing"]
    assert results["diverged_runs"][0]["run"] == "x-b-s1"  # the experiment's list keeps every diverged run

    readme = (out / "README.md").read_text()
    assert "- reads b: 1 of the runs it reads diverged" in readme and "- reads a:" not in readme
    report = {"name": "r", "preset": "quick", "environment": {"python": "3", "platform": "p", "device": "cpu",
                                                               "packages": {}}, "experiments": {"x": results}}
    table = pd.DataFrame({"folder": pd.Series([], dtype=str), "name": pd.Series([], dtype=str)})
    html = write_report(report, table, tmp_path, {"x": "X"}).read_text()
    rows = {row.split("</td>", 1)[0]: row for row in html.split("<tr><td>")[1:]}
    assert "x-b-s1" in rows["reads b"] and "x-b-s1" not in rows["reads a"]


def test_a_run_read_by_no_arm_of_a_claim_is_not_listed_on_it():
    assert reads_run([{"arm": "b"}], {"arm": "b", "seed": 1}) and not reads_run([{"arm": "a"}], {"arm": "b"})
    assert not reads_run([{"arm": "b", "depth": 2}], {"arm": "b"})  # a param the run lacks: not that arm
    assert reads_run(None, {"arm": "b"}) and reads_run([{"arm": "a"}], None)  # not known: listed
    assert not reads_run([], {"arm": "b"})  # reads no run at all
    results = {"claims": [_claim("reads a", ({"arm": "a"},))]}
    mark_diverged(results, [])
    assert results["claims"][0]["diverged_runs"] == [] and "diverged_note" not in results["claims"][0]


def _diverged(spec: RunSpec) -> dict:
    """A diverged run as :func:`~inductionlab.experiments.kit.runs.trained_runs` records it."""
    return {"run": spec.name, "step": 3, "cause": "training loss nan", "params": dict(spec.params)}


def _listing(claims: list[dict], specs: list[RunSpec], lost: RunSpec) -> dict[str, list[str]]:
    """Every claim's arms match some planned run; then ``lost`` diverges: what each claim lists."""
    for c in claims:
        assert c["reads"] and all(any(reads_run([arm], dict(s.params)) for s in specs) for arm in c["reads"]), c
    results = {"claims": claims}
    mark_diverged(results, [_diverged(lost)])
    return {c["claim"]: c["diverged_runs"] for c in results["claims"]}


def test_interventions_claims_read_their_arms_only():
    specs = interventions_plan("quick")
    lost = next(s for s in specs if dict(s.params) == {"arm": "freeze-wk2", "seed": 1})
    listed = _listing(interventions_claims(interventions_results()), specs, lost)
    assert [text for text, runs in listed.items() if runs] == [
        next(text for text in listed if text.startswith("W_K² frozen at zero"))]
    lost = next(s for s in specs if dict(s.params) == {"arm": "none", "seed": 0})  # the arm every claim pairs with
    assert all(runs == [lost.name] for runs in _listing(interventions_claims(interventions_results()), specs,
                                                        lost).values())


def test_kv_shift_claims_read_the_other_experiments_runs_by_their_own_params():
    specs = kv_shift_plan("quick")
    one_layer = next(s for s in specs if dict(s.params) == {"setting": "all", "depth": "one-layer", "seed": 1})
    listed = _listing(kv_shift_claims(kv_shift_results(True, True)), specs, one_layer)
    assert [text for text, runs in listed.items() if runs] == [
        "One KV-shift attention layer (no positions) learns the in-context targets of the bigram task"]
    two_layer = next(s for s in specs if dict(s.params) == {"order": 2, "depth": "two-layer", "seed": 0})
    listed = _listing(kv_shift_claims(kv_shift_results(True, True)), specs, two_layer)
    assert [text for text, runs in listed.items() if runs] == [
        next(text for text in listed if text.startswith("One KV-shift layer reaches the markov milestone"))]


def test_icl_mc_claims_read_the_two_layer_runs_only():
    specs = icl_mc_plan("quick")
    claims = icl_mc_claims({"models": {"n2-two-layer": icl_mc_model(0.91), "n2-one-layer": ONE_LAYER}})
    one_layer = next(s for s in specs if dict(s.params)["depth"] == "one-layer")
    assert all(runs == [] for runs in _listing(claims, specs, one_layer).values())
    claims = icl_mc_claims({"models": {"n2-two-layer": icl_mc_model(0.91), "n2-one-layer": ONE_LAYER}})
    two_layer = next(s for s in specs if dict(s.params)["depth"] == "two-layer")
    assert all(runs == [two_layer.name] for runs in _listing(claims, specs, two_layer).values())
