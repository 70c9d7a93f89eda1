"""The order in which milestones fall, seed by seed and over seeds (docs/science.md §6, §7.1).

A seed is *in order* (strictly increasing steps), *tied*, in *another order* or *undetermined*
(:func:`classify`). Over seeds the statistic is the share in order of the determined seeds, judged with its
exact interval against the chance that three milestones fall in one given order (1/6); the six orders' counts
are reported beside it (:func:`order_distribution`), so that a failing order says which one came instead.
"""

from __future__ import annotations

from itertools import permutations
from typing import Any

from inductionlab.experiments.kit.claims import SeedValues

Milestones = dict[str, dict[str, float | None]]  # seed → milestone name → step (None: never reached)


def classify(ms: dict[str, float | None], keys: tuple[str, ...]) -> str:
    """``in_order``, ``tied``, ``other_order`` or ``undetermined`` for one seed's milestones.

    The order is broken as soon as a later milestone of ``keys`` is reached before an earlier one,
    or while the earlier one is never reached; a seed is *undetermined* only when the milestones it
    reached come in order and the missing ones are all at the end (they may still come in order).
    """
    steps = [ms.get(k) for k in keys]
    reached = [s for s in steps if s is not None]
    first_missing = next((i for i, s in enumerate(steps) if s is None), len(steps))
    if any(s is not None for s in steps[first_missing:]):
        return "other_order"  # a later milestone reached while an earlier one never is
    if any(a > b for a, b in zip(reached, reached[1:], strict=False)):
        return "other_order"
    if len(set(reached)) < len(reached):
        return "tied"
    return "in_order" if first_missing == len(steps) else "undetermined"


def order_statistic(milestones: Milestones, keys: tuple[str, ...]) -> dict[str, Any]:
    """How often the milestones ``keys`` come in this strict order, over seeds (docs/science.md §7, §7.1).

    ``fraction``: the share in order of the determined seeds (an undetermined seed is left out of the count,
    as of the claim's interval, :func:`order_seeds`); None when no seed is determined. ``orders``: the count
    of each order (:func:`order_distribution`).
    """
    counts = {"in_order": 0, "tied": 0, "other_order": 0, "undetermined": 0}
    for ms in milestones.values():
        counts[classify(ms, keys)] += 1
    determined = len(milestones) - counts["undetermined"]
    fraction = counts["in_order"] / determined if determined else None
    return {"fraction": fraction, "seeds": len(milestones), **counts,
            "orders": order_distribution(milestones, keys)}


def seed_order(ms: dict[str, float | None], keys: tuple[str, ...]) -> str:
    """The order one seed's milestones fell in, as ``"a < b < c"``; ``"tied"`` when two fell on one step;
    ``"not all reached"`` when one never was."""
    steps = {k: ms.get(k) for k in keys}
    if any(s is None for s in steps.values()):
        return "not all reached"
    if len(set(steps.values())) < len(steps):
        return "tied"
    return " < ".join(sorted(keys, key=lambda k: steps[k]))


def order_distribution(milestones: Milestones, keys: tuple[str, ...]) -> dict[str, int]:
    """How many seeds fell in each of the ``len(keys)!`` orders, tied, or did not reach every milestone."""
    out = {" < ".join(p): 0 for p in permutations(keys)} | {"tied": 0, "not all reached": 0}
    for ms in milestones.values():
        out[seed_order(ms, keys)] += 1
    return out


def order_seeds(milestones: Milestones, keys: tuple[str, ...], chance: float) -> SeedValues:
    """Each seed's outcome for an order claim's interval (docs/science.md §7.1): 1 in order, 0 tied or in another
    order; an undetermined seed is left out (and named), not counted at the chance rate."""
    outcome = {"in_order": 1.0, "tied": 0.0, "other_order": 0.0, "undetermined": None}
    return SeedValues({seed: outcome[classify(ms, keys)] for seed, ms in milestones.items()}, chance, fraction=True)


def order_text(order: dict[str, Any]) -> str:
    """The statistic of an order claim in words, with its counts."""
    return (f"fraction of the determined seeds in that order, an undetermined seed left out ({order['in_order']} in "
            f"order, {order['tied']} tied, {order['other_order']} in another order, {order['undetermined']} "
            f"undetermined, of {order['seeds']})")
