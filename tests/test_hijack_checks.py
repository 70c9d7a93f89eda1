"""The hijack checks and the θ·I readout on toy models and hand-made results (docs/science.md §4.5, §7, §7.1)."""

import pytest
import torch

from inductionlab.experiments.hijack.analysis import NULLS, PREDICTIONS, REPORTED
from inductionlab.experiments.hijack.eval import copy_strength, decomposition_error, evaluate_model
from inductionlab.experiments.hijack.report import DECOMPOSITION_TOLERANCE, checks, claims, strongest_null
from inductionlab.experiments.hijack.stats import within_r_squared
from inductionlab.prompts.query_pairs import Setting, SettingPrompts
from inductionlab.theory.ideal import ideal_amt
from inductionlab.theory.trained import recall_matrices

N, T, ALPHAS = 12, 24, (6.0, 5.0, 4.0)


@pytest.fixture(scope="module", params=["ape", "rpe"])
def toy(request):
    g = torch.randn(N, N, generator=torch.Generator().manual_seed(1))
    model = ideal_amt(N, 2048, ALPHAS, g - g.mean(1, keepdim=True), pos_enc=request.param, train_len=T, init_seed=0)
    tokens = torch.randint(0, N, (32, T), generator=torch.Generator().manual_seed(2))
    favoured = torch.randint(0, N, (32,), generator=torch.Generator().manual_seed(3))
    return model, recall_matrices(model, T), tokens, favoured, (favoured + 1) % N


def test_an_exact_readout_passes_the_decomposition_check(toy):
    model, rec, tokens, favoured, rival = toy
    found = decomposition_error(model, rec, tokens, favoured, rival)
    assert found["prompts"] == 32 and found["max_abs_gap"] > 1.0
    assert found["max_abs_gap_error"] <= DECOMPOSITION_TOLERANCE


def test_a_wrong_readout_fails_the_decomposition_check(toy):
    model, rec, tokens, favoured, rival = toy
    wrong = type(rec)(**{**rec.__dict__, "R3": rec.R3 + 0.5 * torch.eye(N)})  # the memory misread
    error = decomposition_error(model, wrong, tokens, favoured, rival)["max_abs_gap_error"]
    assert error > 100 * DECOMPOSITION_TOLERANCE


def test_theta_readout_on_the_ideal_model(toy):
    """On the ideal AMT ``R3 ≈ α₃·I``: θ reads α₃ off, and ``θ·(β² on b − on the rival) + g_ab − g_a,rival``
    follows the model's own gap (the cross-talk of a finite d aside)."""
    model, rec, tokens, favoured, rival = toy
    theta = copy_strength(rec, T)
    assert theta == pytest.approx(ALPHAS[2], abs=0.3)
    prompts = SettingPrompts(Setting("count", T, n=1), tokens, pair=torch.zeros(32, dtype=torch.int64),
                             a=tokens[:, -1], favoured=favoured, rival=rival, last_pair_end=torch.zeros(32).long())
    table = evaluate_model(model, rec, [prompts], T, None)
    expected = theta * table.attention_gap + table.features[:, 4]
    assert torch.allclose(table.gaps["theta_readout"], expected)
    one = torch.zeros(32, dtype=torch.int64)
    assert within_r_squared(table.gaps["theta_readout"], table.gaps["model"], one) > 0.85


def _stat(per_seed):
    values = list(per_seed.values())
    return {"mean": sum(values) / len(values), "std": 0.0, "min": min(values), "max": max(values),
            "seeds": len(values), "per_seed": per_seed}


def _results(error=1e-6, non_trigger_wins=(0.0, 0.0, 0.0)):
    """Hand-made results of one rpe encoding over three seeds: every prediction at R² 0.7, the nulls below it
    (the same-seed lookup strongest, 0.3 ± 0.02), the ceiling at 0.8."""
    seeds = ("0", "1", "2")
    null_levels = {"bigram_only": -0.5, "count_fixed_effects": 0.0, "pair_lookup": 0.05,
                   "other_settings_lookup": 0.3}
    agreement = {}
    for name in REPORTED:
        level = 0.7 if name in PREDICTIONS else null_levels.get(name, 0.2)
        agreement[name] = {"within_r2": _stat({s: level + 0.02 * (i - 1) for i, s in enumerate(seeds)}),
                           "pooled_r2": _stat(dict.fromkeys(seeds, 0.5))}
    ceiling = {"r2": _stat(dict.fromkeys(seeds, 0.8)), "correlation": _stat(dict.fromkeys(seeds, 0.85))}
    slope = {"per_seed": {s: {"model_slope": 8.0, "theory_slope": 8.5, "other_seeds_slope": 7.0,
                              "theory_relative_error": 0.5 / 8.5, "null_relative_error": 8.0 / 8.5,
                              "lookup_relative_error": 1.0 / 8.5} for s in seeds},
             "theory_relative_error": _stat(dict.fromkeys(seeds, 0.5 / 8.5)),
             "null_relative_error": _stat(dict.fromkeys(seeds, 8.0 / 8.5)),
             "lookup_relative_error": _stat(dict.fromkeys(seeds, 1.0 / 8.5))}
    cross = {"n_max": 8, "per_seed": {s: {"mae": dict.fromkeys(PREDICTIONS, 0.5), "constant_mae": 1.0,
                                          "constant_by_T": {}, "model_never_crosses": 0,
                                          "crosses_where_model_does_not": dict.fromkeys(PREDICTIONS, 0)}
                                      for s in seeds},
             "mae": {p: _stat(dict.fromkeys(seeds, 0.5)) for p in PREDICTIONS},
             "constant_mae": _stat(dict.fromkeys(seeds, 1.0))}
    enc = {"subsets": {"all": {"prompts_per_seed": 100, "agreement": agreement, "noise_ceiling": ceiling}},
           "fits": {"theta": dict.fromkeys(seeds, 4.0)}, "crossover": cross,
           "growth_with_T": {"spearman": 0.8, "null_q95": 0.2, "per_seed": dict.fromkeys(seeds, 0.8),
                             "null_per_seed": dict.fromkeys(seeds, 0.2)},
           "unigram_slope": slope,
           "decomposition_check": {s: {"max_abs_gap_error": error, "max_abs_gap": 10.0, "prompts": 64}
                                   for s in seeds}}
    fam4 = {"n_pairs_max": 16, "non_trigger_b_wins": _stat(dict(zip(seeds, non_trigger_wins, strict=True))),
            "trigger_b_wins": _stat(dict.fromkeys(seeds, 0.98)), "unigram_slope": slope}
    return {"encodings": {"rpe": enc}, "family_4": fam4}


def test_gap_claims_face_the_strongest_null_seed_by_seed():
    results = _results()
    stats = results["encodings"]["rpe"]["subsets"]["all"]["agreement"]
    assert strongest_null(stats) == "other_settings_lookup"
    gap_claims = [c for c in claims(results) if "within settings" in c["claim"]]
    assert len(gap_claims) == len(PREDICTIONS)
    for c in gap_claims:
        assert c["null"] == pytest.approx(0.3) and "same-seed lookup" in c["null_name"]
        assert c["intervals"]["n_seeds"] == 3 and c["intervals"]["n_prompts"] == 100
        # the paired differences are 0.4 on every seed: the interval is a point, beyond the margin
        assert c["intervals"]["difference_ci"]["estimate"] == pytest.approx(0.4)
        assert c["verdict"] == "holds"  # a rule on synthetic numbers, not a verdict of a real experiment
        assert set(c["nulls"]) == set(NULLS) and c["noise_ceiling_r2"] == pytest.approx(0.8)
        assert c["level_from"]
    assert not any("measured R3" in c["claim"] or "not hijacked" in c["claim"] for c in claims(results))


def test_slope_claims_divide_by_the_theory_slope():
    results = _results()
    slopes = [c for c in claims(results) if "slope" in c["statistic"]]
    assert len(slopes) == 2 and all(c["statistic"].startswith("|s_model − s_theory| / |s_theory|") for c in slopes)
    # the stronger null: the other seeds' model slope (error 1/8.5) beats slope 0 (8/8.5)
    assert all(c["null"] == pytest.approx(1.0 / 8.5) and "other seeds' model slope" in c["null_name"] for c in slopes)


def test_checks_pass_when_exact_and_fail_loudly_otherwise():
    passed = checks(_results())
    assert [c["passed"] for c in passed] == [True, True]
    assert passed[0]["token_part_within_r2"] == pytest.approx(0.2)  # the readout's own R², kept beside
    failed = checks(_results(error=0.1, non_trigger_wins=(0.0, 0.25, 0.0)))
    assert [c["passed"] for c in failed] == [False, False]
    assert failed[1]["value"] == pytest.approx(0.25)  # the worst seed
