"""A trained general transformer as a TransformerLens ``TransformerBridge`` (docs/interop.md).

The general transformer (docs/science.md §3.2) maps onto TransformerLens's TL-native model (``NativeModel``,
no HuggingFace call): LayerNorm blocks, attention-only or with a GELU MLP, standard (learned) or rotary
positions. The mapping (``nn.Linear`` stores ``weight`` as (out, in), the heads side by side)::

    tok_embed.weight                 W_E                                  (N, d)
    pos.weight                       W_pos; the sincos table (ape-sincos); zeros (none)   (n_ctx, d)
    layers.{l}.ln1, ln2, ln_out      blocks.{l}.ln1, ln2, ln_final
    layers.{l}.attn.q/k/v.weight     W_Q/W_K/W_V (H, d, d_head) → (H·d_head, d), biases 0
    layers.{l}.attn.o.weight         W_O (H, d_head, d) → (d, H·d_head), bias 0
    layers.{l}.mlp.fc_in/fc_out      W_inᵀ, W_outᵀ, biases 0
    head.weight                      W_Uᵀ

Rotary positions match without permuting dimensions: both rotate adjacent pairs ``(2i, 2i+1)`` by
``t·base^(−2i/d_head)``; the bridge gets our cos/sin tables (TransformerLens computes the same angles in
another float32 order, up to about 10⁻⁷ apart, which would show at a 10⁻⁶ comparison in float64). ``none``
(no positions) is the standard embedding held at zero. Settings the native model cannot express are refused
in one line naming the setting (:func:`tl_refusal`): ``rpe`` and ``bias`` (no relative term), rotary in the
first layer only (``pos_all_layers: false``), ``model.kv_shift``, and the associative-memory transformer: each
of these opens through the hook-point adapter instead (interop/hooked.py). Everything here needs the ``interop``
extra.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from inductionlab.errors import ConfigError, InductionLabError
from inductionlab.interop.hf import INSTALL, read_export
from inductionlab.models.families import TransformerFamily, family, kv_shift_layers
from inductionlab.models.positional import rope_angles
from inductionlab.models.transformer import GeneralTransformer

MARK = "inductionlab"
ADAPTER = "inductionlab.interop.hooked.open_hooked(RUN_DIR) opens any run in TransformerLens with our hook names"


def tl_refusal(m) -> str | None:
    """Why a model described by ``m`` (a ModelConfig or a built model) has no TL-native form; None when it has."""
    fam = getattr(m, "family", None) or family(m.arch)
    if fam is not TransformerFamily:
        return f"model.arch={fam.arch} has no TransformerLens native form (no LayerNorm, W_Q = I, frozen memories)"
    if m.pos_enc in ("rpe", "bias"):
        return f"model.pos_enc={m.pos_enc} has no TransformerLens native form (no relative term in its attention)"
    if m.pos_enc == "rope" and m.n_layers > 1 and not m.pos_all_layers:
        return "model.pos_all_layers=false with rope has no TransformerLens native form (rotary in every layer or none)"
    if kv_shift_layers(m):
        return "model.kv_shift has no TransformerLens native form (its attention does not shift keys and values)"
    return None


def _native():
    try:
        from transformer_lens.config import TransformerBridgeConfig
        from transformer_lens.model_bridge.sources._bridge_builder import build_bridge_from_module
        from transformer_lens.model_bridge.sources.native import NativeModel
    except ImportError:
        raise InductionLabError(f"the TransformerLens export needs transformer-lens: {INSTALL}") from None
    return TransformerBridgeConfig, NativeModel, build_bridge_from_module


def native_config(model: GeneralTransformer, n_ctx: int | None = None) -> dict[str, Any]:
    """The ``TransformerBridgeConfig`` fields of ``model``'s native form (``n_ctx``: the longest input, by default
    ``max_len``)."""
    refusal = tl_refusal(model)
    if refusal:
        raise ConfigError(f"{refusal}; {ADAPTER}")
    d, heads = model.d_model, model.n_heads
    rope = model.pos_enc == "rope"
    return {"d_model": d, "d_head": d // heads, "n_layers": model.n_layers, "n_heads": heads,
            "n_ctx": n_ctx or model.max_len, "d_vocab": model.n_tokens,
            "d_mlp": model.blocks[0].mlp.W_in.shape[1] if model.mlp else 4 * d, "act_fn": "gelu",
            "normalization_type": "LN", "attn_only": not model.mlp, "eps": model.ln_final.eps,
            "positional_embedding_type": "rotary" if rope else "standard", "rotary_dim": d // heads if rope else None,
            "rotary_base": 10000, "original_architecture": "TransformerLensNative", "init_weights": False}


def native_state(model: GeneralTransformer, n_ctx: int) -> dict[str, torch.Tensor]:
    """The native model's state dict holding ``model``'s weights (module docstring)."""
    d = model.d_model
    dtype = model.W_E.dtype
    state = {"tok_embed.weight": model.W_E, "head.weight": model.W_U.T, "ln_out.weight": model.ln_final.weight,
             "ln_out.bias": model.ln_final.bias}
    if model.pos_enc != "rope":
        table = model.W_pos if model.W_pos is not None else model.sincos_pos
        state["pos.weight"] = torch.zeros(n_ctx, d, dtype=dtype) if table is None else table[:n_ctx]
    for l, block in enumerate(model.blocks):
        attn, pre = block.attn, f"layers.{l}."
        state |= {pre + "ln1.weight": block.ln1.weight, pre + "ln1.bias": block.ln1.bias,
                  pre + "attn.o.weight": attn.W_O.reshape(d, d).T, pre + "attn.o.bias": torch.zeros(d, dtype=dtype)}
        for name, weight in (("q", attn.W_Q), ("k", attn.W_K), ("v", attn.W_V)):
            state[pre + f"attn.{name}.weight"] = weight.permute(1, 0, 2).reshape(d, d).T
            state[pre + f"attn.{name}.bias"] = torch.zeros(d, dtype=dtype)
        if block.mlp is not None:
            state |= {pre + "ln2.weight": block.ln2.weight, pre + "ln2.bias": block.ln2.bias,
                      pre + "mlp.fc_in.weight": block.mlp.W_in.T, pre + "mlp.fc_out.weight": block.mlp.W_out.T,
                      pre + "mlp.fc_in.bias": torch.zeros(block.mlp.W_in.shape[1], dtype=dtype),
                      pre + "mlp.fc_out.bias": torch.zeros(d, dtype=dtype)}
    return {k: v.detach().contiguous().clone() for k, v in state.items()}


def _bridge(config: dict[str, Any], state: dict[str, torch.Tensor]):
    TransformerBridgeConfig, NativeModel, build_bridge_from_module = _native()
    dtype = state["tok_embed.weight"].dtype
    native = NativeModel(TransformerBridgeConfig(**config)).to(dtype)
    native.load_state_dict(state, strict=True)
    if native.rotary is not None:  # our rotation tables: the same angles, rounded to float32 as ours are
        cos, sin = rope_angles(torch.arange(config["n_ctx"]), config["d_head"])
        native.rotary.cos_cached = cos.repeat_interleave(2, -1).to(dtype)
        native.rotary.sin_cached = sin.repeat_interleave(2, -1).to(dtype)
    return build_bridge_from_module(native.eval(), architecture="TransformerLensNative",
                                    tl_config=TransformerBridgeConfig(**config))


def to_transformer_lens(model: GeneralTransformer, n_ctx: int | None = None):
    """``model`` as a TransformerLens ``TransformerBridge`` around the TL-native model with its weights: the same
    log-probabilities and attention patterns, TransformerLens's hook names (``run_with_cache``)."""
    config = native_config(model, n_ctx)
    return _bridge(config, native_state(model, config["n_ctx"]))


def export_transformer_lens(model: GeneralTransformer, out: str | Path) -> Path:
    """Write ``model``'s native form (``config.json``: the ``TransformerBridgeConfig`` fields; ``model.safetensors``:
    the native state dict) for :func:`load_transformer_lens`."""
    from safetensors.torch import save_file

    config = native_config(model)
    _native()  # the extra is there, before anything is written
    state = native_state(model, config["n_ctx"])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps({**config, MARK: {"pos_enc": model.pos_enc}}, indent=2) + "\n")
    return out


def load_transformer_lens(directory: str | Path):
    """The ``TransformerBridge`` of a folder :func:`export_transformer_lens` wrote."""
    config, state = read_export(directory, "a TransformerLens folder")
    config.pop(MARK, None)
    return _bridge(config, state)
