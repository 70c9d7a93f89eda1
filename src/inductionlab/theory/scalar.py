"""Prediction 3 of docs/science.md §4.5: the scalar (stronger-AMT) form, read off and fitted to logit gaps.

The §4.4 closed form with per-term weights read off the diagonals of a trained model's recall
matrices (:func:`read_off_scalars`) splits each logit into an in-context term and a global
(bigram) term. What the experiments compare is a **gap** ``ξ_b − ξ_rival`` between two tokens,
and a constant added to every logit cancels in a gap, so the fitted form is a form of the gap::

    gap ≈ θ_ic · (ic_b − ic_rival) + θ_g · (g_ab − g_a,rival) + θ_0

with the read-off ``α_1`` and ``α_2`` scaled by factors from :data:`SCALE_GRID`. For each pair of
factors ``(θ_ic, θ_g, θ_0)`` is a linear least-squares fit; the pair with the smallest residual
wins (:func:`fit_scalar_form`). Every fitted parameter, the intercept included, stays in the
predictions (:meth:`ScalarFit.gap`, :func:`fitted_scalar_logits`). The fit takes the terms of
several models at once, so that it can be fitted on some seeds and scored on others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from inductionlab.errors import ShapeError
from inductionlab.models.names import ABSOLUTE_ENCODINGS
from inductionlab.theory.closed_form import ClosedFormLogits, closed_form_logits, soft_match, trigger_mask
from inductionlab.theory.trained import RecallMatrices

SCALE_GRID = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


def read_off_scalars(rec: RecallMatrices, train_len: int) -> dict[str, Tensor]:
    """The stronger AMT's weights from the diagonals (docs/science.md §4.3, §4.5).

    ``α_3(j) = R3[j, j] − mean_{k≠j} R3[j, k]``, ``α_2(a) = R2[a, a] − mean_{b≠a} R2[a, b]``,
    ``α_1(t)`` = the score of the previous position minus the mean of the others (``ape``; one
    number for ``rpe`` and ``bias``), and ``g = G`` centred per row.
    """
    def diag_contrast(m: Tensor) -> Tensor:
        n = m.shape[0]
        off = (m.sum(1) - m.diagonal()) / (n - 1)
        return m.diagonal() - off

    out = {"alpha3_j": diag_contrast(rec.R3), "alpha2_a": diag_contrast(rec.R2),
           "g": rec.G - rec.G.mean(1, keepdim=True)}
    if rec.pos_enc in ABSOLUTE_ENCODINGS:
        table = rec.layer1[:train_len, :train_len]
        t = torch.arange(1, table.shape[0])
        prev = table[t, t - 1]
        tril = torch.ones_like(table, dtype=torch.bool).tril()
        sums = (table * tril).sum(1)[1:]
        others = (sums - prev) / t.clamp_min(1)
        out["alpha1_t"] = torch.cat((torch.zeros(1), prev - others))
    elif rec.pos_enc == "rpe":
        out["alpha1"] = (rec.layer1[:, 1] - rec.layer1[:, [0] + list(range(2, rec.layer1.shape[1]))].mean(1)).mean()
    else:
        out["alpha1"] = rec.layer1[1] - torch.cat((rec.layer1[:1], rec.layer1[2:])).mean()
    return out


def _layer1(s: dict[str, Tensor], rec: RecallMatrices, train_len: int, alpha1_scale: float) -> dict:
    """The layer-1 arguments of the closed form for read-off scalars ``s`` scaled by ``alpha1_scale``."""
    pos_enc = "ape" if rec.pos_enc in ABSOLUTE_ENCODINGS else rec.pos_enc
    if pos_enc == "ape":
        return {"alpha1": 1.0, "pos_enc": pos_enc, "train_len": train_len,
                "alpha1_t": alpha1_scale * s["alpha1_t"].double()}
    return {"alpha1": max(alpha1_scale * float(s["alpha1"]), 1e-6), "pos_enc": pos_enc, "train_len": None,
            "alpha1_t": None}


def scalar_terms(rec: RecallMatrices, tokens: Tensor, train_len: int, triggers: Tensor | None,
                 alpha1_scale: float = 1.0, alpha2_scale: float = 1.0) -> ClosedFormLogits:
    """The §4.4 closed form with the read-off ``α_1(t)``, ``α_2(a)``, ``α_3(j)``, ``g`` (float64).

    tokens: (B, T); triggers: (K,) or ``None`` (random triggers); the scales multiply the read-off
    ``α_1`` and ``α_2``. Returns the in-context and global terms apart, (B, N) each.
    """
    s = read_off_scalars(rec, train_len)
    layer1 = _layer1(s, rec, train_len, alpha1_scale)
    return closed_form_logits(
        tokens, (layer1["alpha1"], 1.0, 1.0), s["g"].double(), pos_enc=layer1["pos_enc"],
        train_len=layer1["train_len"], triggers=triggers, alpha1_t=layer1["alpha1_t"],
        alpha2_a=alpha2_scale * s["alpha2_a"].double(), alpha3_j=s["alpha3_j"].double(),
    )


def scalar_gap_terms(rec: RecallMatrices, tokens: Tensor, favoured: Tensor, rival: Tensor, train_len: int,
                     triggers: Tensor | None, grid: Sequence[float] = SCALE_GRID) -> Tensor:
    """The two terms of the gap ``ξ_favoured − ξ_rival`` at every grid point: (G², 2, B) float64.

    favoured, rival: (B,) int64 token ids per prompt. Row ``i1·G + i2`` holds the scales
    ``(grid[i1], grid[i2])`` of ``α_1`` and ``α_2``; entry 0 is the in-context term, entry 1 the
    global term. The same numbers as :func:`scalar_terms` at each grid point, computed with one
    layer-1 pass per ``α_1`` scale (layer 1 does not depend on ``α_2``).
    """
    s = read_off_scalars(rec, train_len)
    tokens = tokens.long()
    query = tokens[:, -1]
    alpha2 = s["alpha2_a"].double() * trigger_mask(triggers, rec.G.shape[0])  # α_2(a) 1{a ∈ Q}
    alpha3 = s["alpha3_j"].double()
    copy_weight = ((tokens == favoured[:, None]).double() * alpha3[favoured][:, None]
                   - (tokens == rival[:, None]).double() * alpha3[rival][:, None])  # (B, T)
    g = s["g"].double()
    global_gap = g[query, favoured] - g[query, rival]
    out = []
    for a1 in grid:
        layer1 = _layer1(s, rec, train_len, a1)
        _, match = soft_match(tokens, layer1.pop("alpha1"), dtype=torch.float64, **layer1)
        for a2 in grid:
            beta2 = torch.softmax((a2 * alpha2)[query][:, None] * match, dim=-1)
            out.append(torch.stack(((beta2 * copy_weight).sum(1), global_gap)))
    return torch.stack(out)


@dataclass(frozen=True)
class ScalarFit:
    """A least-squares fit of the scalar gap form (module docstring); every parameter is used."""

    alpha1_scale: float
    alpha2_scale: float
    theta_in_context: float
    theta_global: float
    theta_0: float
    residual: float
    n_prompts: int

    def grid_index(self, grid: Sequence[float] = SCALE_GRID) -> int:
        return list(grid).index(self.alpha1_scale) * len(grid) + list(grid).index(self.alpha2_scale)

    def gap(self, terms: Tensor, grid: Sequence[float] = SCALE_GRID) -> Tensor:
        """The fitted gaps of prompts whose :func:`scalar_gap_terms` are ``terms``: (B,) float64."""
        at = terms[self.grid_index(grid)]
        return self.theta_in_context * at[0] + self.theta_global * at[1] + self.theta_0

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def fit_scalar(in_context_gap: Tensor, global_gap: Tensor, measured_gap: Tensor) -> tuple[float, float, float]:
    """Least-squares ``(θ_in_context, θ_global, θ_0)`` of ``measured ≈ θ_ic·ic + θ_g·global + θ_0`` (1-D gaps)."""
    design = torch.stack((in_context_gap, global_gap, torch.ones_like(global_gap)), dim=1).double()
    theta = torch.linalg.lstsq(design, measured_gap.double()[:, None], driver="gelsd").solution[:, 0]
    return float(theta[0]), float(theta[1]), float(theta[2])


def fit_scalar_form(terms: Sequence[Tensor], measured: Sequence[Tensor],
                    grid: Sequence[float] = SCALE_GRID) -> ScalarFit:
    """Fit the scalar gap form on the prompts of one or several models (docs/science.md §4.5, "scalar").

    terms: per model, its :func:`scalar_gap_terms` (G², 2, B_m); measured: per model, the model's
    gaps (B_m,) in the same order. Each model keeps its own read-off memories; the grid scales and
    ``θ`` are shared. Returns the grid point with the smallest residual sum of squares.
    """
    if not terms or len(terms) != len(measured):
        raise ShapeError("fit_scalar_form: needs one measured gap vector per model's terms, and at least one model")
    stacked = torch.cat([t.double() for t in terms], dim=2)  # (G², 2, B)
    target = torch.cat([m.double().reshape(-1) for m in measured])
    if stacked.shape[0] != len(grid) ** 2 or stacked.shape[2] != target.shape[0]:
        raise ShapeError(f"fit_scalar_form: terms {tuple(stacked.shape)} do not match the grid ({len(grid)}²) "
                          f"and {target.shape[0]} measured gaps")
    best: ScalarFit | None = None
    for index in range(stacked.shape[0]):
        theta = fit_scalar(stacked[index, 0], stacked[index, 1], target)
        fitted = theta[0] * stacked[index, 0] + theta[1] * stacked[index, 1] + theta[2]
        residual = float(((fitted - target) ** 2).sum())
        if best is None or residual < best.residual:
            best = ScalarFit(float(grid[index // len(grid)]), float(grid[index % len(grid)]), *theta,
                             residual=residual, n_prompts=int(target.shape[0]))
    assert best is not None
    return best


def fitted_scalar_logits(rec: RecallMatrices, tokens: Tensor, train_len: int, triggers: Tensor | None,
                         fit: ScalarFit, favoured: Tensor) -> Tensor:
    """Logits (B, N) float64 of the fitted scalar form, whose gap ``ξ_favoured − ξ_rival`` is :meth:`ScalarFit.gap`.

    ``θ_0`` is the gap form's intercept: a constant added to every logit would cancel, so it is
    added to the logit of the token the gap favours (``favoured``, (B,): the in-context successor
    ``b``), which keeps the intercept in every gap measured against ``b``.
    """
    terms = scalar_terms(rec, tokens, train_len, triggers, fit.alpha1_scale, fit.alpha2_scale)
    logits = fit.theta_in_context * terms.in_context + fit.theta_global * terms.global_
    return logits.scatter_add(1, favoured.reshape(-1, 1),
                              torch.full((logits.shape[0], 1), fit.theta_0, dtype=logits.dtype))
