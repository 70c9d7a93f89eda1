"""One trained model on the designed prompts: per-prompt gaps, predictions and baseline inputs.

For every prompt (query ``a``, favoured token ``b``, rival ``j*`` or ``c``), :func:`evaluate_model`
records the model's logit gap ``ξ_b − ξ_rival``, the gaps of the predictions of docs/science.md §4.5 that
need no fit (weights-only; the readout with the measured layer-2 attention, a decomposition; the same
readout with ``R3`` replaced by the theory's ``θ·I``; the scalar form read off without a fit), the terms
the scalar fit needs at every grid point, and what the baselines of docs/science.md §7 need: the
bigram-only gap ``g_ab − g_a,rival`` (the model's own read-off ``g``) and the count-regression features.
:func:`decomposition_error` checks the algebra the readout rests on (docs/science.md §7.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from inductionlab.models.names import hook_name
from inductionlab.prompts.query_pairs import SettingPrompts
from inductionlab.theory.scalar import SCALE_GRID, read_off_scalars, scalar_gap_terms
from inductionlab.theory.trained import (
    RecallMatrices,
    measured_layer2_pattern,
    readout_logits,
    weights_only_logits,
)

FEATURES = ("c_b − c_rival", "u_b − u_rival", "n/T", "(last pair end + 1)/T", "g_ab − g_a,rival", "intercept")


@dataclass
class PromptTable:
    """Per-prompt values of one model on a list of settings; every tensor's first axis is the prompt.

    setting: index into the settings list; pair: query-pair index; count: the setting's ``n``;
    seq_len: ``T``; inside: every planted pair before ``T_train``; gaps: name → (P,) float64 gap
    ``ξ_b − ξ_rival`` (``model``, ``weights_only``, ``readout``, ``theta_readout``, ``scalar_read_off``,
    ``bigram_only``);
    argmax: name → (P,) int64 argmax token (``model``, ``weights_only``, ``readout``); p_b: model
    ``p(b)``; features: (P, 6) count-regression inputs (:data:`FEATURES`); copies_fraction:
    ``#{s : z_s = b} / T``; attention_gap: the model's layer-2 attention (last query) on keys holding
    ``b`` minus on keys holding the rival; terms: (G², 2, P) the scalar gap terms
    (:func:`scalar_gap_terms`).
    """

    setting: Tensor
    pair: Tensor
    count: Tensor
    seq_len: Tensor
    inside: Tensor
    favoured: Tensor
    gaps: dict[str, Tensor]
    argmax: dict[str, Tensor]
    p_b: Tensor
    features: Tensor
    copies_fraction: Tensor
    attention_gap: Tensor
    terms: Tensor

    def select(self, mask: Tensor) -> PromptTable:
        """The rows where ``mask`` (P,) bool is true."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, dict):
                out[f.name] = {k: v[mask] for k, v in value.items()}
            elif f.name == "terms":
                out[f.name] = value[:, :, mask]
            else:
                out[f.name] = value[mask]
        return PromptTable(**out)

    def __len__(self) -> int:
        return int(self.setting.shape[0])


def _pick(values: Tensor, index: Tensor) -> Tensor:
    return values.gather(1, index.reshape(-1, 1)).squeeze(1)


def count_features(prompts: SettingPrompts, g: Tensor) -> Tensor:
    """The count-regression inputs (:data:`FEATURES`) of every prompt: (P, 6) float64.

    Counts follow docs/science.md §4.4: key ``s`` matches when ``z_{s-1} = a``; ``c_j`` are matching keys
    holding ``j``, ``u_j`` the others. ``g`` is the model's read-off bigram score table.
    """
    tokens, a, b, rival = prompts.tokens, prompts.a, prompts.favoured, prompts.rival
    seq_len = tokens.shape[1]
    previous = torch.cat((tokens[:, :1], tokens[:, :-1]), dim=1)
    matches = previous == a[:, None]

    def count(token: Tensor, where: Tensor) -> Tensor:
        return ((tokens == token[:, None]) & where).sum(1).double()

    c_gap = count(b, matches) - count(rival, matches)
    u_gap = count(b, ~matches) - count(rival, ~matches)
    bigram = g[a, b].double() - g[a, rival].double()
    last = (prompts.last_pair_end + 1).clamp_min(0).double() / seq_len
    return torch.stack((c_gap, u_gap, matches.sum(1).double() / seq_len, last, bigram, torch.ones_like(bigram)), 1)


def copy_strength(rec: RecallMatrices, train_len: int) -> float:
    """``θ``: the theory's layer-2 readout ``R3 = θ·I`` (docs/science.md §4.4: ``α_3``), read off this model as
    the mean over tokens of ``α_3(j) = R3[j, j] − mean_{k≠j} R3[j, k]`` (no fit)."""
    return float(read_off_scalars(rec, train_len)["alpha3_j"].double().mean())


def last_position(model, tokens: Tensor, chunk_tokens: int = 4096) -> tuple[Tensor, Tensor]:
    """The model's logits (P, N) and layer-2 attention (P, T) at the last position, in chunks of about
    ``chunk_tokens`` tokens (CPU)."""
    size = max(1, chunk_tokens // tokens.shape[1])
    logits, beta2 = zip(*(measured_layer2_pattern(model, tokens[i : i + size]) for i in range(0, len(tokens), size)),
                        strict=True)
    return torch.cat(logits), torch.cat(beta2)


@torch.no_grad()
def evaluate_model(model, rec: RecallMatrices, prompts: Sequence[SettingPrompts], train_len: int,
                   triggers: Tensor | None, chunk_tokens: int = 4096, grid: Sequence[float] = SCALE_GRID
                   ) -> PromptTable:
    """Run the model and the fit-free predictions on every setting's prompts (CPU).

    ``grid``: the scales of the scalar form's terms (:func:`scalar_gap_terms`); it must hold 1 (the read-off
    form); ``(1.0,)`` when nothing is fitted.

    ``theta_readout`` is the readout with the measured layer-2 attention ``β²`` and ``R3`` replaced by
    ``θ·I`` (:func:`copy_strength`): ``ξ_j ≈ θ Σ_s β²_s 1{z_s = j} + G[a, j]``, so its gap is
    ``θ·(β² on b − on the rival) + g_ab − g_a,rival``.
    """
    g = read_off_scalars(rec, train_len)["g"]
    theta = copy_strength(rec, train_len)
    rows: list[dict] = []
    for index, batch in enumerate(prompts):
        tokens, b, rival = batch.tokens, batch.favoured, batch.rival
        logits, beta2 = last_position(model, tokens, chunk_tokens)
        attention_gap = (beta2 * ((tokens == b[:, None]).float() - (tokens == rival[:, None]).float())).sum(1).double()
        predictions = {"weights_only": weights_only_logits(rec, tokens), "readout": readout_logits(rec, tokens, beta2)}
        terms = scalar_gap_terms(rec, tokens, b, rival, train_len, triggers, grid)
        gaps = {"model": _pick(logits, b) - _pick(logits, rival)}
        gaps.update({k: _pick(v, b) - _pick(v, rival) for k, v in predictions.items()})
        gaps["scalar_read_off"] = terms[_unit_grid_index(grid)].sum(0)
        features = count_features(batch, g)
        gaps["bigram_only"] = features[:, 4]
        gaps["theta_readout"] = theta * attention_gap + features[:, 4]
        p = len(tokens)
        rows.append({
            "setting": torch.full((p,), index, dtype=torch.int64), "pair": batch.pair,
            "count": torch.full((p,), batch.setting.n, dtype=torch.int64),
            "seq_len": torch.full((p,), tokens.shape[1], dtype=torch.int64), "inside": batch.inside(train_len),
            "favoured": b, "gaps": {k: v.double() for k, v in gaps.items()},
            "argmax": {"model": logits.argmax(-1), **{k: v.argmax(-1) for k, v in predictions.items()}},
            "p_b": _pick(torch.softmax(logits, -1), b).double(), "features": features,
            "copies_fraction": (tokens == b[:, None]).sum(1).double() / tokens.shape[1], "terms": terms,
            "attention_gap": attention_gap,
        })
    return PromptTable(**{f.name: _cat([r[f.name] for r in rows], f.name) for f in fields(PromptTable)})


def _unit_grid_index(grid: Sequence[float]) -> int:
    """The grid point with both scales 1: the read-off form without a fit."""
    return grid.index(1.0) * len(grid) + grid.index(1.0)


def _cat(values: list, name: str):
    if isinstance(values[0], dict):
        return {k: torch.cat([v[k] for v in values]) for k in values[0]}
    return torch.cat(values, dim=2 if name == "terms" else 0)


@torch.no_grad()
def decomposition_error(model, rec: RecallMatrices, tokens: Tensor, favoured: Tensor, rival: Tensor
                        ) -> dict[str, float]:
    """The exactness check of the readout's algebra (docs/science.md §4.5, §7.1) on some prompts.

    With ``R = W_U (I + W_F)`` (linear or no feed-forward), the logits at the query are
    ``ξ = R h¹_T + Σ_s β²_s R Φ_2 h¹_s`` (``h¹`` the residual after layer 1, ``β²`` the measured layer-2
    attention). Split ``h¹_s = e_{z_s} + rest_s`` (``rest``: position and layer-1 output): the token part is
    the readout ``Σ_s β²_s R3[:, z_s] + G[a, :]`` (:func:`readout_logits`), the rest is computed from the
    cached ``h¹``. tokens: (B, T); favoured, rival: (B,). Returns the largest ``|ξ_b − ξ_rival|`` error of
    token part + rest against the model's own (fast-path) gap, in logits, and the largest gap itself.
    """
    cache: dict = {}
    model(tokens, query_positions=torch.tensor([tokens.shape[1] - 1]), cache=cache)  # the explicit path
    h1 = cache[hook_name("resid_post", 0)]  # (B, T, d)
    beta2 = cache[hook_name("pattern", 1)][:, 0, -1]  # (B, T)
    readout = model.readout()  # (N, d)
    through_values = readout @ model.phi(2)  # (N, d): R Φ_2
    rest = h1 - model.emb[tokens]
    rebuilt = (readout_logits(rec, tokens, beta2.cpu())
               + (rest[:, -1] @ readout.T + (beta2[:, :, None] * (rest @ through_values.T)).sum(1)).cpu())
    logits, _ = measured_layer2_pattern(model, tokens)
    gap = _pick(logits, favoured) - _pick(logits, rival)
    error = (_pick(rebuilt, favoured) - _pick(rebuilt, rival) - gap).abs()
    return {"max_abs_gap_error": float(error.max()), "max_abs_gap": float(gap.abs().max()), "prompts": len(tokens)}
