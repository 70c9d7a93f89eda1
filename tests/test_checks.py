"""Checks apart from claims (docs/science.md §7): computed, listed apart, and loud when one fails; the report's
header counts the three verdicts and the checks; every section opens with the claims' forest plot."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from inductionlab.cli import main
from inductionlab.experiments.kit.checks import check, checks_table, failed_checks
from inductionlab.experiments.kit.claims import Rule, SeedValues, claim, claims_section
from inductionlab.report.figures import FOREST_FIGURE, forest_plot
from inductionlab.report.html import write_report


def _claims():
    rule = Rule("higher", 0.5, 0.1, "a test level")
    return [claim("a claim that holds", "p", "s", 0.8, 0.6, "n", rule,
                  seeds=SeedValues({"0": 0.80, "1": 0.82, "2": 0.78}, {"0": 0.60, "1": 0.61, "2": 0.59})),
            claim("a claim that fails", "p", "s", 0.3, 0.6, "n", rule,
                  seeds=SeedValues({"0": 0.30, "1": 0.32, "2": 0.28}, {"0": 0.60, "1": 0.61, "2": 0.59}))]


def test_a_check_is_passed_only_when_measured_and_met():
    assert check("c", "s", 0.01, "≤ 0.05", True)["passed"] is True
    assert check("c", "s", 0.2, "≤ 0.05", False)["passed"] is False
    assert check("c", "s", float("nan"), "≤ 0.05", True) == {
        "check": "c", "statistic": "s", "value": None, "expected": "≤ 0.05", "passed": False}
    experiments = {"a": {"checks": [check("fine", "s", 0.0, "0", True)]},
                   "b": {"checks": [check("broken", "s", 1.0, "0", False)]}, "c": {}}
    assert failed_checks(experiments) == ["b: broken"]
    assert "**NO" in checks_table(experiments["b"]["checks"]) and "| yes |" in checks_table(experiments["a"]["checks"])


def test_the_readme_lists_checks_apart_from_claims():
    results = {"claims": _claims(), "checks": [check("by construction", "s", 0.0, "= 0", True)], "figures": []}
    text = "\n".join(claims_section(results))
    assert text.index("## Claims") < text.index("## Checks") and "by construction" in text.split("## Checks")[1]
    assert [c["verdict"] for c in results["claims"]] == ["holds", "fails"]


def test_the_forest_plot_has_one_row_per_claim_with_a_difference(tmp_path):
    assert forest_plot(_claims(), tmp_path) == f"{FOREST_FIGURE}.png"
    assert (tmp_path / f"{FOREST_FIGURE}.png").stat().st_size > 1000
    assert forest_plot([{"claim": "no intervals", "verdict": "fails"}], tmp_path / "none") is None


def _report(tmp_path, checks):
    (tmp_path / "toy").mkdir()
    forest_plot(_claims(), tmp_path / "toy")
    results = {"name": "a report", "preset": "smoke", "environment": {"python": "3", "platform": "p", "device": "cpu",
                                                                       "packages": {}},
               "experiments": {"toy": {"question": "q", "setting": "s", "claims": _claims(), "checks": checks,
                                       "figures": [f"{FOREST_FIGURE}.png"]}}}
    table = pd.DataFrame({"folder": pd.Series([], dtype=str), "name": pd.Series([], dtype=str)})
    return write_report(results, table, tmp_path, {"toy": "Toy"}).read_text()


def test_the_report_counts_three_verdicts_and_the_checks(tmp_path):
    html = _report(tmp_path, [check("by construction", "s", 0.0, "= 0", True)])
    assert "1 hold</span>" in html and "0 inconclusive</span>" in html and "1 fail</span>" in html
    assert "1 of 1 passed" in html and "failed, so the code" not in html
    assert html.index('alt="toy: claims_forest.png"') < html.index("<th>claim</th>")  # the forest above the table


def test_a_failed_check_is_loud_in_the_report(tmp_path):
    html = _report(tmp_path, [check("by construction", "s", 0.5, "= 0", False)])
    assert "0 of 1 passed" in html and "A check that holds by construction failed" in html


def test_reproduce_exits_non_zero_with_one_line_when_a_check_fails(capsys, monkeypatch, tmp_path):
    broken = {"experiments": {"toy": {"claims": _claims(), "checks": [check("by construction", "s", 0.5, "= 0",
                                                                             False)]}}}
    monkeypatch.setattr("inductionlab.reproduce.reproduce", lambda *a, **k: json.loads(json.dumps(broken)))
    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "--out", str(tmp_path / "r"), "--quiet"])
    out, err = capsys.readouterr()
    assert exit_info.value.code != 0 and "1 holds, 0 inconclusive, 1 fails; checks 0/1 passed" in out
    assert len(err.strip().splitlines()) == 1 and "toy: by construction" in err and "Traceback" not in err
