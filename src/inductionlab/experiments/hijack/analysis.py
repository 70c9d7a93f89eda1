"""Across seeds: held-out fits, nulls, agreement with the model, crossovers, slopes (docs/science.md §4.5, §5, §7).

Every fitted predictor is fitted on the prompts of the *other* seeds of the same encoding and
scored on this seed's prompts (leave one seed out); the scalar form is also fitted in sample
(on this seed's own prompts), and both R² are reported. The strongest null reads this seed's own
behaviour: its gap for the same pair in the other settings (:func:`~.stats.other_settings_lookup`,
docs/science.md §7.1). Statistics are computed per seed and then summarised over seeds with the
sample standard deviation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from inductionlab.errors import ConfigError, ShapeError
from inductionlab.experiments.hijack.ceiling import RedrawnGaps
from inductionlab.experiments.hijack.eval import FEATURES, PromptTable
from inductionlab.experiments.hijack.stats import (
    best_constant,
    crossover,
    crossover_error,
    fixed_effects_regression,
    group_means,
    least_squares,
    noise_ceiling,
    other_settings_lookup,
    permutation_quantile,
    r_squared,
    relative_slope_error,
    spearman,
    within_r_squared,
    within_slope,
)
from inductionlab.experiments.kit.curves import seed_spread
from inductionlab.prompts.query_pairs import Setting
from inductionlab.theory.scalar import fit_scalar_form

# the predictions judged: none reads the model's activations but theta_readout, which is given the measured
# layer-2 attention and puts the theory's θ·I in place of the measured R3
PREDICTIONS = ("weights_only", "theta_readout", "scalar")
DECOMPOSITION = "readout"  # the measured attention with the measured R3 and G: a check of the algebra, no prediction
BASELINES = ("setting_mean", "bigram_only", "count_fixed_effects", "pair_lookup", "other_settings_lookup",
             "attention_regression")
REPORTED = (*PREDICTIONS, DECOMPOSITION, "scalar_in_sample", "scalar_read_off", *BASELINES)
# the nulls a prediction is judged against within settings (the strongest of them, seed by seed paired):
# the same information as the predictions except the mechanism. The attention-mass regression is no null
# for theta_readout: it *is* θ·I with θ and the bigram weight fitted on the other seeds; it is reported beside.
NULLS = ("bigram_only", "count_fixed_effects", "pair_lookup", "other_settings_lookup")
CORE_FAMILIES = ("count", "distance", "conflict")
FE_FEATURES = FEATURES[:-1]  # the count features without the intercept: one intercept per setting instead


def add_fitted_gaps(tables: dict[int, PromptTable], core: dict[int, Tensor], family: Tensor) -> dict[str, Any]:
    """Fit every fitted predictor and null for each held-out seed and add its gaps to that seed's table.

    tables: seed → the model's prompt table (the same prompts, in the same order, for every seed);
    core: seed → (P,) bool, the prompts fits are made on (families 1–3); family: (S,) int64, the family
    of each setting index. For each seed, from the *other* seeds only: the scalar form (``scalar``), the
    count regression with one intercept per setting (``count_fixed_effects``), the attention-mass
    regression (``attention_regression``: the gap on the model's own layer-2 attention to ``b`` minus to
    the rival and the bigram term, no memories) and the pair lookup (``pair_lookup``: the other seeds'
    mean gap on the same setting and query pair); from the seed itself, the in-sample scalar fit
    (``scalar_in_sample``) and the leave-one-setting-out lookup (``other_settings_lookup``: this model's
    gap for the same pair in the other settings of the family, setting means removed). Returns the
    fitted parameters per seed.
    """
    seeds = sorted(tables)
    if len(seeds) < 2:
        raise ConfigError("hijack: held-out fits need at least two seeds (the preset's seeds)")
    keys = {s: t.setting * 100_000 + t.pair for s, t in tables.items()}
    if any(not torch.equal(keys[s], keys[seeds[0]]) for s in seeds):
        raise ShapeError("hijack: every seed must be evaluated on the same prompts in the same order")
    n_settings = int(family.shape[0])
    fits: dict[str, Any] = {"held_out": {}, "in_sample": {},
                            "count_fixed_effects": {"features": list(FE_FEATURES),
                                                    "intercepts": "one per setting: its mean residual"},
                            "attention_regression": {"features": ["attention to b − to rival", "g_ab − g_a,rival",
                                                                  "intercept"]}}
    for seed in seeds:
        others = [s for s in seeds if s != seed]
        held_out = fit_scalar_form([tables[s].terms[:, :, core[s]] for s in others],
                                   [tables[s].gaps["model"][core[s]] for s in others])
        in_sample = fit_scalar_form([tables[seed].terms[:, :, core[seed]]], [tables[seed].gaps["model"][core[seed]]])
        measured = torch.cat([tables[s].gaps["model"][core[s]] for s in others])
        coef, intercepts = fixed_effects_regression(
            torch.cat([tables[s].features[core[s], :-1] for s in others]), measured,
            torch.cat([tables[s].setting[core[s]] for s in others]), n_settings)
        attention = least_squares(torch.cat([_attention_features(tables[s])[core[s]] for s in others]), measured)
        table = tables[seed]
        table.gaps["scalar"] = held_out.gap(table.terms)
        table.gaps["scalar_in_sample"] = in_sample.gap(table.terms)
        table.gaps["count_fixed_effects"] = intercepts[table.setting] + table.features[:, :-1] @ coef
        table.gaps["attention_regression"] = _attention_features(table) @ attention
        table.gaps["pair_lookup"] = torch.stack([group_means(tables[s].gaps["model"], keys[s]) for s in others]).mean(0)
        table.gaps["other_settings_lookup"] = other_settings_lookup(table.gaps["model"], table.setting, table.pair,
                                                                    family[table.setting])
        fits["held_out"][str(seed)] = {**held_out.as_dict(), "fitted_on_seeds": others}
        fits["in_sample"][str(seed)] = {**in_sample.as_dict(), "fitted_on_seeds": [seed]}
        fits["count_fixed_effects"][str(seed)] = {"coefficients": coef.tolist(), "fitted_on_seeds": others,
                                                  "setting_intercepts": intercepts.tolist()}
        fits["attention_regression"][str(seed)] = {"coefficients": attention.tolist(), "fitted_on_seeds": others}
    return fits


def _attention_features(table: PromptTable) -> Tensor:
    return torch.stack((table.attention_gap, table.features[:, 4], torch.ones_like(table.attention_gap)), dim=1)


def agreement(table: PromptTable) -> dict[str, dict[str, float]]:
    """Pooled and within-setting R² of every prediction and baseline against the model's gaps."""
    measured, groups = table.gaps["model"], table.setting
    out = {}
    for name in REPORTED:
        if name == "setting_mean":  # constant inside a setting: only its pooled R² says anything
            out[name] = {"pooled_r2": r_squared(group_means(measured, groups), measured), "within_r2": None}
            continue
        out[name] = {"pooled_r2": r_squared(table.gaps[name], measured),
                     "within_r2": within_r_squared(table.gaps[name], measured, groups)}
    for name in ("weights_only", DECOMPOSITION):
        out[name]["argmax_agreement"] = float((table.argmax[name] == table.argmax["model"]).double().mean())
    return out


def summarise_agreement(per_seed: dict[int, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """Mean, sample spread and per-seed values of each statistic of :func:`agreement`."""
    first = next(iter(per_seed.values()))
    return {name: {stat: {**seed_spread([per_seed[s][name][stat] for s in per_seed]),
                          "per_seed": {str(s): per_seed[s][name][stat] for s in per_seed}}
                   for stat in first[name]} for name in first}


def crossovers(table: PromptTable, mask: Tensor, names: tuple[str, ...]) -> list[dict[str, Any]]:
    """``n*`` per (prompt length, query pair) for the model and each prediction (count family prompts)."""
    points = []
    for seq_len in sorted(set(table.seq_len[mask].tolist())):
        for pair in sorted(set(table.pair[mask].tolist())):
            sel = mask & (table.seq_len == seq_len) & (table.pair == pair)
            points.append({"T": seq_len, "pair": pair,
                           **{name: crossover(table.count[sel], table.gaps[name][sel]) for name in names}})
    return points


def crossover_summary(points: dict[int, list[dict[str, Any]]], n_max: int,
                      names: tuple[str, ...] = PREDICTIONS) -> dict[str, Any]:
    """Each prediction's ``n*`` against the best constant ``n*`` per prompt length, chosen on the other seeds.

    The constant may depend on ``T`` (as the setting mean may depend on the setting), so what the
    theory has to add is the query pair.

    Errors are taken where the model crosses; a prediction that never crosses counts as
    ``n_max + 1``. Points where the model never crosses are not agreements: they are counted apart,
    with how many of them each prediction says do cross.
    """
    uncrossed = n_max + 1
    per_seed: dict[str, dict[str, Any]] = {}
    for seed, pts in points.items():
        constants = {}  # per prompt length, the best constant on the other seeds' crossing points
        for seq_len in sorted({p["T"] for p in pts}):
            others = [p["model"] for s, ps in points.items() if s != seed for p in ps
                      if p["model"] is not None and p["T"] == seq_len]
            constants[seq_len] = best_constant(others, range(0, n_max + 1)) if others else uncrossed
        crossed = [p for p in pts if p["model"] is not None]
        per_seed[str(seed)] = {
            "constant_by_T": {str(t): c for t, c in constants.items()}, "points": len(pts),
            "model_crosses": len(crossed), "model_never_crosses": len(pts) - len(crossed),
            "constant_mae": _mean([abs(constants[p["T"]] - p["model"]) for p in crossed]),
            "mae": {name: _mean([crossover_error(p[name], p["model"], uncrossed) for p in crossed]) for name in names},
            "crosses_where_model_does_not": {name: sum(p["model"] is None and p[name] is not None for p in pts)
                                             for name in names},
        }
    return {"n_max": n_max, "per_seed": per_seed,
            "constant_mae": seed_spread([v["constant_mae"] for v in per_seed.values()]),
            "mae": {name: seed_spread([v["mae"][name] for v in per_seed.values()]) for name in names}}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def growth_with_length(points: dict[int, list[dict[str, Any]]], n_max: int) -> dict[str, Any]:
    """Spearman ρ between ``T`` and the model's ``n*`` (never crossing = ``n_max + 1``), and its null.

    The null is the 95th percentile of ρ when the lengths are shuffled within each (seed, pair):
    what ρ reaches by chance if ``n*`` does not depend on ``T``. Pooled over seeds, and seed by seed
    (``per_seed``, ``null_per_seed``: the shuffle within each pair of that seed).
    """
    def n_star(p: dict[str, Any]) -> float:
        return float(n_max + 1 if p["model"] is None else p["model"])

    def statistic(rows: list[tuple[float, float, int]]) -> tuple[float, float]:
        t, n, groups = (torch.tensor(v, dtype=torch.float64) for v in zip(*rows, strict=True))
        return spearman(t, n), permutation_quantile(t, n, groups.long())

    pooled = statistic([(p["T"], n_star(p), seed * 10_000 + p["pair"]) for seed, pts in points.items() for p in pts])
    per_seed = {str(s): statistic([(p["T"], n_star(p), p["pair"]) for p in pts]) for s, pts in points.items()}
    return {"spearman": pooled[0], "null_q95": pooled[1], "per_seed": {s: v[0] for s, v in per_seed.items()},
            "null_per_seed": {s: v[1] for s, v in per_seed.items()}}


def unigram_slopes(tables: dict[int, PromptTable], masks: dict[int, Tensor], theory: str = "scalar") -> dict[str, Any]:
    """Slope of the gap on ``#{s : z_s = b}/T``: the model's and that of the prediction ``theory``.

    Family 5 (copies of ``b`` planted, ``a`` absent) with the held-out scalar fit; family 4 (pairs
    for a non-trigger ``a``) with the read-off scalar form.

    One intercept per (prompt length, pair); the error is relative to the theory's slope,
    ``|s_model − s_theory| / |s_theory|`` (:func:`~.stats.relative_slope_error`: never divided by a model
    slope that may be near zero). Two nulls score the same error on the same seed: the slope 0
    (``null_relative_error``, no unigram term) and the **other seeds' model slope**, the mean of the
    models' slopes on the other seeds (``lookup_relative_error``: a null that knows what such models do,
    as informed as a theory fitted on the other seeds).
    """
    slopes = {}
    for seed, table in tables.items():
        sel = table.select(masks[seed])
        groups = sel.seq_len * 1000 + sel.pair
        slopes[str(seed)] = (within_slope(sel.copies_fraction, sel.gaps["model"], groups),
                             within_slope(sel.copies_fraction, sel.gaps[theory], groups))
    per_seed = {}
    for seed, (model, predicted) in slopes.items():
        others = [m for s, (m, _) in slopes.items() if s != seed]
        lookup = sum(others) / len(others) if others else None
        per_seed[seed] = {"model_slope": model, "theory_slope": predicted, "other_seeds_slope": lookup,
                          "theory_relative_error": relative_slope_error(model, predicted, predicted),
                          "null_relative_error": relative_slope_error(model, 0.0, predicted),
                          "lookup_relative_error": (None if lookup is None
                                                    else relative_slope_error(model, lookup, predicted))}
    keys = ("model_slope", "theory_slope", "theory_relative_error", "null_relative_error", "lookup_relative_error")
    return {"per_seed": per_seed, **{k: seed_spread([v[k] for v in per_seed.values()]) for k in keys}}


def b_win_rate(tables: dict[int, PromptTable], masks: dict[int, Tensor]) -> dict[str, Any]:
    """How often ``b`` is the model's top token, per seed and on average, on the masked prompts."""
    per_seed = {str(s): float((t.argmax["model"][masks[s]] == t.favoured[masks[s]]).double().mean())
                for s, t in tables.items()}
    return {"per_seed": per_seed, **seed_spread(list(per_seed.values()))}


def setting_means(tables: dict[int, PromptTable], labels: list[str], names: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per setting: the mean over seeds and prompts of each gap, ``p(b)`` and how often ``b`` wins."""
    rows = []
    for index, label in enumerate(labels):
        cells = [t.select(t.setting == index) for t in tables.values()]
        cells = [c for c in cells if len(c)]
        if not cells:
            continue
        row: dict[str, Any] = {"setting": label, "prompts_per_seed": len(cells[0])}
        for name in names:
            row[f"{name}_gap"] = seed_spread([float(c.gaps[name].mean()) for c in cells])
        row["model_p_b"] = seed_spread([float(c.p_b.mean()) for c in cells])
        row["model_b_wins"] = seed_spread([float((c.argmax["model"] == c.favoured).double().mean()) for c in cells])
        rows.append(row)
    return rows


def ceiling_summary(tables: dict[int, PromptTable], redrawn: dict[int, RedrawnGaps], core: dict[int, Tensor],
                    select: Callable[[Tensor], Tensor]) -> dict[str, Any]:
    """The noise ceiling (:func:`~.stats.noise_ceiling`) of each seed on one subset of the core prompts, and its
    sample spread over seeds. redrawn: seed → the model's gaps on the re-drawn core prompts, row by row the
    core rows of its table; select: a prompt's ``inside`` flags (P,) → the subset's rows."""
    per_seed = {}
    for seed, table in tables.items():
        own, again = table.select(core[seed]), redrawn[seed]
        if not (torch.equal(own.setting, again.setting) and torch.equal(own.pair, again.pair)):
            raise ShapeError("hijack: the re-drawn prompts must follow the prompt table's core rows")
        per_seed[str(seed)] = noise_ceiling(own.gaps["model"], again.gap, own.setting, own.pair, select(own.inside),
                                            select(again.inside))
    return {stat: {**seed_spread([v[stat] for v in per_seed.values()]),
                   "per_seed": {s: v[stat] for s, v in per_seed.items()}} for stat in ("r2", "correlation", "prompts")}


SUBSETS: dict[str, Callable[[Tensor], Tensor]] = {"all": torch.ones_like, "inside": lambda inside: inside,
                                                  "beyond": lambda inside: ~inside}


def analyse_encoding(tables: dict, redrawn: dict[int, RedrawnGaps], core: list[Setting], unigram: list[Setting],
                     preset: dict, pos_enc: str, train_len: int) -> dict[str, Any]:
    """Fits and nulls, agreement and noise ceiling per subset (and agreement per family), crossovers, growth
    with T and the unigram slope of one encoding."""
    labels = [s.label for s in core + unigram]
    families = sorted({s.family for s in core + unigram})
    family = torch.tensor([families.index(s.family) for s in core + unigram])
    core_mask = {seed: t.setting < len(core) for seed, t in tables.items()}
    fits = add_fitted_gaps(tables, core_mask, family)
    subsets = ("all", "inside", "beyond") if pos_enc == "ape" else ("all",)
    out: dict[str, Any] = {"subsets": {}, "fits": fits}
    for name in subsets:
        chosen = {seed: t.select(core_mask[seed] & SUBSETS[name](t.inside)) for seed, t in tables.items()}
        entry: dict[str, Any] = {"prompts_per_seed": len(next(iter(chosen.values()))),
                                 "agreement": summarise_agreement({s: agreement(t) for s, t in chosen.items()}),
                                 "noise_ceiling": ceiling_summary(tables, redrawn, core_mask, SUBSETS[name]),
                                 "by_family": {}}
        for fam_name in CORE_FAMILIES:
            index = torch.tensor([i for i, s in enumerate(core) if s.family == fam_name])
            fam = {s: t.select(torch.isin(t.setting, index)) for s, t in chosen.items()}
            if all(len(t) for t in fam.values()):
                entry["by_family"][fam_name] = summarise_agreement({s: agreement(t) for s, t in fam.items()})
        out["subsets"][name] = entry
    count_index = torch.tensor([i for i, s in enumerate(core) if s.family == "count"])
    points = {seed: crossovers(t, torch.isin(t.setting, count_index), ("model", *PREDICTIONS))
              for seed, t in tables.items()}
    n_max = max(preset["count_n"])
    out["crossover"] = {**crossover_summary(points, n_max), "points": {str(s): p for s, p in points.items()},
                        "by_T": crossover_by_length(points)}
    out["growth_with_T"] = growth_with_length(points, n_max)
    unigram_mask = {seed: t.setting >= len(core) for seed, t in tables.items()}
    out["unigram_slope"] = unigram_slopes(tables, unigram_mask)
    out["settings"] = setting_means(tables, labels, ("model", *PREDICTIONS, "bigram_only", "count_fixed_effects"))
    out["train_len"] = train_len
    return out


def crossover_by_length(points: dict[int, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Mean ``n*`` per prompt length over seeds and pairs, and how many (seed, pair) never cross."""
    out: dict[str, dict[str, Any]] = {}
    lengths = sorted({p["T"] for pts in points.values() for p in pts})
    for seq_len in lengths:
        rows = [p for pts in points.values() for p in pts if p["T"] == seq_len]
        entry: dict[str, Any] = {}
        for name in ("model", *PREDICTIONS):
            crossed = [p[name] for p in rows if p[name] is not None]
            entry[name] = {"mean": sum(crossed) / len(crossed) if crossed else None, "crossed": len(crossed),
                           "of": len(rows)}
        out[str(seq_len)] = entry
    return out


def mean_decomposition(per_seed: dict[int, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """The layer-2 score decomposition averaged over seeds."""
    first = next(iter(per_seed.values()))
    return {kind: {pair: sum(d[kind][pair] for d in per_seed.values()) / len(per_seed) for pair in first[kind]}
            for kind in first}


def analyse_non_trigger(tables: dict, settings: list[Setting], n_non_trigger: int, preset: dict) -> dict[str, Any]:
    """Family 4: the fixed-trigger model with a non-trigger query, and with a trigger query for contrast."""
    top = max(preset["non_trigger_n"])
    at_top = [i for i, s in enumerate(settings) if s.n == top]  # the non-trigger setting, then the contrast
    non_trigger = {seed: t.setting == at_top[0] for seed, t in tables.items()}
    contrast = {seed: t.setting == at_top[1] for seed, t in tables.items()}
    labels = [s.label if i < n_non_trigger else f"trigger query {s.label}" for i, s in enumerate(settings)]
    return {
        "n_pairs_max": top, "non_trigger_b_wins": b_win_rate(tables, non_trigger),
        "trigger_b_wins": b_win_rate(tables, contrast),
        "unigram_slope": unigram_slopes(tables, {s: t.setting < n_non_trigger for s, t in tables.items()},
                                        theory="scalar_read_off"),
        "settings": setting_means(tables, labels, ("model", "scalar_read_off")),
    }
