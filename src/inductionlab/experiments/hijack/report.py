"""Claims, setting and README of the hijack experiment; the figures are in :mod:`.figures`."""

from __future__ import annotations

from typing import Any

from inductionlab.experiments.hijack.analysis import WITHIN_BASELINES
from inductionlab.experiments.kit.claims import Rule, SeedValues, claim, claims_section
from inductionlab.report.format import number, spread

LABELS = {"weights_only": "weights-only prediction", "readout": "readout with the measured layer-2 attention",
          "scalar": "scalar form of §4.4 (fitted on the other seeds)"}
BASELINE_LABELS = {"bigram_only": "bigram only (g_ab − g_a,rival)",
                   "count_regression": "count regression (fitted on the other seeds)",
                   "pair_lookup": "pair lookup (the other seeds' mean gap on the same setting and query pair)",
                   "attention_regression": "attention-mass regression (the model's own layer-2 attention to b and "
                                           "the rival, and the bigram term; fitted on the other seeds)"}
GAP_RULE = Rule("higher", 0.5, 0.1)
CROSSOVER_RULE = Rule("lower", 1.0, 0.25)
GROWTH_RULE = Rule("higher", 0.5, 0.1)
SLOPE_RULE = Rule("lower", 0.5, 0.25)
NON_TRIGGER_RULE = Rule("lower", 0.05, 0.5)
JUDGED = {"rpe": ("gaps", "crossover", "growth", "slope"), "ape": ("gaps", "slope")}


def claim_subset(pos_enc: str) -> str:
    """The prompts a claim of ``pos_enc`` is judged on: for ``ape`` only those with every pair before T_train."""
    return "inside" if pos_enc == "ape" else "all"


def claims(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every claim of the hijack experiment, each a statistic against its null (docs/science.md §7).

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
        stats = enc["subsets"][subset]["agreement"]
        for name in ("readout", "scalar", "weights_only") if "gaps" in judged else ():
            within = stats[name]["within_r2"]
            baselines = {b: stats[b]["within_r2"]["mean"] for b in WITHIN_BASELINES[name]}
            best = max(baselines, key=lambda b: baselines[b] if baselines[b] is not None else float("-inf"))
            out.append(claim(
                f"[{pos_enc}] The {LABELS[name]} predicts the model's logit gaps within settings ({where})",
                "within-setting R² ≥ 0.5 and ≥ 0.1 above the best baseline",
                "within-setting R² of the gap ξ_b − ξ_rival, held out by seed, mean over seeds",
                within["mean"], baselines[best], f"best baseline: {BASELINE_LABELS[best]}", GAP_RULE,
                seeds=SeedValues(within["per_seed"], stats[best]["within_r2"]["per_seed"]),
                per_seed=within["per_seed"], pooled_r2=stats[name]["pooled_r2"]["mean"], baselines=baselines,
                setting_mean_pooled_r2=stats["setting_mean"]["pooled_r2"]["mean"]))
        cross = enc["crossover"]
        for name in ("readout", "scalar", "weights_only") if "crossover" in judged else ():
            out.append(claim(
                f"[{pos_enc}] The {LABELS[name]} predicts the crossover n* (pairs at which b beats j* on average) "
                "for each prompt length and query pair", "mean absolute error ≤ 1 pair and ≥ 0.25 below the best "
                "constant n* of each prompt length", "mean absolute error of n* over the (T, pair) points where the "
                f"model crosses (n = 0…{cross['n_max']}; a prediction that never crosses counts as n_max + 1), mean "
                "over seeds", cross["mae"][name]["mean"], cross["constant_mae"]["mean"],
                "best constant n* per prompt length, chosen on the other seeds", CROSSOVER_RULE,
                seeds=SeedValues({s: v["mae"][name] for s, v in cross["per_seed"].items()},
                                 {s: v["constant_mae"] for s, v in cross["per_seed"].items()}),
                per_seed={s: {"mae": v["mae"][name], "constant_mae": v["constant_mae"],
                              "constant_by_T": v["constant_by_T"], "model_never_crosses": v["model_never_crosses"],
                              "prediction_crosses_there": v["crosses_where_model_does_not"][name]}
                          for s, v in cross["per_seed"].items()}))
        growth = enc["growth_with_T"]
        if "growth" in judged:
            out.append(claim(
                f"[{pos_enc}] Longer prompts dilute the in-context term, so the model's n* grows with T (§4.4 (ii))",
                "rank correlation of T and n* ≥ 0.5 and ≥ 0.1 above its permutation null",
                "Spearman ρ between T and the model's n* over (seed, pair, T); never crossing = n_max + 1",
                growth["spearman"], growth["null_q95"], "95th percentile of ρ with T shuffled within each (seed, pair)",
                GROWTH_RULE, seeds=SeedValues(growth["per_seed"], growth["null_q95"]), per_seed=growth["per_seed"]))
        slope = enc["unigram_slope"]
        if "slope" in judged:
            out.append(_slope_claim(
                f"[{pos_enc}] With a absent from the context, a token's logit rises with its count in the context at "
                "the slope of the in-context unigram term (§4.4 (v), family 5)", slope, "fitted scalar form"))
    fam4 = results["family_4"]
    out.append(claim(
        f"A query token that is not a trigger is not hijacked: with {fam4['n_pairs_max']} pairs (a, b) in a 64-token "
        "prompt the fixed-trigger model still does not predict b (family 4, §4.4 (v))",
        "b is the top token on ≤ 5% of prompts, ≥ 0.5 below a trigger query on the same model",
        "fraction of prompts where b is the model's top token, mean over seeds",
        fam4["non_trigger_b_wins"]["mean"], fam4["trigger_b_wins"]["mean"],
        "the same sweep with a trigger as the query, on the same model (copying allowed)", NON_TRIGGER_RULE,
        seeds=SeedValues(fam4["non_trigger_b_wins"]["per_seed"], fam4["trigger_b_wins"]["per_seed"]),
        per_seed=fam4["non_trigger_b_wins"]["per_seed"]))
    out.append(_slope_claim(
        "For a query that is not a trigger, layer 2 attends uniformly, so what remains of the context is the "
        "in-context unigram term: b's logit still rises with its count (family 4, §4.4 (v))",
        fam4["unigram_slope"], "scalar form read off the fixed-trigger model (no fit)"))
    return out


def _slope_claim(text: str, slope: dict[str, Any], theory: str) -> dict[str, Any]:
    return claim(
        text, "relative error of the predicted slope ≤ 0.5 and ≥ 0.25 below the null slope's",
        f"|s_model − s_theory| / |s_model| with s the slope of ξ_b − ξ_j* on #b/T, one intercept per (T, pair), "
        f"theory = {theory}, mean over seeds", slope["theory_relative_error"]["mean"],
        slope["null_relative_error"]["mean"], "null slope 0 (no unigram term)", SLOPE_RULE,
        seeds=SeedValues({s: v["theory_relative_error"] for s, v in slope["per_seed"].items()},
                         {s: v["null_relative_error"] for s, v in slope["per_seed"].items()}),
        per_seed={s: {k: v[k] for k in ("model_slope", "theory_slope")} for s, v in slope["per_seed"].items()})


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


def readme(results: dict[str, Any]) -> str:
    """The experiment's README.md: agreement per encoding and subset, crossovers by T, the claims."""
    lines = ["# Knowledge hijack (docs/science.md §5, §6, §7)", "", f"Preset `{results['preset']}`.", "",
             "Query pairs (a, b, c, rival j*): " + ", ".join(
                 f"({p['a']!r}, {p['b']!r}, {p['c']!r}, {p['rival']!r})"
                 for p in results["pairs"]["families_1_to_3_and_5"]),
             ""]
    for pos_enc, enc in results["encodings"].items():
        for subset, entry in enc["subsets"].items():
            lines += [f"## {pos_enc}, families 1–3, prompts: {subset} ({entry['prompts_per_seed']} per seed)", "",
                      "| predictor | pooled R² | within-setting R² |", "|---|---|---|"]
            for name, stats in entry["agreement"].items():
                lines.append(f"| {name} | {spread(stats['pooled_r2'])} | {spread(stats['within_r2'])} |")
            lines.append("")
        lines += [f"## {pos_enc}: crossover n* (mean over pairs and seeds; crossed / points)", "",
                  "| T | model | weights-only | readout | scalar (held out) |", "|---|---|---|---|---|"]
        for seq_len, row in enc["crossover"]["by_T"].items():
            lines.append(f"| {seq_len} | " + " | ".join(
                number(row[k]["mean"], 2) + f" ({row[k]['crossed']}/{row[k]['of']})"
                for k in ("model", "weights_only", "readout", "scalar")) + " |")
        lines.append("")
    lines += claims_section(results)
    return "\n".join(lines)
