"""The length experiment's pieces (docs/science.md §4.4 (iv)); the full sweep runs from the CLI."""

import pytest
import torch

from inductionlab.errors import ConfigError
from inductionlab.experiments import run_experiment
from inductionlab.models.amt import AMTransformer
from inductionlab.tasks.bigram import BigramTriggerSampler
from inductionlab.tasks.bigram_length import evaluate_length, previous_occurrence_distance, previous_token_hits
from inductionlab.tasks.sources import dirichlet_source


def test_previous_occurrence_distance_by_hand():
    inputs = torch.tensor([[3, 1, 3, 2, 3, 1]])
    triggers = torch.tensor([[3, 1]])
    assert previous_occurrence_distance(inputs, triggers).tolist() == [[0, 0, 2, 0, 2, 4]]


def test_evaluate_length_reports_buckets():
    source = dirichlet_source(10, 0.5, 0)
    sampler = BigramTriggerSampler(source, 40, 2)
    batch = sampler.sample(8, torch.Generator().manual_seed(0))
    model = AMTransformer(10, 16, pos_enc="ape", max_len=64)
    out = evaluate_length(model, batch, train_len=16)
    assert set(out["acc_in_context_by_distance"]) == {"1-16", "17-64", "65-256", "257-4096"}
    # the overall accuracy is the target-weighted mean of the parts before and beyond T_train,
    # all over the non-degenerate sequences; recomputed here from the model's own predictions
    with torch.no_grad():
        correct = model(batch.tokens[:, :-1]).argmax(-1) == batch.tokens[:, 1:]
    kept = (batch.labels >= 2) & ~batch.degenerate[:, None]
    before = kept.clone()
    before[:, 16:] = False
    assert out["acc_in_context"] == pytest.approx(correct[kept].float().mean().item())
    assert out["acc_in_context_before_train_len"] == pytest.approx(correct[before].float().mean().item())
    assert out["acc_in_context_beyond_train_len"] == pytest.approx(correct[kept & ~before].float().mean().item())


def test_bad_preset(tmp_path):
    with pytest.raises(ConfigError, match="--preset"):
        run_experiment("length", tmp_path, "enormous")


def test_previous_token_hits_picks_the_best_head():
    seq_len = 6
    prev = torch.zeros(1, 2, seq_len, seq_len)
    prev[0, 1, torch.arange(1, seq_len), torch.arange(seq_len - 1)] = 1.0  # head 1 of layer 0: previous token
    prev[0, 0] = torch.eye(seq_len)
    cache = {"blocks.0.attn.hook_pattern": prev, "blocks.1.attn.hook_pattern": torch.eye(seq_len).expand(1, 2, -1, -1)}
    assert previous_token_hits(cache, seq_len).all()
