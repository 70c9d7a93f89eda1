"""In-context Markov chains (docs/science.md §10): the sampler and the closed-form reference predictors."""

import math

import numpy as np
import pytest
import torch

from inductionlab.errors import ConfigError
from inductionlab.tasks.markov import (
    ICLMarkovSampler,
    MarkovBatch,
    chain,
    context_transitions,
    dirichlet,
    reference_losses,
    reference_probs,
    stationary,
)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_dirichlet_rows_and_moments():
    for alpha in (0.3, 1.0, 2.5):
        rows = dirichlet((20000,), 3, alpha, _gen(1))
        assert torch.allclose(rows.sum(-1), torch.ones(20000, dtype=torch.float64)) and (rows >= 0).all()
        mean, var = rows[:, 0].mean().item(), rows[:, 0].var().item()
        assert mean == pytest.approx(1 / 3, abs=0.01)
        assert var == pytest.approx((1 / 3) * (2 / 3) / (3 * alpha + 1), rel=0.08)  # Dirichlet variance


def test_stationary_solves_pi_p_equals_pi():
    p = dirichlet((50, 4), 4, 1.0, _gen(2))
    pi = stationary(p)
    assert torch.allclose(pi.sum(-1), torch.ones(50, dtype=torch.float64))
    assert torch.allclose(torch.einsum("bi,bij->bj", pi, p), pi, atol=1e-10)
    q = context_transitions(dirichlet((5, 9), 3, 1.0, _gen(3)), 3)  # order 3: contexts are pairs
    assert torch.allclose(q.sum(-1), torch.ones(5, 9, dtype=torch.float64))
    assert q[0, 4].nonzero().squeeze(1).tolist() == [3, 4, 5]  # (1, 1) → (1, j)


@pytest.mark.parametrize("order", [2, 3])
def test_sampler_follows_its_own_chain(order):
    sampler = ICLMarkovSampler(3, seq_len=4000, order=order, alpha=1.0)
    batch = sampler.sample(4, _gen(4))
    assert batch.tokens.shape == (4, 4001) and batch.tokens.min() >= 0 and batch.tokens.max() <= 2
    probs = reference_probs(batch, 3, 1.0)
    # on a long sequence the empirical transition frequencies (Bayes at the end) approach P
    last_bayes, last_true = probs["bayes"][:, -1], probs["true"][:, -1]
    assert (last_bayes - last_true).abs().max() < 0.06
    same = sampler.sample(4, _gen(4))
    assert torch.equal(same.tokens, batch.tokens)  # reproducible from the generator alone


def test_stationary_start_matches_pi():
    sampler = ICLMarkovSampler(3, seq_len=2, alpha=1.0)
    batch = sampler.sample(40000, _gen(5))
    pi = stationary(batch.transitions)
    # z_1 ~ π of its own chain: E[1{z_1 = j} − π_j] = 0
    hit = torch.nn.functional.one_hot(batch.tokens[:, 0], 3).double()
    assert (hit - pi).mean(0).abs().max() < 0.01


def _brute_force(tokens, k, order, alpha):
    """Counts by hand, one position at a time."""
    out = []
    for t in range(len(tokens)):
        if t < order - 2:
            out.append([1 / k] * k)
            continue
        context = tuple(tokens[t - order + 2 : t + 1])
        counts = [0] * k
        for s in range(order - 2, t):
            if tuple(tokens[s - order + 2 : s + 1]) == context:
                counts[tokens[s + 1]] += 1
        out.append([(c + alpha) / (sum(counts) + k * alpha) for c in counts])
    return out


@pytest.mark.parametrize("order,k", [(2, 3), (3, 3), (2, 5), (4, 2)])
def test_bayes_predictor_equals_brute_force_counts(order, k):
    batch = ICLMarkovSampler(k, seq_len=30, order=order, alpha=0.7).sample(3, _gen(6))
    probs = reference_probs(batch, k, 0.7)
    for b in range(3):
        expected = torch.tensor(_brute_force(batch.inputs[b].tolist(), k, order, 0.7), dtype=torch.float64)
        assert torch.allclose(probs["bayes"][b], expected, atol=1e-12)
    tokens = batch.inputs[0].tolist()
    t = 20
    unigram = [(tokens[: t + 1].count(j) + 0.7) / (t + 1 + k * 0.7) for j in range(k)]
    assert torch.allclose(probs["unigram"][0, t], torch.tensor(unigram, dtype=torch.float64))


def test_bayes_loss_approaches_the_true_chain_on_long_sequences():
    batch = ICLMarkovSampler(3, seq_len=3000, alpha=1.0).sample(64, _gen(7))
    per = {name: torch.tensor(v["per_position"]) for name, v in reference_losses(batch, 3, 1.0).items()}
    late = {name: v[-1000:].mean().item() for name, v in per.items()}
    early = {name: v[5:50].mean().item() for name, v in per.items()}
    assert late["bayes"] - late["true"] < 0.01 < early["bayes"] - early["true"]
    assert late["true"] < late["bayes"] < late["unigram"] < late["uniform"] == pytest.approx(math.log(3))


def test_losses_skip_incomplete_contexts():
    batch = MarkovBatch.of(torch.tensor([[0, 1, 2, 0, 1]]), torch.full((1, 9, 3), 1 / 3, dtype=torch.float64), 3)
    assert batch.loss_mask.tolist() == [[False, True, True, True]]  # the first target has no complete context
    losses = reference_losses(batch, 3, 1.0)
    assert losses["true"]["first_position"] == 1 and len(losses["true"]["per_position"]) == 3
    assert losses["true"]["loss"] == pytest.approx(math.log(3))


@pytest.mark.parametrize("kwargs,field", [({"n_states": 1}, "data.k"), ({"order": 1}, "data.order"),
                                          ({"alpha": 0}, "data.alpha"), ({"start": "first"}, "data.start"),
                                          ({"seq_len": 2, "order": 3}, "data.seq_len")])
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        ICLMarkovSampler(**kwargs)


def test_bench_reports_the_sampler_throughput():
    from inductionlab.bench import icl_mc_sampler_throughput

    assert icl_mc_sampler_throughput(torch.device("cpu"), batch=64, repeats=2) > 0


def _mc_config(tiny, **train):
    return tiny(data={"task": "icl-mc", "k": 3, "alpha": 1.0, "order": 2, "seq_len": 24},
                model={"arch": "transformer", "pos_enc": "rpe", "max_rel_dist": 8, "n_heads": 1},
                train={"loss_on": "all", "optimizer": "adamw", "lr": 0.01, **train})


def test_icl_mc_trains_logs_the_references_and_resumes_exactly(tmp_path, tiny):
    from inductionlab.runs import RunDir
    from inductionlab.train import train

    cfg = _mc_config(tiny, steps=8, checkpoint_every=3)
    train(cfg, tmp_path / "whole", progress=False)
    train(cfg, tmp_path / "parts", stop_after=4, progress=False)
    train(cfg, tmp_path / "parts", progress=False)
    rows = RunDir(tmp_path / "whole").metrics()
    last = rows[-1]
    for key in ("loss_in_context", "loss_uniform", "loss_unigram", "loss_bayes", "loss_true", "kl_bayes",
                "kl_unigram", "kl_true", "attn_entropy_L0H0", "norm_blocks.0.attn.W_Q"):
        assert key in last, key
    assert last["loss_uniform"] == pytest.approx(math.log(3)) and last["loss_true"] < last["loss_bayes"]
    assert all(last[f"kl_{s}"] >= 0 for s in ("uniform", "unigram", "bayes", "true"))

    def strip(p):
        return [{k: v for k, v in r.items() if k != "elapsed_s" and not (isinstance(v, float) and math.isnan(v))}
                for r in RunDir(p).metrics()]
    assert strip(tmp_path / "whole") == strip(tmp_path / "parts")


def test_kl_to_a_strategy_is_zero_for_a_model_that_is_that_strategy(tiny):
    from inductionlab.models.build import build_model
    from inductionlab.tasks.markov import markov_metrics

    cfg = _mc_config(tiny)
    model = build_model(cfg.model, 3, 0)
    batch = ICLMarkovSampler(3, seq_len=24).sample(16, _gen(9))

    def bayes_model(inputs, query_positions=None, cache=None):
        model(inputs, cache=cache)  # the patterns for the progress measures
        own = MarkovBatch.of(torch.cat((inputs, inputs[:, -1:]), 1), batch.transitions[: len(inputs)], 2)
        return torch.log(reference_probs(own, 3, 1.0)["bayes"]).float()

    metrics = markov_metrics(model, batch, 3, 1.0, forward=bayes_model)
    assert metrics["kl_bayes"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["loss_in_context"] == pytest.approx(metrics["loss_bayes"], abs=1e-6)
    assert metrics["kl_uniform"] > 0.01


@pytest.mark.parametrize("override,field", [("data.k=1", "data.k"), ("data.alpha=0", "data.alpha"),
                                            ("data.order=1", "data.order"), ("data.start=first", "data.start"),
                                            ("data.task=markov", "data.task"), ("data.seq_len=2", "data.seq_len")])
def test_train_rejects_bad_icl_mc_values_in_one_line(tmp_path, capsys, override, field):
    from inductionlab.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "icl-mc-quick", "--set", "data.order=3", "--set", override,
              "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1 and field in err


def test_the_chain_in_numpy_equals_the_torch_one():
    """The sampler walks the chain in NumPy on the CPU and in torch elsewhere: the same tokens."""
    gen = _gen(9)
    batch, length, k, n_contexts = 6, 50, 3, 9
    would = torch.randint(0, k, (batch * length * n_contexts,), generator=gen)
    base = torch.arange(batch) * (length * n_contexts)
    context = torch.randint(0, n_contexts, (batch,), generator=gen)
    from_torch = torch.stack(chain(would, base, context, range(2, length), n_contexts, k), 1)
    from_numpy = np.stack(chain(would.numpy(), base.numpy(), context.numpy(), range(2, length), n_contexts, k), 1)
    assert torch.equal(from_torch, torch.from_numpy(from_numpy))
