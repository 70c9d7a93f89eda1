"""Memory-recall probes: weight-space algebra, no data (docs/science.md §4.1).

Each probe reads one trained matrix as an associative memory ``W ≈ Σ λ_ij v_j u_iᵀ`` and asks
whether ``argmax_j v_jᵀ W u_i`` recalls the right key. Every probe reports its accuracy, the mean
margin (recalled score minus the best other) and the accuracy a random memory would have.
These probes are defined for the associative-memory transformer (its frozen embeddings make the
keys and values well defined).
"""

from __future__ import annotations

import torch
from torch import Tensor

from inductionlab.models.amt import AMTransformer
from inductionlab.models.names import ABSOLUTE_ENCODINGS, amt_matrix


def _recall(scores: Tensor, targets: Tensor) -> tuple[float, float]:
    """Accuracy and mean margin of ``argmax_j scores[i, j] == targets[i]`` over rows i."""
    rows = torch.arange(scores.shape[0], device=scores.device)
    right = scores[rows, targets]
    others = scores.clone()
    others[rows, targets] = float("-inf")
    acc = (scores.argmax(dim=1) == targets).float().mean().item()
    return acc, (right - others.max(dim=1).values).mean().item()


def wo_probe(model: AMTransformer) -> dict[str, float]:
    """``wo``: is ``argmax_j u_jᵀ W_O^L W_V^L e_k = k`` for each token k? (docs/science.md §4.1).

    This is the memory of ``W_O^L`` itself, exactly as written (the ideal AMT of §4.3 scores 1).
    With a linear ``W_F`` the readout that reaches the logits, ``u_jᵀ (I + W_F) W_O^L W_V^L e_k``,
    is a different quantity (what the network outputs, not what ``W_O^L`` stores): ``wo_ff``.
    """
    phi = model.phi(model.n_layers)
    keys = torch.arange(model.n_tokens, device=phi.device)
    acc, margin = _recall(model.emb @ phi.T @ model.unemb.T, keys)  # [k, j] = u_jᵀ Φ_L e_k
    out = {"wo": acc, "wo_margin": margin, "wo_chance": 1.0 / model.n_tokens}
    if model.ff == "linear":
        acc, margin = _recall(model.emb @ phi.T @ model.readout().T, keys)  # u_jᵀ (I + W_F) Φ_L e_k
        out.update(wo_ff=acc, wo_ff_margin=margin, wo_ff_chance=1.0 / model.n_tokens)
    return out


def wk2_probe(model: AMTransformer, triggers: Tensor | None) -> dict[str, float]:
    """``wk2``: is ``argmax_b e_aᵀ W_K^2 Φ_1 e_b = a`` over all N tokens b, for each trigger a? (docs/science.md §4.1).

    ``triggers``: (K,) int64, or ``None`` for random triggers (then every token is a trigger).
    Chance ``1/N``. With fixed triggers, ``wk2_triggers`` ranks among the K triggers only, as in
    Bietti et al.'s probe (chance ``1/K``): an easier question, right as soon as the matrix points
    the right way among K keys.
    """
    if model.n_layers < 2:
        return {}
    keys = torch.arange(model.n_tokens, device=model.emb.device) if triggers is None else triggers
    recall = model.emb[keys] @ model.mat(amt_matrix("wk", 2)) @ model.phi(1) @ model.emb.T  # (K, N)
    acc, margin = _recall(recall, keys)
    out = {"wk2": acc, "wk2_margin": margin, "wk2_chance": 1.0 / model.n_tokens}
    if triggers is not None:
        acc, margin = _recall(recall[:, keys], torch.arange(len(keys), device=recall.device))
        out.update(wk2_triggers=acc, wk2_triggers_margin=margin, wk2_triggers_chance=1.0 / len(keys))
    return out


def layer1_position_scores(model: AMTransformer, seq_len: int) -> Tensor:
    """``c · p_tᵀ W_K^1 p_s`` for absolute encodings: (T, T), row = query position t."""
    pos = model.pos[:seq_len]
    return model.score_scale * pos @ model.wk1 @ pos.T


def wk1_probe(model: AMTransformer, train_len: int, eval_len: int | None = None) -> dict[str, float]:
    """``wk1``: does layer 1 score the previous position highest? (docs/science.md §4.1).

    Absolute encodings: for each position t ≥ 1, the argmax over earlier positions ``s < t``
    (``wk1``, causal) and over all positions ``s < eval_len`` (``wk1_all``), reported also for
    ``t < train_len`` and ``t ≥ train_len`` separately (``wk1_beyond``); ``wk1_all_64``: over all positions with
    ``t, s < 64``, Bietti et al.'s variant with ``L = 64`` (docs/science.md §6).  ``rpe``: for each query
    token a, is ``argmax_δ e_aᵀ W_K^1 r_δ`` at δ = 1 (over δ ≥ 1, and over all δ)?  ``bias``: is
    ``b_1`` the largest bias?  ``rope``/``none``: no position memory to read, so no entry.
    """
    if model.pos_enc in ABSOLUTE_ENCODINGS:
        eval_len = min(eval_len or train_len, model.max_len)
        scores = layer1_position_scores(model, eval_len)
        t = torch.arange(1, eval_len, device=scores.device)
        causal = scores[1:].masked_fill(torch.ones_like(scores[1:], dtype=torch.bool).triu(1), float("-inf"))
        causal = causal[:, :-1]  # keys s < t: row t-1 of this view is query t, keys 0..t-1
        causal_hit = causal.argmax(dim=1) == t - 1
        all_hit = scores[1:].argmax(dim=1) == t - 1
        inside = t < train_len
        out = {
            "wk1": causal_hit[inside].float().mean().item(),
            "wk1_chance": (1.0 / t[inside].float()).mean().item(),
            "wk1_all": all_hit[inside].float().mean().item(),
            "wk1_all_chance": 1.0 / eval_len,
        }
        window = min(64, train_len, eval_len)
        out["wk1_all_64"] = (scores[1:window, :window].argmax(dim=1) == t[: window - 1] - 1).float().mean().item()
        out["wk1_all_64_chance"] = 1.0 / window
        if (~inside).any():
            out["wk1_beyond"] = causal_hit[~inside].float().mean().item()
            out["wk1_all_beyond"] = all_hit[~inside].float().mean().item()
        return out
    if model.pos_enc == "rpe":
        rel = model.score_scale * model.emb @ model.wk1 @ model.rel.T  # (N, Δ+1)
        return {
            "wk1": (rel[:, 1:].argmax(dim=1) == 0).float().mean().item(),
            "wk1_chance": 1.0 / model.max_rel_dist,
            "wk1_all": (rel.argmax(dim=1) == 1).float().mean().item(),
            "wk1_all_chance": 1.0 / (model.max_rel_dist + 1),
        }
    if model.pos_enc == "bias":
        bias = model.mat(amt_matrix("bias", 1))  # a tie (e.g. all zero at init) is not a recall
        return {"wk1": float(bool(bias[1] > bias[2:].max())), "wk1_chance": 1.0 / model.max_rel_dist,
                "wk1_all": float(bool(bias[1] > torch.cat((bias[:1], bias[2:])).max())),
                "wk1_all_chance": 1.0 / (model.max_rel_dist + 1)}
    return {}


def ff_probe(model: AMTransformer, bigram: Tensor, triggers: Tensor | None) -> dict[str, float]:
    """``ff``: mean ``KL(π_b(·|i) ‖ softmax(W_U W_F e_i))`` over non-trigger tokens i (docs/science.md §4.1).

    Chance: the same KL for a uniform prediction.  Lower is better; 0 means ``W_F`` stores the
    bigram exactly.  Needs a linear ``W_F``.
    """
    if model.ff != "linear":
        return {}
    keep = torch.ones(model.n_tokens, dtype=torch.bool, device=bigram.device)
    if triggers is not None:
        keep[triggers] = False
    target = bigram.to(model.emb)[keep]
    log_pred = torch.log_softmax(model.emb[keep] @ model.wf.T @ model.unemb.T, dim=1)
    log_target = torch.log(target.clamp_min(1e-30))
    kl = (target * (log_target - log_pred)).sum(1).mean().item()
    chance = (target * (log_target + torch.log(torch.tensor(float(model.n_tokens))))).sum(1).mean().item()
    return {"ff_kl": kl, "ff_kl_chance": chance}


@torch.no_grad()
def memory_probes(
    model: AMTransformer, train_len: int, triggers: Tensor | None, bigram: Tensor, eval_len: int | None = None
) -> dict[str, float]:
    """Every §4.1 probe the model has, in one flat dict."""
    out: dict[str, float] = {}
    out.update(wo_probe(model))
    out.update(wk2_probe(model, triggers))
    out.update(wk1_probe(model, train_len, eval_len))
    out.update(ff_probe(model, bigram, triggers))
    return out
