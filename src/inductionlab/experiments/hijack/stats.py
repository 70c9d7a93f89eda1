"""The statistics the hijack claims are made of (docs/science.md §5, §7, §7.1); plain functions of tensors.

Gaps are compared prompt by prompt. A pooled R² over settings that differ in ``n``, ``T`` or the
pair's position mostly rewards getting each setting's *mean* right, which the setting-mean oracle
does perfectly; the **within-setting** R² removes each setting's mean from the measured and from
the predicted gaps before comparing them, so only the variation inside a setting (different
query pairs, fillers and placements) counts. The nulls of §7.1 that know this model
(:func:`other_settings_lookup`) or the settings (:func:`fixed_effects_regression`), and the noise
ceiling (:func:`noise_ceiling`), are here too.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from inductionlab.errors import ShapeError


def r_squared(predicted: Tensor, measured: Tensor) -> float:
    """``1 − SS_res / SS_tot`` of ``predicted`` against ``measured`` (1-D); NaN when ``measured`` is constant."""
    predicted, measured = predicted.double(), measured.double()
    ss_tot = float(((measured - measured.mean()) ** 2).sum())
    if ss_tot <= 0:
        return math.nan
    return 1.0 - float(((measured - predicted) ** 2).sum()) / ss_tot


def group_means(values: Tensor, groups: Tensor) -> Tensor:
    """Each entry replaced by the mean of its group: (P,), (P,) int64 → (P,) float64."""
    values = values.double()
    _, inverse = torch.unique(groups, return_inverse=True)
    sums = torch.zeros(int(inverse.max()) + 1 if len(inverse) else 0, dtype=torch.float64)
    counts = torch.zeros_like(sums)
    sums.index_add_(0, inverse, values)
    counts.index_add_(0, inverse, torch.ones_like(values))
    return (sums / counts)[inverse]


def within_r_squared(predicted: Tensor, measured: Tensor, groups: Tensor) -> float:
    """R² after removing each group's mean from both: the within-setting R² of docs/science.md §5."""
    centred_predicted = predicted.double() - group_means(predicted, groups)
    return r_squared(centred_predicted, measured.double() - group_means(measured, groups))


def least_squares(features: Tensor, target: Tensor) -> Tensor:
    """Coefficients of ``target ≈ features @ coef`` (F,), float64 (minimum-norm when rank-deficient)."""
    return torch.linalg.lstsq(features.double(), target.double()[:, None], driver="gelsd").solution[:, 0]


def crossover(counts: Tensor, gaps: Tensor) -> int | None:
    """The smallest count ``n`` whose mean gap is > 0 (the context wins on average); None if none does.

    counts: (P,) int the number of pairs of each prompt; gaps: (P,) their gaps.
    """
    for n in sorted(set(counts.tolist())):
        if float(gaps[counts == n].double().mean()) > 0:
            return int(n)
    return None


def crossover_error(predicted: int | None, measured: int, uncrossed: int) -> int:
    """``|predicted − measured|``, a prediction that never crosses counting as ``uncrossed`` (n_max + 1)."""
    return abs((uncrossed if predicted is None else predicted) - measured)


def best_constant(values: list[int], candidates: range) -> int:
    """The constant with the smallest mean absolute error on ``values`` (ties: the smallest)."""
    return min(candidates, key=lambda c: (sum(abs(c - v) for v in values), c))


def ranks(values: Tensor) -> Tensor:
    """0-based ranks with ties given their average rank: (P,) → (P,) float64."""
    values = values.double()
    order = torch.argsort(values, stable=True)
    r = torch.empty_like(values)
    r[order] = torch.arange(len(values), dtype=torch.float64)
    uniq, inverse = torch.unique(values, return_inverse=True)
    mean_rank = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inverse, r)
    return (mean_rank / torch.bincount(inverse, minlength=len(uniq)).double())[inverse]


def _correlation(x: Tensor, y: Tensor) -> Tensor:
    """Pearson correlation along the last axis (NaN where either side is constant)."""
    x, y = x - x.mean(-1, keepdim=True), y - y.mean(-1, keepdim=True)
    return (x * y).sum(-1) / (x.norm(dim=-1) * y.norm(dim=-1))


def spearman(x: Tensor, y: Tensor) -> float:
    """Spearman rank correlation with average ranks for ties; NaN when either side is constant."""
    return float(_correlation(ranks(x), ranks(y)))


def permutation_quantile(x: Tensor, y: Tensor, groups: Tensor, q: float = 0.95, n_perm: int = 2000,
                         seed: int = 0) -> float:
    """The ``q`` quantile of :func:`spearman` when ``x`` is shuffled within each group (seeded).

    The null that ``y`` does not depend on ``x`` beyond the group (e.g. ``n*`` does not depend on
    ``T`` for a given seed and query pair): under it, ``x`` is exchangeable inside each group.
    """
    gen = torch.Generator().manual_seed(seed)
    group_rank = torch.unique(groups, return_inverse=True)[1].double()
    by_group = torch.argsort(group_rank, stable=True)  # the members of each group, contiguously
    keys = group_rank[None, :] + torch.rand((n_perm, len(x)), generator=gen, dtype=torch.float64)
    shuffled_from = torch.argsort(keys, dim=1)  # the same group blocks, each in a random order
    rx = ranks(x)
    shuffled = torch.empty((n_perm, len(x)), dtype=torch.float64)
    shuffled[:, by_group] = rx[shuffled_from]
    return float(_correlation(shuffled, ranks(y)[None, :]).nanquantile(q))


def within_slope(x: Tensor, y: Tensor, groups: Tensor) -> float:
    """Least-squares slope of ``y`` on ``x`` with one intercept per group (both demeaned per group)."""
    xc, yc = x.double() - group_means(x, groups), y.double() - group_means(y, groups)
    denom = float((xc * xc).sum())
    return float((xc * yc).sum()) / denom if denom > 0 else math.nan


def _cells(setting: Tensor, pair: Tensor) -> Tensor:
    """One integer per (setting, pair): (P,) int64."""
    return setting.long() * (int(pair.max()) + 1 if len(pair) else 1) + pair.long()


def other_settings_lookup(values: Tensor, setting: Tensor, pair: Tensor, family: Tensor) -> Tensor:
    """The leave-one-setting-out lookup of docs/science.md §7.1 for one model: (P,) float64.

    values, setting, pair, family: (P,) — a gap, its prompt's setting, query pair and the family of that
    setting. For a prompt of setting ``S`` and pair ``p``: ``S``'s mean plus the mean, over the *other*
    settings ``S'`` of the same family that hold ``p``, of ``p``'s deviation there (``mean_{S',p} −
    mean_{S'}``): what this model does with this pair elsewhere, setting means removed. A pair that no
    other setting of its family holds gets its setting's mean.
    """
    values = values.double()
    setting_mean = group_means(values, setting)
    cells, cell_of = torch.unique(_cells(setting, pair), return_inverse=True)
    first = torch.full((len(cells),), len(values), dtype=torch.int64).scatter_reduce(
        0, cell_of, torch.arange(len(values)), reduce="amin")  # a prompt of each cell
    deviation = (group_means(values, _cells(setting, pair)) - setting_mean)[first]  # (C,)
    family_pair, fp_of = torch.unique(family.long()[first] * (int(pair.max()) + 1) + pair.long()[first],
                                      return_inverse=True)
    total = torch.zeros(len(family_pair), dtype=torch.float64).index_add_(0, fp_of, deviation)
    count = torch.zeros(len(family_pair), dtype=torch.float64).index_add_(0, fp_of, torch.ones_like(deviation))
    others = count[fp_of] - 1
    left_out = torch.where(others > 0, (total[fp_of] - deviation) / others.clamp_min(1), torch.zeros_like(deviation))
    return setting_mean + left_out[cell_of]


def fixed_effects_regression(features: Tensor, target: Tensor, groups: Tensor, n_groups: int
                             ) -> tuple[Tensor, Tensor]:
    """Least squares with one intercept per group: ``target ≈ intercept[group] + features @ coef``.

    features: (P, F); target, groups: (P,), groups in ``0..n_groups−1``. The slopes are the within
    estimator (both sides demeaned per group); each intercept is its group's mean residual (NaN for a
    group without prompts). Returns ``(coef (F,), intercepts (n_groups,))``, float64.
    """
    features, target = features.double(), target.double()
    centred = torch.stack([f - group_means(f, groups) for f in features.T], dim=1)
    coef = least_squares(centred, target - group_means(target, groups))
    residual = target - features @ coef
    sums = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, groups.long(), residual)
    counts = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, groups.long(), torch.ones_like(residual))
    return coef, sums / counts


def correlation(x: Tensor, y: Tensor) -> float:
    """Pearson correlation of two 1-D tensors; NaN when either is constant."""
    return float(_correlation(x.double(), y.double()))


def noise_ceiling(gaps: Tensor, redrawn: Tensor, setting: Tensor, pair: Tensor, keep: Tensor,
                  keep_redrawn: Tensor) -> dict[str, float | int]:
    """How much of one model's within-setting gap a re-draw of the same prompts reproduces (docs/science.md §7.1).

    gaps, redrawn: (P,) the model's gaps on the prompts and on their re-draws, row by row the same setting and
    pair (same ``(a, b)`` and counts, filler re-drawn); setting, pair: (P,); keep, keep_redrawn: (P,) bool,
    the prompts of the subset judged on each side. Returns:

    - ``r2``: the within-setting R² of the re-draw's mean gap per (setting, pair) as a prediction of the
      kept prompts' gaps (prompts whose cell has no kept re-drawn prompt are left out): what a predictor
      that knows each pair's behaviour in each setting, from fresh prompts, reaches;
    - ``correlation``: the correlation of the within-setting-centred gaps of a prompt and its re-draw (both
      kept): the share of within-setting variance that the (setting, pair) carries;
    - ``prompts``: the kept prompts ``r2`` rests on.
    """
    if not (gaps.shape == redrawn.shape == setting.shape == pair.shape == keep.shape == keep_redrawn.shape):
        raise ShapeError("noise_ceiling: every input must be (P,), row by row the same prompts")
    cells = _cells(setting, pair)
    known, means = torch.unique(cells[keep_redrawn], return_inverse=True)
    cell_mean = torch.zeros(len(known), dtype=torch.float64).index_add_(0, means, redrawn.double()[keep_redrawn])
    cell_mean = cell_mean / torch.bincount(means, minlength=len(known)).double()
    at = torch.searchsorted(known, cells).clamp_max(max(len(known) - 1, 0))
    matched = keep & (known[at] == cells) if len(known) else torch.zeros_like(keep)
    r2 = within_r_squared(cell_mean[at][matched], gaps[matched], setting[matched]) if matched.any() else math.nan
    both = keep & keep_redrawn
    if both.any():
        x, y, groups = gaps[both].double(), redrawn[both].double(), setting[both]
        rho = correlation(x - group_means(x, groups), y - group_means(y, groups))
    else:
        rho = math.nan
    return {"r2": r2, "correlation": rho, "prompts": int(matched.sum())}


def relative_slope_error(model_slope: float, predicted_slope: float, theory_slope: float) -> float | None:
    """``|s_model − s_predicted| / |s_theory|``: a predicted slope's error relative to the theory's slope, the
    same scale for the theory (``s_predicted = s_theory``) and for the null slope 0 (``|s_model| / |s_theory|``);
    None when the theory predicts no slope or a slope is not finite."""
    slopes = (model_slope, predicted_slope, theory_slope)
    if not all(math.isfinite(s) for s in slopes) or theory_slope == 0:
        return None
    return abs(model_slope - predicted_slope) / abs(theory_slope)
