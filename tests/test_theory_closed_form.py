"""The ideal AMT (docs/science.md §4.3) and its closed-form logits (docs/science.md §4.4).

Positions in these tests are 0-based tensor indices; docs/science.md position ``s`` is index ``s - 1``.
"""

import math

import pytest
import torch

from inductionlab.errors import ConfigError
from inductionlab.theory.closed_form import (
    closed_form_logits,
    perfect_previous_token_logits,
    previous_token_pattern,
)
from inductionlab.theory.ideal import bigram_scores, ideal_amt

N, T = 20, 48
ALPHAS = (6.0, 5.0, 4.0)


def unit_scores(n: int, seed: int) -> torch.Tensor:
    """A random ``g`` of unit scale: N(0, 1) entries, centred per row, float64."""
    g = torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return g - g.mean(1, keepdim=True)


def prompts_with_pairs(batch: int, seed: int, pairs: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Random prompts (batch, T) with ``pairs`` copies of a pair (a, b), b ≠ a, and query ``z_T = a``.

    Returns the prompts and each prompt's ``b`` (batch,)."""
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, N, (batch, T), generator=gen)
    a = torch.randint(0, N, (batch,), generator=gen)
    b = (a + torch.randint(1, N, (batch,), generator=gen)) % N
    starts = torch.stack([torch.randperm(T // 2 - 1, generator=gen)[:pairs] * 2 for _ in range(batch)])
    rows = torch.arange(batch)[:, None]
    tokens[rows, starts] = a[:, None]
    tokens[rows, starts + 1] = b[:, None]
    tokens[:, -1] = a
    return tokens, b


def last_logits(model, tokens: torch.Tensor) -> torch.Tensor:
    query = torch.full((tokens.shape[0], 1), tokens.shape[1] - 1)
    with torch.no_grad():
        return model(tokens, query_positions=query)[:, 0].double()


# ---------------------------------------------------------------------------- convergence (the acceptance)


@pytest.mark.slow  # builds ideal models up to d = 8192
@pytest.mark.parametrize("pos_enc", ["ape", "rpe", "bias"])
def test_forward_converges_to_closed_form(pos_enc):
    """docs/science.md §4.4: the ideal AMT's logits approach the closed form, error ∝ 1/√d.

    Measured (seeds below): the largest error over 16 prompts × 20 logits is ≈ 3–5.3, 2.0, 0.8 at
    d = 256, 1024, 4096 (ape, rpe and bias alike); a wrong orientation or index gives ratios near 1.
    The correlation at d = 4096 is 0.969–0.981 (the architecture's own O(α/√d) cross-talk, e.g.
    ``W_F`` also reads the copied output ``α_3 u_k``), so the ladder goes one step further, to
    d = 8192, where it is ≈ 0.984 (ape) and 0.987 (rpe).
    """
    g = unit_scores(N, seed=0)
    tokens, _ = prompts_with_pairs(16, seed=1)
    expected = closed_form_logits(tokens, ALPHAS, g, pos_enc=pos_enc, train_len=T).logits
    errors, correlations = [], []
    for d in (512, 2048, 8192):
        model = ideal_amt(N, d, ALPHAS, g, pos_enc=pos_enc, train_len=T, max_len=T, init_seed=0)
        logits = last_logits(model, tokens)
        del model
        errors.append((logits - expected).abs().max().item())
        correlations.append(torch.corrcoef(torch.stack([logits.flatten(), expected.flatten()]))[0, 1].item())
    small, middle, large = errors  # each step quadruples d: the error should about halve
    assert middle < small and large < 0.8 * middle and large < 0.5 * small, errors
    assert large < 1.2, errors
    assert correlations[0] < correlations[1] < correlations[2], correlations
    assert correlations[2] >= 0.98, correlations


def test_stronger_amt_forward_follows_its_own_closed_form():
    """Per-term weights reach the forward pass: at the in-context successor b the model's induction logit
    follows the stronger closed form (α_3(b) ∈ {1, 7}), not the scalar one (α_3 = 4)."""
    gen = torch.Generator().manual_seed(5)
    g = unit_scores(N, seed=2)
    alpha1_t = 5 + 3 * torch.rand(T, generator=gen)
    alpha2_a = 3 + 3 * torch.rand(N, generator=gen)
    alpha3_j = torch.where(torch.arange(N) % 2 == 0, 1.0, 7.0)
    kw = dict(alpha1_t=alpha1_t, alpha2_a=alpha2_a, alpha3_j=alpha3_j)
    tokens, b = prompts_with_pairs(16, seed=3)
    model = ideal_amt(N, 4096, ALPHAS, g, pos_enc="ape", train_len=T, max_len=T, init_seed=1, **kw)
    rows = torch.arange(16)
    logits = last_logits(model, tokens)[rows, b]
    strong = closed_form_logits(tokens, ALPHAS, g, pos_enc="ape", train_len=T, **kw).logits[rows, b]
    scalar = closed_form_logits(tokens, ALPHAS, g, pos_enc="ape", train_len=T).logits[rows, b]
    # measured over 6 seeds: mean error ≈ 0.25–0.4 against the stronger form, ≈ 1.3–2.1 against the scalar one
    assert (logits - strong).abs().mean() < 0.5 * (logits - scalar).abs().mean()


# ---------------------------------------------------------------------------- the memories' orientation


def test_ideal_memories_recall_their_associations():
    """docs/science.md §4.3 read back at large d: each memory returns its α (stronger AMT: per-term weights)."""
    n, d, tau = 12, 4096, 10
    gen = torch.Generator().manual_seed(0)
    g = unit_scores(n, seed=4)
    triggers = torch.tensor([1, 4, 7])
    alpha1_t = 4 + 2 * torch.rand(tau, generator=gen)
    alpha2_a = 3 + 2 * torch.rand(n, generator=gen)
    alpha3_j = 2 + 2 * torch.rand(n, generator=gen)
    m = ideal_amt(n, d, ALPHAS, g, pos_enc="ape", train_len=tau, max_len=16, triggers=triggers,
                  alpha1_t=alpha1_t, alpha2_a=alpha2_a, alpha3_j=alpha3_j)
    emb, unemb, pos = m.emb, m.unemb, m.pos
    in_q = torch.zeros(n, dtype=torch.bool)
    in_q[triggers] = True
    with torch.no_grad():
        # layer 1: query position t (0-based, 1 ≤ t < τ) recalls key t-1 with α_1(t); nothing beyond τ
        recall1 = pos @ m.wk1 @ pos.T  # (max_len, max_len): [t, s]
        want1 = torch.zeros(16, 16)
        want1[torch.arange(1, tau), torch.arange(0, tau - 1)] = alpha1_t[1:]
        recall2 = ((emb @ m.wk2) @ m.wo1) @ m.wv1 @ emb.T  # e_aᵀ W_K^2 Φ_1 e_b
        recall3 = ((unemb @ m.wo2) @ m.wv2) @ emb.T  # u_jᵀ W_O^2 W_V^2 e_k
        recall_f = (unemb @ m.wf) @ emb.T  # u_jᵀ W_F e_i, [j, i]
    # errors are O(α √N / √d): measured ≈ 0.2–0.45 over seeds; a transposed memory errs by ≈ α
    assert (recall1 - want1).abs().max() < 0.8
    assert (recall2 - torch.diag(alpha2_a * in_q)).abs().max() < 0.7
    assert (recall3 - torch.diag(alpha3_j)).abs().max() < 0.6
    assert (recall_f - g.T.float()).abs().max() < 0.6


@pytest.mark.parametrize("pos_enc", ["rpe", "bias"])
def test_relative_previous_token_memory(pos_enc):
    m = ideal_amt(8, 2048, ALPHAS, unit_scores(8, seed=0), pos_enc=pos_enc, train_len=4, max_rel_dist=6)
    if pos_enc == "bias":
        assert torch.equal(m.bias1, torch.tensor([0, ALPHAS[0], 0, 0, 0, 0, 0]))
        assert torch.count_nonzero(m.wk1) == 0
    else:
        recall = m.emb @ m.wk1 @ m.rel.T  # (N, δmax+1): every query token scores distance 1 with α_1
        want = torch.zeros_like(recall)
        want[:, 1] = ALPHAS[0]
        assert (recall - want).abs().max() < 1.2  # noise α_1 √N/√d, shared by all rows via Σ_k e_k
        assert torch.all(recall.argmax(1) == 1)


def test_scalar_alphas_equal_constant_per_term_weights():
    g = unit_scores(6, seed=1)
    kw = dict(pos_enc="ape", train_len=8, max_len=8, init_seed=3)
    plain = ideal_amt(6, 32, ALPHAS, g, **kw)
    strong = ideal_amt(6, 32, ALPHAS, g, alpha1_t=torch.full((8,), 6.0), alpha2_a=torch.full((6,), 5.0),
                       alpha3_j=torch.full((6,), 4.0), **kw)
    for name in ("wk1", "wk2", "wo2", "wf", "emb", "pos"):
        torch.testing.assert_close(plain.mat(name), strong.mat(name))


# ---------------------------------------------------------------------------- hand-computed closed forms


def test_query_without_earlier_occurrence_by_hand():
    """Prompt z = (1, 2, 3, 2, 0), a = 0 appears only at the query: only m_T = β¹_{T,T} = 1/(e^{α_1}+4) ≠ 0."""
    tokens = torch.tensor([[1, 2, 3, 2, 0]])
    g = unit_scores(5, seed=3)
    a1, a2, a3 = 2.0, 1.5, 3.0
    out = closed_form_logits(tokens, (a1, a2, a3), g, pos_enc="rpe")
    m_last = 1 / (math.exp(a1) + 4)
    z = 4 + math.exp(a2 * m_last)
    beta2 = [1 / z, 1 / z, 1 / z, 1 / z, math.exp(a2 * m_last) / z]
    in_context = [a3 * beta2[4], a3 * beta2[0], a3 * (beta2[1] + beta2[3]), a3 * beta2[2], 0.0]
    torch.testing.assert_close(out.match, torch.tensor([[0, 0, 0, 0, m_last]], dtype=torch.float64))
    torch.testing.assert_close(out.layer2_pattern, torch.tensor([beta2], dtype=torch.float64))
    torch.testing.assert_close(out.in_context, torch.tensor([in_context], dtype=torch.float64))
    torch.testing.assert_close(out.logits, out.in_context + g[0])
    torch.testing.assert_close(out.global_, g[0][None])
    e = math.exp(a1)  # layer 1, docs/science.md position 3 (index 2): e^{α_1} on position 2, 1 on the others
    torch.testing.assert_close(out.layer1_pattern[0, 2, :3], torch.tensor([1, e, 1], dtype=torch.float64) / (e + 2))
    assert out.layer1_pattern[0, 0, 0] == 1 and out.layer1_pattern[0, 2, 3:].abs().sum() == 0


def test_query_not_a_trigger_gives_uniform_average():
    """docs/science.md §4.4 (v): a ∉ Q → layer-2 scores 0, the in-context term is α_3 × token frequencies."""
    tokens = torch.tensor([[0, 3, 3, 1, 0, 2, 0], [4, 1, 2, 1, 1, 4, 4]])
    g = unit_scores(5, seed=0)
    out = closed_form_logits(tokens, ALPHAS, g, pos_enc="ape", train_len=7, triggers=torch.tensor([1, 4]))
    assert torch.equal(out.layer2_pattern[0], torch.full((7,), 1 / 7, dtype=torch.float64))
    counts = torch.tensor([3, 1, 1, 2, 0], dtype=torch.float64)
    torch.testing.assert_close(out.in_context[0], ALPHAS[2] * counts / 7, rtol=0, atol=1e-14)
    # query 4 ∈ Q: attends to index 1 (after the 4 at index 0), to index 0 (self-match, no previous token)
    # and to index 6 (after the 4 at index 5), not to the rest
    assert out.layer2_pattern[1, [0, 1, 6]].min() > 0.3 and out.layer2_pattern[1, 2:6].max() < 0.01


def test_ape_beyond_training_length_drops_the_pair():
    """docs/science.md §4.4 (iv): a pair (a, b) past τ gets uniform layer-1 attention, so b loses its in-context logit
    under ape (closed form and ideal forward agree), but not under rpe."""
    tau, length, a, b = 16, 32, 0, 1
    filler = 2 + torch.randint(0, 8, (length,), generator=torch.Generator().manual_seed(0))
    early, late = filler.clone(), filler.clone()
    early[3], early[4] = a, b
    late[22], late[23] = a, b
    tokens = torch.stack([early, late])
    tokens[:, -1] = a
    g = unit_scores(10, seed=0)
    ape = closed_form_logits(tokens, ALPHAS, g, pos_enc="ape", train_len=tau)
    rpe = closed_form_logits(tokens, ALPHAS, g, pos_enc="rpe")
    assert ape.match[1, 23] == pytest.approx(1 / 24)  # uniform over 24 keys, one of them a
    assert ape.in_context[0, b] > 2.5 and ape.in_context[1, b] < 0.5
    assert rpe.in_context[1, b] > 0.9 * rpe.in_context[0, b]
    model = ideal_amt(10, 2048, ALPHAS, g, pos_enc="ape", train_len=tau, max_len=length)
    induction = last_logits(model, tokens)[:, b] - g[a, b]
    assert induction[0] > induction[1] + 2


def test_previous_token_pattern_rows_sum_to_one_and_respect_tau():
    beta = previous_token_pattern(10, 3.0, pos_enc="ape", train_len=4)
    torch.testing.assert_close(beta.sum(-1), torch.ones(10, dtype=torch.float64))
    assert torch.all(beta.triu(1) == 0)
    torch.testing.assert_close(beta[7, :8], torch.full((8,), 1 / 8, dtype=torch.float64))  # index 7 ≥ τ
    torch.testing.assert_close(beta[4, :5], torch.full((5,), 1 / 5, dtype=torch.float64))  # docs/science.md t = 5 > τ
    assert beta[3, 2] == pytest.approx(math.exp(3) / (math.exp(3) + 3))  # index 3 < τ = 4


# ---------------------------------------------------------------------------- the α_1 → ∞ limit


def test_perfect_previous_token_limit():
    gen = torch.Generator().manual_seed(7)
    tokens = torch.randint(0, 6, (64, 12), generator=gen)  # many prompts with z_1 = a, z_{T-1} = a, repeats
    g = unit_scores(6, seed=5)
    triggers = torch.tensor([0, 2, 3])
    for kw in (dict(), dict(triggers=triggers)):
        limit = perfect_previous_token_logits(tokens, ALPHAS[1], ALPHAS[2], g, **kw)
        near = closed_form_logits(tokens, (30.0, *ALPHAS[1:]), g, pos_enc="rpe", **kw).logits
        torch.testing.assert_close(near, limit, rtol=0, atol=1e-8)
    alpha2_a, alpha3_j = 1 + torch.rand(6, generator=gen), 1 + torch.rand(6, generator=gen)
    limit = perfect_previous_token_logits(tokens, alpha2_a, alpha3_j, g)
    near = closed_form_logits(tokens, (1e4, 1.0, 1.0), g, pos_enc="bias", alpha2_a=alpha2_a, alpha3_j=alpha3_j)
    torch.testing.assert_close(near.logits, limit, rtol=0, atol=1e-12)


def test_perfect_previous_token_formula_by_hand():
    """z = (2, 0, 1, 0, 1, 3, 0), a = 0: matching keys (z_{s-1} = a) are s = 3, 5 (both z_s = 1), n = 2;
    the other five keys hold 2, 0, 0, 3, 0, so c_1 = 2, u_0 = 3, u_2 = u_3 = 1."""
    tokens = torch.tensor([[2, 0, 1, 0, 1, 3, 0]])
    g = torch.zeros(4, 4, dtype=torch.float64)
    a2, a3 = 2.0, 3.0
    e = math.exp(a2)
    want = torch.tensor([[3 / (2 * e + 5), 2 * e / (2 * e + 5), 1 / (2 * e + 5), 1 / (2 * e + 5)]]) * a3
    torch.testing.assert_close(perfect_previous_token_logits(tokens, a2, a3, g), want.double())


# ---------------------------------------------------------------------------- bigram scores and bad input


def test_bigram_scores_are_centred_log_probabilities():
    probs = torch.tensor([[0.5, 0.25, 0.25], [0.0, 1.0, 0.0], [0.2, 0.3, 0.5]])
    g = bigram_scores(probs)
    assert g.dtype == torch.float32 and torch.isfinite(g).all()
    torch.testing.assert_close(g.sum(1), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(g[0], (probs[0].log() - probs[0].log().mean()))
    assert g[1, 1] == pytest.approx(2 / 3 * math.log(1e6), rel=1e-5)  # floor 1e-6 on the zeros
    for bad in (torch.tensor([[0.5, -0.5], [1.0, 0.0]]), torch.ones(2, 3)):
        with pytest.raises(ConfigError):
            bigram_scores(bad)


BAD_IDEAL = [
    dict(pos_enc="rope"),
    dict(alphas=(1.0, 0.0, 1.0)),
    dict(alphas=(1.0, 1.0)),
    dict(g=torch.zeros(5, 4)),
    dict(g=torch.zeros(6, 6)),
    dict(g=torch.full((5, 5), float("-inf"))),
    dict(train_len=40),
    dict(train_len=0),
    dict(train_len=2.5),
    dict(triggers=torch.tensor([0, 5])),
    dict(alpha1_t=torch.ones(8), pos_enc="rpe"),
    dict(alpha1_t=torch.ones(7)),
    dict(alpha2_a=torch.ones(4)),
    dict(pos_enc="bias", max_rel_dist=1),
]


@pytest.mark.parametrize("bad", BAD_IDEAL)
def test_ideal_amt_rejects_bad_input(bad):
    kw = dict(alphas=ALPHAS, g=torch.zeros(5, 5), pos_enc="ape", train_len=8, max_len=32)
    kw.update(bad)
    with pytest.raises(ConfigError):
        ideal_amt(5, 16, kw.pop("alphas"), kw.pop("g"), **kw)


@pytest.mark.parametrize("bad", [
    dict(tokens=torch.tensor([[0, 5]])), dict(tokens=torch.tensor([0, 1])), dict(tokens=torch.zeros(1, 3)),
    dict(alphas=(-1.0, 1.0, 1.0)), dict(pos_enc="none"), dict(alpha1_t=torch.ones(4)),
    dict(alpha3_j=torch.ones(5, 1)), dict(triggers=torch.tensor([0.0])), dict(g=torch.zeros(5, 5, dtype=torch.long)),
])
def test_closed_form_rejects_bad_input(bad):
    kw = dict(tokens=torch.tensor([[0, 1, 2]]), alphas=ALPHAS, g=torch.zeros(5, 5))
    kw.update(bad)
    with pytest.raises(ConfigError):
        closed_form_logits(kw.pop("tokens"), kw.pop("alphas"), kw.pop("g"), **kw)
