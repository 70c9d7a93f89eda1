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
``AMTransformer.family`` (models/families.py) lists those of a given configuration. With KV-shifting
attention (docs/science.md §3.3) layer ``ℓ`` also stores ``kvshift{ℓ}`` = ``[α1, α2, β1, β2]``: its keys are
``α1 h_s + α2 h_{s−1}`` and its values are read from ``β1 h_s + β2 h_{s−1}``.

Speed comes from algebra the model allows, not from approximations:

- layer 1 reads only embeddings, so its scores are lookups in a ``(N+T) × (N+T)`` table
  ``c·[E; P] W_K [E; P]ᵀ`` instead of a ``(B, T, d) × (d, d)`` projection, and its values are
  lookups in ``[E; P] Φ_1ᵀ`` (``Φ_1 = W_O^1 W_V^1``);
- frozen products fold: the last layer's values go straight to logits through
  ``W_U (I + W_F) W_O^L W_V^L``, an ``N × d`` matrix;
- the last layer computes queries only at ``query_positions`` (the positions the loss reads);
- in a one- or two-layer model (every preset) the residual stream after layer 1 is
  ``h^1 = h^0 + β¹ (h^0 Φ_1ᵀ)``, so everything read from it through a fixed matrix (the logits, the values of
  layer 2 through ``W_U (I + W_F) Φ_2``) is a lookup in an ``(N+T) × N`` table mixed by ``β¹``: no
  ``(B, T, d) × (d, N)`` product;
- the KV shift is moved onto the scores and the pattern (models/kv_shift.py), so every lookup above stays;
- each table is built once while the matrices it comes from are unchanged (:meth:`AMTransformer.table`):
  once per run when they are frozen, once per training step when they train, however many groups of rows
  the loss runs the model on.

``forward(..., cache={}, hooks={...})`` takes the explicit path through TransformerLens-style hook
points (models/hooks.py), which record activations and let interventions replace them.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inductionlab.errors import ConfigError
from inductionlab.models import kv_shift as ks
from inductionlab.models import positional as pe
from inductionlab.models.families import AMTFamily, kv_shift_layers
from inductionlab.models.hooks import HookPoints, Hooks, QueryGroups, per_group, query_positions_for, split_groups
from inductionlab.models.names import (
    ABSOLUTE_ENCODINGS,
    AMT_KV_SHIFT,
    AMT_LAYER_MATRICES,
    KV_SHIFT_SCALARS,
    POS_ENCODINGS,
    RELATIVE_ENCODINGS,
    amt_matrix,
    hook_name,
    kv_shift_metric,
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
        kv_shift: bool | tuple[int, ...] = False,
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
        self.kv_shift = kv_shift  # blocks (0-based) with KV-shifting attention, or True for every one
        if any(block >= n_layers for block in kv_shift_layers(self)):
            raise ConfigError(f"kv_shift={kv_shift!r} names blocks outside the model's {n_layers} (0-based)")
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
        for block in kv_shift_layers(self):  # drawn last: every other tensor equals the same model's without them
            self._store(amt_matrix(AMT_KV_SHIFT, block + 1), ks.initial_scalars((), gen))
        # name → (what it was built from, table): see `table`; not part of the state dict
        self._tables: dict[str, tuple[tuple, tuple, Tensor]] = {}
        self._calls = 0  # forward calls in progress (a table recording gradients lives as long as its call)

    @classmethod
    def from_config(cls, m, n_tokens: int, init_seed: int) -> AMTransformer:
        """The model a :class:`~inductionlab.config.ModelConfig` ``m`` describes (models/build.py)."""
        return cls(n_tokens, m.d_model, m.n_layers, m.pos_enc, m.max_len, m.max_rel_dist, init=m.init,
                   trained=m.trained or cls.family.default_trained(m), zero_init=m.zero_init, ff=m.ff,
                   d_mlp=m.d_mlp, pos_all_layers=m.pos_all_layers, init_seed=init_seed, kv_shift=m.kv_shift)

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

    def table(self, name: str, seq_len: int, build: Callable[[], Tensor]) -> Tensor:
        """``build()``, a product of this model's matrices (a table the fast path looks rows up in, or a dict of
        such tables built together), computed once while those matrices are unchanged.

        The key is every stored tensor, by identity (a weak reference: a substitute that has been freed never
        matches, even where a new one takes its memory), and its version counter (an in-place update,
        ``load_state_dict`` or an optimiser step changes it), the sequence length and whether gradients are
        recorded. A table of frozen matrices, or one built without gradients, is kept across
        calls: built once per run. One that records gradients is kept only until the forward call that built
        it returns (built once per training step however many row groups the loss reads): two calls never
        share a graph, so each can be backpropagated on its own, as with any module.
        """
        matrices = self._matrices()
        stamp = (seq_len, torch.is_grad_enabled(), tuple(t._version for t in matrices))
        held = self._tables.get(name)
        if held is not None and held[0] == stamp and all(ref() is t for ref, t in zip(held[1], matrices, strict=True)):
            return held[2]
        value = build()
        if not _records_grad(value) or self._calls:
            self._tables[name] = (stamp, tuple(weakref.ref(t) for t in matrices), value)
        return value

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "_tables": {}}  # weak references do not pickle; tables rebuild

    def _drop_graph_tables(self) -> None:
        for name in [name for name, (*_, value) in self._tables.items() if _records_grad(value)]:
            del self._tables[name]

    def _matrices(self) -> list[Tensor]:
        """Every stored tensor, as the forward sees it (``torch.func.functional_call`` may substitute some)."""
        return [getattr(self, name) for name in (*self._parameters, *self._buffers)]

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

    def kv_shift_of(self, layer: int) -> Tensor | None:
        """``[α1, α2, β1, β2]`` of layer ``layer`` (1-based), or None where it has no KV shift."""
        return self.mat(amt_matrix(AMT_KV_SHIFT, layer)) if layer - 1 in kv_shift_layers(self) else None

    def kv_shift_scalars(self) -> dict[str, float]:
        """Every KV-shift scalar by its metrics key (models/names.py ``kv_shift_metric``); none without them."""
        return {kv_shift_metric(block, 0, scalar): float(value) for block in kv_shift_layers(self)
                for scalar, value in zip(KV_SHIFT_SCALARS, self.kv_shift_of(block + 1).tolist(), strict=True)}

    def shifted_scores(self, layer: int, scores: Tensor) -> Tensor:
        """Content scores against the keys ``h_s`` (…, Tq, T) → against the shifted keys (identity without a shift)."""
        kv = self.kv_shift_of(layer)
        return scores if kv is None else ks.shift_key_scores(scores, kv[0], kv[1])

    def value_weights(self, layer: int, pattern: Tensor) -> Tensor:
        """Layer ``layer``'s attention (…, Tq, T) → its weights on the unshifted values (identity without a shift)."""
        kv = self.kv_shift_of(layer)
        return pattern if kv is None else ks.shift_value_weights(pattern, kv[2], kv[3])

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

    def positional_scores(self, layer: int, qw: Tensor, query_pos: Tensor, seq_len: int, causal: bool = False
                          ) -> Tensor | float:
        """The rpe/bias term of the layer-``layer`` scores, (B, Tq, T) or (Tq, T), or 0.

        ``qw``: the queries already multiplied by ``c·W_K`` (B, Tq, d), used by ``rpe``. ``causal``: with −∞
        where ``s > t`` (the causal mask, read from one more column of −∞ rather than added to the scores).
        """
        if not self.has_positional_term(layer) or self.pos_enc == "rope":
            return 0.0
        dist = pe.clipped_distances(query_pos, seq_len, self.max_rel_dist)
        if self.pos_enc == "bias":
            bias = self.mat(amt_matrix("bias", layer))[dist]
            return bias + pe.causal_bias(query_pos, seq_len, bias.dtype) if causal else bias
        rel = qw @ self.rel.T  # (B, Tq, Δ+1)
        if causal:
            rel = F.pad(rel, (0, 1), value=float("-inf"))  # column Δ+1: every key after the query
            dist = torch.where(pe.causal_mask(query_pos, seq_len), dist, self.max_rel_dist + 1)
        return torch.gather(rel, -1, dist.expand(*rel.shape[:-1], seq_len))

    def attention_scores(self, layer: int, h: Tensor, query_pos: Tensor, keys: Tensor | None = None,
                         causal: bool = False) -> Tensor:
        """Pre-softmax scores of layer ``layer`` from its input ``h`` (B, T, d): (B, Tq, T).

        The explicit path of docs/science.md §3.1, valid for any layer and encoding.
        ``query_pos``: (Tq,) or (B, Tq) int64. ``keys``: the key-side input (B, T, d) when it is not ``h``
        (the shifted keys, already shifted); by default ``h``, KV-shifted where the layer has the shift.
        ``causal``: with the causal mask, added inside the content product (``baddbmm``; the same numbers as
        adding it after); a layer without a KV shift or rope only (:meth:`layer_pattern`).
        """
        seq_len = h.shape[1]
        wk = self.score_scale * self.mat(amt_matrix("wk", layer))  # c folded into the d×d matrix
        q = _take(h, query_pos)
        kv = self.kv_shift_of(layer) if keys is None else None
        keys = h if keys is None else keys
        if self.pos_enc == "rope" and self.has_positional_term(layer):
            keys = keys @ wk.T
            keys = keys if kv is None else ks.shift_sequence(keys, kv[0], kv[1])  # shifted before the rotation
            cos_q, sin_q = pe.rope_angles(query_pos, self.d_model)
            cos_k, sin_k = pe.rope_angles(torch.arange(seq_len, device=h.device), self.d_model)
            return pe.rope_rotate(q, cos_q, sin_q) @ pe.rope_rotate(keys, cos_k, sin_k).transpose(1, 2)
        qw = q @ wk
        if causal:  # the mask as the product's initial value: −∞ + x = −∞, 0 + x = x
            content = torch.baddbmm(pe.causal_bias(query_pos, seq_len, qw.dtype), qw, keys.transpose(1, 2))
        else:
            content = qw @ keys.transpose(1, 2)
        content = content if kv is None else ks.shift_key_scores(content, kv[0], kv[1])
        positional = self.positional_scores(layer, qw, query_pos, seq_len)
        return content if isinstance(positional, float) else content + positional  # no term: not even + 0

    def layer_pattern(self, layer: int, h: Tensor, query_pos: Tensor) -> Tensor:
        """``pattern(attention_scores(layer, h, query_pos))``, the same numbers, with the mask folded into the scores'
        product where it can be (:meth:`_folded_pattern`)."""
        return self._folded_pattern(layer, lambda causal: self.attention_scores(layer, h, query_pos, causal=causal),
                                    query_pos)

    def _folded_pattern(self, layer: int, scores: Callable[[bool], Tensor], query_pos: Tensor) -> Tensor:
        """Layer ``layer``'s causal attention from ``scores(causal)``: the scores with the mask already in them
        (``causal=True``) where the layer has neither a KV shift (which moves scores between keys) nor rope, else
        the scores without it, masked here (:meth:`pattern`)."""
        if self.kv_shift_of(layer) is not None or (self.pos_enc == "rope" and self.has_positional_term(layer)):
            return self.pattern(scores(False), query_pos)
        return torch.softmax(scores(True), dim=-1)

    def layer1_scores_from_tables(self, tokens: Tensor, query_pos: Tensor, causal: bool = False) -> Tensor:
        """Layer-1 scores by table lookup (same numbers as :meth:`attention_scores` on ``embed``).

        ``h^0_t = e_{z_t} + p_t`` lives in the span of ``N + T`` fixed vectors, so with
        ``M = c·[E; P] W_K [E; P]ᵀ`` split in blocks (token/position × token/position)::

            S_ts = (M_EE[z_t] + M_PE[t])[z_s] + M_EP[z_t, s] + M_PP[t, s]

        tokens: (B, T); query_pos: (B, Tq) or (Tq,).  The ``(B, Tq, N)`` rows are gathered at the
        key tokens; the position blocks are row lookups. ``causal``: with the causal mask (−∞ where ``s > t``),
        folded into a table where there is one (``M_PP``, the rpe products, the bias over distances) instead of
        added to the (B, Tq, T) scores: the same numbers as ``scores + causal_bias`` (layer 1 without a KV shift;
        :meth:`layer1_pattern_from_tables`).
        """
        batch, seq_len = tokens.shape
        blocks = self.table("scores1_blocks", seq_len, lambda: self._layer1_blocks(seq_len))
        q_tok = _take(tokens, query_pos)
        token_rows = F.embedding(q_tok, blocks["EE"])  # (B, Tq, N): query token × key token
        absolute = self.pos_enc in ABSOLUTE_ENCODINGS
        if absolute:
            token_rows += F.embedding(query_pos, blocks["PE"])  # query position × key token
        scores = torch.gather(token_rows, 2, tokens[:, None, :].expand(batch, token_rows.shape[1], seq_len))
        if absolute:
            pos_rows = F.embedding(q_tok, blocks["EP"])
            pos_rows += F.embedding(query_pos, blocks["PP_causal" if causal else "PP"])
            scores += pos_rows
            return self.shifted_scores(1, scores)
        scores = self.shifted_scores(1, scores)
        if self.has_positional_term(1):
            qw = F.embedding(q_tok, blocks["basis_wk"]) if self.pos_enc == "rpe" else None
            return scores + self.positional_scores(1, qw, query_pos, seq_len, causal)
        return scores + pe.causal_bias(query_pos, seq_len, scores.dtype) if causal else scores

    def _layer1_blocks(self, seq_len: int) -> dict[str, Tensor]:
        """The tables of :meth:`layer1_scores_from_tables`, each contiguous: ``basis_wk`` (``c·[E; P] W_K``),
        ``EE`` (N, N), with absolute positions ``PE`` (T, N), ``EP`` (N, T), ``PP`` and ``PP_causal`` (T, T)."""
        n, basis = self.n_tokens, self.basis(seq_len)
        basis_w = basis @ (self.score_scale * self.wk1)
        table = basis_w @ basis.T  # (N [+T], N [+T])
        out = {"basis_wk": basis_w, "EE": table[:n, :n].contiguous()}
        if self.pos_enc in ABSOLUTE_ENCODINGS:
            pp = table[n:, n:]
            out |= {"PE": table[n:, :n].contiguous(), "EP": table[:n, n:].contiguous(), "PP": pp.contiguous(),
                    "PP_causal": pp + pe.causal_bias(torch.arange(seq_len, device=pp.device), seq_len, pp.dtype)}
        return out

    def layer1_pattern_from_tables(self, tokens: Tensor, query_pos: Tensor) -> Tensor:
        """Layer 1's causal attention (B, Tq, T) by table lookup: ``pattern(layer1_scores_from_tables(…))``, the
        same numbers, with the mask folded into the tables where it can be (:meth:`_folded_pattern`)."""
        return self._folded_pattern(1, lambda causal: self.layer1_scores_from_tables(tokens, query_pos, causal),
                                    query_pos)

    @staticmethod
    def pattern(scores: Tensor, query_pos: Tensor) -> Tensor:
        """Causal softmax over keys ``s ≤ t``: (B, Tq, T) → (B, Tq, T)."""
        return torch.softmax(scores + pe.causal_bias(query_pos, scores.shape[-1], scores.dtype), dim=-1)

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

    def forward(self, tokens: Tensor, query_positions: Tensor | QueryGroups | None = None, cache: dict | None = None,
                hooks: Hooks | None = None) -> Tensor | list[Tensor]:
        """tokens: (B, T) int64 → logits (B, T, N), or (B, Tq, N) at ``query_positions`` ((B, Tq), or (Tq,) or
        (1, Tq) for the same positions in every row; others: ShapeError), or one
        ``(b, Tq_g, N)`` per row group when ``query_positions`` is a list of groups (models/hooks.py).

        With ``cache`` (a dict) or ``hooks`` (``{name: fn}``, models/hooks.py) the explicit path runs
        through the TransformerLens-style hook points ``hook_embed``, ``hook_pos_embed``,
        ``blocks.{l}.hook_resid_pre`` (B, T, d), with a KV shift ``blocks.{l}.attn.hook_k_shifted`` and
        ``blocks.{l}.attn.hook_v_shifted`` (B, 1, T, d: the shifted key and value inputs),
        ``blocks.{l}.attn.hook_attn_scores`` and
        ``blocks.{l}.attn.hook_pattern`` (B, 1, Tq, T), ``blocks.{l}.hook_attn_out`` (B, Tq, d),
        ``blocks.{l}.hook_resid_post`` (B, Tq, d) and ``hook_logits``; layer indices are 0-based as in
        TransformerLens. A hook replaces the activation it names (docs/science.md §8).
        """
        return self._in_call(self._forward, tokens, query_positions, cache, hooks)

    def logits_and_pattern(self, tokens: Tensor, query_positions: Tensor) -> tuple[Tensor, Tensor]:
        """The logits (B, Tq, N) and the last layer's attention ``β^L`` (B, Tq, T) at ``query_positions`` (Tq,) or
        (B, Tq): the fast path where it applies (a one- or two-layer model without rope or MLP), else the
        explicit one."""
        if not self.from_tables:
            cache: dict = {}
            logits = self(tokens, query_positions=query_positions, cache=cache)
            return logits, cache[hook_name("pattern", self.n_layers - 1)][:, 0]
        self.check_length(tokens.shape[1])
        all_pos = torch.arange(tokens.shape[1], device=tokens.device)
        query_positions = query_positions_for(tokens, query_positions)
        logits, pattern = self._in_call(self._forward_from_tables, tokens, all_pos, query_positions, with_pattern=True)
        return logits, pattern.expand(tokens.shape[0], *pattern.shape[-2:])

    @property
    def from_tables(self) -> bool:
        """Whether the forward without hooks runs from tables (:meth:`_forward_from_tables`)."""
        return self.pos_enc != "rope" and self.ff != "mlp" and self.n_layers <= 2

    def _in_call(self, fn: Callable, *args, **kwargs):
        """``fn(*args, **kwargs)`` as one forward call: tables recording gradients live until it returns."""
        self._calls += 1
        try:
            return fn(*args, **kwargs)
        finally:
            self._calls -= 1
            if not self._calls:
                self._drop_graph_tables()

    def _forward(self, tokens: Tensor, query_positions: Tensor | QueryGroups | None, cache: dict | None,
                 hooks: Hooks | None) -> Tensor | list[Tensor]:
        seq_len = tokens.shape[1]
        self.check_length(seq_len)
        all_pos = torch.arange(seq_len, device=tokens.device)
        query_positions = query_positions_for(tokens, query_positions)
        last_q = all_pos if query_positions is None else query_positions
        if isinstance(last_q, list) and (cache is not None or hooks or not self.from_tables):
            return per_group(self, tokens, last_q, cache=cache, hooks=hooks)
        if cache is not None or hooks:
            return self._forward_explicit(tokens, all_pos, last_q, HookPoints(tokens, cache, hooks))
        if self.from_tables:
            return self._forward_from_tables(tokens, all_pos, last_q)
        h = None  # residual stream (B, T, d); layer 1 never needs it materialised
        for layer in range(1, self.n_layers + 1):
            last = layer == self.n_layers
            query_pos = last_q if last else all_pos
            if h is None and self.pos_enc != "rope":
                scores = self.layer1_scores_from_tables(tokens, query_pos)
            else:
                h = self.embed(tokens) if h is None else h
                scores = self.attention_scores(layer, h, query_pos)
            beta = self.value_weights(layer, self.pattern(scores, query_pos))  # weights on the unshifted values
            if last and self.ff != "mlp":
                # fold W_U (I + W_F) into the residual and W_U (I + W_F) Φ_L into the values
                readout = self.readout()
                readout_phi = self._value_readout(layer, readout)  # W_U (I + W_F) Φ_L
                direct = self._residual_map(h, tokens, lambda x, m=readout: x @ m.T, query_pos)
                return direct + beta @ self._residual_map(h, tokens, lambda x, m=readout_phi: x @ m.T)
            update = beta @ self._residual_map(h, tokens, lambda x, ell=layer: self.apply_phi(x, ell))
            h = (self.embed(tokens) if h is None else h)
            h = (h if not last else _take(h, query_pos)) + update
        return self.final_logits(h)

    def _forward_from_tables(self, tokens: Tensor, all_pos: Tensor, last_q: Tensor | QueryGroups,
                             with_pattern: bool = False) -> Tensor | list[Tensor] | tuple[Tensor, Tensor]:
        """The forward of a one- or two-layer model without rope or MLP (module docstring), (B, Tq, N).

        With ``R = W_U (I + W_F)``: one layer gives ``ξ_t = R h^0_t + β¹_t (R Φ_1 h^0)``, lookups in tables
        over the basis vectors. Two layers: ``h^1 = h^0 + β¹ V¹`` (``V¹_s = Φ_1 h^0_s``) and
        ``ξ_t = R h^1_t + R Φ_2 β²_t h^1``; :meth:`_second_layer` chooses how to compute it. With row groups
        (models/hooks.py) layer 1 runs once for the whole batch and layer 2 once per group. ``with_pattern``:
        also the last layer's pattern (B, Tq, T) (a single tensor of query positions only).
        """
        seq_len, n = tokens.shape[1], self.n_tokens
        basis = self.basis(seq_len)  # (N [+T], d)
        if self.n_layers == 1:
            if isinstance(last_q, list):
                return [self._forward_from_tables(rows, all_pos, q)
                        for rows, q in zip(split_groups(tokens, last_q), last_q, strict=True)]
            beta = self.layer1_pattern_from_tables(tokens, last_q)
            maps = self.table("readout1", seq_len, lambda: basis @ self._readout_maps(1).T)  # (N [+T], 2N)
            direct, through_values = self.embed_lookup(maps, tokens).split(n, -1)  # (B, T, N) each
            logits = _take(direct, last_q) + self.value_weights(1, beta) @ through_values
            return (logits, beta) if with_pattern else logits
        beta1 = self.layer1_pattern_from_tables(tokens, all_pos)  # (B, T, T)
        beta1 = self.value_weights(1, beta1)  # how layer 1 mixes the values V¹ (β¹ itself without a KV shift)
        if isinstance(last_q, list):
            return self._second_layer_groups(tokens, beta1, last_q)
        logits, beta2 = self._second_layer(tokens, beta1, last_q)
        return (logits, beta2) if with_pattern else logits

    def _second_layer_groups(self, tokens: Tensor, beta1: Tensor, groups: QueryGroups) -> list[Tensor]:
        """:meth:`_second_layer` for each row group (models/hooks.py): one logits tensor (b_g, Tq_g, N) per group.

        Where any group's route is ``"h1"``, ``h^1`` and its value readout ``h^1 (RΦ_2)ᵀ`` are formed once for the
        whole batch, one product each rather than one per group, and every group reads its rows of them (slices of
        the batch would cost a zero-filled copy of ``β¹``'s gradient); only the scores and mixes of layer 2 are per
        group. Otherwise each group takes the ``"tables"`` route."""
        if all(self.second_layer_route(tokens.shape[1], q.shape[-1]) == "tables" for q in groups):
            parts = zip(split_groups(tokens, groups), split_groups(beta1, groups), groups, strict=True)
            return [self._second_layer(rows, rows_beta1, q, route="tables")[0] for rows, rows_beta1, q in parts]
        h1, readout = self._h1(tokens, beta1), self.readout()
        through_values = h1 @ self._value_readout(2, readout).T  # (B, T, N): every key position of every row
        parts = zip(split_groups(h1, groups), split_groups(through_values, groups), groups, strict=True)
        return [self._second_layer_from_h1(rows_h1, q, readout, rows_through)[0] for rows_h1, rows_through, q in parts]

    def _h1(self, tokens: Tensor, beta1: Tensor) -> Tensor:
        """``h^1 = h^0 + β¹ V¹`` (B, T, d), ``h^0`` and ``V¹`` looked up (the ``"h1"`` route)."""
        basis = self.basis(tokens.shape[1])
        values1 = self.table("values1", tokens.shape[1], lambda: self.apply_phi(basis, 1))  # rows Φ_1 b, (M, d)
        return torch.baddbmm(self.embed_lookup(basis, tokens), beta1, self.embed_lookup(values1, tokens))

    def _second_layer_from_h1(self, h1: Tensor, q: Tensor, readout: Tensor | None = None,
                              through_values: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Layer 2 from ``h^1`` (B, T, d) at query positions ``q``: logits (B, Tq, N) and ``β²`` (B, Tq, T);
        ``readout``: ``R`` (N, d), ``through_values``: ``h^1 (RΦ_2)ᵀ`` (B, T, N), where they are at hand.

        The direct readout ``h^1 Rᵀ`` is read at the query positions only; where ``q`` is ``0, 1, …, T − 1`` as one
        (T,) tensor (a loss on every target) and nothing is at hand, both readouts are one product,
        ``h^1 [Rᵀ, (RΦ_2)ᵀ]``."""
        beta2 = self.layer_pattern(2, h1, q)
        if readout is None and through_values is None and _every_position(q, h1.shape[1]):
            direct, through_values = (h1 @ self._readout_maps(2).T).split(self.n_tokens, -1)
        else:
            readout = self.readout() if readout is None else readout
            direct = _take(h1, q) @ readout.T
            through_values = h1 @ self._value_readout(2, readout).T if through_values is None else through_values
        return torch.baddbmm(direct, self.value_weights(2, beta2), through_values), beta2

    def _second_layer(self, tokens: Tensor, beta1: Tensor, q: Tensor, route: str | None = None
                      ) -> tuple[Tensor, Tensor]:
        """Layer 2 (the last) of a two-layer model from the tokens (B, T) and ``β¹`` (B, T, T; with a KV shift in
        layer 1, its weights on the unshifted values, :meth:`value_weights`) at query positions ``q`` (B, Tq):
        logits (B, Tq, N) and ``β²`` (B, Tq, T). ``route``: as chosen by the caller, else the cheaper.

        ``h^0_s`` and ``V¹_s = Φ_1 h^0_s`` are sums of rows of the tables ``[E; P]`` and ``[E; P] Φ_1ᵀ``
        (:meth:`embed_lookup`). Two ways, the cheaper for these sizes chosen (:meth:`second_layer_route`):

        - ``"h1"``: look ``h^0`` and ``V¹`` up, form ``h^1 = h^0 + β¹ V¹`` (``T²d``), score its keys, read
          ``h^1 (RΦ_2)ᵀ`` and, at the queries, ``h^1 Rᵀ``; for a loss at every position (:meth:`_h1`,
          :meth:`_second_layer_from_h1`);
        - ``"tables"``: nothing of size (B, T, d). A product with ``h^0`` or ``V¹`` is a product with the
          tables, looked up at the tokens (keys: ``(c h^1_q W_K²) h^1ᵀ = x h^0ᵀ + (x V¹ᵀ) β¹ᵀ``) or preceded by
          summing the weights onto table rows (values: ``β² h^1 = β² h^0 + (β² β¹) V¹``), all
          ``O(Tq·(T² + M d))``; for a few queries (the in-context loss, the last position of a long prompt).
        """
        seq_len = tokens.shape[1]
        if (route or self.second_layer_route(seq_len, q.shape[-1])) == "h1":
            return self._second_layer_from_h1(self._h1(tokens, beta1), q)
        basis = self.basis(seq_len)  # (M, d): M = N [+T]
        values1 = self.table("values1", seq_len, lambda: self.apply_phi(basis, 1))  # rows Φ_1 b, (M, d)
        both = self.table("basis_values1", seq_len, lambda: torch.cat((basis, values1)))  # (2M, d)
        q = q.expand(tokens.shape[0], -1)  # (Tq,) → (B, Tq)
        beta1_q = _take(beta1, q)  # (B, Tq, T)
        h1_q = self.embed_lookup(basis, tokens, q) + self._onto_rows(beta1_q, tokens) @ values1  # (B, Tq, d)
        qw = h1_q @ (self.score_scale * self.mat(amt_matrix("wk", 2)))
        key_rows = qw @ both.T  # (B, Tq, 2M): x·b for every table row b
        m = basis.shape[0]
        content = (self._at_tokens(key_rows[..., :m], tokens) + self._at_tokens(key_rows[..., m:], tokens)
                   @ beta1.transpose(1, 2))
        beta2 = self.pattern(self.shifted_scores(2, content) + self.positional_scores(2, qw, q, seq_len), q)
        mix = self.value_weights(2, beta2)
        weights = torch.cat((self._onto_rows(mix, tokens), self._onto_rows(mix @ beta1, tokens)), -1)
        value_readout = self.table("readout2_rows", seq_len, lambda: both @ self._value_readout(2).T)  # (2M, N)
        return h1_q @ self.readout().T + weights @ value_readout, beta2

    def second_layer_route(self, seq_len: int, n_queries: int) -> str:
        """How :meth:`_second_layer` computes layer 2 for ``n_queries`` query positions in a sequence of ``seq_len``:
        ``"h1"`` or ``"tables"``, the cheaper in multiply-adds per row (``M`` table rows)."""
        d, n, tq = self.d_model, self.n_tokens, n_queries
        m = self.n_tokens + (seq_len if self.pos_enc in ABSOLUTE_ENCODINGS else 0)
        through_h1 = seq_len * seq_len * d + tq * seq_len * d + (seq_len + tq) * d * n + tq * seq_len * n
        through_tables = tq * (2 * seq_len * seq_len + 4 * m * d + 2 * d * n)
        return "tables" if through_tables < through_h1 else "h1"

    def _onto_rows(self, weights: Tensor, tokens: Tensor) -> Tensor:
        """Weights over positions (B, Tq, T) summed onto the basis rows they select: (B, Tq, M), so that
        ``weights @ embed_lookup(table, tokens) = _onto_rows(weights, tokens) @ table``."""
        index = tokens[:, None, :].expand_as(weights)
        out = weights.new_zeros(*weights.shape[:-1], self.n_tokens).scatter_add(-1, index, weights)
        return torch.cat((out, weights), -1) if self.pos_enc in ABSOLUTE_ENCODINGS else out

    def _at_tokens(self, rows: Tensor, tokens: Tensor) -> Tensor:
        """Values per basis row (B, Tq, M) read at each position's rows: (B, Tq, T), the transpose of
        :meth:`_onto_rows`."""
        seq_len = tokens.shape[1]
        out = torch.gather(rows[..., : self.n_tokens], -1, tokens[:, None, :].expand(-1, rows.shape[1], -1))
        if self.pos_enc in ABSOLUTE_ENCODINGS:
            out = out + rows[..., self.n_tokens : self.n_tokens + seq_len]
        return out

    def _readout_maps(self, layer: int) -> Tensor:
        """``[R; R Φ_ℓ]`` (2N, d) with ``R = W_U (I + W_F)``: the direct and the layer-``ℓ`` value readouts."""
        readout = self.readout()
        return torch.cat((readout, self._value_readout(layer, readout)))

    def _value_readout(self, layer: int, readout: Tensor | None = None) -> Tensor:
        """``R Φ_ℓ`` (N, d), ``R = W_U (I + W_F)`` (``readout`` where it is at hand): what layer ``ℓ``'s values
        write to the logits."""
        readout = self.readout() if readout is None else readout
        return (readout @ self.mat(amt_matrix("wo", layer))) @ self.mat(amt_matrix("wv", layer))

    def basis(self, seq_len: int) -> Tensor:
        """:meth:`embed_basis`, built once per run (a table)."""
        return self.table("basis", seq_len, lambda: self.embed_basis(seq_len))

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

    def embed_lookup(self, table: Tensor, tokens: Tensor, positions: Tensor | None = None) -> Tensor:
        """``table[z_t] (+ table[N + t])``: a per-basis-vector table summed over the parts of ``h^0_t``, at every
        position (B, T, k) or at ``positions`` (B, Tq) → (B, Tq, k)."""
        if positions is None:
            positions = torch.arange(tokens.shape[1], device=tokens.device)
            out = F.embedding(tokens, table)
        else:
            out = F.embedding(torch.gather(tokens, 1, positions), table)
        if self.pos_enc in ABSOLUTE_ENCODINGS:
            out += F.embedding(self.n_tokens + positions, table)
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
            kv = self.kv_shift_of(layer)
            from_tables = (layer == 1 and self.pos_enc != "rope" and not replaced and kv is None
                           and not hook.hooked(hook_name("resid_pre", block)))
            keys, values_in = h, h
            if kv is not None:  # the shifted key and value inputs, (B, 1, T, d) at their hook points
                keys = hook(hook_name("k_shifted", block), ks.shift_sequence(h, kv[0], kv[1]).unsqueeze(1))[:, 0]
                values_in = hook(hook_name("v_shifted", block), ks.shift_sequence(h, kv[2], kv[3]).unsqueeze(1))[:, 0]
            scores = (self.layer1_scores_from_tables(tokens, query_pos) if from_tables
                      else self.attention_scores(layer, h, query_pos, keys=keys))
            scores = hook(hook_name("attn_scores", block), scores.unsqueeze(1), query_pos)[:, 0]
            beta = hook(hook_name("pattern", block), self.pattern(scores, query_pos).unsqueeze(1), query_pos)[:, 0]
            values = (self._residual_map(None, tokens, lambda x: self.apply_phi(x, 1)) if from_tables
                      else self.apply_phi(values_in, layer))
            attn_out = hook(hook_name("attn_out", block), beta @ values, query_pos)
            h = hook(hook_name("resid_post", block), _take(h, query_pos) + attn_out, query_pos)
        return hook(hook_name(self.family.final_point), self.final_logits(h), last_q)


def _records_grad(table: Tensor | dict[str, Tensor]) -> bool:
    """Whether a table (a tensor, or a dict of tensors built together) records gradients."""
    return any(t.requires_grad for t in table.values()) if isinstance(table, dict) else table.requires_grad


def _every_position(positions: Tensor, seq_len: int) -> bool:
    """Whether query ``positions`` (T',) or (B, T') are ``0, 1, …, seq_len − 1`` (only a (T',) tensor can say so)."""
    return positions.dim() == 1 and positions.numel() == seq_len and bool(
        (positions == torch.arange(seq_len, device=positions.device)).all())


def _take(x: Tensor, positions: Tensor) -> Tensor:
    """Rows of ``x`` (B, T) or (B, T, k) at ``positions`` (T',) or (B, T')."""
    if positions.dim() == 1:
        return x if _every_position(positions, x.shape[1]) else x[:, positions]
    if x.dim() == 2:
        return torch.gather(x, 1, positions)
    return torch.gather(x, 1, positions[..., None].expand(-1, -1, x.shape[-1]))

