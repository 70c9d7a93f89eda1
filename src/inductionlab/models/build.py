"""The one place that builds a model from a config (docs/science.md §3)."""

from __future__ import annotations

from torch import nn

from inductionlab.config import ModelConfig, default_trained
from inductionlab.models.amt import AMTransformer
from inductionlab.models.transformer import GeneralTransformer


def build_model(model: ModelConfig, n_tokens: int, init_seed: int) -> nn.Module:
    """The model a config describes, initialised from ``init_seed`` (docs/science.md §3)."""
    if model.arch == "transformer":
        return GeneralTransformer(
            n_tokens, model.d_model, model.n_layers, model.n_heads, model.pos_enc, model.max_len,
            max_rel_dist=model.max_rel_dist, mlp=model.mlp, d_mlp=model.d_mlp, init_seed=init_seed,
            pos_all_layers=model.pos_all_layers,
        )
    return AMTransformer(
        n_tokens, model.d_model, model.n_layers, model.pos_enc, model.max_len, model.max_rel_dist,
        init=model.init, trained=model.trained or default_trained(model), zero_init=model.zero_init,
        ff=model.ff, d_mlp=model.d_mlp, pos_all_layers=model.pos_all_layers, init_seed=init_seed,
    )
