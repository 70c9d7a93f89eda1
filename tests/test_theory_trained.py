"""Recall matrices and the three predictions of SCIENCE §4.5 on an ideal AMT with known answers."""

import pytest
import torch

from inductionlab.errors import ConfigError
from inductionlab.models.amt import AMTransformer
from inductionlab.theory.closed_form import closed_form_logits
from inductionlab.theory.ideal import ideal_amt
from inductionlab.theory.trained import (
    fit_scalar,
    measured_layer2_pattern,
    readout_logits,
    recall_matrices,
    scalar_terms,
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
    # finite d: every entry carries an error of order α/√d (SCIENCE §4.4)
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


def test_theory_refuses_models_it_cannot_read():
    with pytest.raises(ConfigError, match="2-layer"):
        recall_matrices(AMTransformer(N, 16, n_layers=1), T)
    with pytest.raises(ConfigError, match="rope"):
        recall_matrices(AMTransformer(N, 16, pos_enc="rope"), T)
