"""Theory for trained models (SCIENCE §4.5): recall matrices, three predictions, score decomposition.

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
3. :func:`scalar_terms` + :func:`fit_scalar`: the §4.4 closed form with ``α_1(t)``, ``α_2(a)``,
   ``α_3(j)`` and ``g`` read off the diagonals of the recall matrices (the stronger AMT), with the
   scales of its in-context and global terms refitted by least squares on the designed prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from inductionlab.errors import ConfigError
from inductionlab.models.amt import AMTransformer
from inductionlab.models.positional import ABSOLUTE_ENCODINGS, clipped_distances


@dataclass
class RecallMatrices:
    """SCIENCE §4.5; all float32 on the CPU."""

    R3: Tensor  # (N, N) [j, k]
    G: Tensor  # (N, N) [i, j]
    R2: Tensor  # (N, N) [a, b]
    layer1: Tensor  # ape: (L, L) [t, s]; rpe: (N, Δ+1) [token, δ]; bias: (Δ+1,) [δ]
    pos_enc: str
    max_rel_dist: int


def _check(model: AMTransformer) -> None:
    if not isinstance(model, AMTransformer) or model.n_layers != 2:
        raise ConfigError("theory: needs a 2-layer associative-memory transformer (model.arch: amt, n_layers: 2)")
    if model.pos_enc not in ("ape", "ape-sincos", "rpe", "bias"):
        raise ConfigError(f"theory: no closed form for pos_enc {model.pos_enc!r}; allowed: ape, ape-sincos, rpe, bias")
    if model.ff == "mlp":
        raise ConfigError("theory: the readout needs a linear or no feed-forward (model.ff: linear or none)")


@torch.no_grad()
def recall_matrices(model: AMTransformer, seq_len: int) -> RecallMatrices:
    """Read ``R3``, ``G``, ``R2`` and the layer-1 table off a trained model (SCIENCE §4.5)."""
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


def _causal_softmax(scores: Tensor) -> Tensor:
    seq_len = scores.shape[-1]
    mask = torch.ones(seq_len, seq_len, dtype=torch.bool).tril()
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)


def weights_only_logits(rec: RecallMatrices, tokens: Tensor) -> Tensor:
    """Prediction 1: §4.4 with the recall matrices, cross terms dropped, no forward pass.

    tokens: (B, T) int64 with the query ``a = z_T`` last.  Returns logits (B, N).
    Layer 1 uses only its memory term (position × position for ``ape``); layer 2 scores key s by
    ``Σ_r β¹_{s,r} R2[a, z_r]``; the output is ``Σ_s β²_s R3[:, z_s] + G[a, :]``.
    """
    batch, seq_len = tokens.shape
    if rec.pos_enc in ABSOLUTE_ENCODINGS:
        if seq_len > rec.layer1.shape[0]:
            raise ConfigError(f"prompt length {seq_len} exceeds the {rec.layer1.shape[0]} positions read off layer 1")
        scores1 = rec.layer1[:seq_len, :seq_len].expand(batch, seq_len, seq_len)
    else:
        dist = clipped_distances(torch.arange(seq_len), seq_len, rec.max_rel_dist)  # (T, T)
        if rec.pos_enc == "rpe":
            scores1 = rec.layer1[tokens][:, :, None, :].expand(-1, -1, seq_len, -1)
            scores1 = torch.gather(scores1, 3, dist.expand(batch, -1, -1)[..., None]).squeeze(-1)
        else:
            scores1 = rec.layer1[dist].expand(batch, -1, -1)
    beta1 = _causal_softmax(scores1)  # (B, T, T)
    query = tokens[:, -1]
    key_match = torch.gather(rec.R2[query], 1, tokens)  # (B, T): R2[a, z_r]
    beta2 = torch.softmax((beta1 @ key_match[..., None]).squeeze(-1), dim=-1)  # (B, T)
    return readout_logits(rec, tokens, beta2)


def readout_logits(rec: RecallMatrices, tokens: Tensor, beta2: Tensor) -> Tensor:
    """Prediction 2: ``ξ_j ≈ Σ_s β²_{T,s} R3[j, z_s] + G[a, j]`` with a given layer-2 pattern.

    tokens: (B, T); beta2: (B, T) the layer-2 attention of the last position.  Returns (B, N).
    """
    values = rec.R3.T[tokens]  # (B, T, N): row s is R3[:, z_s]
    return (beta2[:, :, None] * values).sum(1) + rec.G[tokens[:, -1]]


@torch.no_grad()
def measured_layer2_pattern(model: AMTransformer, tokens: Tensor) -> tuple[Tensor, Tensor]:
    """The model's logits and layer-2 attention at the last position: ((B, N), (B, T))."""
    cache: dict = {}
    logits = model(tokens, cache=cache)
    pattern = cache["blocks.1.attn.hook_pattern"][:, 0, -1, :]
    return logits[:, -1].cpu(), pattern.cpu()


def read_off_scalars(rec: RecallMatrices, train_len: int) -> dict[str, Tensor]:
    """The stronger AMT's weights from the diagonals (SCIENCE §4.3, §4.5).

    ``α_3(j) = R3[j, j] − mean_{k≠j} R3[j, k]``, ``α_2(a) = R2[a, a] − mean_{b≠a} R2[a, b]``,
    ``α_1(t)`` = the score of the previous position minus the mean of the others (``ape``), and
    ``g = G`` centred per row.
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


@torch.no_grad()
def score_decomposition(model: AMTransformer, tokens: Tensor) -> dict[str, dict[str, float]]:
    """Which pairs of embedding families carry the layer-2 scores of the last position (SCIENCE §4.5).

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
    beta1 = cache["blocks.0.attn.hook_pattern"][:, 0]  # (B, T, T)
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


def scalar_terms(rec: RecallMatrices, tokens: Tensor, train_len: int, triggers: Tensor | None,
                 alpha1_scale: float = 1.0, alpha2_scale: float = 1.0):
    """Prediction 3's closed form with the read-off ``α_1(t)``, ``α_2(a)``, ``α_3(j)``, ``g``.

    tokens: (B, T); triggers: (K,) or ``None`` (random triggers).  Returns the
    :class:`~inductionlab.theory.closed_form.ClosedFormLogits` (in-context and global terms apart),
    so that :func:`fit_scalar` can refit their scales by least squares.
    """
    from inductionlab.theory.closed_form import closed_form_logits

    s = read_off_scalars(rec, train_len)
    pos_enc = "ape" if rec.pos_enc in ABSOLUTE_ENCODINGS else rec.pos_enc
    alpha1 = alpha1_scale * float(s["alpha1"]) if "alpha1" in s else 1.0
    alpha1_t = alpha1_scale * s["alpha1_t"] if "alpha1_t" in s else None
    return closed_form_logits(
        tokens, (max(alpha1, 1e-6), 1.0, 1.0), s["g"].double(), pos_enc=pos_enc,
        train_len=train_len if pos_enc == "ape" else None, triggers=triggers,
        alpha1_t=alpha1_t, alpha2_a=alpha2_scale * s["alpha2_a"], alpha3_j=s["alpha3_j"],
    )


SCALE_GRID = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


def fit_scalar_form(rec: RecallMatrices, prompts: list[tuple[Tensor, int, int]], measured: Tensor, train_len: int,
                    triggers: Tensor | None) -> dict[str, float]:
    """Least-squares fit of the stronger-AMT form on designed prompts (SCIENCE §4.5, "scalar").

    prompts: ``(tokens (B, T), b, rival)`` per setting; measured: the model's gaps ``ξ_b − ξ_rival``,
    concatenated in the same order. The read-off ``α_1(t)`` and ``α_2(a)`` are scaled by factors
    from a grid; for each pair of factors the scales of the in-context and global terms and an
    intercept are fitted by linear least squares; the pair with the smallest residual wins.
    """
    best: dict[str, float] = {}
    for a1 in SCALE_GRID:
        for a2 in SCALE_GRID:
            ic, gl = [], []
            for tokens, b, rival in prompts:
                terms = scalar_terms(rec, tokens, train_len, triggers, a1, a2)
                ic.append((terms.in_context[:, b] - terms.in_context[:, rival]).float())
                gl.append((terms.global_[:, b] - terms.global_[:, rival]).float())
            ic_gap, gl_gap = torch.cat(ic), torch.cat(gl)
            theta = fit_scalar(ic_gap, gl_gap, measured)
            residual = ((theta[0] * ic_gap + theta[1] * gl_gap + theta[2] - measured) ** 2).sum().item()
            if not best or residual < best["residual"]:
                best = {"alpha1_scale": a1, "alpha2_scale": a2, "theta_in_context": theta[0],
                        "theta_global": theta[1], "theta_0": theta[2], "residual": residual}
    return best


def fitted_scalar_logits(rec: RecallMatrices, tokens: Tensor, train_len: int, triggers: Tensor | None,
                         fit: dict[str, float]) -> Tensor:
    """Prediction 3 with the parameters of :func:`fit_scalar_form`: (B, N)."""
    terms = scalar_terms(rec, tokens, train_len, triggers, fit["alpha1_scale"], fit["alpha2_scale"])
    return (fit["theta_in_context"] * terms.in_context + fit["theta_global"] * terms.global_ + fit["theta_0"]).float()


def fit_scalar(in_context_gap: Tensor, global_gap: Tensor, measured_gap: Tensor) -> tuple[float, float, float]:
    """Least-squares scales ``(θ_in_context, θ_global, θ_0)`` of the §4.4 form on designed prompts.

    Fits ``measured ≈ θ_ic · in_context + θ_g · global + θ_0`` over prompts (1-D tensors of gaps):
    the read-off ``α_3(j)`` and ``g`` up to one common scale each (SCIENCE §4.5, "scalar").
    """
    design = torch.stack((in_context_gap, global_gap, torch.ones_like(global_gap)), dim=1).double()
    theta = torch.linalg.lstsq(design, measured_gap.double()[:, None]).solution[:, 0]
    return float(theta[0]), float(theta[1]), float(theta[2])
