"""The ideal associative-memory transformer (AMT) of docs/science.md §4.3.

A 2-layer :class:`~inductionlab.models.amt.AMTransformer` (``init="theory"``, linear ``W_F``) whose
trained matrices are written as sums of outer products between its own frozen random embeddings,
so that each one is an associative memory ``v_jᵀ W u_i ≈ λ_ij``:

- ``W_K^1 = α_1 Σ_{t=2..τ} p_t p_{t-1}ᵀ`` (``ape``), ``α_1 Σ_k e_k r_1ᵀ`` (``rpe``), or ``b_1 = α_1``
  and ``W_K^1 = 0`` (``bias``): a previous-token head;
- ``W_K^2 = α_2 Σ_{k∈Q} e_k (Φ_1 e_k)ᵀ``: query token ``a`` matches keys whose layer-1 output
  carries ``Φ_1 e_a`` (an induction head);
- ``W_O^2 = α_3 Σ_k u_k (W_V^2 e_k)ᵀ``: copy the attended token to its output embedding;
- ``W_F = Σ_{i,j} g_ij u_j e_iᵀ``: the global bigram scores.

Orientation follows the model: scores are ``h_tᵀ W_K h_s`` (query on the left), so in
``Σ x yᵀ`` the query vector is ``x`` and the key vector ``y``; values/outputs map right to left.

Positions: docs/science.md's ``t = 2..τ`` (1-based) are the 0-based query rows ``1..τ-1`` of ``pos``,
each paired with key row ``t - 1``; so ``W_K^1 = α_1 P[1:τ]ᵀ P[0:τ-1]`` (one matmul).

The closed form these weights reach as ``d → ∞`` is :mod:`inductionlab.theory.closed_form`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from inductionlab.errors import ConfigError
from inductionlab.models.amt import AMTransformer
from inductionlab.models.names import ABSOLUTE_ENCODINGS
from inductionlab.theory.closed_form import (
    check_alphas,
    check_pos_enc,
    check_positive_int,
    check_scores,
    check_train_len,
    check_weights,
    trigger_mask,
)
from inductionlab.theory.scalar import read_off_scalars
from inductionlab.theory.trained import RecallMatrices

#: Probabilities below this are clamped before the log in :func:`bigram_scores`.
MIN_BIGRAM_PROB = 1e-6


def bigram_scores(bigram: Tensor, min_prob: float = MIN_BIGRAM_PROB) -> Tensor:
    """docs/science.md §4.3's default ``g_ij = log π_b(j|i)``, centred per row: (N, N) → (N, N) float32.

    ``bigram[i, j] = π_b(j|i)``. Zero (or tiny) probabilities are clamped to ``min_prob`` (default
    1e-6, i.e. a floor of ``log 1e-6 ≈ -13.8``) so that ``g`` stays finite; the mean over ``j`` of
    each row is then subtracted (logits are shift-invariant per row, and centring keeps the
    ``W_F`` memory free of a constant component). Note the floor enters the row mean: a row with
    many impossible successors gets large positive scores for its possible ones.
    """
    if not isinstance(bigram, Tensor) or bigram.dim() != 2 or bigram.shape[0] != bigram.shape[1]:
        shape = tuple(bigram.shape) if isinstance(bigram, Tensor) else type(bigram).__name__
        raise ConfigError(f"bigram: expected an (N, N) tensor of probabilities π_b(j|i), got {shape}")
    if not 0 < min_prob < 1:
        raise ConfigError(f"min_prob: expected a number in (0, 1), got {min_prob}")
    probs = bigram.double()
    if not bool(torch.isfinite(probs).all()) or bool((probs < 0).any()):
        raise ConfigError("bigram: probabilities must be finite and ≥ 0")
    logp = probs.clamp_min(min_prob).log()
    return (logp - logp.mean(dim=1, keepdim=True)).float()


def ideal_amt(
    n_tokens: int,
    d_model: int,
    alphas: Sequence[float],
    g: Tensor,
    *,
    pos_enc: str = "ape",
    train_len: int,
    triggers: Tensor | None = None,
    max_len: int = 2048,
    max_rel_dist: int = 64,
    init_seed: int = 0,
    alpha1_t: Tensor | None = None,
    alpha2_a: Tensor | None = None,
    alpha3_j: Tensor | None = None,
) -> AMTransformer:
    """docs/science.md §4.3: a 2-layer ``AMTransformer`` with the ideal memories written into its weights.

    alphas: ``(α_1, α_2, α_3)``, each > 0. g: (N, N) scores ``g[i, j]`` (e.g. :func:`bigram_scores`).
    pos_enc: ``ape``, ``rpe`` or ``bias``. train_len: ``τ`` (``ape`` stores previous-token pairs for
    docs/science.md positions ``2..τ`` only; must be ≤ ``max_len``; unused by ``rpe``/``bias``).
    triggers: (K,) int64 token ids ``Q``; ``None`` = every token (random triggers).
    Stronger AMT: ``alpha1_t`` (τ,) weights the pair (query index ``t``, key ``t-1``), 0-based, entry 0
    unused (``ape`` only); ``alpha2_a`` (N,) per trigger token; ``alpha3_j`` (N,) per output token.
    Each replaces its scalar (the scalar must still be given and valid).

    The other matrices keep their ``init="theory"`` random values (``N(0, 1/d)``, ``c = 1``) from
    ``init_seed``; every matrix is a frozen buffer (``trained=()``).
    """
    check_alphas(alphas)
    a1, a2, a3 = (float(a) for a in alphas)
    check_pos_enc(pos_enc)
    n_tokens = check_positive_int("n_tokens", n_tokens)
    d_model = check_positive_int("d_model", d_model)
    check_scores(g, n_tokens)
    train_len = check_positive_int("train_len", train_len, " (the training length τ)")
    if pos_enc == "ape" and train_len > max_len:
        raise ConfigError(f"train_len={train_len} exceeds max_len={max_len}: ape has no position embedding there")
    if pos_enc in ("rpe", "bias") and max_rel_dist < 2:
        raise ConfigError(
            f"max_rel_dist: must be ≥ 2 for {pos_enc!r} so that distance 1 is not merged with farther keys, "
            f"got {max_rel_dist}"
        )
    check_train_len(train_len, pos_enc, alpha1_t)
    check_weights("alpha2_a", alpha2_a, n_tokens)
    check_weights("alpha3_j", alpha3_j, n_tokens)
    in_q = trigger_mask(triggers, n_tokens)

    model = AMTransformer(
        n_tokens, d_model, n_layers=2, pos_enc=pos_enc, max_len=max_len, max_rel_dist=max_rel_dist,
        init="theory", ff="linear", trained=(), init_seed=init_seed,
    )
    emb, unemb = model.emb, model.unemb  # (N, d) rows e_k, u_k
    with torch.no_grad():
        # layer 1: previous-token head
        if pos_enc == "ape":
            weight = (alpha1_t.to(emb.dtype)[1:train_len] if alpha1_t is not None
                      else torch.full((train_len - 1,), a1, dtype=emb.dtype))
            query_pos, key_pos = model.pos[1:train_len], model.pos[: train_len - 1]  # p_t, p_{t-1}
            model.wk1.copy_((weight[:, None] * query_pos).T @ key_pos)
        elif pos_enc == "rpe":
            model.wk1.copy_(a1 * emb.sum(0)[:, None] * model.rel[1][None, :])  # Σ_k e_k r_1ᵀ
        else:  # bias
            model.wk1.zero_()
            model.bias1.zero_()
            model.bias1[1] = a1
        # layer 2 keys: Φ_1 e_k as rows, computed without forming Φ_1 (d×d×d)
        phi1_emb = (emb @ model.wv1.T) @ model.wo1.T  # (N, d), rows (Φ_1 e_k)ᵀ
        a2_vec = alpha2_a.to(emb.dtype) if alpha2_a is not None else torch.full((n_tokens,), a2, dtype=emb.dtype)
        a2_vec = a2_vec * in_q.to(emb.dtype)  # sum over k ∈ Q only
        model.wk2.copy_((a2_vec[:, None] * emb).T @ phi1_emb)
        # layer 2 output: copy e_k → u_k
        a3_vec = alpha3_j.to(emb.dtype) if alpha3_j is not None else torch.full((n_tokens,), a3, dtype=emb.dtype)
        model.wo2.copy_((a3_vec[:, None] * unemb).T @ (emb @ model.wv2.T))
        # feed-forward: W_F = Σ g_ij u_j e_iᵀ = Uᵀ gᵀ E
        model.wf.copy_(unemb.T @ g.to(emb.dtype).T @ emb)
    return model


def ideal_twin(rec: RecallMatrices, d_model: int, train_len: int, *, init_seed: int = 0, max_len: int = 2048,
               triggers: Tensor | None = None) -> AMTransformer:
    """The ideal AMT at width ``d_model`` with the stronger-AMT weights read off a trained model (docs/science.md
    §11): ``α_1`` (``α_1(t)`` for ``ape``), ``α_2(a)``, ``α_3(j)`` and ``g`` from :func:`read_off_scalars` of its
    recall matrices ``rec``, written into fresh random embeddings (:func:`ideal_amt`). Both models then answer
    to one closed form, so what separates their agreement with it is how each stores its memories.

    train_len: ``τ``; triggers: (K,) or ``None`` (random triggers). An ``rpe`` or ``bias`` ``α_1`` read off
    below 0 is taken as 1e-6 (the closed form needs ``α_1 > 0``); ``max_len`` bounds ``ape`` prompts.
    """
    s = read_off_scalars(rec, train_len)
    pos_enc = "ape" if rec.pos_enc in ABSOLUTE_ENCODINGS else rec.pos_enc
    alpha1 = 1.0 if pos_enc == "ape" else max(float(s["alpha1"]), 1e-6)
    return ideal_amt(rec.G.shape[0], d_model, (alpha1, 1.0, 1.0), s["g"], pos_enc=pos_enc, train_len=train_len,
                     triggers=triggers, max_len=max(max_len, train_len), max_rel_dist=rec.max_rel_dist,
                     init_seed=init_seed, alpha1_t=s.get("alpha1_t"), alpha2_a=s["alpha2_a"], alpha3_j=s["alpha3_j"])
