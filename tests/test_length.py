"""The length experiment's pieces (docs/science.md §4.4 (iv)); the full sweep runs from the CLI."""

import pytest
import torch

from inductionlab.errors import ConfigError
from inductionlab.experiments import run_experiment
from inductionlab.experiments.length.claims import checks, claims
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
    # beyond T_train, split by the induction key: the position after the trigger's previous occurrence
    distance = previous_occurrence_distance(batch.tokens[:, :-1], batch.triggers)
    key = torch.arange(kept.shape[1]) - distance + 1
    key_inside, both_beyond = kept & ~before & (key < 16), kept & (key >= 16)
    assert (kept & ~before).sum() == key_inside.sum() + both_beyond.sum()  # a key never lies after its query
    assert out["targets_both_beyond"] == both_beyond.sum().item() > 0
    assert out["targets_query_beyond_key_inside"] == key_inside.sum().item() > 0
    assert out["acc_in_context_both_beyond"] == pytest.approx(correct[both_beyond].float().mean().item())
    assert out["acc_in_context_query_beyond_key_inside"] == pytest.approx(correct[key_inside].float().mean().item())


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



SEEDS = ("0", "1", "2")


def _row(before, key_inside, both, layer1=0.6):
    return {"acc_in_context": before, "acc_in_context_before_train_len": before,
            "acc_in_context_query_beyond_key_inside": key_inside, "acc_in_context_both_beyond": both,
            "layer1_prev_token_beyond_train_len": layer1}


def _results(rows: dict[str, list[dict]], family2: dict | None = None) -> dict:
    """Handmade length results: encoding → one row per seed (the same at every test length)."""
    encodings = {pos_enc: {str(t): {"per_seed": dict(zip(SEEDS, seeds, strict=True))} for t in (64, 256, 512)}
                 for pos_enc, seeds in rows.items()}
    return {"test_lengths": [64, 256, 512], "train_len": 64, "encodings": encodings, "eval_batch": 10,
            "designed_distance": family2}


def test_length_claims_pair_each_seed_with_its_null():
    results = _results({
        "ape-sincos": [_row(1.0, 0.9, 0.5), _row(1.0, 0.8, 0.3), _row(1.0, 0.85, 0.4)],
        "rpe": [_row(0.95, 0.95, 0.95), _row(0.9, 0.9, 0.9), _row(0.97, 0.96, 0.96)],
        "bias": [_row(1.0, 1.0, 0.99), _row(1.0, 1.0, 0.995), _row(1.0, 1.0, 0.985)],
        "none": [_row(0.35, 0.2, 0.3), _row(0.3, 0.2, 0.25), _row(0.3, 0.2, 0.28)],
    })
    out = {c["claim"][:40]: c for c in claims(results)}
    drop = next(c for c in out.values() if "loses the pairs whose key" in c["claim"])
    assert drop["per_seed"] == pytest.approx({"0": 0.5, "1": 0.7, "2": 0.6})
    assert drop["null_per_seed"] == pytest.approx({"0": 0.0, "1": 0.0, "2": 0.01})
    at_key = next(c for c in out.values() if "at the key" in c["claim"])
    assert at_key["measured"] == pytest.approx((0.4 + 0.5 + 0.45) / 3)
    assert at_key["null"] == pytest.approx(0.0)
    keeps = {c["claim"].split("`")[1]: c for c in claims(results) if "keeps its induction head" in c["claim"]}
    # against the position-free model of the same seeds, on the targets whose query and key lie beyond T_train
    assert keeps["rpe"]["null"] == pytest.approx((0.3 + 0.25 + 0.28) / 3)
    assert keeps["rpe"]["intervals"]["n_seeds"] == 3 and keeps["rpe"]["intervals"]["n_prompts"] == 10
    assert keeps["bias"]["verdict"] == "holds"  # measured interval above 0.9, 0.7 above the null on every seed
    assert keeps["rpe"]["verdict"] == "inconclusive"  # its interval reaches below 0.9
    # a relative model no better than the position-free one is no evidence that it keeps anything
    same = _results({"rpe": [_row(0.3, 0.2, 0.3)] * 3, "none": [_row(0.3, 0.2, 0.3)] * 3})
    assert [c["verdict"] for c in claims(same)] == ["fails"]


def _family2(model, theory, bigram):
    """One encoding's family-2 rows: per position, per seed gaps."""
    rows = []
    for m, t, b in zip(model, theory, bigram, strict=True):
        rows.append({"position": len(rows), **{key: {"per_seed": dict(zip(SEEDS, values, strict=True))}
                                               for key, values in (("model_gap", m), ("theory_gap", t),
                                                                   ("bigram_gap", b))}})
    return {"seq_len": 512, "train_len": 64, "n_prompts": 8, "rows": {"ape": rows}}


def test_family2_claim_is_the_theory_error_against_the_bigram_only_error():
    model = [(5.0, 6.0, 4.0), (1.0, 2.0, 0.0)]
    theory = [(5.5, 6.0, 3.0), (1.0, 1.0, 0.0)]  # errors per seed: (0.25, 0.5, 0.5)
    bigram = [(0.0, 0.0, 0.0), (0.0, 0.0, 0.0)]  # errors per seed: (3, 4, 2)
    results = _results({"rpe": [_row(0.9, 0.9, 0.9)] * 3}, _family2(model, theory, bigram))
    (family2,) = [c for c in claims(results) if "family-2" in c["claim"]]
    assert family2["per_seed"] == pytest.approx({"0": 0.25, "1": 0.5, "2": 0.5})
    assert family2["null_per_seed"] == pytest.approx({"0": 3.0, "1": 4.0, "2": 2.0})
    assert family2["best_constant_error"] == pytest.approx({"0": 2.0, "1": 2.0, "2": 2.0})
    assert family2["better"] == "lower" and family2["intervals"]["n_prompts"] == 8
    # a theory that misses as badly as the bigram alone fails
    results = _results({"rpe": [_row(0.9, 0.9, 0.9)] * 3}, _family2(model, [(20.0, 20.0, 20.0)] * 2, bigram))
    (family2,) = [c for c in claims(results) if "family-2" in c["claim"]]
    assert family2["verdict"] == "fails"


def test_ape_beyond_train_len_is_a_check_not_a_claim():
    ape = [_row(0.99, 0.5, 0.15, layer1=0.003)] * 3
    results = _results({"ape": ape, "rpe": [_row(0.9, 0.9, 0.9)] * 3})
    assert not any("`ape`" in c["claim"] for c in claims(results))
    (found,) = checks(results)
    assert found["passed"] and found["value"] == pytest.approx(0.003)
    assert found["drop_per_seed"] == pytest.approx({s: 0.84 for s in SEEDS})
    # a layer 1 that found the previous token beyond T_train would mean the code or the setting is wrong
    assert not checks(_results({"ape": [_row(0.99, 0.9, 0.9, layer1=0.5)] * 3}))[0]["passed"]
