"""Alias tables (Walker 1977, Vose's construction): O(1) categorical draws from fixed rows.

Shared by the sampler (docs/science.md §2) and the designed prompts (docs/science.md §5).
"""

from __future__ import annotations

import torch

from inductionlab.errors import ConfigError, NumericalError


def alias_tables(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Alias tables (Walker 1977) for each row of ``weights`` (R, N) ≥ 0, each row with positive sum.

    Returns ``prob`` (R, N) float64 and ``alias`` (R, N) int64: to draw from row r, take a column
    ``c`` uniformly and a uniform ``u``; the draw is ``c`` if ``u < prob[r, c]`` else ``alias[r, c]``.

    Built by Vose's sweep, all rows in lockstep: with cells scaled to mean 1, "light" cells
    (< 1) are filled in order from the current "heavy" cell (≥ 1); a heavy whose remainder drops
    below 1 is itself filled from the next heavy. Each of ≤ N steps makes one assignment per row
    with (R,) tensor ops, so building is fast for large N. Zero-weight cells are light with
    ``prob = 0`` and a positive-weight alias, so they are never drawn. The tables are checked to
    reproduce the rows.
    """
    w = weights.detach().to(device="cpu", dtype=torch.float64)
    n_rows, n = w.shape
    totals = w.sum(dim=1, keepdim=True)
    if not bool((totals > 0).all()) or bool((w < 0).any()):
        raise ConfigError("alias_tables: every row needs non-negative weights with a positive sum")
    target = w / totals
    scaled = target * n
    prob = torch.ones(n_rows, n, dtype=torch.float64)
    alias = torch.arange(n).repeat(n_rows, 1)
    is_light = scaled < 1.0
    n_light = is_light.sum(dim=1)
    n_heavy = n - n_light
    lights = torch.sort((~is_light).to(torch.int8), dim=1, stable=True).indices  # lights first, in order
    heavies = torch.sort(is_light.to(torch.int8), dim=1, stable=True).indices  # heavies first, in order
    rows = torch.arange(n_rows)
    li = torch.zeros(n_rows, dtype=torch.int64)  # next light to fill
    hj = torch.zeros(n_rows, dtype=torch.int64)  # current heavy donor
    rest = scaled[rows, heavies[:, 0]]  # the donor's remaining mass
    for _ in range(n):
        light = lights[rows, li.clamp(max=n - 1)]
        donor = heavies[rows, hj.clamp(max=n - 1)]
        next_donor = heavies[rows, (hj + 1).clamp(max=n - 1)]
        fill_light = (rest >= 1.0) & (li < n_light)
        fill_donor = (rest < 1.0) & (hj + 1 < n_heavy)
        act = fill_light | fill_donor
        if not bool(act.any()):
            break
        cell = torch.where(fill_light, light, donor)
        light_mass = scaled[rows, light]
        new_prob = torch.where(fill_light, light_mass, rest.clamp(0.0, 1.0))
        new_alias = torch.where(fill_light, donor, next_donor)
        prob[rows, cell] = torch.where(act, new_prob, prob[rows, cell])
        alias[rows, cell] = torch.where(act, new_alias, alias[rows, cell])
        rest = torch.where(fill_light, rest - (1.0 - light_mass), rest)
        rest = torch.where(fill_donor, scaled[rows, next_donor] - (1.0 - rest), rest)
        li += fill_light
        hj += fill_donor
    # cells never filled (the last donor, and leftovers equal to 1 up to rounding) keep prob 1
    rebuilt = prob / n
    rebuilt.scatter_add_(1, alias, (1.0 - prob) / n)
    if not torch.allclose(rebuilt, target, rtol=0.0, atol=1e-12):
        raise NumericalError("alias_tables: tables do not reproduce the distribution (numerical failure)")
    return prob, alias
