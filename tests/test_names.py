"""Hook, weight and encoding names defined once (models/names.py) and the model families (models/families.py):
every name parses back to its layer and point, a model's cache holds exactly the hook names its family
declares, its weight names are its tensors, and no module outside models/ dispatches on a family by hand."""

import re
from pathlib import Path
from typing import get_args

import pytest
import torch

from inductionlab.config import ModelConfig, validate
from inductionlab.errors import ConfigError
from inductionlab.models.build import MODEL_CLASSES, build_model
from inductionlab.models.families import FAMILIES, family
from inductionlab.models.names import (
    BLOCK_POINTS,
    MODEL_POINTS,
    POS_ENCODINGS,
    amt_matrix,
    hook_layers,
    hook_name,
    hook_template,
    is_hook_point,
    parse_hook_name,
    transformer_weight,
)

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "inductionlab"
VARIANTS = [("amt", {"ff": ff}) for ff in ("none", "linear", "mlp")] + [
    ("transformer", {"n_heads": 2, "mlp": mlp}) for mlp in (False, True)]


def _model_config(arch: str, pos_enc: str, extra: dict, n_layers: int = 2) -> ModelConfig:
    return ModelConfig(arch=arch, pos_enc=pos_enc, d_model=8, n_layers=n_layers, max_len=16, max_rel_dist=4, **extra)


def test_hook_names_follow_transformer_lens():
    assert hook_name("pattern", 0) == "blocks.0.attn.hook_pattern"
    assert hook_name("attn_scores", 2) == "blocks.2.attn.hook_attn_scores"
    assert hook_name("resid_post", 11) == "blocks.11.hook_resid_post"
    assert hook_name("embed") == "hook_embed" and hook_name("ln_final") == "ln_final.hook_normalized"
    assert hook_template("attn_out").format(layer=3) == hook_name("attn_out", 3) == "blocks.3.hook_attn_out"
    assert amt_matrix("wk", 2) == "wk2" and amt_matrix("bias", 1) == "bias1"
    assert transformer_weight("W_K", 0) == "blocks.0.attn.W_K" and transformer_weight("W_in", 1) == "blocks.1.mlp.W_in"
    assert transformer_weight("W_E") == "W_E"


@pytest.mark.parametrize("point", list(BLOCK_POINTS) + list(MODEL_POINTS))
def test_every_point_round_trips(point):
    layer = 7 if point in BLOCK_POINTS else None
    assert parse_hook_name(hook_name(point, layer)) == (layer, point)


@pytest.mark.parametrize("name", ["blocks.x.hook_resid_pre", "blocks.01.hook_resid_pre", "blocks.0.attn.W_K",
                                  "blocks.0.hook_foo", "hook_foo", "wk2", "", "blocks.0.attn.hook_pattern.x"])
def test_other_names_are_refused(name):
    with pytest.raises(ConfigError):
        parse_hook_name(name)
    assert not is_hook_point(name, *BLOCK_POINTS, *MODEL_POINTS)


def test_wrong_arguments_are_refused():
    for point, layer in (("pattern", None), ("embed", 0), ("nothing", 0)):
        with pytest.raises(ConfigError):
            hook_name(point, layer)
    for kind, layer in (("wq", 1), ("W_K", None), ("W_E", 0)):
        with pytest.raises(ConfigError):
            (amt_matrix if kind == "wq" else transformer_weight)(kind, layer)
    with pytest.raises(ConfigError, match="model.arch"):
        family("mamba")


def test_hook_layers_reads_a_cache_in_layer_order():
    cache = {hook_name("pattern", layer): None for layer in (10, 2, 0)} | {hook_name("attn_out", 5): None,
                                                                            hook_name("embed"): None}
    assert hook_layers(cache, "pattern") == [0, 2, 10] and hook_layers(cache, "attn_out") == [5]


@pytest.mark.parametrize("pos_enc", POS_ENCODINGS)
@pytest.mark.parametrize(("arch", "extra"), VARIANTS)
def test_cache_keys_are_the_declared_hook_names(arch, extra, pos_enc):
    cfg = _model_config(arch, pos_enc, extra, n_layers=3)
    model = build_model(cfg, 6, init_seed=0)
    declared = family(arch).hook_names(cfg)
    assert model.hook_names() == declared
    cache: dict = {}
    model(torch.randint(6, (2, 5)), cache=cache)
    assert tuple(cache) == declared  # the same names, recorded in the declared order
    for name in declared:
        layer, point = parse_hook_name(name)
        assert hook_name(point, layer) == name
    assert hook_layers(cache, "pattern") == list(range(3))


@pytest.mark.parametrize("pos_enc", POS_ENCODINGS)
@pytest.mark.parametrize(("arch", "extra"), VARIANTS)
def test_weight_names_are_the_models_tensors(arch, extra, pos_enc):
    cfg = _model_config(arch, pos_enc, extra)
    model = build_model(cfg, 6, init_seed=0)
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    assert model.weight_names() == family(arch).weight_names(cfg)
    assert set(model.weight_names()) <= set(tensors)
    trainable = family(arch).trainable_names(cfg)
    params = {name for name, _ in model.named_parameters()}
    if model.stores_memories:  # the AMT: every stored matrix may be targeted; the trained ones are parameters
        assert set(model.weight_names()) == set(tensors) >= params
        assert set(model.trained) <= set(trainable)
    else:
        assert trainable == ()


def test_the_families_are_the_configs_architectures():
    arches = get_args(ModelConfig.model_fields["arch"].annotation)
    assert set(FAMILIES) == set(MODEL_CLASSES) == set(arches)
    for arch, cls in MODEL_CLASSES.items():
        assert cls.family is FAMILIES[arch]
    with pytest.raises(ConfigError, match="every weight of this model trains"):
        validate({"model": {"arch": "transformer", "trained": ["wk1"]}})


def test_no_family_dispatch_or_hook_name_parsing_outside_models():
    """Model families are told apart by their classes in models/ only; hook and weight names are built by
    models/names.py only."""
    forbidden = {
        "isinstance on a model class": re.compile(r"isinstance\([^)]*\b(AMTransformer|GeneralTransformer)\b"),
        "a comparison with model.arch": re.compile(r"\barch\s*(==|!=|\bin\b|\bnot in\b)|[=!]=\s*[\w.]*\barch\b"),
        "a hook or weight name built by hand": re.compile(r"f\"(blocks\.|w[kvo]\{|bias\{)|fullmatch\(r\"blocks"),
        "a hook name split apart": re.compile(r"\.split\(\"\.\"\)\[\d\]"),
    }
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "models":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            found += [f"{path.relative_to(PACKAGE)}:{number}: {what}" for what, rx in forbidden.items()
                      if rx.search(line)]
    assert not found, "\n".join(found)
