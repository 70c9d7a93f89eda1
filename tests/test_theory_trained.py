"""Recall matrices and the three predictions of docs/science.md §4.5 on an ideal AMT with known answers."""

import pytest
import torch

from inductionlab.errors import ConfigError
from inductionlab.models.amt import AMTransformer
from inductionlab.theory.closed_form import closed_form_logits
from inductionlab.theory.ideal import ideal_amt
from inductionlab.theory.scalar import (
    SCALE_GRID,
    ScalarFit,
    fit_scalar,
    fit_scalar_form,
    fitted_scalar_logits,
    scalar_gap_terms,
    scalar_terms,
)
from inductionlab.theory.trained import (
    measured_layer2_pattern,
    readout_logits,
    recall_matrices,
    weights_only_logits,
)

N, T, ALPHAS = 12, 24, (6.0, 5.0, 4.0)


@pytest.fixture(scope="module")
def ideal():
    g = torch.randn(N, N, generator=torch.Generator().manual_seed(1))
    g = g - g.mean(1, keepdim=True)
    model = ideal_amt(N, 2048, ALPHAS, g, pos_enc="ape", train_len=T, init_seed=0)
    tokens = torch.randint(0, N, (16, T), generator=torch.Generator().manual_seed(2))
    return model, g, tokens


def test_recall_matrices_read_the_ideal_memories(ideal):
    model, g, _ = ideal
    rec = recall_matrices(model, T)
    # finite d: every entry carries an error of order α/√d (docs/science.md §4.4)
    for matrix, alpha in ((rec.R3, ALPHAS[2]), (rec.R2, ALPHAS[1])):
        assert abs(matrix.diagonal().mean().item() - alpha) < 0.4
        assert torch.all(matrix.argmax(dim=0) == torch.arange(N)) or torch.all(matrix.argmax(dim=1) == torch.arange(N))
        off = matrix - torch.diag(matrix.diagonal())
        assert off.abs().max() < alpha / 2
    prev = rec.layer1[torch.arange(1, T), torch.arange(T - 1)]
    assert abs(prev.mean().item() - ALPHAS[0]) < 0.4


def test_predictions_agree_with_closed_form_on_the_ideal_model(ideal):
    model, g, tokens = ideal
    rec = recall_matrices(model, T)
    exact = closed_form_logits(tokens, ALPHAS, g.double(), pos_enc="ape", train_len=T).logits.float()
    logits, beta2 = measured_layer2_pattern(model, tokens)
    for pred in (weights_only_logits(rec, tokens), readout_logits(rec, tokens, beta2),
                 scalar_terms(rec, tokens, T, None).logits.float()):
        centred = pred - pred.mean(1, keepdim=True)
        target = exact - exact.mean(1, keepdim=True)
        assert torch.corrcoef(torch.stack((centred.flatten(), target.flatten())))[0, 1] > 0.95


def test_fit_scalar_recovers_scales():
    ic, gl = torch.randn(200), torch.randn(200)
    theta = fit_scalar(ic, gl, 2.0 * ic + 0.5 * gl - 1.0)
    assert theta == pytest.approx((2.0, 0.5, -1.0), abs=1e-6)


def _gap_terms(ideal, seed: int):
    """Prompts of the ideal model with a favoured and a rival token each, and their scalar gap terms."""
    model, _, _ = ideal
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, N, (48, T), generator=gen)
    favoured = torch.randint(0, N, (48,), generator=gen)
    rival = (favoured + torch.randint(1, N, (48,), generator=gen)) % N
    rec = recall_matrices(model, T)
    return rec, tokens, favoured, rival, scalar_gap_terms(rec, tokens, favoured, rival, T, None)


def test_scalar_gap_terms_are_the_closed_form_gaps(ideal):
    rec, tokens, favoured, rival, terms = _gap_terms(ideal, 3)
    rows = torch.arange(len(tokens))
    for i1, a1 in enumerate(SCALE_GRID):
        for i2, a2 in ((0, SCALE_GRID[0]), (len(SCALE_GRID) - 1, SCALE_GRID[-1])):
            full = scalar_terms(rec, tokens, T, None, a1, a2)
            expected_ic = full.in_context[rows, favoured] - full.in_context[rows, rival]
            expected_gl = full.global_[rows, favoured] - full.global_[rows, rival]
            at = terms[i1 * len(SCALE_GRID) + i2]
            assert torch.allclose(at[0], expected_ic, atol=1e-10) and torch.allclose(at[1], expected_gl, atol=1e-10)


def test_scalar_fit_recovers_planted_parameters_with_intercept(ideal):
    """Planted grid scales and θ, intercept included, across two models' prompts: recovered to 1e-6."""
    rec, tokens, favoured, rival, terms = _gap_terms(ideal, 4)
    *_, terms_2 = _gap_terms(ideal, 5)
    planted = ScalarFit(1.5, 0.5, 1.7, 0.8, -0.6, residual=0.0, n_prompts=96)
    fit = fit_scalar_form([terms, terms_2], [planted.gap(terms), planted.gap(terms_2)])
    assert (fit.alpha1_scale, fit.alpha2_scale) == (1.5, 0.5)
    assert (fit.theta_in_context, fit.theta_global, fit.theta_0) == pytest.approx((1.7, 0.8, -0.6), abs=1e-6)
    assert fit.n_prompts == 96 and fit.residual < 1e-12
    # the logits keep every fitted parameter: their gap is the fitted linear form, intercept included
    logits = fitted_scalar_logits(rec, tokens, T, None, fit, favoured)
    rows = torch.arange(len(tokens))
    assert torch.allclose(logits[rows, favoured] - logits[rows, rival], fit.gap(terms), atol=1e-9)
    assert torch.allclose(fit.gap(terms), planted.gap(terms), atol=1e-6)


def test_theory_refuses_models_it_cannot_read():
    with pytest.raises(ConfigError, match="2-layer"):
        recall_matrices(AMTransformer(N, 16, n_layers=1), T)
    with pytest.raises(ConfigError, match="rope"):
        recall_matrices(AMTransformer(N, 16, pos_enc="rope"), T)


@pytest.mark.parametrize("seq_len", [5, 12, 40])
def test_rpe_weights_only_match_equals_the_full_pattern(seq_len):
    """The O(T·Δ) soft match of the rpe weights-only prediction equals the (T, T) softmax written out."""
    from inductionlab.models.positional import clipped_distances
    from inductionlab.theory.trained import _rpe_soft_match

    gen = torch.Generator().manual_seed(seq_len)
    max_dist = 8
    table = 3 * torch.randn(N, max_dist + 1, generator=gen, dtype=torch.float64)
    tokens = torch.randint(0, N, (6, seq_len), generator=gen)
    key_match = torch.randn(6, seq_len, generator=gen, dtype=torch.float64)
    dist = clipped_distances(torch.arange(seq_len), seq_len, max_dist)
    scores = torch.gather(table[tokens][:, :, None, :].expand(-1, -1, seq_len, -1), 3,
                          dist.expand(6, -1, -1)[..., None]).squeeze(-1)
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool).tril()
    beta1 = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
    expected = (beta1 @ key_match[..., None]).squeeze(-1)
    assert torch.allclose(_rpe_soft_match(table, tokens, key_match, max_dist), expected, atol=1e-12)


def test_read_off_scalars_by_hand():
    """Diagonal contrasts of hand-made recall matrices give back the planted weights exactly."""
    from inductionlab.theory.scalar import read_off_scalars
    from inductionlab.theory.trained import RecallMatrices

    alpha3, alpha2 = torch.arange(1.0, N + 1), torch.linspace(2.0, 3.0, N)
    g_raw = torch.randn(N, N, generator=torch.Generator().manual_seed(0))
    table = torch.full((T, T), -0.7)
    table[torch.arange(1, T), torch.arange(T - 1)] += torch.linspace(1.0, 4.0, T - 1)
    rec = RecallMatrices(R3=torch.diag(alpha3) + 0.5, G=g_raw, R2=torch.diag(alpha2) - 1.0, layer1=table,
                         pos_enc="ape", max_rel_dist=8)
    s = read_off_scalars(rec, T)
    assert torch.allclose(s["alpha3_j"], alpha3) and torch.allclose(s["alpha2_a"], alpha2, atol=1e-6)
    assert torch.allclose(s["g"], g_raw - g_raw.mean(1, keepdim=True))
    assert torch.allclose(s["alpha1_t"][1:], torch.linspace(1.0, 4.0, T - 1), atol=1e-5) and s["alpha1_t"][0] == 0
    rel = torch.zeros(N, 9)
    rel[:, 1] = torch.linspace(1.0, 3.0, N)
    s = read_off_scalars(RecallMatrices(rec.R3, rec.G, rec.R2, rel, "rpe", 8), T)
    assert float(s["alpha1"]) == pytest.approx(2.0)  # the distance-1 contrast, averaged over tokens
    bias = torch.ones(9)
    bias[1] = 3.0
    assert float(read_off_scalars(RecallMatrices(rec.R3, rec.G, rec.R2, bias, "bias", 8), T)["alpha1"]) == 2.0


def test_score_decomposition_adds_up_to_the_layer2_margin(ideal):
    """The family-pair terms are a split of the layer-2 score: their induction margins sum to the score's
    own margin (computed here from the model's cache), and on the ideal AMT the e_a × Φ₁e_b memory carries it."""
    from inductionlab.theory.trained import score_decomposition

    model, _, _ = ideal
    gen = torch.Generator().manual_seed(9)
    tokens = torch.randint(0, N, (32, T), generator=gen)
    tokens[:, 5], tokens[:, 6], tokens[:, 12], tokens[:, 13] = 3, 7, 3, 9  # two induction keys for query 3
    tokens[:, -1] = 3
    out = score_decomposition(model, tokens)
    cache = {}
    with torch.no_grad():
        model(tokens, cache=cache)
    scores = cache["blocks.1.attn.hook_attn_scores"][:, 0, -1]  # (B, T): layer-2 scores of the last query
    induction = torch.zeros_like(tokens, dtype=torch.bool)
    induction[:, 1:] = tokens[:, :-1] == tokens[:, -1:]
    margin = ((scores * induction).sum(1) / induction.sum(1) - (scores * ~induction).sum(1) / (~induction).sum(1))
    assert sum(out["induction_margin"].values()) == pytest.approx(margin.mean().item(), rel=1e-4)
    best = max(out["induction_margin"], key=out["induction_margin"].get)
    assert best == "token×layer1_token"


@pytest.mark.parametrize("pos_enc", ["ape", "rpe", "bias"])
def test_ideal_memories_cross_talk_falls_and_the_closed_form_agreement_rises_with_width(pos_enc):
    """docs/science.md §11: in ideal AMTs of growing d every memory's cross-talk falls (about as √(N/d): a
    16-fold d should divide it by about 4), and the model's logits agree better with the closed form."""
    from inductionlab.theory.trained import cross_talk

    g = torch.randn(N, N, generator=torch.Generator().manual_seed(1))
    g = g - g.mean(1, keepdim=True)
    tokens = torch.randint(0, N, (32, T), generator=torch.Generator().manual_seed(2))
    exact = closed_form_logits(tokens, ALPHAS, g.double(), pos_enc=pos_enc, train_len=T).logits
    exact = (exact - exact.mean(1, keepdim=True)).flatten()
    talk, agreement = [], []
    for d in (64, 256, 1024):
        per_seed, corr = [], []
        for seed in range(3):
            model = ideal_amt(N, d, ALPHAS, g, pos_enc=pos_enc, train_len=T, max_len=T, init_seed=seed)
            per_seed.append(cross_talk(recall_matrices(model, T), train_len=T))
            logits, _ = measured_layer2_pattern(model, tokens)
            logits = (logits - logits.mean(1, keepdim=True)).double().flatten()
            corr.append(torch.corrcoef(torch.stack((logits, exact)))[0, 1].item())
        talk.append({k: sum(s[k] for s in per_seed) / 3 for k in per_seed[0]})
        agreement.append(sum(corr) / 3)
    for memory in ("wo", "wk2", "wk1"):
        values = [t[memory] for t in talk]
        if pos_enc == "bias" and memory == "wk1":  # a stored scalar per distance: no cross-talk at any d
            assert values == [0.0, 0.0, 0.0]
            continue
        assert values[0] > values[1] > values[2], (memory, values)
        assert 2.5 < values[0] / values[2] < 6.5, (memory, values)  # √16 = 4
    assert agreement[0] < agreement[1] < agreement[2] and agreement[2] > 0.9, agreement  # ape 0.94 at d = 1024


def test_cross_talk_of_a_random_matrix_is_about_one_and_of_a_perfect_memory_zero():
    from inductionlab.theory.trained import RecallMatrices, cross_talk

    gen = torch.Generator().manual_seed(5)
    noise = RecallMatrices(torch.randn(400, 400, generator=gen), torch.zeros(400, 400),
                           torch.randn(400, 400, generator=gen), torch.randn(400, 9, generator=gen), "rpe", 8)
    assert all(0.9 < value < 1.1 for value in cross_talk(noise).values())  # 400 stored entries: ±4 % sampling
    distance_one = torch.zeros(40, 9)
    distance_one[:, 1] = 2.0
    perfect = RecallMatrices(3 * torch.eye(40), torch.zeros(40, 40), torch.eye(40), distance_one, "rpe", 8)
    assert cross_talk(perfect, triggers=torch.tensor([0, 5, 7])) == {"wo": 0.0, "wk2": 0.0, "wk1": 0.0}
