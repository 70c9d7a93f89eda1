"""The statistics the hijack claims are made of (docs/science.md §5, §7); plain functions of 1-D tensors.

Gaps are compared prompt by prompt. A pooled R² over settings that differ in ``n``, ``T`` or the
pair's position mostly rewards getting each setting's *mean* right, which the setting-mean oracle
does perfectly; the **within-setting** R² removes each setting's mean from the measured and from
the predicted gaps before comparing them, so only the variation inside a setting (different
query pairs, fillers and placements) counts.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


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
