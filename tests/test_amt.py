"""The associative-memory transformer (docs/science.md §3.1): the fast path equals the explicit one."""

import pytest
import torch

from inductionlab.errors import ConfigError
from inductionlab.models.amt import AMTransformer
from inductionlab.models.names import POS_ENCODINGS, amt_matrix


def reference_logits(model: AMTransformer, tokens: torch.Tensor) -> torch.Tensor:
    """docs/science.md §3.1 written out literally, one position at a time in d-space (slow, obvious)."""
    batch, seq_len = tokens.shape
    h = model.emb[tokens].double()
    if model.pos_enc in ("ape", "ape-sincos"):
        h = h + model.pos[:seq_len].double()
    c = model.score_scale
    for layer in range(1, model.n_layers + 1):
        wk = model.mat(amt_matrix("wk", layer)).double()
        phi = (model.mat(amt_matrix("wo", layer)) @ model.mat(amt_matrix("wv", layer))).double()
        out = h.clone()
        for t in range(seq_len):
            scores = []
            for s in range(t + 1):
                q, k = h[:, t], h[:, s]
                if model.pos_enc == "rope" and model.has_positional_term(layer):
                    from inductionlab.models.positional import rope_angles, rope_rotate
                    cq, sq = rope_angles(torch.tensor([t]), model.d_model)
                    ck, sk = rope_angles(torch.tensor([s]), model.d_model)
                    score = (rope_rotate(q[:, None].float(), cq, sq).double()[:, 0]
                             * rope_rotate((k @ wk.T)[:, None].float(), ck, sk).double()[:, 0]).sum(-1)
                else:
                    kk = k
                    if model.pos_enc == "rpe" and model.has_positional_term(layer):
                        kk = k + model.rel[min(t - s, model.max_rel_dist)].double()
                    score = ((q @ wk) * kk).sum(-1)
                score = c * score
                if model.pos_enc == "bias" and model.has_positional_term(layer):
                    score = score + model.mat(amt_matrix("bias", layer))[min(t - s, model.max_rel_dist)].double()
                scores.append(score)
            beta = torch.softmax(torch.stack(scores, -1), -1)
            out[:, t] = h[:, t] + (beta[..., None] * (h[:, : t + 1] @ phi.T)).sum(1)
        h = out
    return model.final_logits(h.float())


@pytest.mark.parametrize("pos_enc", POS_ENCODINGS)
@pytest.mark.parametrize("n_layers,ff,init", [(1, "none", "theory"), (2, "linear", "bietti"), (3, "mlp", "theory")])
def test_fast_path_matches_reference(pos_enc, n_layers, ff, init):
    model = AMTransformer(11, 16, n_layers=n_layers, pos_enc=pos_enc, max_len=32, max_rel_dist=5, init=init,
                          ff=ff, pos_all_layers=True, init_seed=3)
    with torch.no_grad():
        for name in ("bias1", "bias2", "bias3"):
            if hasattr(model, name):
                model.mat(name).normal_()
    tokens = torch.randint(0, 11, (3, 9), generator=torch.Generator().manual_seed(0))
    expected = reference_logits(model, tokens)
    torch.testing.assert_close(model(tokens), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(model(tokens, cache={}), expected, rtol=1e-4, atol=1e-4)
    query = torch.tensor([[0, 4, 8], [2, 2, 5], [8, 7, 1]])
    picked = torch.gather(expected, 1, query[..., None].expand(-1, -1, 11))
    torch.testing.assert_close(model(tokens, query_positions=query), picked, rtol=1e-4, atol=1e-4)


def test_trained_are_parameters_and_frozen_are_buffers():
    model = AMTransformer(7, 8, trained=("wk1", "wk2", "wo2"))
    assert {n for n, _ in model.named_parameters()} == {"wk1", "wk2", "wo2"}
    assert {"emb", "unemb", "pos", "wv1", "wo1", "wv2"} <= {n for n, _ in model.named_buffers()}


def test_zero_init_and_seeds():
    zero = AMTransformer(7, 8, trained=("wk1",), zero_init=True, init="theory")
    assert zero.wk1.abs().sum() == 0
    a, b, c = (AMTransformer(7, 8, init_seed=s) for s in (0, 0, 1))
    assert torch.equal(a.emb, b.emb) and not torch.equal(a.emb, c.emb)


def test_theory_init_is_unit_norm():
    model = AMTransformer(50, 1024, init="theory")
    norms = model.emb.norm(dim=1)
    assert abs(norms.mean().item() - 1) < 0.02
    assert model.score_scale == 1.0


def test_cache_hooks_and_lengths():
    model = AMTransformer(7, 8, pos_enc="ape", max_len=12)
    cache = {}
    model(torch.zeros(2, 5, dtype=torch.long), cache=cache)
    pattern = cache["blocks.1.attn.hook_pattern"]
    assert pattern.shape == (2, 1, 5, 5)
    torch.testing.assert_close(pattern.sum(-1), torch.ones(2, 1, 5))
    assert torch.all(pattern.triu(1) == 0)
    assert cache["blocks.0.hook_resid_pre"].shape == (2, 5, 8)
    with pytest.raises(ConfigError, match="max_len"):
        model(torch.zeros(1, 13, dtype=torch.long))
    free = AMTransformer(7, 8, pos_enc="rpe", max_len=12)
    assert free(torch.zeros(1, 40, dtype=torch.long)).shape == (1, 40, 7)


def test_bias_wk1_probe_needs_a_strict_winner():
    from inductionlab.probes.memory import wk1_probe

    model = AMTransformer(7, 8, pos_enc="bias", max_rel_dist=4, trained=("wk1", "bias1"))
    assert wk1_probe(model, 16)["wk1"] == 0.0  # all biases zero: a tie
    with torch.no_grad():
        model.bias1[1] = 1.0
    assert wk1_probe(model, 16)["wk1"] == 1.0 and wk1_probe(model, 16)["wk1_all"] == 1.0
