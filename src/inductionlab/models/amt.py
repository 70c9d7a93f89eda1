"""The simplified associative-memory transformer (docs/science.md §3.1, Bietti et al. §4.2).

Layer ``ℓ`` (one head, no LayerNorm, residual, ``W_Q = I``)::

    S_ts  = c · h_tᵀ W_K^ℓ h_s            (causal, s ≤ t; plus the positional term)
    β_ts  = softmax_s(S_ts)
    h^ℓ_t = h^(ℓ-1)_t + W_O^ℓ W_V^ℓ Σ_s β_ts h^(ℓ-1)_s
    ξ_t   = W_U (I + W_F) h^L_t           (W_F optional: linear, or a ReLU MLP)

What trains is explicit: a matrix named in ``trained`` is an ``nn.Parameter``, every other one a
buffer (frozen at its random init). Tensors are named after the science: ``emb`` (rows ``e_k``),
``unemb`` (rows ``u_k``), ``pos`` (rows ``p_t``), ``rel`` (rows ``r_δ``), ``wk{l}``, ``wv{l}``,
``wo{l}``, ``bias{l}``, ``wf`` (or ``wf_in``/``wf_out`` for the MLP); models/names.py defines them, and
``AMTransformer.family`` (models/families.py) lists those of a given configuration.

Speed comes from algebra the model allows, not from approximations:

- layer 1 reads only embeddings, so its scores are lookups in a ``(N+T) × (N+T)`` table
  ``c·[E; P] W_K [E; P]ᵀ`` instead of a ``(B, T, d) × (d, d)`` projection, and its values are
  lookups in ``[E; P] Φ_1ᵀ`` (``Φ_1 = W_O^1 W_V^1``);
- frozen products fold: the last layer's values go straight to logits through
  ``W_U (I + W_F) W_O^L W_V^L``, an ``N × d`` matrix;
- the last layer computes queries only at ``query_positions`` (the positions the loss reads).

``forward(..., cache={}, hooks={...})`` takes the explicit path through TransformerLens-style hook
points (models/hooks.py), which record activations and let interventions replace them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inductionlab.errors import ConfigError
from inductionlab.models import positional as pe
from inductionlab.models.families import AMTFamily
from inductionlab.models.hooks import HookPoints, Hooks
from inductionlab.models.names import (
    ABSOLUTE_ENCODINGS,
    AMT_LAYER_MATRICES,
    POS_ENCODINGS,
    RELATIVE_ENCODINGS,
    amt_matrix,
    hook_name,
)


class AMTransformer(nn.Module):
    """docs/science.md §3.1. ``tokens: (B, T) int64 → logits (B, T, N)`` (or ``(B, Tq, N)``)."""

    family = AMTFamily  # its names (models/names.py) and sizes before it is built
    # its weight matrices are the associative memories the weight-space probes read (docs/science.md §4.1)
    stores_memories = True

    def __init__(
        self,
        n_tokens: int,
        d_model: int,
        n_layers: int = 2,
        pos_enc: str = "ape",
        max_len: int = 2048,
        max_rel_dist: int = 64,
        init: str = "bietti",
        trained: tuple[str, ...] = ("wk1", "wk2", "wo2"),
        zero_init: bool = False,
        ff: str = "none",
        d_mlp: int | None = None,
        pos_all_layers: bool = False,
        init_seed: int = 0,
    ):
        super().__init__()
        if pos_enc not in POS_ENCODINGS:
            raise ConfigError(f"pos_enc: unknown encoding {pos_enc!r}; allowed: {', '.join(POS_ENCODINGS)}")
        if init not in ("theory", "bietti"):
            raise ConfigError(f"init: unknown convention {init!r}; allowed: theory, bietti")
        if ff not in ("none", "linear", "mlp"):
            raise ConfigError(f"ff: unknown feed-forward {ff!r}; allowed: none, linear, mlp")
        self.n_tokens, self.d_model, self.n_layers = n_tokens, d_model, n_layers
        self.pos_enc, self.max_len, self.max_rel_dist = pos_enc, max_len, max_rel_dist
        self.init, self.ff, self.pos_all_layers = init, ff, pos_all_layers
        self.trained = tuple(trained)
        self.score_scale = 1.0 if init == "theory" else 1.0 / math.sqrt(d_model)

        gen = torch.Generator().manual_seed(init_seed)
        d = d_model

        def embedding(rows: int) -> Tensor:  # theory: N(0, 1/d); bietti: N(0, 1)
            return torch.randn(rows, d, generator=gen) * (d**-0.5 if init == "theory" else 1.0)

        def matrix(rows: int, cols: int, name: str) -> Tensor:
            if zero_init and name in self.trained:
                return torch.zeros(rows, cols)
            if init == "theory":
                return torch.randn(rows, cols, generator=gen) / math.sqrt(cols)
            bound = 1.0 / math.sqrt(cols)  # PyTorch's default nn.Linear init
            return (torch.rand(rows, cols, generator=gen) * 2 - 1) * bound

        self._store("emb", embedding(n_tokens))
        self._store("unemb", matrix(n_tokens, d, "unemb") if init == "bietti" else embedding(n_tokens))
        if pos_enc == "ape":
            self._store("pos", embedding(max_len))
        elif pos_enc == "ape-sincos":
            table = pe.sincos_table(max_len, d) * (1.0 if init == "theory" else math.sqrt(d))
            self._store("pos", table)
        elif pos_enc == "rpe":
            self._store("rel", embedding(max_rel_dist + 1))
        for layer in range(1, n_layers + 1):
            for kind in AMT_LAYER_MATRICES:
                self._store(amt_matrix(kind, layer), matrix(d, d, amt_matrix(kind, layer)))
            if pos_enc == "bias":
                self._store(amt_matrix("bias", layer), torch.zeros(max_rel_dist + 1))
        if ff == "linear":
            self._store("wf", matrix(d, d, "wf"))
        elif ff == "mlp":
            hidden = d_mlp or 4 * d
            self._store("wf_in", matrix(hidden, d, "wf"))
            self._store("wf_out", matrix(d, hidden, "wf"))

    @classmethod
    def from_config(cls, m, n_tokens: int, init_seed: int) -> AMTransformer:
        """The model a :class:`~inductionlab.config.ModelConfig` ``m`` describes (models/build.py)."""
        return cls(n_tokens, m.d_model, m.n_layers, m.pos_enc, m.max_len, m.max_rel_dist, init=m.init,
                   trained=m.trained or cls.family.default_trained(m), zero_init=m.zero_init, ff=m.ff,
                   d_mlp=m.d_mlp, pos_all_layers=m.pos_all_layers, init_seed=init_seed)

    def hook_names(self) -> tuple[str, ...]:
        """Every hook point of this model, in forward order (the keys a ``cache`` receives)."""
        return self.family.hook_names(self)

    def weight_names(self) -> tuple[str, ...]:
        """The stored matrices an intervention may target (docs/science.md §8)."""
        return self.family.weight_names(self)

    def _store(self, name: str, value: Tensor) -> None:
        group = {"pos": "pos", "rel": "pos", "wf_in": "wf", "wf_out": "wf"}.get(name, name)
        if group in self.trained:
            self.register_parameter(name, nn.Parameter(value))
        else:
            self.register_buffer(name, value)

    # ------------------------------------------------------------------ pieces

    def mat(self, name: str) -> Tensor:
        return getattr(self, name)

    def phi(self, layer: int) -> Tensor:
        """``Φ_ℓ = W_O^ℓ W_V^ℓ``, (d, d)."""
        return self.mat(amt_matrix("wo", layer)) @ self.mat(amt_matrix("wv", layer))

    def apply_phi(self, x: Tensor, layer: int) -> Tensor:
        """``x Φ_ℓᵀ`` for rows x (..., d); forms the d×d product only when that is cheaper."""
        rows = x.numel() // x.shape[-1]
        if rows < self.d_model:
            return (x @ self.mat(amt_matrix("wv", layer)).T) @ self.mat(amt_matrix("wo", layer)).T
        return x @ self.phi(layer).T

    def has_positional_term(self, layer: int) -> bool:
        return self.pos_enc in RELATIVE_ENCODINGS and (layer == 1 or self.pos_all_layers)

    def check_length(self, seq_len: int) -> None:
        if self.pos_enc in ABSOLUTE_ENCODINGS and seq_len > self.max_len:
            raise ConfigError(
                f"sequence length {seq_len} exceeds max_len={self.max_len} of the {self.pos_enc!r} encoding"
            )

    def embed(self, tokens: Tensor) -> Tensor:
        """``h^0 = e_z (+ p_t)``: (B, T) → (B, T, d)."""
        return self.embed_lookup(self.embed_basis(tokens.shape[1]), tokens)

    def readout(self) -> Tensor:
        """``W_U (I + W_F)`` as an (N, d) matrix (linear or no feed-forward only)."""
        if self.ff == "linear":
            return self.unemb + self.unemb @ self.wf
        return self.unemb

    def final_logits(self, h: Tensor) -> Tensor:
        """``ξ = W_U (h + FF(h))``: (..., d) → (..., N)."""
        if self.ff == "mlp":
            h = h + F.relu(h @ self.wf_in.T) @ self.wf_out.T
        elif self.ff == "linear":
            h = h + h @ self.wf.T
        return h @ self.unemb.T

    def positional_scores(self, layer: int, qw: Tensor, query_pos: Tensor, seq_len: int) -> Tensor | float:
        """The rpe/bias term of the layer-``layer`` scores, (B, Tq, T) or (Tq, T), or 0.

        ``qw``: the queries already multiplied by ``c·W_K`` (B, Tq, d), used by ``rpe``.
        """
        if not self.has_positional_term(layer) or self.pos_enc == "rope":
            return 0.0
        dist = pe.clipped_distances(query_pos, seq_len, self.max_rel_dist)
        if self.pos_enc == "bias":
            return self.mat(amt_matrix("bias", layer))[dist]
        rel = qw @ self.rel.T  # (B, Tq, Δ+1)
        return torch.gather(rel, -1, dist.expand(*rel.shape[:-1], seq_len))

    def attention_scores(self, layer: int, h: Tensor, query_pos: Tensor) -> Tensor:
        """Pre-softmax scores of layer ``layer`` from its input ``h`` (B, T, d): (B, Tq, T).

        The explicit path of docs/science.md §3.1, valid for any layer and encoding.
        ``query_pos``: (Tq,) or (B, Tq) int64.
        """
        seq_len = h.shape[1]
        wk = self.score_scale * self.mat(amt_matrix("wk", layer))  # c folded into the d×d matrix
        q = _take(h, query_pos)
        if self.pos_enc == "rope" and self.has_positional_term(layer):
            keys = h @ wk.T
            cos_q, sin_q = pe.rope_angles(query_pos, self.d_model)
            cos_k, sin_k = pe.rope_angles(torch.arange(seq_len, device=h.device), self.d_model)
            return pe.rope_rotate(q, cos_q, sin_q) @ pe.rope_rotate(keys, cos_k, sin_k).transpose(1, 2)
        qw = q @ wk
        return qw @ h.transpose(1, 2) + self.positional_scores(layer, qw, query_pos, seq_len)

    def layer1_scores_from_tables(self, tokens: Tensor, query_pos: Tensor) -> Tensor:
        """Layer-1 scores by table lookup (same numbers as :meth:`attention_scores` on ``embed``).

        ``h^0_t = e_{z_t} + p_t`` lives in the span of ``N + T`` fixed vectors, so with
        ``M = c·[E; P] W_K [E; P]ᵀ`` split in blocks (token/position × token/position)::

            S_ts = (M_EE[z_t] + M_PE[t])[z_s] + M_EP[z_t, s] + M_PP[t, s]

        tokens: (B, T); query_pos: (B, Tq) or (Tq,).  The ``(B, Tq, N)`` rows are gathered at the
        key tokens; the position blocks are row lookups.
        """
        batch, seq_len = tokens.shape
        n = self.n_tokens
        basis = self.embed_basis(seq_len)
        basis_w = basis @ (self.score_scale * self.wk1)
        table = basis_w @ basis.T  # (N [+T], N [+T])
        q_tok = _take(tokens, query_pos)
        token_rows = F.embedding(q_tok, table[:n, :n])  # (B, Tq, N): query token × key token
        absolute = self.pos_enc in ABSOLUTE_ENCODINGS
        if absolute:
            token_rows = token_rows + F.embedding(query_pos, table[n:, :n])  # query position × key token
        scores = torch.gather(token_rows, 2, tokens[:, None, :].expand(batch, token_rows.shape[1], seq_len))
        if absolute:
            pos_rows = F.embedding(q_tok, table[:n, n:]) + F.embedding(query_pos, table[n:, n:])
            return scores + pos_rows
        if self.has_positional_term(1):
            qw = F.embedding(q_tok, basis_w) if self.pos_enc == "rpe" else None
            scores = scores + self.positional_scores(1, qw, query_pos, seq_len)
        return scores

    @staticmethod
    def pattern(scores: Tensor, query_pos: Tensor) -> Tensor:
        """Causal softmax over keys ``s ≤ t``: (B, Tq, T) → (B, Tq, T)."""
        mask = pe.causal_mask(query_pos, scores.shape[-1])
        return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)

    def ov_circuits(self, include_ff: bool = False) -> Tensor:
        """Each layer's OV circuit as a token-to-logit map, (n_layers, 1, N, N) (docs/science.md §4.2).

        ``out[l, 0, j, k] = u_jᵀ Φ_ℓ e_k`` (``l`` 0-based): what layer ``ℓ = l + 1`` writes to logit ``j``
        when it attends a position holding ``k``, positions left out. With ``include_ff`` the final
        feed-forward is applied to ``Φ_ℓ e_k`` too (``W_U (I + W_F) Φ_ℓ e_k``, the readout ``R_3`` of
        docs/science.md §4.5 for the last layer).
        """
        circuits = []
        for layer in range(1, self.n_layers + 1):
            written = self.emb @ self.phi(layer).T  # (N, d): row k = Φ_ℓ e_k
            logits = self.final_logits(written) if include_ff else written @ self.unemb.T  # (N_in, N_out)
            circuits.append(logits.T)
        return torch.stack(circuits)[:, None]

    # ------------------------------------------------------------------ forward

    def forward(self, tokens: Tensor, query_positions: Tensor | None = None, cache: dict | None = None,
                hooks: Hooks | None = None) -> Tensor:
        """tokens: (B, T) int64 → logits (B, T, N), or (B, Tq, N) at ``query_positions`` (B, Tq).

        With ``cache`` (a dict) or ``hooks`` (``{name: fn}``, models/hooks.py) the explicit path runs
        through the TransformerLens-style hook points ``hook_embed``, ``hook_pos_embed``,
        ``blocks.{l}.hook_resid_pre`` (B, T, d), ``blocks.{l}.attn.hook_attn_scores`` and
        ``blocks.{l}.attn.hook_pattern`` (B, 1, Tq, T), ``blocks.{l}.hook_attn_out`` (B, Tq, d),
        ``blocks.{l}.hook_resid_post`` (B, Tq, d) and ``hook_logits``; layer indices are 0-based as in
        TransformerLens. A hook replaces the activation it names (docs/science.md §8).
        """
        seq_len = tokens.shape[1]
        self.check_length(seq_len)
        all_pos = torch.arange(seq_len, device=tokens.device)
        last_q = all_pos if query_positions is None else query_positions
        if cache is not None or hooks:
            return self._forward_explicit(tokens, all_pos, last_q, HookPoints(tokens, cache, hooks))

        h = None  # residual stream (B, T, d); layer 1 never needs it materialised
        for layer in range(1, self.n_layers + 1):
            last = layer == self.n_layers
            query_pos = last_q if last else all_pos
            if h is None and self.pos_enc != "rope":
                scores = self.layer1_scores_from_tables(tokens, query_pos)
            else:
                h = self.embed(tokens) if h is None else h
                scores = self.attention_scores(layer, h, query_pos)
            beta = self.pattern(scores, query_pos)
            if last and self.ff != "mlp":
                # fold W_U (I + W_F) into the residual and W_U (I + W_F) Φ_L into the values
                readout = self.readout()
                readout_phi = (readout @ self.mat(amt_matrix("wo", layer))) @ self.mat(amt_matrix("wv", layer))
                # readout_phi = W_U (I + W_F) Φ_L
                direct = self._residual_map(h, tokens, lambda x, m=readout: x @ m.T, query_pos)
                return direct + beta @ self._residual_map(h, tokens, lambda x, m=readout_phi: x @ m.T)
            update = beta @ self._residual_map(h, tokens, lambda x, ell=layer: self.apply_phi(x, ell))
            h = (self.embed(tokens) if h is None else h)
            h = (h if not last else _take(h, query_pos)) + update
        return self.final_logits(h)

    def _residual_map(self, h: Tensor | None, tokens: Tensor, linear_map, positions: Tensor | None = None
                      ) -> Tensor:
        """``linear_map(h)`` (B, T, k) at every position or at ``positions`` (B, Tq);
        while ``h`` is still the embedding, a lookup in the map of the basis vectors."""
        if h is not None:
            return linear_map(h if positions is None else _take(h, positions))
        out = self.embed_lookup(linear_map(self.embed_basis(tokens.shape[1])), tokens)
        return out if positions is None else _take(out, positions)

    def embed_basis(self, seq_len: int) -> Tensor:
        """The vectors ``h^0`` is built from: ``[E; P[:T]]`` (N+T, d) for ape, else ``E`` (N, d)."""
        if self.pos_enc in ABSOLUTE_ENCODINGS:
            return torch.cat((self.emb, self.pos[:seq_len]))
        return self.emb

    def embed_lookup(self, table: Tensor, tokens: Tensor) -> Tensor:
        """``table[z_t] (+ table[N + t])``: a per-basis-vector table summed over the parts of ``h^0_t``."""
        out = table[tokens]
        if self.pos_enc in ABSOLUTE_ENCODINGS:
            out = out + table[self.n_tokens : self.n_tokens + tokens.shape[1]]
        return out

    def _forward_explicit(self, tokens: Tensor, all_pos: Tensor, last_q: Tensor, hook: HookPoints) -> Tensor:
        h = hook(hook_name("embed"), self.emb[tokens])
        if self.pos_enc in ABSOLUTE_ENCODINGS:
            h = h + hook(hook_name("pos_embed"), self.pos[: tokens.shape[1]])
        replaced = hook.hooked(hook_name("embed")) or hook.hooked(hook_name("pos_embed"))
        for layer in range(1, self.n_layers + 1):
            block = layer - 1  # hook names count layers from 0, as in TransformerLens
            query_pos = last_q if layer == self.n_layers else all_pos
            h = hook(hook_name("resid_pre", block), h)
            # while h is still h^0 (nothing replaced it), layer-1 scores and values are table lookups
            from_tables = (layer == 1 and self.pos_enc != "rope" and not replaced
                           and not hook.hooked(hook_name("resid_pre", block)))
            scores = (self.layer1_scores_from_tables(tokens, query_pos) if from_tables
                      else self.attention_scores(layer, h, query_pos))
            scores = hook(hook_name("attn_scores", block), scores.unsqueeze(1), query_pos)[:, 0]
            beta = hook(hook_name("pattern", block), self.pattern(scores, query_pos).unsqueeze(1), query_pos)[:, 0]
            values = (self._residual_map(None, tokens, lambda x: self.apply_phi(x, 1)) if from_tables
                      else self.apply_phi(h, layer))
            attn_out = hook(hook_name("attn_out", block), beta @ values, query_pos)
            h = hook(hook_name("resid_post", block), _take(h, query_pos) + attn_out, query_pos)
        return hook(hook_name(self.family.final_point), self.final_logits(h), last_q)


def _take(x: Tensor, positions: Tensor) -> Tensor:
    """Rows of ``x`` (B, T) or (B, T, k) at ``positions`` (T',) or (B, T')."""
    if positions.dim() == 1:
        return x if positions.numel() == x.shape[1] and bool((positions == torch.arange(
            x.shape[1], device=x.device)).all()) else x[:, positions]
    if x.dim() == 2:
        return torch.gather(x, 1, positions)
    return torch.gather(x, 1, positions[..., None].expand(-1, -1, x.shape[-1]))
