"""docs/science.md §5/§6/§7 "hijack" end to end at the smoke preset: structure and relations, never verdicts.

The smoke models are tiny and barely trained, so their numbers mean nothing; what is checked is
that every statistic the report judges by exists, for every encoding and seed, with its null, and
that the relations that must hold exactly do (held-out fits are fitted on the other seeds, the
setting-mean oracle has no within-setting skill, the intercept is kept).
"""

import json

import pytest

from inductionlab.errors import ConfigError, RunDirError
from inductionlab.experiments import run_experiment
from inductionlab.experiments.hijack.analysis import REPORTED
from inductionlab.experiments.hijack.run import PRESETS, plan

pytestmark = pytest.mark.slow
SEEDS = [str(s) for s in PRESETS["smoke"]["seeds"]]


@pytest.fixture(scope="module")
def hijack(tmp_path_factory):
    out = tmp_path_factory.mktemp("hijack")
    return run_experiment("hijack", out, "smoke", progress=False), out


def test_three_models_per_seed():
    names = [spec.name for spec in plan("smoke")]
    assert len(names) == 3 * len(SEEDS)
    assert {n.rsplit("-s", 1)[0] for n in names} == {
        "hijack-smoke-random-rpe", "hijack-smoke-random-ape", "hijack-smoke-fixed-rpe"}


def test_every_prediction_and_baseline_per_encoding_subset_and_seed(hijack):
    results, _ = hijack
    assert set(results["encodings"]) == {"rpe", "ape"}
    assert set(results["encodings"]["ape"]["subsets"]) == {"all", "inside", "beyond"}
    for enc in results["encodings"].values():
        for subset in enc["subsets"].values():
            agreement = subset["agreement"]
            for name in REPORTED:
                for stat in ("pooled_r2", "within_r2"):
                    assert set(agreement[name][stat]["per_seed"]) == set(SEEDS), (name, stat)
            for stat in ("r2", "correlation", "prompts"):  # the noise ceiling: the filler re-drawn, every seed
                assert set(subset["noise_ceiling"][stat]["per_seed"]) == set(SEEDS), stat
            # the oracle is constant inside a setting: reported pooled only
            assert all(v is None for v in agreement["setting_mean"]["within_r2"]["per_seed"].values())
            assert set(subset["by_family"]) <= {"count", "distance", "conflict"}


def test_scalar_fit_keeps_its_intercept_and_is_held_out(hijack):
    results, _ = hijack
    for enc in results["encodings"].values():
        for seed in SEEDS:
            held_out, in_sample = enc["fits"]["held_out"][seed], enc["fits"]["in_sample"][seed]
            assert int(seed) not in held_out["fitted_on_seeds"] and in_sample["fitted_on_seeds"] == [int(seed)]
            for fit in (held_out, in_sample):
                assert {"theta_in_context", "theta_global", "theta_0", "alpha1_scale", "alpha2_scale"} <= set(fit)
            for baseline in ("count_fixed_effects", "attention_regression"):
                fit = enc["fits"][baseline][seed]
                assert len(fit["coefficients"]) == len(enc["fits"][baseline]["features"])
                assert int(seed) not in fit["fitted_on_seeds"]


def test_crossover_sweeps_every_n_and_sets_non_crossing_apart(hijack):
    results, _ = hijack
    assert PRESETS["smoke"]["count_n"] == tuple(range(9))
    for enc in results["encodings"].values():
        cross = enc["crossover"]
        assert cross["n_max"] == 8
        for seed, row in cross["per_seed"].items():
            points = cross["points"][seed]
            assert row["points"] == len(points)
            assert row["model_crosses"] + row["model_never_crosses"] == len(points)
            assert set(row["constant_by_T"]) == {str(t) for t in PRESETS["smoke"]["count_T"]}
            assert all(0 <= c <= 9 for c in row["constant_by_T"].values())


def test_claims_are_numbers_against_nulls(hijack):
    results, out = hijack
    claims = results["claims"]
    # rpe: 3 gap, 3 crossover, growth, slope; ape: 3 gap, slope; family 4: unigram slope
    assert len(claims) == (3 + 3 + 1 + 1) + (3 + 1) + 1
    for c in claims:
        assert {"claim", "predicted", "statistic", "measured", "null", "null_name", "rule", "verdict",
                "level_from"} <= set(c)
        assert c["null_name"] and c["rule"].startswith("holds when") and c["verdict"] in ("holds", "inconclusive",
                                                                                          "fails")
        assert {"measured_ci", "null_ci", "difference_ci", "sensitivity", "n_seeds"} <= set(c["intervals"])
    # the readout's algebra and the non-trigger query are checks, not claims; the algebra holds for any weights
    checks = results["checks"]
    assert len(checks) == 3
    assert all(c["passed"] for c in checks if "readout of the residual" in c["check"])
    on_disk = json.loads((out / "results.json").read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert on_disk["claims"] == json.loads(json.dumps(claims))
    assert "## Claims" in (out / "README.md").read_text()
    for name in results["figures"]:
        assert (out / name).stat().st_size > 10_000


def test_bad_input(tmp_path, hijack):
    with pytest.raises(ConfigError, match="--preset"):
        run_experiment("hijack", tmp_path, "huge")
    _, out = hijack
    folder = plan("smoke")[0].folder
    config = out / "runs" / folder / "config.yaml"
    (tmp_path / "runs" / folder).mkdir(parents=True)
    (tmp_path / "runs" / folder / "config.yaml").write_text(config.read_text().replace("d_model: 64", "d_model: 32"))
    with pytest.raises(RunDirError, match="different config"):
        run_experiment("hijack", tmp_path, "smoke", progress=False)
