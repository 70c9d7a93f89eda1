"""Attention probes and head scores (docs/science.md §4.2) on a hand-built induction circuit and on random models."""

import math

import pytest
import torch

from inductionlab.errors import ConfigError
from inductionlab.models.amt import AMTransformer
from inductionlab.models.transformer import GeneralTransformer
from inductionlab.probes.attention import (
    attention_probes,
    copying_scores,
    head_scores,
    head_scores_chance,
    ov_circuits,
)

N, D, T, MAX_LEN = 32, 512, 48, 64
TRIGGERS = (0, 1)
PROBES = ("attn1_prev_token", "attn1_prev_token_argmax", "attn2_induction", "attn2_induction_argmax",
          "attn2_copy_agreement")
HEAD_SCORES = ("previous_token", "induction", "copying", "copying_diagonal")


def triggered_sequences(batch: int, seq_len: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens (batch, seq_len+1) and labels (batch, seq_len): triggers 0 and 1 fire their per-sequence
    output (drawn from 2..N-1, so no self-loops); every other next token is uniform over [N]."""
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.empty(batch, seq_len + 1, dtype=torch.long)
    labels = torch.zeros(batch, seq_len, dtype=torch.long)
    outputs = torch.randint(2, N, (batch, len(TRIGGERS)), generator=gen)
    fired = torch.zeros(batch, len(TRIGGERS), dtype=torch.long)
    tokens[:, 0] = torch.randint(0, N, (batch,), generator=gen)
    for t in range(seq_len):
        nxt = torch.randint(0, N, (batch,), generator=gen)
        for k, q in enumerate(TRIGGERS):
            fire = tokens[:, t] == q
            fired[:, k] += fire
            nxt = torch.where(fire, outputs[:, k], nxt)
            labels[:, t] = torch.where(fire, fired[:, k], labels[:, t])
        tokens[:, t + 1] = nxt
    return tokens, labels


def induction_amt(alpha: float = 20.0) -> AMTransformer:
    """The §4.3 AMT built by hand: layer 1 a previous-token head, layer 2 an induction head over all tokens.

    Scores are ``h_tᵀ W_K h_s`` computed as ``(h W_K) hᵀ``: ``W_K[i, j]`` pairs query coordinate i with
    key coordinate j, so ``W_K^1 = α Σ_t p_t p_{t-1}ᵀ`` is ``α P[1:]ᵀ P[:-1]`` with rows ``p_t``.
    """
    model = AMTransformer(N, D, pos_enc="ape", max_len=MAX_LEN, init="theory", init_seed=0)
    with torch.no_grad():
        pos = model.pos
        model.wk1.copy_(alpha * pos[1:].T @ pos[:-1])
        phi1_emb = model.emb @ model.phi(1).T  # rows Φ_1 e_k
        model.wk2.copy_(alpha * model.emb.T @ phi1_emb)  # Σ_k e_k (Φ_1 e_k)ᵀ
        value_emb = model.emb @ model.wv2.T  # rows W_V^2 e_k
        model.wo2.copy_(alpha * model.unemb.T @ value_emb)  # Σ_k u_k (W_V^2 e_k)ᵀ
    return model


@pytest.fixture(scope="module")
def data():
    return triggered_sequences(128, T, seed=0)


def test_layer1_weights_make_a_previous_token_head():
    model = induction_amt()
    cache = {}
    model(torch.randint(0, N, (2, 20), generator=torch.Generator().manual_seed(5)), cache=cache)
    pattern = cache["blocks.0.attn.hook_pattern"][:, 0]
    assert (pattern.diagonal(-1, -2, -1) > 0.99).all()


def test_probes_on_ideal_induction_circuit(data):
    out = attention_probes(induction_amt(), *data)
    for name in PROBES:
        assert out[name] > 0.95, (name, out[name])
        assert out[name] > 5 * out[f"{name}_chance"]


def test_probes_on_random_model_are_near_chance(data):
    model = AMTransformer(N, D, pos_enc="ape", max_len=MAX_LEN, init="theory", init_seed=1)
    out = attention_probes(model, *data)
    assert set(out) == set(PROBES) | {f"{p}_chance" for p in PROBES}
    # near-uniform attention: the weights match chance closely, argmax-based fractions within sampling noise
    for name in ("attn1_prev_token", "attn2_induction"):
        assert out[name] == pytest.approx(out[f"{name}_chance"], abs=0.01)
    for name in ("attn1_prev_token_argmax", "attn2_induction_argmax", "attn2_copy_agreement"):
        assert abs(out[name] - out[f"{name}_chance"]) < 0.05, (name, out[name], out[f"{name}_chance"])
    assert out["attn2_copy_agreement_chance"] == 1 / N


def test_chance_levels_are_computed_from_the_batch():
    tokens = torch.tensor([[0, 5, 0, 5, 3]])  # inputs 0 5 0 5, targets 5 0 5 3
    labels = torch.tensor([[1, 0, 2, 0]])
    out = attention_probes(AMTransformer(N, 16, init="theory"), tokens, labels)
    assert out["attn1_prev_token_chance"] == pytest.approx((1 / 2 + 1 / 4) / 2)  # queries t = 1, 3
    assert out["attn2_induction_chance"] == pytest.approx(1 / 3)  # t = 2: key s = 1 follows a 0
    empty = attention_probes(AMTransformer(N, 16, init="theory"), tokens, torch.zeros_like(labels))
    assert all(math.isnan(v) for v in empty.values())


def test_head_scores_find_the_circuit():
    scores = head_scores(induction_amt(), N, 40, 32, torch.Generator().manual_seed(1))
    for name in HEAD_SCORES:
        assert scores[name].shape == (2, 1)
    chance = head_scores_chance(N, 40)
    prev, ind, copy = scores["previous_token"][:, 0], scores["induction"][:, 0], scores["copying"][:, 0]
    assert prev[0] > 0.99 and prev[1] < 3 * chance["previous_token"]
    # induction < 1 only because random tokens repeat inside a copy (N = 32, L = 20)
    assert ind[1] > 0.5 and ind[0] < 0.01
    assert copy[1] > 0.99 and abs(copy[0]) < 0.3
    assert scores["copying_diagonal"][1, 0] == 1.0


def test_head_scores_of_random_model_are_near_chance():
    model = AMTransformer(N, D, pos_enc="ape", max_len=MAX_LEN, init="theory", init_seed=1)
    scores = head_scores(model, N, 40, 32, torch.Generator().manual_seed(1))
    chance = head_scores_chance(N, 40)
    for name in ("previous_token", "induction"):
        torch.testing.assert_close(scores[name], torch.full((2, 1), chance[name]), atol=0.01, rtol=0)
    assert scores["copying"].abs().max() < 0.3
    assert scores["copying_diagonal"].max() < 0.2


@pytest.mark.parametrize("pos_enc", ["rope", "ape", "none"])
def test_general_transformer_runs_through_both(data, pos_enc):
    model = GeneralTransformer(N, 32, n_layers=3, n_heads=4, pos_enc=pos_enc, max_len=MAX_LEN, init_seed=2)
    data = tuple(x[:32] for x in data)
    out = attention_probes(model, *data)
    assert set(out) == set(PROBES) | {f"{p}_chance" for p in PROBES}
    # a multi-head layer reports its best head: the largest per-head mean, recomputed here by hand
    tokens, labels = data
    cache = {}
    with torch.no_grad():
        model(tokens[:, :-1], cache=cache)
    pattern = cache["blocks.0.attn.hook_pattern"]  # (B, H, T, T)
    b, t = (labels[:, :-1] >= 1).nonzero(as_tuple=True)
    t = t + 1  # the query right after a trigger
    per_head = pattern[b, :, t, t - 1].mean(0)  # (H,)
    assert per_head.shape == (4,) and out["attn1_prev_token"] == pytest.approx(per_head.max().item(), rel=1e-5)
    assert out["attn1_prev_token_chance"] == pytest.approx((1.0 / (t + 1).double()).mean().item(), rel=1e-9)
    out_mid = attention_probes(model, *data, prev_layer=1, induction_layer=-2)
    assert out_mid["attn1_prev_token_chance"] == out["attn1_prev_token_chance"]
    scores = head_scores(model, N, 21, 8, torch.Generator().manual_seed(0))
    for name in HEAD_SCORES:
        assert scores[name].shape == (3, 4)
    assert ov_circuits(model).shape == (3, 4, N, N)
    with pytest.raises(ConfigError):
        attention_probes(model, *data, induction_layer=3)


def test_ov_circuit_convention_is_out_token_by_in_token():
    """Column k of a circuit is what attending token k writes to the logits: it peaks at the output token."""
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(3))
    expected_out = torch.argsort(perm)  # u_j = e_{σ(j)}: attending k raises the logit of j = σ⁻¹(k)
    amt = AMTransformer(N, D, init="theory", init_seed=0)
    with torch.no_grad():
        amt.unemb.copy_(amt.emb[perm])
        amt.wv2.copy_(torch.eye(D))
        amt.wo2.copy_(torch.eye(D))
    assert torch.equal(ov_circuits(amt)[1, 0].argmax(0), expected_out)
    general = GeneralTransformer(N, D, n_layers=1, n_heads=1, pos_enc="none", max_len=8)
    with torch.no_grad():
        general.blocks[0].attn.W_V.copy_(torch.eye(D)[None])
        general.blocks[0].attn.W_O.copy_(torch.eye(D)[None])
        general.W_U.copy_(general.W_E[perm].T)  # W_U[:, j] = W_E[σ(j)]
    circuit = ov_circuits(general)[0, 0]
    assert torch.equal(circuit.argmax(0), expected_out)
    assert copying_scores(ov_circuits(general))[0, 0] < 0.5  # a permutation is not copying
    with torch.no_grad():
        general.W_U.copy_(general.W_E.T)
    assert copying_scores(ov_circuits(general))[0, 0] == pytest.approx(1.0, abs=1e-5)  # Ē Ēᵀ is PSD


def test_bad_inputs_raise():
    model = AMTransformer(N, 16, init="theory")
    with pytest.raises(ConfigError):
        attention_probes(model, torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ConfigError):
        head_scores(model, N + 1, 10, 2, torch.Generator())
    with pytest.raises(ConfigError):
        head_scores(model, N, 1, 2, torch.Generator())


def test_task_head_scores_match_the_probes_and_find_the_circuit(data):
    """Per (layer, head) on task data: the single-head AMT's entries are the §4.2 probes exactly."""
    from inductionlab.probes.attention import task_head_scores

    model = induction_amt()
    scores = task_head_scores(model, *data)
    probes = attention_probes(model, *data)
    assert scores["previous_token"].shape == (2, 1) and scores["induction"].shape == (2, 1)
    assert scores["previous_token"][0, 0].item() == pytest.approx(probes["attn1_prev_token"], rel=1e-6)
    assert scores["induction"][1, 0].item() == pytest.approx(probes["attn2_induction"], rel=1e-6)
    assert scores["previous_token"][0, 0] > 0.9 and scores["induction"][1, 0] > 0.9
    assert scores["induction"][0, 0] < 0.5  # layer 1 is not the induction head
