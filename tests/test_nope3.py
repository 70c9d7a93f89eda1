"""The nope3 experiment's pieces (docs/science.md §6, §7): its plan, the no-induction predictor and the claims
of both variants from handmade results; the full sweep runs from the CLI."""

import pytest
import torch

from inductionlab.experiments.nope3.claims import claims, retention, weaker_circuit
from inductionlab.experiments.nope3.run import PRESETS, VARIANTS, context_unigram, plan
from inductionlab.tasks.bigram import TriggerBatch


def test_every_variant_has_the_presets_seeds():
    for name, preset in PRESETS.items():
        specs = plan(name)
        assert len(specs) == len(VARIANTS) * len(preset["seeds"])
        for variant in VARIANTS:
            seeds = [dict(s.params)["seed"] for s in specs if dict(s.params)["variant"] == variant]
            assert seeds == list(preset["seeds"])
    assert len(PRESETS["quick"]["seeds"]) >= 3 and len(PRESETS["paper"]["seeds"]) >= 3


def test_context_unigram_predicts_the_most_frequent_token_so_far():
    tokens = torch.tensor([[1, 1, 2, 3, 2, 3, 3, 0]])  # inputs z_1..z_7, targets z_2..z_8
    labels = torch.tensor([[0, 0, 1, 0, 2, 0, 3]])  # in-context targets at positions 4 and 6
    batch = TriggerBatch(tokens=tokens, loss_mask=labels >= 2, labels=labels, triggers=torch.tensor([[2]]),
                         outputs=torch.tensor([[3]]), degenerate=torch.tensor([False]))
    out = context_unigram(batch, train_len=5)
    # position 4: counts {1: 2, 2: 2, 3: 1} → 1 (the first of the ties), target 3: wrong;
    # position 6: counts {1: 2, 2: 2, 3: 3} → 3, target 0: wrong
    assert out["acc_in_context"] == 0.0
    assert (out["targets_before_train_len"], out["targets_beyond_train_len"]) == (1, 1)
    tokens[0, 7] = 3  # now the target at position 6 is the most frequent token
    out = context_unigram(batch, train_len=5)
    assert out["acc_in_context_before_train_len"] == 0.0 and out["acc_in_context_beyond_train_len"] == 1.0
    assert out["acc_in_context"] == 0.5


def test_weaker_circuit_needs_the_induction_head_in_a_later_layer():
    task = {"previous_token": [[0.9, 0.1], [0.2, 0.0], [0.95, 0.0]], "induction": [[0.99, 0.1], [0.7, 0.0], [0.6, 0.1]]}
    # best previous-token head outside the last layer 0.9 (layer 3's 0.95 cannot feed an induction head),
    # best induction head outside the first layer 0.7 (layer 1's 0.99 has no previous-token head before it)
    assert weaker_circuit(task) == (0.7, "induction")


def _seed(acc_train, acc_long, before_long, unigram_beyond, head=0.7):
    task = {"previous_token": [[head, 0.1], [0.2, 0.0], [0.0, 0.0]], "induction": [[0.0, 0.0], [head, 0.0], [0.1, 0.1]]}
    flat = {"previous_token": [[0.05, 0.05]] * 3, "induction": [[0.05, 0.05]] * 3}
    unigram = {"acc_in_context": 0.05, "acc_in_context_before_train_len": 0.05,
               "acc_in_context_beyond_train_len": unigram_beyond, "targets_before_train_len": 10,
               "targets_beyond_train_len": 30}
    return {"by_length": {"64": {"acc_in_context": acc_train},
                          "512": {"acc_in_context": acc_long, "acc_in_context_before_train_len": before_long}},
            "no_induction": {"64": {**unigram, "acc_in_context": 0.05}, "512": unigram},
            "untrained_acc_in_context": {"64": 0.02, "512": 0.01},
            "head_scores": {"task": task, "random_tokens": flat}, "untrained_head_scores": {"task": flat,
                                                                                           "random_tokens": flat}}


def test_retention_null_is_a_model_whose_induction_stops_at_train_len():
    measured, null = retention(_seed(0.8, 0.6, 0.8, 0.2), "64", "512")
    assert measured == pytest.approx(0.75)
    assert null == pytest.approx((0.8 * 10 + 0.2 * 30) / 40 / 0.8)  # its own accuracy before, the unigram's beyond


def test_both_variants_are_judged_with_the_same_claims():
    seeds = {"0": _seed(0.95, 0.93, 0.95, 0.2), "1": _seed(0.97, 0.96, 0.97, 0.25), "2": _seed(0.96, 0.95, 0.96, 0.2)}
    weak = {"0": _seed(0.5, 0.2, 0.5, 0.2, head=0.1), "1": _seed(0.45, 0.2, 0.45, 0.2, head=0.1),
            "2": _seed(0.55, 0.25, 0.55, 0.2, head=0.1)}
    results = {"variants": {"attention-only": {"config": {"train_len": 64}, "seeds": seeds},
                            "with-mlp": {"config": {"train_len": 64}, "seeds": weak}},
               "test_lengths": [64, 512], "eval_batch": 16, "head_score_sequences": 32}
    out = claims(results)
    assert len(out) == 8 and all(c["intervals"]["n_seeds"] == 3 for c in out)
    strong, weaker = out[:4], out[4:]
    assert all(c["claim"].startswith("attention-only:") for c in strong)
    assert all(c["claim"].startswith("with-mlp:") for c in weaker)
    learns = strong[0]
    assert learns["null"] == pytest.approx(0.05) and learns["untrained"] == {"0": 0.02, "1": 0.02, "2": 0.02}
    assert [c["verdict"] for c in strong[:3]] == ["holds", "holds", "holds"]
    assert strong[3]["verdict"] == "fails"  # flat random-token scores: no better than the untrained model
    assert [c["verdict"] for c in weaker] == ["fails", "fails", "fails", "fails"]
    assert strong[2]["intervals"]["n_prompts"] == 16 and strong[3]["intervals"]["n_prompts"] == 32
