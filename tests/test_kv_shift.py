"""KV-shifting attention (docs/science.md §3.3) in both model families: algebra, hooks, construction, training."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from inductionlab.errors import ConfigError
from inductionlab.footprint import _model_sizes
from inductionlab.models.amt import AMTransformer
from inductionlab.models.kv_shift import shift_key_scores, shift_sequence, shift_value_weights
from inductionlab.models.names import KV_SHIFT_POINTS, kv_shift_metric
from inductionlab.models.transformer import GeneralTransformer
from inductionlab.prompts.families import PromptSpec, default_pair, make_prompts
from inductionlab.runs import RunDir
from inductionlab.tasks.sources import shakespeare_source
from inductionlab.train import train

N = 20
IDENTITY = torch.tensor([1.0, 0.0, 1.0, 0.0])  # α1 = β1 = 1: no shift
THEOREM_2 = torch.tensor([0.0, 1.0, 1.0, 0.0])  # keys carry the previous token, values the current one


def _set_scalars(model, value: torch.Tensor) -> None:
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if name.endswith(("kv_shift", "kvshift1", "kvshift2")):
                tensor.copy_(value.expand_as(tensor))
        for name, tensor in model.named_buffers():
            if name.startswith("kvshift"):
                tensor.copy_(value)


def test_the_shift_moves_onto_scores_and_pattern():
    """q·k̂ = shifted scores; Σ β v̂ = Σ (shifted β) v: the algebra the AMT's table paths rest on."""
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 7, 5, generator=gen) for _ in range(3))
    a1, a2, b1, b2 = torch.rand(4, generator=gen)
    k_hat, v_hat = shift_sequence(k, a1, a2), shift_sequence(v, b1, b2)
    assert torch.allclose(k_hat[:, 0], a1 * k[:, 0]) and torch.allclose(k_hat[:, 3], a1 * k[:, 3] + a2 * k[:, 2])
    assert torch.allclose(q @ k_hat.transpose(1, 2), shift_key_scores(q @ k.transpose(1, 2), a1, a2), atol=1e-6)
    beta = torch.softmax(torch.randn(2, 7, 7, generator=gen), -1)
    assert torch.allclose(beta @ v_hat, shift_value_weights(beta, b1, b2) @ v, atol=1e-6)


POSITIONS = ["ape", "rpe", "bias", "rope", "none"]
AMT_CASES = [(layers, pos, ff, True) for layers, pos, ff in itertools.product([1, 2], POSITIONS, ["none", "linear"])]
AMT_CASES += [(2, pos, "linear", shift) for pos in POSITIONS for shift in ((0,), (1,))]  # one layer of two shifted


@pytest.mark.parametrize("layers,pos,ff,shift", AMT_CASES)
def test_amt_fast_paths_equal_the_explicit_path_and_every_hook_fires(layers, pos, ff, shift):
    model = AMTransformer(N, 16, layers, pos, max_len=40, max_rel_dist=8, ff=ff, kv_shift=shift, init_seed=1)
    if pos == "bias":
        with torch.no_grad():
            for layer in range(1, layers + 1):
                getattr(model, f"bias{layer}").normal_()
    tokens = torch.randint(0, N, (3, 30), generator=torch.Generator().manual_seed(2))
    routes = ("h1", "tables") if layers == 2 and model.from_tables else (None,)
    for query, route in itertools.product((None, torch.tensor([[5, 29], [7, 3], [0, 12]])), routes):
        cache: dict = {}
        explicit = model(tokens, query_positions=query, cache=cache)
        if route is not None:  # force each way of computing the second layer
            model.second_layer_route = lambda *_, r=route: r
        assert torch.allclose(model(tokens, query_positions=query), explicit, atol=1e-4)
        model.__dict__.pop("second_layer_route", None)
        assert set(cache) == set(model.hook_names())


def test_amt_one_layer_matches_the_formula():
    """h_t + Φ Σ_s β_ts v̂_s with β = softmax_s(c h_tᵀ W_K k̂_s), written out by hand."""
    model = AMTransformer(N, 16, 1, "none", kv_shift=True, init="theory", init_seed=3)
    tokens = torch.randint(0, N, (2, 10), generator=torch.Generator().manual_seed(4))
    h = model.emb[tokens]
    a1, a2, b1, b2 = model.kvshift1
    previous = F.pad(h[:, :-1], (0, 0, 1, 0))
    scores = (h @ model.wk1) @ (a1 * h + a2 * previous).transpose(1, 2)
    scores = scores.masked_fill(torch.ones(10, 10, dtype=torch.bool).triu(1), -math.inf)
    out = h + scores.softmax(-1) @ ((b1 * h + b2 * previous) @ model.phi(1).T)
    assert torch.allclose(model(tokens), out @ model.unemb.T, atol=1e-5)


@pytest.mark.parametrize("family", ["amt", "transformer"])
@pytest.mark.parametrize("pos", ["ape", "rpe", "rope", "none"])
def test_identity_scalars_give_the_model_without_the_shift(family, pos):
    """α1 = β1 = 1, α2 = β2 = 0 is vanilla attention; every other weight is drawn as without the shift."""
    def build(kv_shift):
        if family == "amt":
            return AMTransformer(N, 16, 2, pos, max_len=40, kv_shift=kv_shift, init_seed=5)
        return GeneralTransformer(N, 16, 2, 2, pos, 40, max_rel_dist=8, kv_shift=kv_shift, init_seed=5)
    shifted, vanilla = build(True), build(False)
    _set_scalars(shifted, IDENTITY)
    tokens = torch.randint(0, N, (2, 24), generator=torch.Generator().manual_seed(6))
    assert torch.allclose(shifted(tokens), vanilla(tokens), atol=1e-5)
    _set_scalars(shifted, THEOREM_2)
    assert float((shifted(tokens) - vanilla(tokens)).abs().max().detach()) > 1e-4


@pytest.mark.parametrize("kv_shift", [True, (1,)])
def test_transformer_hooks_fire_and_replace(kv_shift):
    model = GeneralTransformer(N, 16, 2, 2, "rope", 40, kv_shift=kv_shift, init_seed=7)
    tokens = torch.randint(0, N, (2, 12), generator=torch.Generator().manual_seed(8))
    cache: dict = {}
    model(tokens, cache=cache)
    assert set(cache) == set(model.hook_names())
    shifted_blocks = {0, 1} if kv_shift is True else {1}
    assert {name for name in cache if name.endswith(("hook_k_shifted", "hook_v_shifted"))} == {
        f"blocks.{b}.attn.hook_{p}" for b in shifted_blocks for p in KV_SHIFT_POINTS}
    assert cache["blocks.1.attn.hook_k_shifted"].shape == (2, 2, 12, 8)
    # zero keys: every score 0, so the pattern is uniform over the causal keys
    zeroed: dict = {}
    model(tokens, cache=zeroed, hooks={"blocks.1.attn.hook_k_shifted": lambda v, site: torch.zeros_like(v)})
    pattern = zeroed["blocks.1.attn.hook_pattern"]
    assert torch.allclose(pattern[0, 0, 3, :4], torch.full((4,), 0.25))


# --------------------------------------------------------------------------- Theorem 2: induction in one layer

SCORE_SCALE = 30.0  # λ, the score of a matching key (theory-scale embeddings: |e|² ≈ 1)
EPSILON = 1e-3


def _induction_prompts():
    source = shakespeare_source()
    a, b, _ = default_pair(source)
    batch = make_prompts(PromptSpec("distance", 48, a, b, position=11, n_prompts=40, seed=3), source)
    return batch.tokens, b, 12  # the match: the position after the planted a, holding b


def test_amt_theorem_2_construction():
    """One AMT layer with α = (0, 1), β = (1, 0), W_K = λ I and W_O W_V = Σ_k u_k e_kᵀ (theory init, d = 512):
    the argmax is b on every designed induction prompt and the mass on the match is ≥ 1 − ε."""
    tokens, b, match = _induction_prompts()
    n = int(tokens.max()) + 1
    model = AMTransformer(max(n, 65), 512, 1, "none", init="theory", trained=(), kv_shift=True, init_seed=9)
    with torch.no_grad():
        model.kvshift1.copy_(THEOREM_2)
        model.wk1.copy_(SCORE_SCALE * torch.eye(512))
        model.wv1.copy_(torch.eye(512))
        model.wo1.copy_(3.0 * model.unemb.T @ torch.linalg.pinv(model.emb.T))  # Φ e_k = 3 u_k
    logits, pattern = model.logits_and_pattern(tokens, torch.tensor([tokens.shape[1] - 1]))
    assert bool((logits[:, -1].argmax(-1) == b).all())
    assert float(pattern[:, -1, match].min()) >= 1 - EPSILON


def test_transformer_theorem_2_construction():
    """One general-transformer layer, one head, α = (0, 1), β = (1, 0), centred one-hot embeddings (LayerNorm
    scales them alike), W_Q = λ' I, W_K = W_V = I, W_O = 5 I, W_U = W_Eᵀ: the same two statements."""
    tokens, b, match = _induction_prompts()
    n = int(tokens.max()) + 1
    d = n + 1
    model = GeneralTransformer(n, d, 1, 1, "none", 64, kv_shift=True, init_seed=10)
    emb = torch.eye(n, d) - 1.0 / d  # rows centred; LayerNorm maps each to c·row with one c for all
    scale = float(F.layer_norm(emb[:1], (d,)).norm() / emb[0].norm())
    with torch.no_grad():
        attn = model.blocks[0].attn
        model.W_E.copy_(emb)
        attn.kv_shift.copy_(THEOREM_2[None])
        attn.W_Q.copy_(SCORE_SCALE * math.sqrt(d) / scale**2 * torch.eye(d)[None])  # matching score λ·|e|²·√d/√d
        attn.W_K.copy_(torch.eye(d)[None])
        attn.W_V.copy_(torch.eye(d)[None])
        attn.W_O.copy_(5.0 * torch.eye(d)[None])
        model.W_U.copy_(emb.T)
    cache: dict = {}
    logits = model(tokens, cache=cache)
    assert bool((logits[:, -1].argmax(-1) == b).all())
    assert float(cache["blocks.0.attn.hook_pattern"][:, 0, -1, match].min().detach()) >= 1 - EPSILON


# --------------------------------------------------------------------------- config, training, footprint


@pytest.mark.parametrize("value,message", [(1, "not a choice of blocks"), ([0, 0], "names a block twice"),
                                           ([2], "outside the model's 2"), ("yes", "not a choice of blocks")])
def test_bad_kv_shift_is_one_line_naming_the_field(tiny, value, message):
    with pytest.raises(ConfigError, match=f"model.kv_shift: .*{message}"):
        tiny(model={"kv_shift": value})


def test_trained_names_the_scalars_only_with_the_shift(tiny):
    assert "kvshift1" in tiny(model={"kv_shift": [0], "trained": ["wk1", "kvshift1"]}).model.trained
    with pytest.raises(ConfigError, match="model.trained: unknown matrices \\['kvshift1'\\]"):
        tiny(model={"trained": ["wk1", "kvshift1"]})


@pytest.mark.parametrize("arch", ["amt", "transformer"])
def test_train_logs_the_scalars_and_resumes_exactly(tmp_path, tiny, arch):
    cfg = tiny(model={"arch": arch, "kv_shift": True, "pos_enc": "none"},
               train={"steps": 8, "checkpoint_every": 3, "eval_every": 2, "lr": 0.05})
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train(cfg, whole, progress=False)
    train(cfg, parts, stop_after=4, progress=False)
    train(cfg, parts, progress=False)
    a, b = RunDir(whole).load_checkpoint()[0], RunDir(parts).load_checkpoint()[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = RunDir(whole).metrics()
    assert [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows] == [
        {k: v for k, v in r.items() if k != "elapsed_s"} for r in RunDir(parts).metrics()]
    key = kv_shift_metric(1, 0, "alpha1")
    assert key in rows[0] and rows[0][key] != rows[-1][key]  # the scalars train and are logged
    first = rows[0]
    assert math.isclose(first[kv_shift_metric(0, 0, "alpha1")] + first[kv_shift_metric(0, 0, "alpha2")], 1,
                        abs_tol=1e-6)


@pytest.mark.parametrize("arch,name", [("amt", "kvshift1"), ("transformer", "blocks.0.attn.kv_shift")])
def test_interventions_freeze_the_scalars_and_footprint_counts_them(tmp_path, tiny, arch, name):
    cfg = tiny(model={"arch": arch, "kv_shift": [0]}, interventions=[{"target": name, "op": "freeze"}],
               train={"steps": 4, "lr": 0.05})
    train(cfg, tmp_path / "run", progress=False)
    rows = RunDir(tmp_path / "run").metrics()
    assert rows[0][kv_shift_metric(0, 0, "beta1")] == rows[-1][kv_shift_metric(0, 0, "beta1")]
    assert rows[0][kv_shift_metric(0, 0, "alpha1")] == rows[-1][kv_shift_metric(0, 0, "alpha1")]
    plain = tiny(model={"arch": arch})
    heads = cfg.model.n_heads
    assert _model_sizes(cfg)[0] == _model_sizes(plain)[0] + 4 * heads
    scaled = tiny(model={"arch": arch, "kv_shift": [0]},
                  interventions=[{"target": name, "op": "scale", "factor": 0.0, "phase": "eval"}])
    assert scaled.interventions[0].target == name


def test_hook_names_are_per_block():
    model = AMTransformer(N, 16, 2, "none", kv_shift=(1,), trained=("wk1", "wk2", "wo2", "kvshift2"))
    names = model.hook_names()
    assert "blocks.1.attn.hook_k_shifted" in names and "blocks.0.attn.hook_k_shifted" not in names
    assert "kvshift2" in model.weight_names() and "kvshift1" not in model.weight_names()
    with pytest.raises(ConfigError, match="outside the model's 2"):
        AMTransformer(N, 16, 2, "none", kv_shift=(2,))


def test_the_scalars_reach_probe_and_trajectory(tmp_path, tiny):
    import json

    from click.testing import CliRunner

    from inductionlab.cli import cli
    from inductionlab.tools.trajectory import FAMILIES

    cfg = tiny(model={"kv_shift": True, "pos_enc": "none"}, train={"steps": 2})
    train(cfg, tmp_path / "run", progress=False)
    result = CliRunner().invoke(cli, ["probe", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert kv_shift_metric(1, 0, "beta2") in json.loads(result.output)
    panels = [f.title for f in FAMILIES if f.select({kv_shift_metric(0, 0, "alpha1"), kv_shift_metric(1, 0, "beta2")})]
    assert panels == ["KV-shift scalars (§3.3; block.head.scalar)"]
