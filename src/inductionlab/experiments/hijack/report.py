"""Claims, checks, setting and README of the hijack experiment; the figures are in :mod:`.figures`."""

from __future__ import annotations

from typing import Any

from inductionlab.experiments.hijack.analysis import DECOMPOSITION, NULLS, PREDICTIONS
from inductionlab.experiments.kit.checks import check
from inductionlab.experiments.kit.claims import Rule, SeedValues, claim, claims_section
from inductionlab.report.format import number, spread

LABELS = {"weights_only": "weights-only prediction",
          "theta_readout": "readout with the measured layer-2 attention and the theory's R3 = θ·I",
          "scalar": "scalar form of §4.4 (fitted on the other seeds)"}
NULL_LABELS = {"bigram_only": "bigram only (g_ab − g_a,rival)",
               "count_fixed_effects": "count regression with one intercept per setting (fitted on the other seeds)",
               "pair_lookup": "pair lookup (the other seeds' mean gap on the same setting and query pair)",
               "other_settings_lookup": "same-seed lookup (this model's gap for the same pair in the other settings "
                                        "of the family, setting means removed)"}
ROW_LABELS = {"weights_only": "weights-only", "theta_readout": "readout with R3 = θ·I",
              "scalar": "scalar form, held out", "scalar_in_sample": "scalar form, in sample",
              "scalar_read_off": "scalar form, read off (no fit)", "bigram_only": "null: bigram only",
              "count_fixed_effects": "null: count regression, setting fixed effects",
              "pair_lookup": "null: pair lookup (other seeds)",
              "other_settings_lookup": "null: same-seed lookup (other settings)",
              "attention_regression": "attention-mass regression (θ·I with θ fitted; no null)",
              "readout": "readout with the measured R3 (decomposition, no prediction)",
              "setting_mean": "setting-mean oracle"}
GAP_RULE = Rule("higher", 0.5, 0.1, level_from="a convention: half of the within-setting variance explained (the "
                                               "noise ceiling is reported beside)")
CROSSOVER_RULE = Rule("lower", 1.0, 0.25, level_from="one pair, the unit in which n* is counted")
GROWTH_RULE = Rule("higher", 0.5, 0.1, level_from="a convention: a rank correlation of 0.5, a clear monotone trend")
SLOPE_RULE = Rule("lower", 0.5, 0.25, level_from="a convention: the model's slope within half of the theory's")
NON_TRIGGER_LEVEL = 0.05  # b on top of at most 5 % of a seed's prompts: W_K² stores no non-trigger, b is unlikely
DECOMPOSITION_TOLERANCE = 1e-3  # logits: float32 rounding of gaps of order 10 over up to 1024 keys
JUDGED = {"rpe": ("gaps", "crossover", "growth", "slope"), "ape": ("gaps", "slope")}


def claim_subset(pos_enc: str) -> str:
    """The prompts a claim of ``pos_enc`` is judged on: for ``ape`` only those with every pair before T_train."""
    return "inside" if pos_enc == "ape" else "all"


def model_runs(trigger_mode: str, pos_enc: str) -> tuple[dict[str, str], ...]:
    """The run params of one of the experiment's models (what a claim reads,
    :func:`~inductionlab.experiments.kit.claims.claim`)."""
    return ({"trigger_mode": trigger_mode, "pos_enc": pos_enc},)


def strongest_null(stats: dict[str, Any]) -> str:
    """The null of :data:`~.analysis.NULLS` with the highest mean within-setting R² (the strongest)."""
    means = {n: stats[n]["within_r2"]["mean"] for n in NULLS}
    return max(means, key=lambda n: float("-inf") if means[n] is None else means[n])


def claims(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every claim of the hijack experiment, each a statistic against its null, seed by seed (docs/science.md §7).

    For ``ape`` only the gap and slope claims are judged: its count sweeps at T ≥ 128 put most
    pairs beyond T_train, where the crossover and its growth with T measure the loss of those
    pairs (the length experiment's question) more than the dilution of §4.4 (ii); they are
    reported, not judged.
    """
    out = []
    for pos_enc, enc in results["encodings"].items():
        judged = JUDGED.get(pos_enc, ())
        subset = claim_subset(pos_enc)
        where = "families 1–3" + (", prompts with every pair before T_train" if subset == "inside" else "")
        entry = enc["subsets"][subset]
        models = model_runs("random", pos_enc)
        stats, ceiling = entry["agreement"], entry["noise_ceiling"]
        for name in PREDICTIONS if "gaps" in judged else ():
            within, best = stats[name]["within_r2"], strongest_null(stats)
            extra = ({"theta": enc["fits"]["theta"],
                      "fitted_theta_within_r2": stats["attention_regression"]["within_r2"]["mean"]}
                     if name == "theta_readout" else {})
            out.append(claim(
                f"[{pos_enc}] The {LABELS[name]} predicts the model's logit gaps within settings ({where})",
                "within-setting R² ≥ 0.5 and ≥ 0.1 above the strongest null",
                "within-setting R² of the gap ξ_b − ξ_rival on each seed's prompts, mean over seeds",
                within["mean"], stats[best]["within_r2"]["mean"], f"strongest null: {NULL_LABELS[best]}", GAP_RULE,
                seeds=SeedValues(within["per_seed"], stats[best]["within_r2"]["per_seed"]), reads=models,
                n_prompts=entry["prompts_per_seed"], per_seed=within["per_seed"],
                pooled_r2=stats[name]["pooled_r2"]["mean"],
                nulls={n: stats[n]["within_r2"]["mean"] for n in NULLS},
                noise_ceiling_r2=ceiling["r2"]["mean"], redraw_correlation=ceiling["correlation"]["mean"],
                setting_mean_pooled_r2=stats["setting_mean"]["pooled_r2"]["mean"], **extra))
        cross = enc["crossover"]
        for name in PREDICTIONS if "crossover" in judged else ():
            out.append(claim(
                f"[{pos_enc}] The {LABELS[name]} predicts the crossover n* (pairs at which b beats j* on average) "
                "for each prompt length and query pair", "mean absolute error ≤ 1 pair and ≥ 0.25 below the best "
                "constant n* of each prompt length", "mean absolute error of n* over the (T, pair) points where the "
                f"model crosses (n = 0…{cross['n_max']}; a prediction that never crosses counts as n_max + 1), mean "
                "over seeds", cross["mae"][name]["mean"], cross["constant_mae"]["mean"],
                "best constant n* per prompt length, chosen on the other seeds", CROSSOVER_RULE,
                seeds=SeedValues({s: v["mae"][name] for s, v in cross["per_seed"].items()},
                                 {s: v["constant_mae"] for s, v in cross["per_seed"].items()}), reads=models,
                per_seed={s: {"mae": v["mae"][name], "constant_mae": v["constant_mae"],
                              "constant_by_T": v["constant_by_T"], "model_never_crosses": v["model_never_crosses"],
                              "prediction_crosses_there": v["crosses_where_model_does_not"][name]}
                          for s, v in cross["per_seed"].items()}))
        growth = enc["growth_with_T"]
        if "growth" in judged:
            out.append(claim(
                f"[{pos_enc}] Longer prompts dilute the in-context term, so the model's n* grows with T (§4.4 (ii))",
                "rank correlation of T and n* ≥ 0.5 and ≥ 0.1 above its permutation null",
                "Spearman ρ between T and the model's n* over (pair, T) of each seed; never crossing = n_max + 1; "
                "mean over seeds", _mean(growth["per_seed"]), _mean(growth["null_per_seed"]),
                "95th percentile of ρ with T shuffled within each pair, seed by seed", GROWTH_RULE,
                seeds=SeedValues(growth["per_seed"], growth["null_per_seed"]), reads=models,
                per_seed=growth["per_seed"],
                pooled_spearman=growth["spearman"], pooled_null_q95=growth["null_q95"]))
        slope = enc["unigram_slope"]
        if "slope" in judged:
            out.append(_slope_claim(
                f"[{pos_enc}] With a absent from the context, a token's logit rises with its count in the context at "
                "the slope of the in-context unigram term (§4.4 (v), family 5)", slope, "fitted scalar form", models))
    out.append(_slope_claim(
        "For a query that is not a trigger, layer 2 attends uniformly, so what remains of the context is the "
        "in-context unigram term: b's logit still rises with its count (family 4, §4.4 (v))",
        results["family_4"]["unigram_slope"], "scalar form read off the fixed-trigger model (no fit)",
        model_runs("fixed", "rpe")))
    return out


def _mean(per_seed: dict[str, float | None]) -> float | None:
    values = [v for v in per_seed.values() if v is not None]
    return sum(values) / len(values) if values else None


SLOPE_NULLS = {"null_relative_error": "null slope 0 (no unigram term): |s_model| / |s_theory|",
               "lookup_relative_error": "the other seeds' model slope: |s_model − s_other seeds| / |s_theory|"}


def _slope_claim(text: str, slope: dict[str, Any], theory: str, reads: tuple[dict[str, str], ...]
                 ) -> dict[str, Any]:
    """A slope claim against the stronger of its two nulls (the lower mean error, :func:`~.analysis.unigram_slopes`)."""
    means = {k: slope[k]["mean"] for k in SLOPE_NULLS}
    null = min(means, key=lambda k: float("inf") if means[k] is None else means[k])
    return claim(
        text, "relative error of the model's slope ≤ 0.5 of the theory's and ≥ 0.25 below the stronger null's",
        f"|s_model − s_theory| / |s_theory| with s the slope of ξ_b − ξ_j* on #b/T, one intercept per (T, pair), "
        f"theory = {theory}, mean over seeds", slope["theory_relative_error"]["mean"], means[null],
        f"stronger null: {SLOPE_NULLS[null]}", SLOPE_RULE,
        seeds=SeedValues({s: v["theory_relative_error"] for s, v in slope["per_seed"].items()},
                         {s: v[null] for s, v in slope["per_seed"].items()}),
        per_seed={s: {k: v[k] for k in ("model_slope", "theory_slope", "other_seeds_slope")}
                  for s, v in slope["per_seed"].items()},
        reads=reads, null_errors={k: means[k] for k in SLOPE_NULLS})


def checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    """What holds by construction (docs/science.md §7.1): the readout's algebra is exact; a non-trigger query
    is not hijacked on the fixed-trigger model."""
    out = []
    for pos_enc, enc in results["encodings"].items():
        per_seed = {s: v["max_abs_gap_error"] for s, v in enc["decomposition_check"].items()}
        worst = max(per_seed.values())
        token_part = enc["subsets"][claim_subset(pos_enc)]["agreement"][DECOMPOSITION]["within_r2"]
        out.append(check(
            f"[{pos_enc}] The logits are the readout of the residual after layer 1 through the measured layer-2 "
            "attention: the token part (Σ_s β²_s R3[·, z_s] + G[a, ·]) plus the positional and layer-1 parts "
            "rebuilds the model's gap ξ_b − ξ_rival",
            "largest |rebuilt gap − model gap| over seeds, on the first prompt of every pair of every setting (logits)",
            worst, f"≤ {DECOMPOSITION_TOLERANCE:g} (float32 rounding)", worst <= DECOMPOSITION_TOLERANCE,
            per_seed=per_seed, prompts_per_seed=next(iter(enc["decomposition_check"].values()))["prompts"],
            token_part_within_r2=token_part["mean"], token_part_within_r2_per_seed=token_part["per_seed"]))
    fam4 = results["family_4"]
    per_seed = fam4["non_trigger_b_wins"]["per_seed"]
    worst = max(per_seed.values())
    out.append(check(
        f"A query token that is not a trigger is not hijacked: with {fam4['n_pairs_max']} pairs (a, b) in a 64-token "
        "prompt the fixed-trigger model does not predict b (W_K² stores only the triggers, and b is unlikely after a)",
        "largest fraction over seeds of the prompts where b is the model's top token", worst,
        f"≤ {NON_TRIGGER_LEVEL:g} on every seed", worst <= NON_TRIGGER_LEVEL, per_seed=per_seed,
        trigger_query_b_wins=fam4["trigger_b_wins"]["per_seed"]))
    return out


def setting(preset: dict[str, Any], cfg, runs: dict) -> str:
    """One paragraph: the trained models and the designed prompts."""
    m, d, t = cfg.model, cfg.data, cfg.train
    seeds = len(preset["seeds"])
    return (f"{m.n_layers}-layer associative-memory transformers (d = {m.d_model}, {m.init} init, W_F {m.ff}) trained "
            f"{t.steps} steps at T_train = {d.seq_len} on the {d.source} bigrams with K = {d.n_triggers} triggers, "
            f"loss on {t.loss_on} targets: random triggers with rpe and with ape positions (families 1–3 and 5), "
            f"fixed triggers with rpe (family 4); {seeds} seeds each. Each setting holds {preset['per_pair']} prompts "
            f"for each of {preset['n_pairs']} query pairs (a, b, rival); count sweeps n = 0…{max(preset['count_n'])} "
            f"at T ∈ {list(preset['count_T'])}, distance sweeps at T ∈ {list(preset['distance_T'])}. Fitted predictors "
            "are fitted on the other seeds' prompts and scored on this seed's.")


def _row_order() -> tuple[str, ...]:
    return (*PREDICTIONS, "scalar_in_sample", "scalar_read_off", *NULLS, "attention_regression", DECOMPOSITION,
            "setting_mean")


def _beside_table(results: dict[str, Any]) -> list[str]:
    """Within-setting R² of each prediction beside every null and the noise ceiling, on the prompts judged."""
    encodings = results["encodings"]
    entries = {e: encodings[e]["subsets"][claim_subset(e)] for e in encodings}
    head = " | ".join(f"{e} ({claim_subset(e)}, {entries[e]['prompts_per_seed']} prompts per seed)" for e in encodings)
    lines = ["## Predictions beside their nulls and the noise ceiling", "",
             "Within-setting R², mean ± sample sd over seeds, on the prompts the claims are judged on. The noise "
             "ceiling is what the same (setting, pair) with the filler re-drawn reproduces: the within-setting R² of "
             "the re-drawn prompts' mean gap per (setting, pair), and the correlation of a prompt's centred gap with "
             "its re-draw's. A pair-level predictor (the lookups) cannot beat it but by chance; a prediction that "
             "reads the filler can.", "", f"| predictor | {head} |", "|---|" + "---|" * len(encodings)]
    for name in (n for n in _row_order() if n != "setting_mean"):
        lines.append(f"| {ROW_LABELS[name]} | "
                     + " | ".join(spread(entries[e]["agreement"][name]["within_r2"]) for e in encodings) + " |")
    lines.append("| noise ceiling R² (filler re-drawn) | "
                 + " | ".join(spread(entries[e]["noise_ceiling"]["r2"]) for e in encodings) + " |")
    lines.append("| re-draw correlation | "
                 + " | ".join(spread(entries[e]["noise_ceiling"]["correlation"]) for e in encodings) + " |")
    lines.append("| θ of R3 = θ·I, per seed | " + " | ".join(
        ", ".join(number(v, 2) for v in encodings[e]["fits"]["theta"].values()) for e in encodings) + " |")
    return lines + [""]


def readme(results: dict[str, Any]) -> str:
    """The experiment's README.md: the predictions beside their nulls, agreement per encoding and subset,
    crossovers by T, the claims and the checks."""
    lines = ["# Knowledge hijack (docs/science.md §5, §6, §7)", "",
             f"Preset `{results['preset']}`. {results['setting']}", "", "Query pairs (a, b, c, rival j*): " + ", ".join(
                 f"({p['a']!r}, {p['b']!r}, {p['c']!r}, {p['rival']!r})"
                 for p in results["pairs"]["families_1_to_3_and_5"]),
             ""]
    lines += _beside_table(results)
    for pos_enc, enc in results["encodings"].items():
        for subset, entry in enc["subsets"].items():
            lines += [f"## {pos_enc}, families 1–3, prompts: {subset} ({entry['prompts_per_seed']} per seed)", "",
                      "| predictor | pooled R² | within-setting R² |", "|---|---|---|"]
            for name in _row_order():
                stats = entry["agreement"][name]
                lines.append(f"| {ROW_LABELS[name]} | {spread(stats['pooled_r2'])} | {spread(stats['within_r2'])} |")
            lines += [f"| noise ceiling (filler re-drawn) | – | {spread(entry['noise_ceiling']['r2'])} |", ""]
        lines += [f"## {pos_enc}: crossover n* (mean over pairs and seeds; crossed / points)", "",
                  "| T | model | " + " | ".join(ROW_LABELS[k] for k in PREDICTIONS) + " |", "|---|---|---|---|---|"]
        for seq_len, row in enc["crossover"]["by_T"].items():
            lines.append(f"| {seq_len} | " + " | ".join(
                number(row[k]["mean"], 2) + f" ({row[k]['crossed']}/{row[k]['of']})"
                for k in ("model", *PREDICTIONS)) + " |")
        lines.append("")
    lines += claims_section(results)
    return "\n".join(lines)
