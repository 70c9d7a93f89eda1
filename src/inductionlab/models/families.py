"""The model families by ``model.arch``: what a model of each family has before it is built (docs/science.md §3).

Each family (a :class:`ModelFamily`) says, from a model description ``m`` (a
:class:`~inductionlab.config.ModelConfig`, or a built model: anything with the fields its docstring
lists), its hook names, the weight matrices an intervention may target, the matrices that may
train, a rough compute cost and the activations a forward keeps. The model classes point to their
family (``AMTransformer.family``); config, sweep and footprint reach a family through
:func:`family`, the one place that maps ``model.arch`` to a family. Like models/names.py this
module imports neither torch nor the config.
"""

from __future__ import annotations

from inductionlab.errors import ConfigError
from inductionlab.models import names as nm


class ModelFamily:
    """What a model family says about a model description ``m`` before the model exists.

    A new family subclasses this, sets the class attributes, implements :meth:`weight_names`,
    :meth:`cost_factor` and :meth:`stream_floats`, and is added to :data:`FAMILIES` (and its model
    class to models/build.py, with ``family`` and ``from_config``).
    """

    arch: str  # the value of model.arch
    block_points: tuple[str, ...]  # hook points of each block, in forward order (models/names.py)
    final_point: str  # the last hook point, after the blocks

    @classmethod
    def hook_names(cls, m) -> tuple[str, ...]:
        """Every hook point, in forward order."""
        out = [nm.hook_name("embed")] + ([nm.hook_name("pos_embed")] if m.pos_enc in nm.ABSOLUTE_ENCODINGS else [])
        out += [nm.hook_name(point, layer) for layer in range(m.n_layers) for point in cls.block_points_of(m, layer)]
        return (*out, nm.hook_name(cls.final_point))

    @classmethod
    def block_points_of(cls, m, layer: int) -> tuple[str, ...]:
        """The hook points of block ``layer`` (0-based) of ``m``: the shifted keys and values only where it has
        KV-shifting attention."""
        shifted = layer in kv_shift_layers(m)
        return tuple(p for p in cls.block_points if shifted or p not in nm.KV_SHIFT_POINTS)

    @staticmethod
    def weight_names(m) -> tuple[str, ...]:
        """The weight matrices an intervention may target."""
        raise NotImplementedError

    @staticmethod
    def trainable_names(m) -> tuple[str, ...]:
        """The matrices ``model.trained`` may name; none: every weight trains (``model.trained`` stays unset)."""
        return ()

    @staticmethod
    def cost_factor(m) -> int:
        """Compute per token, width and layer relative to the AMT (sweep scheduling)."""
        raise NotImplementedError

    @staticmethod
    def stream_floats(m) -> int:
        """Floats per token and layer a forward keeps besides the attention pattern (footprint)."""
        raise NotImplementedError


def kv_shift_layers(m) -> tuple[int, ...]:
    """The blocks (0-based, as in hook names) of ``m`` with KV-shifting attention (docs/science.md §3.3):
    ``m.kv_shift`` is ``True`` (every block), ``False`` (none) or the blocks themselves."""
    value = getattr(m, "kv_shift", False)
    if value is True:
        return tuple(range(m.n_layers))
    return tuple(sorted(value)) if value else ()


class AMTFamily(ModelFamily):
    """The associative-memory transformer (docs/science.md §3.1; models/amt.py).

    Reads ``m.n_layers``, ``m.pos_enc``, ``m.ff``, ``m.pos_all_layers``, ``m.d_model``, ``m.kv_shift``.
    """

    arch = "amt"
    block_points = ("resid_pre", "k_shifted", "v_shifted", "attn_scores", "pattern", "attn_out", "resid_post")
    final_point = "logits"  # the last hook point: the logits themselves

    @staticmethod
    def trainable_names(m) -> tuple[str, ...]:
        """The matrices ``model.trained`` may name (docs/science.md §3.1); ``pos`` stands for ``rel`` under
        rpe and ``wf`` for both matrices of the MLP."""
        layers = range(1, m.n_layers + 1)
        out = [nm.amt_matrix(kind, layer) for layer in layers for kind in nm.AMT_LAYER_MATRICES]
        if m.pos_enc == "bias":
            out += [nm.amt_matrix(nm.AMT_POSITION_BIAS, layer) for layer in layers]
        out += list(nm.AMT_EMBEDDINGS)
        if m.ff != "none":
            out.append(nm.AMT_FEED_FORWARD)
        return (*out, *_amt_kv_shift(m))

    @classmethod
    def weight_names(cls, m) -> tuple[str, ...]:
        """The stored matrices an intervention may target: the trainable ones under their tensor names."""
        out = list(cls.trainable_names(m))
        if m.ff == "mlp":
            out[out.index(nm.AMT_FEED_FORWARD)] = nm.AMT_MLP[0]
            out.append(nm.AMT_MLP[1])
        if m.pos_enc == "rpe":
            out[out.index(nm.AMT_POSITIONS)] = nm.AMT_RELATIVE
        elif m.pos_enc not in nm.ABSOLUTE_ENCODINGS:
            out.remove(nm.AMT_POSITIONS)
        return tuple(out)

    @staticmethod
    def default_trained(m) -> tuple[str, ...]:
        """docs/science.md §3.1 default: every ``W_K``, the last ``W_O``, ``W_F`` and the position biases."""
        out = [nm.amt_matrix("wk", layer) for layer in range(1, m.n_layers + 1)] + [nm.amt_matrix("wo", m.n_layers)]
        if m.pos_enc == "bias":
            layers = range(1, m.n_layers + 1) if m.pos_all_layers else (1,)
            out += [nm.amt_matrix(nm.AMT_POSITION_BIAS, layer) for layer in layers]
        if m.ff != "none":
            out.append(nm.AMT_FEED_FORWARD)
        return (*out, *_amt_kv_shift(m))

    @staticmethod
    def cost_factor(m) -> int:
        return 1

    @staticmethod
    def stream_floats(m) -> int:
        """Floats per token and layer a forward keeps besides the attention pattern: layer 1 is read from
        tables and one stream is kept per layer."""
        return m.d_model


def _amt_kv_shift(m) -> tuple[str, ...]:
    """The AMT's KV-shift scalars, one tensor per shifted layer (1-based names: ``kvshift1``)."""
    return tuple(nm.amt_matrix(nm.AMT_KV_SHIFT, block + 1) for block in kv_shift_layers(m))


class TransformerFamily(ModelFamily):
    """The general transformer (docs/science.md §3.2; models/transformer.py): everything trains.

    Reads ``m.n_layers``, ``m.pos_enc``, ``m.mlp``, ``m.d_mlp``, ``m.d_model``, ``m.kv_shift``.
    """

    arch = "transformer"
    block_points = ("resid_pre", "k_shifted", "v_shifted", "attn_scores", "pattern", "attn_out", "resid_mid",
                    "mlp_out", "resid_post")
    final_point = "ln_final"  # the last hook point: the normalised residual the unembedding reads

    @classmethod
    def block_points_of(cls, m, layer: int) -> tuple[str, ...]:
        """``mlp_out`` only with MLPs, the shifted keys and values only with KV-shifting attention."""
        return tuple(p for p in super().block_points_of(m, layer) if p != "mlp_out" or m.mlp)

    @staticmethod
    def weight_names(m) -> tuple[str, ...]:
        """The weight matrices an intervention may target (TransformerLens names)."""
        out = [nm.transformer_weight("W_E"), nm.transformer_weight("W_U")]
        out += [nm.transformer_weight("W_pos")] if m.pos_enc == "ape" else []
        for layer in range(m.n_layers):
            out += [nm.transformer_weight(kind, layer) for kind in nm.TRANSFORMER_ATTN]
            out += [nm.transformer_weight(kind, layer) for kind in nm.TRANSFORMER_MLP] if m.mlp else []
            out += [nm.transformer_weight(nm.TRANSFORMER_KV_SHIFT, layer)] if layer in kv_shift_layers(m) else []
        return tuple(out)

    @staticmethod
    def cost_factor(m) -> int:
        """× 3 against the AMT (every projection computed) and × 2 more with MLPs (calibrated on the quick
        presets, 2-core CPU)."""
        return 3 * (2 if m.mlp else 1)

    @staticmethod
    def stream_floats(m) -> int:
        """Floats per token and layer a forward keeps besides the attention pattern: the residual and the
        attention output, the MLP's hidden layer, and with KV-shifting attention the shifted keys and values."""
        shifted = 2 * m.d_model if kv_shift_layers(m) else 0
        return 2 * m.d_model + shifted + ((m.d_mlp or 4 * m.d_model) if m.mlp else 0)


FAMILIES: dict[str, type[ModelFamily]] = {f.arch: f for f in (AMTFamily, TransformerFamily)}


def family(arch: str) -> type[ModelFamily]:
    """The family of ``model.arch``."""
    try:
        return FAMILIES[arch]
    except KeyError:
        raise ConfigError(f"model.arch: unknown family {arch!r}; allowed: {', '.join(FAMILIES)}") from None
