"""The general transformer (docs/science.md §3.2): multi-head, any depth, pre-LayerNorm, optional MLPs.

Used for 1-layer controls, 3-layer position-free models and future tasks.  Unlike the simplified
AMT (§3.1) everything here is learned (``W_Q`` included); only the sinusoidal position table of
``ape-sincos`` is a frozen buffer.

Conventions follow TransformerLens so probes read the same on both codebases:

- weights per head: ``W_Q, W_K, W_V`` (n_heads, d_model, d_head), ``W_O`` (n_heads, d_head, d_model);
  ``W_E`` (n_tokens, d_model), ``W_pos`` (max_len, d_model), ``W_U`` (d_model, n_tokens);
- activations go into an optional ``cache`` dict passed to ``forward``, and optional ``hooks``
  (``{name: fn}``, models/hooks.py) replace them (no global hook state); the names come from
  models/names.py and ``model.hook_names()`` lists them::

    hook_embed                   (B, T, d)       token embeddings
    hook_pos_embed               (B, T, d)       ape / ape-sincos only
    blocks.{l}.hook_resid_pre    (B, T, d)
    blocks.{l}.attn.hook_k_shifted (B, H, T, dh)  keys k̂ after the KV shift, before rope (kv_shift blocks only)
    blocks.{l}.attn.hook_v_shifted (B, H, T, dh)  values v̂ after the KV shift (kv_shift blocks only)
    blocks.{l}.attn.hook_attn_scores (B, H, Tq, T) pre-softmax scores, -inf where s > t
    blocks.{l}.attn.hook_pattern (B, H, Tq, T)   attention probabilities (rows sum to 1)
    blocks.{l}.hook_attn_out     (B, Tq, d)
    blocks.{l}.hook_resid_mid    (B, Tq, d)
    blocks.{l}.hook_mlp_out      (B, Tq, d)      only with ``mlp=True``
    blocks.{l}.hook_resid_post   (B, Tq, d)
    ln_final.hook_normalized     (B, Tq, d)

  ``Tq = T`` except in the last layer when ``query_positions`` is given (then ``Tq`` is its length).

Positions are 0-based; relative distances ``t - s`` are clipped at ``max_rel_dist``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from inductionlab.errors import ConfigError
from inductionlab.models import names as nm
from inductionlab.models.families import TransformerFamily, kv_shift_layers
from inductionlab.models.hooks import HookPoints, Hooks, QueryGroups, per_group, query_positions_for, split_groups
from inductionlab.models.kv_shift import initial_scalars, shift_sequence
from inductionlab.models.names import ABSOLUTE_ENCODINGS, POS_ENCODINGS, RELATIVE_ENCODINGS, hook_name
from inductionlab.models.positional import (
    causal_bias,
    causal_mask,
    clipped_distances,
    rope_angles,
    rope_rotate,
    sincos_table,
)

INIT_STD = 0.02  # GPT-2 / nanoGPT initialisation scale


def _at_least_float32(x: Tensor) -> Tensor:
    """``x`` in float32 when it is in a narrower float type (half precision), else as it is (float64 stays)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _heads(x: Tensor, w: Tensor) -> Tensor:
    """``x`` (B, T, d) through each head's matrix ``w`` (H, d, dh): (B, H, T, dh), one product for all heads."""
    n_heads, d, d_head = w.shape
    return (x @ w.transpose(0, 1).reshape(d, n_heads * d_head)).unflatten(-1, (n_heads, d_head)).transpose(1, 2)


def _merge_heads(z: Tensor, w_o: Tensor) -> Tensor:
    """The heads' outputs ``z`` (B, H, Tq, dh) through ``W_O`` (H, dh, d), summed over heads: (B, Tq, d), one
    product."""
    return z.transpose(1, 2).flatten(2) @ w_o.flatten(0, 1)


def _hook(hook: HookPoints | None, name: str, value: Tensor, query_pos: Tensor | None = None) -> Tensor:
    return value if hook is None else hook(name, value, query_pos)


class Attention(nn.Module):
    """Causal multi-head attention with an optional relative encoding (rpe, bias or rope).

    ``relative`` is the layer's positional encoding if it is one of the relative kinds and
    applies to this layer, else ``"none"``. ``kv_shift``: KV-shifting attention (docs/science.md §3.3),
    ``kv_shift`` (n_heads, 4) holding ``[α1, α2, β1, β2]`` per head.
    """

    def __init__(self, d_model: int, n_heads: int, relative: str, max_rel_dist: int, kv_shift: bool = False):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.relative, self.max_rel_dist = relative, max_rel_dist
        self.W_Q = nn.Parameter(torch.empty(n_heads, d_model, self.d_head))
        self.W_K = nn.Parameter(torch.empty(n_heads, d_model, self.d_head))
        self.W_V = nn.Parameter(torch.empty(n_heads, d_model, self.d_head))
        self.W_O = nn.Parameter(torch.empty(n_heads, self.d_head, d_model))
        # Shaw et al. relative keys r_δ, one table per head in head space: S_ts += q_t · r_{min(t-s, δmax)}.
        n_dist = max_rel_dist + 1
        self.rel_keys = nn.Parameter(torch.empty(n_heads, n_dist, self.d_head)) if relative == "rpe" else None
        # T5/ALiBi-style scalar per head per clipped distance, added after the 1/√d_head scaling;
        # starts at zero (= NoPE at init).
        self.rel_bias = nn.Parameter(torch.empty(n_heads, n_dist)) if relative == "bias" else None
        self.kv_shift = nn.Parameter(torch.empty(n_heads, 4)) if kv_shift else None

    def forward(self, h: Tensor, query_pos: Tensor | None, hook: HookPoints | None, layer: int) -> Tensor:
        """h: (B, T, d) normalised residual; query_pos: (B, Tq) int64, or None for every position.

        Returns (B, Tq, d): the heads' summed output at the query positions.
        """
        B, T, d = h.shape
        key_pos = torch.arange(T, device=h.device)
        # nothing reads the scores or the pattern and no distance term joins them: one fused causal attention
        fused = hook is None and query_pos is None and self.relative in ("none", "rope")
        h_q = h if query_pos is None else h.gather(1, query_pos[..., None].expand(-1, -1, d))
        query_pos = key_pos[None] if query_pos is None else query_pos            # (b, Tq), b ∈ {1, B}
        # the 1/√d_head scaling on W_Q (H, d, dh), not on the scores (B, H, Tq, T)
        q = _heads(h_q, self.W_Q * (1.0 / math.sqrt(self.d_head)))                # (B, H, Tq, dh)
        k, v = _heads(h, self.W_K), _heads(h, self.W_V)                           # (B, H, T, dh) each
        if self.kv_shift is not None:  # mix each key and value with its predecessor, before rope
            kv = self.kv_shift[:, None, None, :]                                  # (H, 1, 1, 4)
            k = _hook(hook, hook_name("k_shifted", layer), shift_sequence(k, kv[..., 0], kv[..., 1]))
            v = _hook(hook, hook_name("v_shifted", layer), shift_sequence(v, kv[..., 2], kv[..., 3]))
        if self.relative == "rope":
            q = rope_rotate(q, *(a[:, None] for a in rope_angles(query_pos, self.d_head)))
            k = rope_rotate(k, *rope_angles(key_pos, self.d_head))
        if fused:  # never the (B, H, T, T) scores; q carries the scaling; rope may have widened q and k
            z = nn.functional.scaled_dot_product_attention(q, k, v.to(q.dtype), is_causal=True, scale=1.0)
            return _merge_heads(z.to(v.dtype), self.W_O)                           # z: (B, H, T, dh)
        scores = _at_least_float32(q @ k.transpose(-1, -2))                       # (B, H, Tq, T), scaled
        dist = clipped_distances(query_pos, T, self.max_rel_dist)[:, None]        # (b, 1, Tq, T)
        if self.rel_keys is not None:  # q @ rᵀ, then pick each clipped distance: no (B,H,Tq,T,dh)
            q_dot_r = torch.einsum("bhte,hre->bhtr", q, self.rel_keys)            # (B, H, Tq, δmax+1)
            # one more column of −∞, read by every key after its query: the causal mask comes with the pick
            q_dot_r = nn.functional.pad(q_dot_r, (0, 1), value=float("-inf"))
            pick = torch.where(causal_mask(query_pos, T)[:, None], dist, self.max_rel_dist + 1)
            scores += _at_least_float32(q_dot_r.gather(-1, pick.expand(B, self.n_heads, -1, -1)))
        elif self.rel_bias is not None:  # the bias over distances and the causal mask, (b, H, Tq, T), then added
            bias = _at_least_float32(self.rel_bias[:, dist[:, 0]].transpose(0, 1))
            scores = scores + (bias + causal_bias(query_pos, T, bias.dtype)[:, None])
        else:
            scores += causal_bias(query_pos, T, scores.dtype)[:, None]           # -inf where s > t
        scores = _hook(hook, hook_name("attn_scores", layer), scores, query_pos)
        pattern = _hook(hook, hook_name("pattern", layer), scores.softmax(dim=-1), query_pos)
        return _merge_heads(pattern.to(v.dtype) @ v, self.W_O)                  # z: (B, H, Tq, dh)


class MLP(nn.Module):
    """Position-wise GELU feed-forward ``W_out · gelu(W_in x)``."""

    def __init__(self, d_model: int, d_mlp: int):
        super().__init__()
        self.W_in = nn.Parameter(torch.empty(d_model, d_mlp))
        self.W_out = nn.Parameter(torch.empty(d_mlp, d_model))

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.gelu(x @ self.W_in) @ self.W_out


class Block(nn.Module):
    """Pre-LayerNorm residual block: ``x + attn(ln1(x))``, then ``+ mlp(ln2(·))`` if present."""

    def __init__(self, d_model: int, n_heads: int, relative: str, max_rel_dist: int, d_mlp: int | None,
                 kv_shift: bool = False):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = Attention(d_model, n_heads, relative, max_rel_dist, kv_shift)
        self.ln2 = nn.LayerNorm(d_model) if d_mlp else None
        self.mlp = MLP(d_model, d_mlp) if d_mlp else None

    def forward(self, x: Tensor, query_pos: Tensor | None, hook: HookPoints | None, layer: int) -> Tensor:
        """x: (B, T, d); query_pos: (B, Tq) or None for all; layer: 0-based.  Returns the residual (B, Tq, d)."""
        x = _hook(hook, hook_name("resid_pre", layer), x)
        attn_out = _hook(hook, hook_name("attn_out", layer), self.attn(self.ln1(x), query_pos, hook, layer),
                         query_pos)
        if query_pos is not None:
            x = x.gather(1, query_pos[..., None].expand(-1, -1, x.shape[-1]))
        x = _hook(hook, hook_name("resid_mid", layer), x + attn_out, query_pos)
        if self.mlp is not None:
            x = x + _hook(hook, hook_name("mlp_out", layer), self.mlp(self.ln2(x)), query_pos)
        return _hook(hook, hook_name("resid_post", layer), x, query_pos)


class GeneralTransformer(nn.Module):
    """Decoder-only transformer of docs/science.md §3.2 with any positional encoding of §3.1.

    pos_enc: one of ``POS_ENCODINGS``.  ``ape`` learns ``W_pos`` (max_len rows); ``ape-sincos``
    adds a frozen unit-norm sinusoidal buffer; ``rpe``/``bias``/``rope`` act inside attention,
    in every layer if ``pos_all_layers`` else in the first layer only; ``none`` is NoPE. ``kv_shift``:
    KV-shifting attention (docs/science.md §3.3) in every block (``True``) or in the blocks listed (0-based).
    Absolute encodings need ``T ≤ max_len``; the others run at any length.
    All parameters are drawn from ``init_seed`` with a local generator (the global RNG is untouched).
    """

    family = TransformerFamily  # its names (models/names.py) and sizes before it is built
    stores_memories = False  # no matrix is a stored memory: the weight-space probes (§4.1) do not apply

    def __init__(self, n_tokens: int, d_model: int, n_layers: int, n_heads: int, pos_enc: str, max_len: int,
                 max_rel_dist: int = 64, mlp: bool = False, d_mlp: int | None = None, init_seed: int = 0,
                 pos_all_layers: bool = True, kv_shift: bool | tuple[int, ...] = False):
        super().__init__()
        if pos_enc not in POS_ENCODINGS:
            raise ConfigError(f"pos_enc={pos_enc!r} is not one of {POS_ENCODINGS}")
        if d_model % n_heads:
            raise ConfigError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        if n_layers < 1 or max_len < 1 or max_rel_dist < 0:
            raise ConfigError(f"need n_layers ≥ 1, max_len ≥ 1, max_rel_dist ≥ 0; got {n_layers}, "
                              f"{max_len}, {max_rel_dist}")
        self.n_tokens, self.d_model, self.n_layers, self.n_heads = n_tokens, d_model, n_layers, n_heads
        self.pos_enc, self.max_len, self.max_rel_dist = pos_enc, max_len, max_rel_dist
        self.pos_all_layers = pos_all_layers  # relative encodings in every layer, else in the first only
        self.mlp = mlp  # whether the blocks have MLPs (their hook and weight names follow)
        self.kv_shift = kv_shift  # the blocks with KV-shifting attention (their hook and weight names follow)
        if any(block >= n_layers for block in kv_shift_layers(self)):
            raise ConfigError(f"kv_shift={kv_shift!r} names blocks outside the model's {n_layers} (0-based)")
        self.W_E = nn.Parameter(torch.empty(n_tokens, d_model))
        self.W_pos = nn.Parameter(torch.empty(max_len, d_model)) if pos_enc == "ape" else None
        sincos = sincos_table(max_len, d_model) if pos_enc == "ape-sincos" else None
        self.register_buffer("sincos_pos", sincos)  # frozen: the only non-trained tensor
        d_mlp = (d_mlp or 4 * d_model) if mlp else None
        relative = pos_enc if pos_enc in RELATIVE_ENCODINGS else "none"
        self.blocks = nn.ModuleList(
            Block(d_model, n_heads, relative if (l == 0 or pos_all_layers) else "none", max_rel_dist, d_mlp,
                  l in kv_shift_layers(self))
            for l in range(n_layers)
        )
        self.ln_final = nn.LayerNorm(d_model)
        self.W_U = nn.Parameter(torch.empty(d_model, n_tokens))
        self.reset_parameters(init_seed)

    @classmethod
    def from_config(cls, m, n_tokens: int, init_seed: int) -> GeneralTransformer:
        """The model a :class:`~inductionlab.config.ModelConfig` ``m`` describes (models/build.py)."""
        return cls(n_tokens, m.d_model, m.n_layers, m.n_heads, m.pos_enc, m.max_len, max_rel_dist=m.max_rel_dist,
                   mlp=m.mlp, d_mlp=m.d_mlp, init_seed=init_seed, pos_all_layers=m.pos_all_layers,
                   kv_shift=m.kv_shift)

    def hook_names(self) -> tuple[str, ...]:
        """Every hook point of this model, in forward order (the keys a ``cache`` receives)."""
        return self.family.hook_names(self)

    def weight_names(self) -> tuple[str, ...]:
        """The weight matrices an intervention may target (docs/science.md §8)."""
        return self.family.weight_names(self)

    @torch.no_grad()
    def reset_parameters(self, init_seed: int) -> None:
        """GPT-2 init from ``init_seed``: weights N(0, 0.02), output projections (``W_O``, ``W_out``)
        N(0, 0.02/√(2·n_layers)), LayerNorm (1, 0), relative biases 0; the KV-shift scalars as
        docs/science.md §3.3 says, drawn after every other weight (so the rest equals the same model without
        them)."""
        gen = torch.Generator().manual_seed(init_seed)
        shift_names = {nm.transformer_weight(nm.TRANSFORMER_KV_SHIFT, l) for l in range(self.n_layers)}
        for name, p in self.named_parameters():
            if name in shift_names:
                continue
            if ".ln" in name or name.startswith("ln_final") or name.endswith("rel_bias"):
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                std = INIT_STD / math.sqrt(2 * self.n_layers) if name.endswith(("W_O", "W_out")) else INIT_STD
                p.copy_(torch.randn(p.shape, generator=gen) * std)
        for block in self.blocks:
            if block.attn.kv_shift is not None:
                block.attn.kv_shift.copy_(initial_scalars((self.n_heads,), gen))

    def kv_shift_scalars(self) -> dict[str, float]:
        """Every KV-shift scalar by its metrics key (models/names.py ``kv_shift_metric``); none without them."""
        return {nm.kv_shift_metric(l, head, scalar): float(value)
                for l, block in enumerate(self.blocks) if block.attn.kv_shift is not None
                for head, row in enumerate(block.attn.kv_shift.detach().cpu().tolist())
                for scalar, value in zip(nm.KV_SHIFT_SCALARS, row, strict=True)}

    def forward(
        self, tokens: Tensor, query_positions: Tensor | QueryGroups | None = None, cache: dict | None = None,
        hooks: Hooks | None = None,
    ) -> Tensor | list[Tensor]:
        """tokens: (B, T) int64.  query_positions: optional (B, Tq) int64 (may repeat), (Tq,) or (1, Tq) for the
        same positions in every row, or row groups.

        Returns logits (B, T, n_tokens) float32 (float64 for a float64 model), or (B, Tq, n_tokens) at
        ``query_positions`` only: every layer but the last runs all positions; the last layer's queries and the
        unembedding run at the requested positions only. Given row groups (models/hooks.py), one logits tensor per
        group, the layers below the last run once for the whole batch. ``cache``, if a dict, receives
        the hooks listed in the module docstring; ``hooks`` (``{name: fn}``, models/hooks.py) replace
        the activations they name (docs/science.md §8).
        """
        B, T = tokens.shape
        if self.pos_enc in ABSOLUTE_ENCODINGS and T > self.max_len:
            raise ConfigError(
                f"sequence length {T} exceeds max_len={self.max_len} of pos_enc={self.pos_enc!r}; "
                "build the model with a larger max_len or use a relative encoding"
            )
        query_positions = query_positions_for(tokens, query_positions)
        if isinstance(query_positions, Tensor) and query_positions.dim() == 1:
            query_positions = query_positions.expand(B, -1)  # the same positions in every row
        if isinstance(query_positions, list) and (cache is not None or hooks):
            return per_group(self, tokens, query_positions, cache=cache, hooks=hooks)
        hook = HookPoints(tokens, cache, hooks) if cache is not None or hooks else None
        x = _hook(hook, hook_name("embed"), self.W_E[tokens])                           # (B, T, d)
        pos_table = self.W_pos if self.W_pos is not None else self.sincos_pos
        if pos_table is not None:
            x = x + _hook(hook, hook_name("pos_embed"), pos_table[:T].expand(B, T, self.d_model))
        for l, block in enumerate(self.blocks[:-1]):
            x = block(x, None, hook, l)
        if isinstance(query_positions, list):
            return [self._last_layer(rows_x, positions, None)
                    for rows_x, positions in zip(split_groups(x, query_positions), query_positions, strict=True)]
        return self._last_layer(x, query_positions, hook)

    def _last_layer(self, x: Tensor, query_positions: Tensor | None, hook: HookPoints | None) -> Tensor:
        """The last block, the final LayerNorm and the unembedding: (B, T, d) → (B, Tq, N)."""
        x = self.blocks[-1](x, query_positions, hook, self.n_layers - 1)
        x = _hook(hook, hook_name(self.family.final_point), self.ln_final(x), query_positions)
        return _at_least_float32(x @ self.W_U)

    def ov_circuits(self, include_ff: bool = False) -> Tensor:
        """Every head's OV circuit as a token-to-logit map, (n_layers, n_heads, N, N) (docs/science.md §4.2).

        ``(W_E W_V^h W_O^h W_U)ᵀ`` (TransformerLens row convention, transposed), with LayerNorm handled
        as TransformerLens's ``fold_ln`` + ``center_writing_weights`` do: embeddings and head outputs
        centred over ``d_model``, the ``ln1`` and ``ln_final`` gains folded in, biases and the per-token
        normalising scale ignored.  ``include_ff`` is not supported (the MLPs are nonlinear in the residual).
        """
        if include_ff:
            raise ConfigError("ov_circuits: include_ff is only defined for the AMTransformer")
        circuits = []
        w_u = self.ln_final.weight[:, None] * self.W_U  # (d, N)
        for block in self.blocks:
            emb = self.W_E - self.W_E.mean(-1, keepdim=True)  # (N, d)
            emb = emb * block.ln1.weight
            head_out = torch.einsum("nd,hde,hef->hnf", emb, block.attn.W_V, block.attn.W_O)  # (H, N, d)
            head_out = head_out - head_out.mean(-1, keepdim=True)
            circuits.append((head_out @ w_u).transpose(-1, -2))  # (H, N_out, N_in)
        return torch.stack(circuits)

    def head_count(self) -> int:
        """Total number of attention heads, ``n_layers · n_heads``."""
        return self.n_layers * self.n_heads
