"""Theory for trained models (docs/science.md §4.5): recall matrices, three predictions, score decomposition.

A trained 2-layer associative-memory transformer is read through its recall matrices
(everything downstream of a layer counts):

- ``R3[j, k] = u_jᵀ (I + W_F) W_O^2 W_V^2 e_k``: what attending to token k writes to logit j;
- ``G[i, j] = u_jᵀ (I + W_F) e_i``: the direct and bigram path of query token i;
- ``R2[a, b] = c·e_aᵀ W_K^2 Φ_1 e_b``: the induction key memory;
- layer 1: its score table over positions (``ape``), token × distance (``rpe``) or distances
  (``bias``).

Three predictions of the logits at the last position of a prompt, side by side:

1. :func:`weights_only_logits`: §4.4 run with these matrices in place of ``α·identity``, cross
   terms between embedding families dropped, no forward pass;
2. :func:`readout_logits`: the model's own measured layer-2 pattern with ``R3`` and ``G``;
3. the scalar form of :mod:`inductionlab.theory.scalar`: the §4.4 closed form with ``α_1(t)``,
   ``α_2(a)``, ``α_3(j)`` and ``g`` read off the diagonals of these matrices (the stronger AMT),
   fitted to the measured logit gaps by least squares.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from inductionlab.errors import ConfigError
from inductionlab.models.amt import AMTransformer
from inductionlab.models.names import ABSOLUTE_ENCODINGS, hook_name
from inductionlab.models.positional import clipped_distances


@dataclass
class RecallMatrices:
    """docs/science.md §4.5; all float32 on the CPU."""

    R3: Tensor  # (N, N) [j, k]
    G: Tensor  # (N, N) [i, j]
    R2: Tensor  # (N, N) [a, b]
    layer1: Tensor  # ape: (L, L) [t, s]; rpe: (N, Δ+1) [token, δ]; bias: (Δ+1,) [δ]
    pos_enc: str
    max_rel_dist: int


def _check(model: AMTransformer) -> None:
    if not model.stores_memories or model.n_layers != 2:  # the recall matrices read its stored memories
        raise ConfigError("theory: needs a 2-layer associative-memory transformer (model.arch: amt, n_layers: 2)")
    if model.pos_enc not in ("ape", "ape-sincos", "rpe", "bias"):
        raise ConfigError(f"theory: no closed form for pos_enc {model.pos_enc!r}; allowed: ape, ape-sincos, rpe, bias")
    if model.ff == "mlp":
        raise ConfigError("theory: the readout needs a linear or no feed-forward (model.ff: linear or none)")


@torch.no_grad()
def recall_matrices(model: AMTransformer, seq_len: int) -> RecallMatrices:
    """Read ``R3``, ``G``, ``R2`` and the layer-1 table off a trained model (docs/science.md §4.5)."""
    _check(model)
    readout = model.readout()  # (N, d): rows u_jᵀ (I + W_F)
    emb, c = model.emb, model.score_scale
    r3 = readout @ model.phi(2) @ emb.T  # [j, k]
    g = emb @ readout.T  # [i, j]
    r2 = c * emb @ model.wk2 @ model.phi(1) @ emb.T  # [a, b]
    if model.pos_enc in ABSOLUTE_ENCODINGS:
        pos = model.pos[:seq_len]
        layer1 = c * pos @ model.wk1 @ pos.T
    elif model.pos_enc == "rpe":
        layer1 = c * emb @ model.wk1 @ model.rel.T
    else:
        layer1 = model.bias1.clone()
    return RecallMatrices(r3.cpu(), g.cpu(), r2.cpu(), layer1.cpu(), model.pos_enc, model.max_rel_dist)


def _rms(x: Tensor) -> float:
    return float(x.double().square().mean().sqrt())


def cross_talk(rec: RecallMatrices, triggers: Tensor | None = None, train_len: int | None = None) -> dict[str, float]:
    """Each memory's cross-talk (docs/science.md §11): RMS of its recall matrix off the stored associations over
    RMS on them. 0 for a perfect memory; about 1 for a random matrix; of order √(N/d) for a sum of N outer
    products of random embeddings in ℝ^d.

    - ``wo``: ``R3[j, k]``, stored on the diagonal (attending to ``k`` writes logit ``k``);
    - ``wk2``: ``R2[a, b]``, stored on the diagonal, rows ``a`` among the ``triggers`` (all rows when ``None``);
    - ``wk1``: the previous-token memory of layer 1 — ``ape``: the causal rows ``t = 1..τ−1`` of the position
      table (``train_len`` = τ, default all its rows), stored at ``s = t − 1`` against every other ``s ≤ t``;
      ``rpe``: the token × distance table, stored at distance 1 against the other distances; ``bias``: the
      distance-1 bias against the others.
    """
    out = {}
    for name, matrix in (("wo", rec.R3), ("wk2", rec.R2)):
        rows = torch.arange(matrix.shape[0]) if triggers is None else triggers.cpu()
        stored = rows[:, None] == torch.arange(matrix.shape[1])  # each row's own column
        out[name] = _rms(matrix[rows][~stored]) / _rms(matrix[rows][stored])
    table = rec.layer1
    if rec.pos_enc in ABSOLUTE_ENCODINGS:
        tau = table.shape[0] if train_len is None else min(train_len, table.shape[0])
        t = torch.arange(tau)
        causal = (t[None, :] <= t[:, None])[1:]  # rows 1..τ−1, keys s ≤ t
        stored = (t[None, :] == t[:, None] - 1)[1:]
        block = table[1:tau, :tau]
        out["wk1"] = _rms(block[causal & ~stored]) / _rms(block[stored])
    elif rec.pos_enc == "rpe":
        out["wk1"] = _rms(torch.cat((table[:, :1], table[:, 2:]), 1)) / _rms(table[:, 1])
    else:
        out["wk1"] = _rms(torch.cat((table[:1], table[2:]))) / _rms(table[1:2])
    return out


def _rpe_soft_match(table: Tensor, tokens: Tensor, key_match: Tensor, max_dist: int) -> Tensor:
    """``m_s = Σ_{r≤s} β¹_{s,r} k_r`` with ``β¹_{s,·} = softmax_r(table[z_s, min(s−r, Δ)])``: (B, T).

    Keys at distance ``δ < Δ`` have their own score; all keys at distance ``≥ Δ`` share
    ``table[z_s, Δ]``, so they enter through a running sum: O(B·T·Δ) instead of O(B·T²).
    """
    batch, seq_len = tokens.shape
    scores = table[tokens]  # (B, T, Δ+1): query s, distance δ
    near = min(max_dist, seq_len)
    positions = torch.arange(seq_len)
    shifted = torch.stack([torch.roll(key_match, delta, dims=1) for delta in range(near)], dim=-1)  # k_{s−δ}
    valid = positions[:, None] >= torch.arange(near)[None, :]  # (T, Δ): s − δ ≥ 0
    far_count = (positions - max_dist + 1).clamp_min(0).to(key_match.dtype)  # keys r ≤ s − Δ
    far_sum = torch.cat((torch.zeros(batch, max_dist, dtype=key_match.dtype),
                         key_match.cumsum(1)), dim=1)[:, :seq_len]  # Σ_{r ≤ s−Δ} k_r
    near_scores = scores[..., :near].masked_fill(~valid, float("-inf"))
    far_scores = torch.where(far_count > 0, scores[..., max_dist], torch.full_like(scores[..., 0], float("-inf")))
    top = torch.maximum(near_scores.max(-1).values, far_scores)
    near_w = torch.exp(near_scores - top[..., None])
    far_w = torch.exp(far_scores - top)
    return ((near_w * shifted).sum(-1) + far_w * far_sum) / (near_w.sum(-1) + far_w * far_count)


def weights_only_logits(rec: RecallMatrices, tokens: Tensor) -> Tensor:
    """Prediction 1: §4.4 with the recall matrices, cross terms dropped, no forward pass.

    tokens: (B, T) int64 with the query ``a = z_T`` last.  Returns logits (B, N).
    Layer 1 uses only its memory term (position × position for ``ape``, token × distance for
    ``rpe``, distance for ``bias``); layer 2 scores key s by ``Σ_r β¹_{s,r} R2[a, z_r]``; the output
    is ``Σ_s β²_s R3[:, z_s] + G[a, :]``.
    """
    seq_len = tokens.shape[1]
    query = tokens[:, -1]
    key_match = torch.gather(rec.R2[query], 1, tokens)  # (B, T): R2[a, z_r]
    if rec.pos_enc == "rpe":
        match = _rpe_soft_match(rec.layer1, tokens, key_match, rec.max_rel_dist)
    else:
        if rec.pos_enc in ABSOLUTE_ENCODINGS:
            if seq_len > rec.layer1.shape[0]:
                raise ConfigError(f"prompt length {seq_len} exceeds the {rec.layer1.shape[0]} positions read off "
                                  "layer 1")
            scores1 = rec.layer1[:seq_len, :seq_len]
        else:
            scores1 = rec.layer1[clipped_distances(torch.arange(seq_len), seq_len, rec.max_rel_dist)]
        match = key_match @ AMTransformer.pattern(scores1, torch.arange(seq_len)).T  # one (T, T) pattern, all prompts
    return readout_logits(rec, tokens, torch.softmax(match, dim=-1))


def readout_logits(rec: RecallMatrices, tokens: Tensor, beta2: Tensor) -> Tensor:
    """Prediction 2: ``ξ_j ≈ Σ_s β²_{T,s} R3[j, z_s] + G[a, j]`` with a given layer-2 pattern.

    tokens: (B, T); beta2: (B, T) the layer-2 attention of the last position.  Returns (B, N).
    """
    values = rec.R3.T[tokens]  # (B, T, N): row s is R3[:, z_s]
    return (beta2[:, :, None] * values).sum(1) + rec.G[tokens[:, -1]]


@torch.no_grad()
def measured_layer2_pattern(model: AMTransformer, tokens: Tensor) -> tuple[Tensor, Tensor]:
    """The model's logits and layer-2 attention at the last position: ((B, N), (B, T)).

    Layer 2 is computed for the last query only (layer 1 for every position, as its keys need).
    """
    last = torch.full((1,), tokens.shape[1] - 1, dtype=torch.int64, device=tokens.device)
    logits, pattern = model.logits_and_pattern(tokens, last)
    return logits[:, -1].cpu(), pattern[:, -1].cpu()


@torch.no_grad()
def score_decomposition(model: AMTransformer, tokens: Tensor) -> dict[str, dict[str, float]]:
    """Which pairs of embedding families carry the layer-2 scores of the last position (docs/science.md §4.5).

    The residual after layer 1 is a sum of four families: token ``e_{z_t}``, position ``p_t``
    (absolute encodings), and the layer-1 output split into its token part ``Φ_1 Σ β¹ e`` and
    position part ``Φ_1 Σ β¹ p``. The score ``c·h_Tᵀ W_K^2 h_s`` is the sum of one term per
    (query family, key family) pair. For each pair this returns, averaged over prompts:

    - ``induction_margin``: the term's mean over the induction keys (``z_{s-1} = a``) minus its
      mean over the other keys — how much the pair pushes attention onto the right keys;
    - ``spread``: the term's standard deviation across keys — how much it moves attention at all.
    """
    _check(model)
    cache: dict = {}
    model(tokens, cache=cache)
    beta1 = cache[hook_name("pattern", 0)][:, 0]  # (B, T, T)
    families = {"token": model.emb[tokens]}
    if model.pos_enc in ABSOLUTE_ENCODINGS:
        families["position"] = model.pos[: tokens.shape[1]].expand(tokens.shape[0], -1, -1)
    families["layer1_token"] = model.apply_phi(beta1 @ model.emb[tokens], 1)
    if model.pos_enc in ABSOLUTE_ENCODINGS:
        families["layer1_position"] = model.apply_phi(beta1 @ families["position"], 1)
    induction = torch.zeros_like(tokens, dtype=torch.bool)
    induction[:, 1:] = tokens[:, :-1] == tokens[:, -1:]
    has_both = induction.any(1) & (~induction).any(1)
    wk = model.score_scale * model.wk2
    margins, spreads = {}, {}
    for qname, qvec in families.items():
        query = qvec[:, -1] @ wk  # (B, d)
        for kname, kvec in families.items():
            term = (kvec @ query[:, :, None]).squeeze(-1)  # (B, T)
            name = f"{qname}×{kname}"
            spreads[name] = term.std(dim=1).mean().item()
            on = (term * induction).sum(1) / induction.sum(1).clamp_min(1)
            off = (term * ~induction).sum(1) / (~induction).sum(1).clamp_min(1)
            margins[name] = (on - off)[has_both].mean().item() if has_both.any() else float("nan")
    return {"induction_margin": margins, "spread": spreads}
