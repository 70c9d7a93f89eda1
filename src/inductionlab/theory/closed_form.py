"""Closed-form logits of the ideal associative-memory transformer (docs/science.md §4.4).

In the ``d → ∞`` limit (unit-norm, orthogonal embeddings) the ideal AMT of docs/science.md §4.3
(:func:`inductionlab.theory.ideal.ideal_amt`) computes, for a prompt ``z_1..z_T`` with query
``a = z_T``:

- layer 1 at position ``s``: score ``α_1`` on ``s-1`` and 0 on every other ``r ≤ s``, so
  ``β¹_{s,s-1} = e^{α_1}/(e^{α_1}+s-1)`` and ``1/(e^{α_1}+s-1)`` elsewhere; ``s = 1`` attends to
  itself; ``ape`` queries beyond the training length ``τ`` see all scores 0 (uniform ``1/s``);
- the soft match ``m_s = Σ_{r≤s} β¹_{s,r} 1{z_r = a}``;
- layer 2: ``S²_{T,s} = α_2 1{a∈Q} m_s``, ``β²_{T,s} = softmax_s(S²_{T,s})``;
- logits ``ξ_j = α_3 Σ_{s≤T} β²_{T,s} 1{z_s = j} + g_{a j}``.

Positions: docs/science.md writes them 1-based (``s = 1..T``); tensors here are 0-based, so
position ``s`` there is index ``s - 1`` here. ``τ = train_len`` keeps its meaning: 0-based query
indices ``1..τ-1`` (``2..τ`` there) have a previous-token score, index ``t ≥ τ`` (``t > τ`` there)
does not.

The **stronger** AMT (docs/science.md §4.3) replaces the scalars by per-term weights: ``α_1(t)`` per query
position, ``α_2(a)`` per trigger token, ``α_3(j)`` per output token.

Everything is vectorised over the batch; nothing loops over tokens or positions.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from inductionlab.errors import ConfigError

THEORY_POS_ENCODINGS = ("ape", "rpe", "bias")


@dataclass
class ClosedFormLogits:
    """docs/science.md §4.4 for a batch of prompts; shapes with ``B`` prompts of length ``T``, ``N`` tokens."""

    logits: Tensor  # (B, N)  ξ_j = α_3 Σ_s β²_{T,s} 1{z_s = j} + g_{a j}
    in_context: Tensor  # (B, N)  α_3 Σ_s β²_{T,s} 1{z_s = j}
    global_: Tensor  # (B, N)  g_{a j}
    layer1_pattern: Tensor  # (B, T, T)  β¹_{s,r} (query s, key r); an expanded view, the same for every prompt
    match: Tensor  # (B, T)  m_s
    layer2_pattern: Tensor  # (B, T)  β²_{T,·}


# ---------------------------------------------------------------------------- validation (shared with ideal.py)


def check_alphas(alphas: Sequence[float]) -> tuple[float, float, float]:
    """``(α_1, α_2, α_3)``, each a finite number > 0, or :class:`ConfigError`."""
    try:
        values = tuple(float(a) for a in alphas)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"alphas: expected three numbers (α_1, α_2, α_3), got {alphas!r}") from err
    if len(values) != 3:
        raise ConfigError(f"alphas: expected three numbers (α_1, α_2, α_3), got {len(values)}")
    for i, a in enumerate(values, start=1):
        if not (math.isfinite(a) and a > 0):
            raise ConfigError(f"alphas: α_{i} must be a finite number > 0, got {a}")
    return values  # type: ignore[return-value]


def check_pos_enc(pos_enc: str) -> None:
    if pos_enc not in THEORY_POS_ENCODINGS:
        raise ConfigError(
            f"pos_enc: the ideal AMT is defined for {', '.join(THEORY_POS_ENCODINGS)}; got {pos_enc!r}"
        )


def check_scores(g: Tensor, n_tokens: int | None = None) -> int:
    """``g`` must be a finite (N, N) float tensor; returns ``N``."""
    if not isinstance(g, Tensor) or g.dim() != 2 or g.shape[0] != g.shape[1]:
        shape = tuple(g.shape) if isinstance(g, Tensor) else type(g).__name__
        raise ConfigError(f"g: expected an (N, N) tensor of bigram scores g[i, j], got {shape}")
    if n_tokens is not None and g.shape[0] != n_tokens:
        raise ConfigError(f"g: expected shape ({n_tokens}, {n_tokens}) for n_tokens={n_tokens}, got {tuple(g.shape)}")
    if not g.is_floating_point() or not bool(torch.isfinite(g).all()):
        raise ConfigError("g: expected finite floating-point scores (clamp zero probabilities before taking logs)")
    return g.shape[0]


def trigger_mask(triggers: Tensor | None, n_tokens: int) -> Tensor:
    """``1{k ∈ Q}`` as an (N,) bool tensor; ``None`` means every token is a trigger (random triggers)."""
    if triggers is None:
        return torch.ones(n_tokens, dtype=torch.bool)
    if not isinstance(triggers, Tensor) or triggers.dim() != 1 or triggers.is_floating_point():
        raise ConfigError("triggers: expected a 1-D integer tensor of token ids (or None for random triggers)")
    if triggers.numel() and (int(triggers.min()) < 0 or int(triggers.max()) >= n_tokens):
        raise ConfigError(f"triggers: token ids must lie in [0, {n_tokens}), got {triggers.tolist()}")
    mask = torch.zeros(n_tokens, dtype=torch.bool)
    mask[triggers.long().cpu()] = True
    return mask


def check_weights(name: str, value: Tensor | None, length: int) -> Tensor | None:
    """A stronger-AMT per-term weight vector: finite, 1-D, of the given length (any sign: fitted values may be)."""
    if value is None:
        return None
    if not isinstance(value, Tensor) or value.dim() != 1 or value.shape[0] != length:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ConfigError(f"{name}: expected a 1-D tensor of length {length}, got {shape}")
    if not bool(torch.isfinite(value.double()).all()):
        raise ConfigError(f"{name}: weights must be finite")
    return value


def check_positive_int(name: str, value: object, meaning: str = "") -> int:
    """``value`` as a Python int ≥ 1 (numpy integers accepted), or :class:`ConfigError`."""
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        number = 0
    if isinstance(value, bool) or number < 1:
        raise ConfigError(f"{name}: expected a positive integer{meaning}, got {value!r}")
    return number


def check_train_len(train_len: int | None, pos_enc: str, alpha1_t: Tensor | None) -> int | None:
    """``τ`` as an int (or ``None``) after checking ``alpha1_t`` against it."""
    if train_len is not None:
        train_len = check_positive_int("train_len", train_len, " (the training length τ)")
    if alpha1_t is not None:
        if pos_enc != "ape":
            raise ConfigError("alpha1_t: per-position α_1(t) is defined for pos_enc='ape' only")
        if train_len is None:
            raise ConfigError("alpha1_t: needs train_len (τ); alpha1_t has one weight per query position t < τ")
        check_weights("alpha1_t", alpha1_t, train_len)
    return train_len


# ---------------------------------------------------------------------------- the closed form


def previous_token_pattern(
    seq_len: int, alpha1: float, *, pos_enc: str = "ape", train_len: int | None = None,
    alpha1_t: Tensor | None = None, dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Layer-1 attention ``β¹`` of the ideal AMT (docs/science.md §4.4): (T, T), rows = queries, causal.

    Query index ``t ≥ 1`` (0-based) puts score ``α_1`` (or ``alpha1_t[t]``) on key ``t - 1`` and 0 on
    every other key ``r ≤ t``; for ``ape`` only while ``t < τ`` (docs/science.md ``t ≤ τ``), beyond that the
    row is uniform. Index 0 has one key, itself. Computed as a softmax, so ``α_1 → ∞`` stays finite.
    """
    pos = torch.arange(seq_len)
    if alpha1_t is not None:
        weight = torch.zeros(seq_len, dtype=dtype)
        k = min(seq_len, alpha1_t.shape[0])
        weight[:k] = alpha1_t[:k].to(dtype)
    else:
        weight = torch.full((seq_len,), float(alpha1), dtype=dtype)
    has_previous = pos >= 1
    if pos_enc == "ape" and train_len is not None:
        has_previous = has_previous & (pos < train_len)
    weight = torch.where(has_previous, weight, torch.zeros((), dtype=dtype))
    scores = torch.zeros(seq_len, seq_len, dtype=dtype)
    scores[pos[1:], pos[:-1]] = weight[1:]
    scores = scores.masked_fill(pos[None, :] > pos[:, None], float("-inf"))
    return torch.softmax(scores, dim=-1)


def soft_match(tokens: Tensor, alpha1: float, *, pos_enc: str = "ape", train_len: int | None = None,
               alpha1_t: Tensor | None = None, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """Layer 1 of the closed form (docs/science.md §4.4): ``β¹`` (T, T) and the soft match ``m_s`` (B, T).

    ``m_s = Σ_{r≤s} β¹_{s,r} 1{z_r = a}`` with the query ``a = z_T``; arguments as in
    :func:`closed_form_logits` (already validated there).
    """
    seq_len = tokens.shape[1]
    beta1 = previous_token_pattern(
        seq_len, alpha1, pos_enc=pos_enc, train_len=train_len, alpha1_t=alpha1_t, dtype=dtype
    ).to(tokens.device)  # (T, T)
    is_query = (tokens == tokens[:, -1:]).to(dtype)  # (B, T): 1{z_r = a}
    return beta1, is_query @ beta1.T


def closed_form_logits(
    tokens: Tensor,
    alphas: Sequence[float],
    g: Tensor,
    *,
    pos_enc: str = "ape",
    train_len: int | None = None,
    triggers: Tensor | None = None,
    alpha1_t: Tensor | None = None,
    alpha2_a: Tensor | None = None,
    alpha3_j: Tensor | None = None,
) -> ClosedFormLogits:
    """docs/science.md §4.4: the ideal AMT's logits at the last position, in closed form.

    tokens: (B, T) int64 ``z_1..z_T``; the query is ``a = z_T`` (``tokens[:, -1]``).
    alphas: ``(α_1, α_2, α_3)``, each > 0; g: (N, N) bigram scores ``g[i, j]``.
    pos_enc: ``ape`` (query positions beyond ``τ = train_len`` get no previous-token score;
    ``train_len=None`` means no limit), ``rpe`` or ``bias`` (no limit; ``train_len`` ignored).
    triggers: (K,) int64, ``Q``; ``None`` = every token (random triggers).
    Stronger AMT (docs/science.md §4.3): ``alpha1_t`` (τ,) per 0-based query index ``t`` (entry 0 unused: the
    first position has no previous token; ``ape`` only), ``alpha2_a`` (N,) per query token,
    ``alpha3_j`` (N,) per output token; each replaces the corresponding scalar.

    Computed in ``g``'s dtype (at least float32); use float64 ``g`` for exact comparisons.
    """
    a1, a2, a3 = check_alphas(alphas)
    check_pos_enc(pos_enc)
    n = check_scores(g)
    if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.is_floating_point() or tokens.shape[1] < 1:
        raise ConfigError("tokens: expected a (batch, seq) integer tensor with seq ≥ 1")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= n):
        raise ConfigError(f"tokens: ids must lie in [0, {n}) (N from g)")
    train_len = check_train_len(train_len, pos_enc, alpha1_t)
    check_weights("alpha2_a", alpha2_a, n)
    check_weights("alpha3_j", alpha3_j, n)

    dtype = torch.promote_types(g.dtype, torch.float32)
    device = tokens.device
    tokens = tokens.long()
    batch, seq_len = tokens.shape
    query = tokens[:, -1]  # a = z_T, (B,)
    beta1, match = soft_match(tokens, a1, pos_enc=pos_enc, train_len=train_len, alpha1_t=alpha1_t, dtype=dtype)

    a2_of_query = (alpha2_a.to(device, dtype)[query] if alpha2_a is not None
                   else torch.full((batch,), a2, dtype=dtype, device=device))
    a2_of_query = a2_of_query * trigger_mask(triggers, n).to(device)[query]  # α_2(a) 1{a ∈ Q}
    beta2 = torch.softmax(a2_of_query[:, None] * match, dim=-1)  # (B, T)

    copied = torch.zeros(batch, n, dtype=dtype, device=device).scatter_add_(1, tokens, beta2)  # Σ_s β² 1{z_s=j}
    a3_vec = alpha3_j.to(device, dtype) if alpha3_j is not None else torch.full((n,), a3, dtype=dtype, device=device)
    in_context = copied * a3_vec
    global_ = g.to(device, dtype)[query]
    return ClosedFormLogits(
        logits=in_context + global_, in_context=in_context, global_=global_,
        layer1_pattern=beta1.expand(batch, seq_len, seq_len), match=match, layer2_pattern=beta2,
    )


def perfect_previous_token_logits(
    tokens: Tensor, alpha2: float | Tensor, alpha3: float | Tensor, g: Tensor, triggers: Tensor | None = None
) -> Tensor:
    """docs/science.md §4.4, the ``α_1 → ∞`` limit (a perfect previous-token head): (B, N) logits.

    ``ξ_j = α_3 (c_j e^{α_2} + u_j) / (n e^{α_2} + T - n) + g_{a j}`` with query ``a = z_T`` and, over
    the ``T`` keys ``s = 1..T`` (1-based, as in docs/science.md):

    - a key ``s ≥ 2`` *matches* when ``z_{s-1} = a`` (the previous-token head reads ``z_{s-1}``),
      including ``s = T`` when ``z_{T-1} = a``;
    - key ``s = 1`` has no previous token: its layer-1 attention is on itself, so it matches when
      ``z_1 = a`` (docs/science.md §4.4); counting it is what makes this the exact limit of
      :func:`closed_form_logits` (equivalently: read ``z_0 := z_1``);
    - ``n`` = number of matching keys, ``c_j`` = matching keys with ``z_s = j``, ``u_j`` = the other
      keys with ``z_s = j``; ``T - n`` = non-matching keys.

    For ``a ∉ Q`` the layer-2 scores vanish and ``e^{α_2}`` becomes 1 (uniform average).
    No training-length limit: this is the ``rpe``/``bias`` limit, and ``ape``'s when ``T ≤ τ``.
    ``alpha2``/``alpha3`` may be scalars or (N,) per-token tensors (stronger AMT: ``α_2(a)``, ``α_3(j)``).
    """
    n_tok = check_scores(g)
    if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.is_floating_point() or tokens.shape[1] < 1:
        raise ConfigError("tokens: expected a (batch, seq) integer tensor with seq ≥ 1")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= n_tok):
        raise ConfigError(f"tokens: ids must lie in [0, {n_tok}) (N from g)")
    dtype = torch.promote_types(g.dtype, torch.float32)
    device = tokens.device
    tokens = tokens.long()
    batch, seq_len = tokens.shape
    query = tokens[:, -1]
    previous = torch.cat((tokens[:, :1], tokens[:, :-1]), dim=1)  # z_{s-1}, with z_0 := z_1
    matches = (previous == query[:, None]).to(dtype)  # (B, T)
    n = matches.sum(1, keepdim=True)
    c = torch.zeros(batch, n_tok, dtype=dtype, device=device).scatter_add_(1, tokens, matches)
    u = torch.zeros(batch, n_tok, dtype=dtype, device=device).scatter_add_(1, tokens, 1 - matches)

    a2 = _per_token("alpha2", alpha2, n_tok, dtype, device)[query]
    a2 = a2 * trigger_mask(triggers, n_tok).to(device)[query]
    boost = torch.exp(a2)[:, None]  # e^{α_2(a)}, or 1 for a ∉ Q
    a3 = _per_token("alpha3", alpha3, n_tok, dtype, device)
    return a3 * (c * boost + u) / (n * boost + seq_len - n) + g.to(device, dtype)[query]


def _per_token(name: str, value: float | Tensor, n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    if isinstance(value, Tensor) and value.dim() == 1:
        check_weights(name, value, n)
        return value.to(device, dtype)
    try:
        scalar = float(value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{name}: expected a number or an (N,) tensor, got {value!r}") from err
    if not math.isfinite(scalar):
        raise ConfigError(f"{name}: must be finite, got {scalar}")
    return torch.full((n,), scalar, dtype=dtype, device=device)
