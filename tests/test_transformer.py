"""Tests for the general transformer (docs/science.md §3.2)."""

from __future__ import annotations

import math

import pytest
import torch

from inductionlab.errors import ConfigError
from inductionlab.models.names import ABSOLUTE_ENCODINGS, POS_ENCODINGS
from inductionlab.models.transformer import GeneralTransformer

N_TOKENS, D_MODEL, N_HEADS, MAX_LEN = 11, 16, 2, 24
RELATIVE = ("rpe", "bias", "rope")


pytestmark = pytest.mark.usefixtures("single_thread")  # conftest.py: one intra-op thread for tiny models


def make(pos_enc: str, n_layers: int = 2, mlp: bool = True, **kw) -> GeneralTransformer:
    kw = {"max_rel_dist": 6, "init_seed": 0} | kw
    return GeneralTransformer(N_TOKENS, D_MODEL, n_layers, N_HEADS, pos_enc, MAX_LEN, mlp=mlp, **kw)


def randomise_relative(model: GeneralTransformer, seed: int = 1) -> None:
    """The bias table starts at zero; give it values so position-dependence is visible."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in model.blocks:
            if block.attn.rel_bias is not None:
                block.attn.rel_bias.copy_(torch.randn(block.attn.rel_bias.shape, generator=gen))


def tokens(batch: int = 3, seq: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, N_TOKENS, (batch, seq), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("pos_enc", POS_ENCODINGS)
@pytest.mark.parametrize("n_layers", [1, 2, 3])
@pytest.mark.parametrize("mlp", [False, True])
def test_output_shape_and_dtype(pos_enc, n_layers, mlp):
    logits = make(pos_enc, n_layers, mlp)(tokens(3, 12))
    assert logits.shape == (3, 12, N_TOKENS) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("pos_enc", POS_ENCODINGS)
def test_causal(pos_enc):
    model = make(pos_enc, n_layers=3)
    randomise_relative(model)
    x = tokens(2, 12)
    y = x.clone()
    y[:, 7] = (y[:, 7] + 1) % N_TOKENS
    a, b = model(x), model(y)
    torch.testing.assert_close(a[:, :7], b[:, :7], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, 7:], b[:, 7:])


@pytest.mark.parametrize("pos_enc", POS_ENCODINGS)
@pytest.mark.parametrize("n_layers", [1, 3])
def test_query_positions_equal_gathered_full_output(pos_enc, n_layers):
    model = make(pos_enc, n_layers)
    randomise_relative(model)
    x = tokens(3, 12)
    qp = torch.tensor([[0, 5, 11, 11], [3, 3, 3, 3], [10, 2, 7, 0]])  # repeats and any order
    full = model(x)
    part = model(x, query_positions=qp)
    assert part.shape == (3, 4, N_TOKENS)
    torch.testing.assert_close(part, full.gather(1, qp[..., None].expand(-1, -1, N_TOKENS)))


@pytest.mark.parametrize("pos_enc", POS_ENCODINGS)
def test_cache_hooks_shapes_and_patterns(pos_enc):
    B, T, Tq, L = 2, 10, 3, 2
    model = make(pos_enc, n_layers=L, mlp=True)
    qp = torch.tensor([[9, 4, 0], [1, 1, 8]])
    cache: dict = {}
    model(tokens(B, T), query_positions=qp, cache=cache)
    expected = {"hook_embed": (B, T, D_MODEL), "ln_final.hook_normalized": (B, Tq, D_MODEL)}
    if pos_enc in ABSOLUTE_ENCODINGS:
        expected["hook_pos_embed"] = (B, T, D_MODEL)
    for l in range(L):
        tq = Tq if l == L - 1 else T
        expected |= {
            f"blocks.{l}.hook_resid_pre": (B, T, D_MODEL),
            f"blocks.{l}.attn.hook_attn_scores": (B, N_HEADS, tq, T),
            f"blocks.{l}.attn.hook_pattern": (B, N_HEADS, tq, T),
            f"blocks.{l}.hook_attn_out": (B, tq, D_MODEL),
            f"blocks.{l}.hook_resid_mid": (B, tq, D_MODEL),
            f"blocks.{l}.hook_mlp_out": (B, tq, D_MODEL),
            f"blocks.{l}.hook_resid_post": (B, tq, D_MODEL),
        }
    assert {k: tuple(v.shape) for k, v in cache.items()} == expected
    for l in range(L):
        pattern = cache[f"blocks.{l}.attn.hook_pattern"]
        scores = cache[f"blocks.{l}.attn.hook_attn_scores"]
        query_pos = qp if l == L - 1 else torch.arange(T)[None].expand(B, -1)
        future = torch.arange(T) > query_pos[:, None, :, None]  # (B, 1, tq, T)
        torch.testing.assert_close(pattern.sum(-1), torch.ones(pattern.shape[:-1]))
        assert (pattern >= 0).all()
        assert (pattern.masked_select(future) == 0).all()
        assert torch.isneginf(scores.masked_select(future)).all()
        assert torch.isfinite(scores.masked_select(~future)).all()


def test_cache_is_per_call_and_does_not_change_output():
    model, x = make("rope"), tokens()
    first, second = {}, {}
    torch.testing.assert_close(model(x, cache=first), model(x))
    model(x[:1], cache=second)
    assert first["hook_embed"].shape[0] == 3 and second["hook_embed"].shape[0] == 1


@pytest.mark.parametrize("pos_enc", POS_ENCODINGS)
def test_length_limits(pos_enc):
    model = make(pos_enc, n_layers=2)
    long = tokens(2, MAX_LEN + 5)
    if pos_enc in ABSOLUTE_ENCODINGS:
        model(tokens(2, MAX_LEN))  # exactly max_len is fine
        with pytest.raises(ConfigError, match=rf"{MAX_LEN + 5}.*max_len={MAX_LEN}"):
            model(long)
    else:
        assert model(long).shape == (2, MAX_LEN + 5, N_TOKENS)


def layer0_scores(model: GeneralTransformer, x: torch.Tensor) -> torch.Tensor:
    cache: dict = {}
    model(x, cache=cache)
    return cache["blocks.0.attn.hook_attn_scores"]


@pytest.mark.parametrize("pos_enc", [*RELATIVE, "none", "ape"])
def test_relative_scores_depend_on_distance_only(pos_enc):
    """On a periodic sequence (period P) the score of (t, s) equals that of (t+P, s+P) iff the
    position enters through t - s only; absolute positions break this, which the `ape` case checks."""
    P, T = 5, 20
    model = make(pos_enc, n_layers=1, max_rel_dist=7)  # T - 1 > max_rel_dist: clipping is exercised
    randomise_relative(model)
    x = torch.arange(P).repeat(T // P)[None] % N_TOKENS
    s = layer0_scores(model, x)[0]  # (H, T, T)
    t_idx, s_idx = torch.tril_indices(T - P, T - P)
    shifted_equal = torch.allclose(s[:, t_idx, s_idx], s[:, t_idx + P, s_idx + P], atol=1e-5)
    assert shifted_equal == (pos_enc != "ape")


@pytest.mark.parametrize("pos_enc", RELATIVE)
def test_relative_encodings_carry_position(pos_enc):
    """With a constant token the content term is the same for every (t, s): any variation of the
    scores along a row must come from the encoding, so a no-op encoding fails here."""
    model = make(pos_enc, n_layers=1, max_rel_dist=7)
    randomise_relative(model)
    s = layer0_scores(model, torch.zeros(1, 12, dtype=torch.long))[0, :, 11]  # (H, T) last query row
    assert s.std(-1).min() > 1e-6


@pytest.mark.parametrize("pos_enc", ["rpe", "bias"])
def test_relative_scores_match_explicit_formula(pos_enc):
    """S_ts = (q_t·k_s + q_t·r_{min(t-s,δ)}) / √d_head (rpe), or q_t·k_s / √d_head + b_{min(t-s,δ)} (bias)."""
    T, delta = 11, 4
    model = make(pos_enc, n_layers=1, max_rel_dist=delta)
    randomise_relative(model)
    x = tokens(1, T)
    got = layer0_scores(model, x)[0]
    attn = model.blocks[0].attn
    with torch.no_grad():
        h = model.blocks[0].ln1(model.W_E[x[0]])  # (T, d)
        for head in range(N_HEADS):
            q, k = h @ attn.W_Q[head], h @ attn.W_K[head]
            for t in range(T):
                for s in range(t + 1):
                    dist = min(t - s, delta)
                    want = q[t] @ k[s] / math.sqrt(attn.d_head)
                    if pos_enc == "rpe":
                        want = want + q[t] @ attn.rel_keys[head, dist] / math.sqrt(attn.d_head)
                    else:
                        want = want + attn.rel_bias[head, dist]
                    torch.testing.assert_close(got[head, t, s], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pos_enc", RELATIVE)
def test_pos_all_layers_false_keeps_encoding_in_first_layer(pos_enc):
    model = make(pos_enc, n_layers=3, pos_all_layers=False)
    assert [b.attn.relative for b in model.blocks] == [pos_enc, "none", "none"]
    assert all(b.attn.rel_keys is None and b.attn.rel_bias is None for b in model.blocks[1:])
    assert [b.attn.relative for b in make(pos_enc, n_layers=3).blocks] == [pos_enc] * 3


def test_frozen_tensors_are_buffers():
    sincos = make("ape-sincos")
    assert "sincos_pos" in dict(sincos.named_buffers())
    assert not any("pos" in name for name, _ in sincos.named_parameters())
    assert "W_pos" in dict(make("ape").named_parameters())
    assert not list(make("ape").buffers())


def test_init_is_seeded_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a, b, c = make("rpe", init_seed=3), make("rpe", init_seed=3), make("rpe", init_seed=4)
    assert torch.equal(state, torch.get_rng_state())
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), name
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True))


@pytest.mark.parametrize("pos_enc", POS_ENCODINGS)
def test_gradients_reach_every_parameter(pos_enc):
    model = make(pos_enc, n_layers=2, mlp=True)
    x = tokens(4, 12)
    logits = model(x, query_positions=torch.tensor([[11, 6]] * 4))
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens(8, 1, seed=5).flatten())
    loss.backward()
    for name, p in model.named_parameters():
        if name == "W_pos":  # only rows < T are used
            assert p.grad[:12].abs().sum() > 0 and (p.grad[12:] == 0).all()
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_bad_config_raises():
    with pytest.raises(ConfigError, match="pos_enc"):
        make("alibi")
    with pytest.raises(ConfigError, match="divisible"):
        GeneralTransformer(N_TOKENS, 10, 1, 3, "none", MAX_LEN)


def test_d_mlp_default_is_four_d_model():
    assert make("none", mlp=True).blocks[0].mlp.W_in.shape == (D_MODEL, 4 * D_MODEL)
    assert make("none", mlp=True, d_mlp=7).blocks[0].mlp.W_in.shape == (D_MODEL, 7)
    assert make("none", mlp=False).blocks[0].mlp is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("pos_enc", POS_ENCODINGS)
def test_runs_on_cuda_and_matches_cpu(pos_enc):
    model = make(pos_enc, n_layers=2)
    randomise_relative(model)
    x = tokens(3, 12)
    qp = torch.tensor([[11, 0], [4, 4], [7, 9]])
    want = model(x, query_positions=qp)
    got = model.to("cuda")(x.cuda(), query_positions=qp.cuda())
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), want, rtol=1e-4, atol=1e-4)


def test_causal_bias_is_the_masked_fill_bit_for_bit_forward_and_backward():
    """The additive causal bias both models use gives the masked fill's softmax and gradients exactly."""
    from inductionlab.models.positional import causal_bias, causal_mask

    gen = torch.Generator().manual_seed(3)
    for query_pos in (torch.arange(9), torch.tensor([[2, 8, 5], [0, 4, 8]])):
        scores = torch.randn(2, 3, query_pos.shape[-1], 9, generator=gen) * 4
        upstream = torch.randn(scores.shape, generator=gen)
        a, b = scores.clone().requires_grad_(), scores.clone().requires_grad_()
        head_axis = 0 if query_pos.dim() == 1 else 1  # (Tq, T) broadcasts over (B, H); (B, Tq, T) over H
        mask = causal_mask(query_pos, 9).unsqueeze(head_axis)
        bias = causal_bias(query_pos, 9).unsqueeze(head_axis)
        filled = a.masked_fill(~mask, float("-inf")).softmax(-1)
        added = (b + bias).softmax(-1)
        assert torch.equal(filled, added)
        (filled * upstream).sum().backward()
        (added * upstream).sum().backward()
        assert torch.equal(a.grad, b.grad)
        assert bool((b.grad[~mask.expand_as(b)] == 0).all())  # nothing flows to a masked key


@pytest.mark.parametrize("pos_enc", ["none", "ape", "ape-sincos", "rope"])
@pytest.mark.parametrize("kv_shift", [False, True])
def test_the_fused_attention_equals_the_explicit_one(pos_enc, kv_shift):
    """Without hooks, a cache or a distance term, every position's attention is one fused causal kernel
    (``scaled_dot_product_attention``); with a cache it is the explicit softmax the hooks read. Same logits
    and gradients to rounding (float64)."""
    model = make(pos_enc, kv_shift=kv_shift).double()
    tokens = torch.randint(0, N_TOKENS, (3, MAX_LEN), generator=torch.Generator().manual_seed(4))
    fused = model(tokens)
    fused.square().sum().backward()
    fused_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    explicit = model(tokens, cache={})
    explicit.square().sum().backward()
    assert (fused - explicit).abs().max() < 1e-12
    for name, p in model.named_parameters():
        assert (fused_grads[name] - p.grad).abs().max() < 1e-10, name


@pytest.mark.parametrize("pos_enc", ["none", "rope"])
def test_the_fused_attention_takes_half_precision(pos_enc):
    """Rotary angles widen half-precision queries and keys to float32; the fused path takes the values along."""
    model = make(pos_enc, mlp=False).half()
    tokens = torch.randint(0, N_TOKENS, (2, MAX_LEN), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        fused, explicit = model(tokens), model(tokens, cache={})
    assert fused.dtype == explicit.dtype and (fused - explicit).abs().max() < 1e-2
