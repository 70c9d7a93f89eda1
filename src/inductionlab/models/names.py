"""Hook, weight and positional-encoding names of both model families, defined once (docs/science.md §3, §8).

Hook names follow TransformerLens (``get_act_name``): a hook point is named by a short *point* and,
inside a block, a 0-based layer::

    hook_name("pattern", 0)    == "blocks.0.attn.hook_pattern"
    hook_name("embed")         == "hook_embed"
    parse_hook_name("blocks.1.hook_attn_out") == (1, "attn_out")

Weight names: the AMT's matrices are named after the science, with 1-based layers as in
docs/science.md §3.1 (``amt_matrix("wk", 2) == "wk2"``; ``emb``, ``unemb``, ``pos``, ``rel``, ``wf``
…); the general transformer's after TransformerLens, with 0-based blocks
(``transformer_weight("W_K", 0) == "blocks.0.attn.W_K"``). Both families name the four scalars of
KV-shifting attention per layer (``kvshift1``; ``blocks.0.attn.kv_shift``). Which names a model of each family has
is said by its family (models/families.py). This module imports neither torch nor the config.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from inductionlab.errors import ConfigError

# docs/science.md §3.1; config.PosEnc spells the same list for validation
POS_ENCODINGS = ("ape", "ape-sincos", "rpe", "bias", "rope", "none")
ABSOLUTE_ENCODINGS = ("ape", "ape-sincos")  # a vector p_t added to the embedding; T ≤ max_len
RELATIVE_ENCODINGS = ("rpe", "bias", "rope")  # act inside attention, on t − s

# hook points outside the blocks: point → name
MODEL_POINTS = {
    "embed": "hook_embed",
    "pos_embed": "hook_pos_embed",
    "logits": "hook_logits",
    "ln_final": "ln_final.hook_normalized",
}
# hook points of block ``l``: point → name after ``blocks.{l}.``, in forward order
BLOCK_POINTS = {
    "resid_pre": "hook_resid_pre",
    "k_shifted": "attn.hook_k_shifted",
    "v_shifted": "attn.hook_v_shifted",
    "attn_scores": "attn.hook_attn_scores",
    "pattern": "attn.hook_pattern",
    "attn_out": "hook_attn_out",
    "resid_mid": "hook_resid_mid",
    "mlp_out": "hook_mlp_out",
    "resid_post": "hook_resid_post",
}
HEAD_POINTS = ("attn_scores", "pattern")  # (B, H, Tq, T): one axis per head, the query axis second to last
KV_SHIFT_POINTS = ("k_shifted", "v_shifted")  # (B, H, T, ·): only in blocks with KV-shifting attention (§3.3)

_BLOCK_NAME = re.compile(r"blocks\.(\d+)\.(.+)")
_BLOCK_POINT_OF = {suffix: point for point, suffix in BLOCK_POINTS.items()}
_MODEL_POINT_OF = {name: point for point, name in MODEL_POINTS.items()}


def hook_name(point: str, layer: int | None = None) -> str:
    """The hook name of ``point`` (in block ``layer``, 0-based, for a block point)."""
    if point in BLOCK_POINTS:
        if layer is None:
            raise ConfigError(f"hook point {point!r} is inside a block; give its layer")
        return f"{block_name(layer)}.{BLOCK_POINTS[point]}"
    if point in MODEL_POINTS:
        if layer is not None:
            raise ConfigError(f"hook point {point!r} is not inside a block; it takes no layer")
        return MODEL_POINTS[point]
    raise ConfigError(f"unknown hook point {point!r}; allowed: {', '.join((*MODEL_POINTS, *BLOCK_POINTS))}")


def block_name(layer: int | str) -> str:
    """The prefix of block ``layer``'s hook and weight names (0-based): ``"blocks.0"``."""
    return f"blocks.{layer}"


def hook_template(point: str) -> str:
    """The name of block point ``point`` with ``{layer}`` left to fill: ``"blocks.{layer}.hook_attn_out"``."""
    if point not in BLOCK_POINTS:
        raise ConfigError(f"unknown block hook point {point!r}; allowed: {', '.join(BLOCK_POINTS)}")
    return block_name("{layer}") + "." + BLOCK_POINTS[point]


def parse_hook_name(name: str) -> tuple[int | None, str]:
    """``(layer, point)`` of a hook name (layer None outside the blocks); ConfigError for any other name."""
    if name in _MODEL_POINT_OF:
        return None, _MODEL_POINT_OF[name]
    match = _BLOCK_NAME.fullmatch(name)
    if match and match.group(2) in _BLOCK_POINT_OF and str(int(match.group(1))) == match.group(1):
        return int(match.group(1)), _BLOCK_POINT_OF[match.group(2)]
    raise ConfigError(f"{name!r} is not a hook name (blocks.L.<point> or one of {', '.join(MODEL_POINTS.values())})")


def is_hook_point(name: str, *points: str) -> bool:
    """Whether ``name`` is a hook name at one of ``points``."""
    try:
        return parse_hook_name(name)[1] in points
    except ConfigError:
        return False


def hook_layers(names: Iterable[str], point: str) -> list[int]:
    """The layers, in order, of the hook names among ``names`` (e.g. a cache's keys) at block point ``point``."""
    layers = (parse_hook_name(name) for name in names if is_hook_point(name, point))
    return sorted(layer for layer, _ in layers)


# --------------------------------------------------------------------------- weights

AMT_LAYER_MATRICES = ("wk", "wv", "wo")  # per layer: W_K^ℓ, W_V^ℓ, W_O^ℓ (docs/science.md §3.1)
AMT_POSITION_BIAS = "bias"  # per layer with pos_enc: bias, a scalar per clipped distance
AMT_POSITIONS = "pos"  # p_t; under rpe the relative vectors r_δ are stored as "rel" but trained as "pos"
AMT_RELATIVE = "rel"
AMT_EMBEDDINGS = ("emb", "unemb", AMT_POSITIONS)  # e_k, u_k, p_t
AMT_FEED_FORWARD = "wf"  # linear W_F; the ReLU MLP stores it as "wf_in", "wf_out"
AMT_MLP = ("wf_in", "wf_out")
AMT_KV_SHIFT = "kvshift"  # per layer with KV-shifting attention: [α1, α2, β1, β2] (docs/science.md §3.3)
KV_SHIFT_SCALARS = ("alpha1", "alpha2", "beta1", "beta2")  # the order of the last axis of a kv-shift tensor


def amt_matrix(kind: str, layer: int) -> str:
    """The AMT's per-layer matrix ``kind`` (``wk``, ``wv``, ``wo``, ``bias`` or ``kvshift``) of layer ``layer``,
    1-based."""
    if kind not in (*AMT_LAYER_MATRICES, AMT_POSITION_BIAS, AMT_KV_SHIFT):
        raise ConfigError(f"unknown AMT matrix kind {kind!r}; allowed: {', '.join(AMT_LAYER_MATRICES)}, "
                          f"{AMT_POSITION_BIAS}, {AMT_KV_SHIFT}")
    return f"{kind}{layer}"


TRANSFORMER_EMBEDDINGS = ("W_E", "W_U", "W_pos")
TRANSFORMER_ATTN = ("W_Q", "W_K", "W_V", "W_O")
TRANSFORMER_MLP = ("W_in", "W_out")
TRANSFORMER_KV_SHIFT = "kv_shift"  # (n_heads, 4) per block with KV-shifting attention (docs/science.md §3.3)


def transformer_weight(kind: str, layer: int | None = None) -> str:
    """The general transformer's weight ``kind``: ``W_E``/``W_U``/``W_pos``, or in block ``layer`` (0-based)
    an attention (``W_Q``, ``W_K``, ``W_V``, ``W_O``) or MLP (``W_in``, ``W_out``) matrix."""
    if kind in TRANSFORMER_EMBEDDINGS and layer is None:
        return kind
    if kind in (*TRANSFORMER_ATTN, TRANSFORMER_KV_SHIFT) and layer is not None:
        return f"blocks.{layer}.attn.{kind}"
    if kind in TRANSFORMER_MLP and layer is not None:
        return f"blocks.{layer}.mlp.{kind}"
    raise ConfigError(f"no general-transformer weight {kind!r} (layer {layer}); allowed: "
                      f"{', '.join(TRANSFORMER_EMBEDDINGS)} without a layer, "
                      f"{', '.join((*TRANSFORMER_ATTN, *TRANSFORMER_MLP, TRANSFORMER_KV_SHIFT))} with one")


def kv_shift_metric(layer: int, head: int, scalar: str) -> str:
    """The metrics key of one KV-shift scalar (docs/science.md §3.3) of block ``layer`` (0-based, as in hook
    names) and head ``head``: ``kv_shift_metric(0, 0, "alpha1") == "kv_shift.0.0.alpha1"``."""
    if scalar not in KV_SHIFT_SCALARS:
        raise ConfigError(f"unknown KV-shift scalar {scalar!r}; allowed: {', '.join(KV_SHIFT_SCALARS)}")
    return f"kv_shift.{layer}.{head}.{scalar}"
