"""Label metrics over non-degenerate sequences, with the degenerate shares beside them (docs/science.md §2, §6)."""

import pytest
import torch

from inductionlab.models.amt import AMTransformer
from inductionlab.tasks.bigram import BigramTriggerSampler
from inductionlab.tasks.bigram_task import degenerate_shares, label_metrics
from inductionlab.tasks.sources import dirichlet_source


def test_degenerate_shares_by_hand():
    labels = torch.tensor([[0, 2, 3, 2], [0, 0, 1, 2], [2, 2, 2, 2]])
    degenerate = torch.tensor([False, False, True])
    shares = degenerate_shares(labels, degenerate)
    assert shares["degenerate_rows"] == pytest.approx(1 / 3)
    assert shares["degenerate_in_context_share"] == pytest.approx(4 / 8)  # 4 of the 8 targets with label ≥ 2


def test_in_context_accuracy_leaves_degenerate_sequences_out():
    source = dirichlet_source(6, 0.3, 0)
    sampler = BigramTriggerSampler(source, 40, 3)  # few tokens, several triggers: many trigger cycles
    batch = sampler.sample(64, torch.Generator().manual_seed(1))
    assert batch.degenerate.any() and (~batch.degenerate).any()
    model = AMTransformer(6, 16, init_seed=0)
    out = label_metrics(model, batch, source.bigram)
    with torch.no_grad():
        correct = (model(batch.tokens[:, :-1]).argmax(-1) == batch.tokens[:, 1:]).float()
    in_context = batch.labels >= 2
    kept = in_context & ~batch.degenerate[:, None]
    assert out["acc_in_context"] == pytest.approx(correct[kept].mean().item())
    assert out["acc_in_context_all"] == pytest.approx(correct[in_context].mean().item())
    assert out["degenerate_in_context_share"] == pytest.approx(
        (in_context & batch.degenerate[:, None]).sum().item() / in_context.sum().item())
