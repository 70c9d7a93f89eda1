"""The general transformer as a TransformerLens TransformerBridge (docs/interop.md), in float64."""

from __future__ import annotations

import itertools

import pytest
import torch

from inductionlab.errors import ConfigError
from inductionlab.interop.hf import gpt2_state, hf_refusal
from inductionlab.interop.tl import export_transformer_lens, load_transformer_lens, tl_refusal, to_transformer_lens
from inductionlab.models.amt import AMTransformer
from inductionlab.models.transformer import GeneralTransformer
from inductionlab.probes.attention import head_scores_on_cache

pytest.importorskip("transformer_lens")

N = 20


def _model(pos: str, mlp: bool, heads: int, layers: int = 2) -> GeneralTransformer:
    model = GeneralTransformer(N, 32, layers, heads, pos, 64, mlp=mlp, init_seed=3).double()
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)
    return model.eval()


CASES = list(itertools.product(["ape", "ape-sincos", "rope", "none"], [False, True], [1, 4]))


@pytest.mark.parametrize("pos,mlp,heads", CASES)
def test_the_bridge_gives_our_log_probs_and_patterns(pos, mlp, heads):
    model = _model(pos, mlp, heads)
    bridge = to_transformer_lens(model)
    gen = torch.Generator().manual_seed(5)
    for length in (17, 64):
        tokens = torch.randint(0, N, (3, length), generator=gen)
        with torch.no_grad():
            logits, cache = bridge.run_with_cache(tokens)
            ours_cache: dict = {}
            ours = model(tokens, cache=ours_cache)
        assert (torch.log_softmax(logits.double(), -1) - torch.log_softmax(ours, -1)).abs().max() < 1e-6
        for layer in range(model.n_layers):
            name = f"blocks.{layer}.attn.hook_pattern"  # the same name on both sides
            assert (cache[name] - ours_cache[name]).abs().max() < 1e-6


def test_head_scores_from_the_bridge_cache_equal_ours(tiny):
    from inductionlab.tasks.build import make_task
    cfg = tiny(model={"arch": "transformer", "n_heads": 4, "d_model": 32, "pos_enc": "rope", "pos_all_layers": True})
    model = _model("rope", False, 4)
    batch = make_task(cfg, torch.device("cpu")).sample(16, torch.Generator().manual_seed(0))
    tokens = batch.tokens % N
    labels = batch.probe_labels()
    ours: dict = {}
    with torch.no_grad():
        model(tokens, cache=ours)
        _, theirs = to_transformer_lens(model).run_with_cache(tokens)
    a = head_scores_on_cache(ours, tokens, labels, 2)
    b = head_scores_on_cache(dict(theirs.items()), tokens, labels, 2)
    for kind in a:
        assert torch.allclose(a[kind], b[kind], atol=1e-4)
        assert torch.equal(a[kind].argmax(-1), b[kind].argmax(-1))


def test_export_command(tmp_path, tiny, capsys):
    from inductionlab.cli import main
    from inductionlab.train import open_trained, train

    cfg = tiny(model={"arch": "transformer", "n_heads": 2, "pos_enc": "rope", "pos_all_layers": True})
    train(cfg, tmp_path / "run", progress=False)
    main(["export", str(tmp_path / "run"), "--to", "transformer-lens", str(tmp_path / "tl")])
    _, model, _ = open_trained(tmp_path / "run")
    tokens = torch.randint(0, cfg.data.n_tokens, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        theirs = load_transformer_lens(tmp_path / "tl")(tokens)
    assert (torch.log_softmax(theirs.double(), -1) - torch.log_softmax(model(tokens).double(), -1)).abs().max() < 1e-5
    train(tiny(model={"arch": "transformer", "pos_enc": "rpe"}), tmp_path / "rpe", progress=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(tmp_path / "rpe"), "--to", "transformer-lens", str(tmp_path / "x")])
    assert exit_info.value.code == 2 and "model.pos_enc=rpe" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_export_and_load(tmp_path):
    model = _model("rope", True, 4)
    export_transformer_lens(model, tmp_path / "tl")
    tokens = torch.randint(0, N, (2, 30), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        logits = load_transformer_lens(tmp_path / "tl")(tokens)
    assert (torch.log_softmax(logits.double(), -1) - torch.log_softmax(model(tokens), -1)).abs().max() < 1e-6


@pytest.mark.parametrize("model,to_hf,to_tl", [
    (GeneralTransformer(N, 16, 1, 1, "rpe", 64), "model.pos_enc=rpe", "model.pos_enc=rpe"),
    (GeneralTransformer(N, 16, 1, 1, "bias", 64), "model.pos_enc=bias", "model.pos_enc=bias"),
    (GeneralTransformer(N, 16, 2, 1, "rope", 64, pos_all_layers=False), "model.pos_enc=rope",
     "model.pos_all_layers=false"),
    (GeneralTransformer(N, 16, 1, 1, "none", 64), "model.pos_enc=none", None),
    (GeneralTransformer(N, 16, 1, 1, "ape", 64, kv_shift=True), "model.kv_shift", "model.kv_shift"),
    (AMTransformer(N, 16, 2, "ape"), "model.arch=amt", "model.arch=amt"),
])
def test_settings_without_a_form_are_refused_naming_them(model, to_hf, to_tl):
    """Each export refuses in one line naming the setting (HuggingFace GPT-2 and the TL-native model)."""
    for refusal, export, named in ((hf_refusal, gpt2_state, to_hf), (tl_refusal, to_transformer_lens, to_tl)):
        if named is None:
            assert refusal(model) is None
            continue
        assert named in refusal(model)
        with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
            export(model)
