"""The one place that builds a model from a config (docs/science.md §3)."""

from __future__ import annotations

from torch import nn

from inductionlab.config import ModelConfig
from inductionlab.models.amt import AMTransformer
from inductionlab.models.transformer import GeneralTransformer

# model.arch → model class; each class names its family (models/families.py), which holds the arch
MODEL_CLASSES: dict[str, type[AMTransformer] | type[GeneralTransformer]] = {
    cls.family.arch: cls for cls in (AMTransformer, GeneralTransformer)
}


def build_model(model: ModelConfig, n_tokens: int, init_seed: int) -> nn.Module:
    """The model a config describes, initialised from ``init_seed`` (docs/science.md §3)."""
    return MODEL_CLASSES[model.arch].from_config(model, n_tokens, init_seed)
