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
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "model.pos_enc=rpe" in err and "open_hooked(RUN_DIR)" in err
    assert len(err.strip().splitlines()) == 1
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


def _planted(induction_head: int = 2, distractor: int = 0) -> GeneralTransformer:
    """Two layers, four heads, ape, d = 128: a previous-token head (layer 0, head 1) writes the previous token into
    dims 40–47; an induction head (layer 1, ``induction_head``) matches the current token against them and copies
    the attended token to the logits; ``distractor`` (layer 1) is a second previous-token head; the rest attend
    uniformly and write nothing. Residual layout: tokens 0–7, positions 8–39, previous token 40–47, output 48–55."""
    n, T, d, dh = 8, 32, 128, 32
    model = GeneralTransformer(n, d, 2, 4, "ape", T, init_seed=0).double()
    eye = torch.eye(dh, dtype=torch.float64)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.W_E[:, :n] = torch.eye(n)
        model.W_pos[:, n:n + T] = torch.eye(T)
        for block in model.blocks:
            block.ln1.weight.fill_(1.0)
        model.ln_final.weight.fill_(1.0)
        for layer, head in ((0, 1), (1, distractor)):  # attend to the previous position
            attn = model.blocks[layer].attn
            attn.W_Q[head, n:n + T] = 2.0 * eye
            attn.W_K[head, n:n + T - 1] = 2.0 * eye[1:]  # key at s is read by the query at s + 1
        prev = model.blocks[0].attn
        prev.W_V[1, :n, :n] = torch.eye(n)
        prev.W_O[1, :n, 40:48] = torch.eye(n) / 8.0  # about one after LayerNorm's scale
        ind = model.blocks[1].attn
        ind.W_Q[induction_head, :n, :n] = 3.0 * torch.eye(n)
        ind.W_K[induction_head, 40:48, :n] = 3.0 * torch.eye(n)
        ind.W_V[induction_head, :n, :n] = torch.eye(n)
        ind.W_O[induction_head, :n, 48:56] = torch.eye(n)
        model.W_U[48:56] = 5.0 * torch.eye(n)
    return model.eval()


def test_a_planted_induction_head_found_alike_in_transformer_lens():
    """The head scores of docs/science.md §4.2 from TransformerLens's cache equal ours (1e-4) and pick head 2 of
    layer 1, not head 0; TransformerLens's own induction detector finds the same head."""
    from transformer_lens.head_detector import (
        compute_head_attention_similarity_score,
        get_induction_head_detection_pattern,
    )

    model = _planted()
    half = torch.randint(0, 8, (16, 16), generator=torch.Generator().manual_seed(0))
    tokens = torch.cat((half, half), 1)  # random halves, repeated
    labels = torch.ones_like(tokens)
    labels[:, 16:] = 2  # the second half's targets are in context
    ours: dict = {}
    with torch.no_grad():
        model(tokens, cache=ours)
        _, theirs = to_transformer_lens(model).run_with_cache(tokens)
    a = head_scores_on_cache(ours, tokens, labels, 2)
    b = head_scores_on_cache(dict(theirs.items()), tokens, labels, 2)
    for kind in a:
        assert torch.allclose(a[kind], b[kind], atol=1e-4)
    assert a["induction"][1].argmax() == b["induction"][1].argmax() == 2
    assert a["induction"][1, 2] > 0.9 and a["previous_token"][0, 1] > 0.9
    expected = get_induction_head_detection_pattern(tokens[:1]).double()
    detected = torch.tensor([[compute_head_attention_similarity_score(
        theirs[f"blocks.{layer}.attn.hook_pattern"][0, head], expected, exclude_bos=False,
        exclude_current_token=False, error_measure="mul") for head in range(4)] for layer in range(2)])
    assert detected[1].argmax() == 2 and detected.flatten().argmax() == 4 + 2
