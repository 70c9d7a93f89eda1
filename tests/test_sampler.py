"""The bigram-with-triggers sampler (docs/science.md §2)."""

from __future__ import annotations

import math

import pytest
import torch

from inductionlab.errors import ConfigError
from inductionlab.tasks import bigram as bigram_module
from inductionlab.tasks.alias import alias_tables
from inductionlab.tasks.bigram import (
    BigramTriggerSampler,
    TriggerBatch,
    degenerate_rate,
    find_degenerate,
    ood_split_cut,
    trigger_slots,
)
from inductionlab.tasks.sources import BigramSource, dirichlet_source, shakespeare_source


def gen(seed: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


@pytest.fixture(scope="module")
def shakespeare():
    return shakespeare_source()


def check_trigger_rule(batch: TriggerBatch) -> None:
    """Every input equal to q_k is followed by o_k."""
    inputs, targets = batch.inputs, batch.targets
    for k in range(batch.triggers.shape[1]):
        at = inputs == batch.triggers[:, k : k + 1]
        expected = batch.outputs[:, k : k + 1].expand_as(targets)
        assert torch.equal(targets[at], expected[at])


def reference_labels(batch: TriggerBatch) -> torch.Tensor:
    labels = torch.zeros_like(batch.labels)
    for b in range(batch.tokens.shape[0]):
        trig = batch.triggers[b].tolist()
        seen = dict.fromkeys(trig, 0)
        for t, z in enumerate(batch.inputs[b].tolist()):
            if z in seen:
                seen[z] += 1
                labels[b, t] = seen[z]
    return labels


def z_scores(counts: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Binomial z-score of each count against ``probs`` (cells with zero probability must be 0)."""
    total = counts.sum()
    expected = total * probs
    return (counts - expected) / (expected * (1 - probs)).clamp_min(1e-12).sqrt()


# ---------------------------------------------------------------- alias tables


def test_alias_tables_reproduce_rows_with_zeros():
    w = torch.tensor([[0.0, 1.0, 3.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 2.0]], dtype=torch.float64)
    prob, alias = alias_tables(w)
    rebuilt = prob / 4
    rebuilt.scatter_add_(1, alias, (1 - prob) / 4)
    torch.testing.assert_close(rebuilt, w / w.sum(1, keepdim=True), rtol=0, atol=1e-15)
    zero = w == 0
    assert bool((prob[zero] == 0).all())  # a zero-weight cell always redirects
    assert bool((w.gather(1, alias)[zero] > 0).all())


# ---------------------------------------------------------------- the trigger rule and labels


@pytest.mark.parametrize("trigger_mode", ["fixed", "random"])
def test_trigger_rule_and_labels(shakespeare, trigger_mode):
    sampler = BigramTriggerSampler(shakespeare, 200, 5, trigger_mode=trigger_mode)
    batch = sampler.sample(64, gen(0))
    assert batch.tokens.shape == (64, 201) and batch.tokens.dtype == torch.int64
    assert batch.labels.shape == (64, 200) and batch.labels.dtype == torch.int64
    assert batch.triggers.shape == (64, 5) and batch.outputs.shape == (64, 5)
    assert batch.degenerate.shape == (64,) and batch.degenerate.dtype == torch.bool
    assert torch.equal(batch.inputs, batch.tokens[:, :-1]) and torch.equal(batch.targets, batch.tokens[:, 1:])
    check_trigger_rule(batch)
    assert torch.equal(batch.labels, reference_labels(batch))
    is_trigger = (batch.inputs[:, :, None] == batch.triggers[:, None, :]).any(-1)
    assert torch.equal(batch.labels == 0, ~is_trigger)
    assert int(batch.labels.max()) >= 2


def test_labels_many_triggers_long_sequence():
    """K = 12 at T = 1000 needs two packed passes (10 bits per counter, 6 counters per pass)."""
    src = dirichlet_source(16, 1.0, seed=1)
    batch = BigramTriggerSampler(src, 1000, 12, trigger_mode="random").sample(8, gen(1))
    check_trigger_rule(batch)
    assert torch.equal(batch.labels, reference_labels(batch))


def test_bigram_steps_follow_pi_b(shakespeare):
    sampler = BigramTriggerSampler(shakespeare, 256, 5)
    batch = sampler.sample(4096, gen(2))
    inputs, targets = batch.inputs.reshape(-1), batch.targets.reshape(-1)
    free = batch.labels.reshape(-1) == 0
    n = shakespeare.n_tokens
    pair_counts = torch.bincount(inputs[free] * n + targets[free], minlength=n * n).reshape(n, n).double()
    row_totals = pair_counts.sum(1)
    assert float(row_totals[sampler.fixed_triggers].sum()) == 0.0
    for row in torch.argsort(row_totals, descending=True)[:10].tolist():
        probs = shakespeare.bigram[row]
        z = z_scores(pair_counts[row], probs)
        assert float(z.abs().max()) < 5.5, (shakespeare.vocab[row], float(z.abs().max()))
        assert float(pair_counts[row][probs == 0].sum()) == 0.0
        # chi-square over cells with enough mass, loosely bounded
        big = row_totals[row] * probs > 20
        chi2 = float((z[big] ** 2).sum())
        dof = int(big.sum()) - 1
        assert chi2 < dof + 6 * math.sqrt(2 * dof) + 10


def test_first_token_follows_pi_u(shakespeare):
    batch = BigramTriggerSampler(shakespeare, 1, 5).sample(50_000, gen(3))
    counts = torch.bincount(batch.tokens[:, 0], minlength=65).double()
    assert float(z_scores(counts, shakespeare.unigram).abs().max()) < 5.5


# ---------------------------------------------------------------- triggers


@pytest.mark.parametrize("offset", [0, 3])
def test_fixed_triggers_are_top_k(shakespeare, offset):
    sampler = BigramTriggerSampler(shakespeare, 16, 5, trigger_offset=offset)
    order = sorted(range(65), key=lambda i: -float(shakespeare.unigram[i]))
    assert sampler.fixed_triggers.tolist() == order[offset : offset + 5]
    if offset == 0:
        assert shakespeare.decode(sampler.fixed_triggers) == " etoa"
    batch = sampler.sample(32, gen(0))
    assert bool((batch.triggers == sampler.fixed_triggers).all())


def test_random_triggers(shakespeare):
    sampler = BigramTriggerSampler(shakespeare, 8, 5, trigger_mode="random")
    assert sampler.fixed_triggers is None
    triggers = sampler.sample(512, gen(4)).triggers
    assert all(len(set(row)) == 5 for row in triggers.tolist())
    assert len({tuple(sorted(row)) for row in triggers.tolist()}) > 100
    # with K = 1 the trigger is exactly one draw from π_u
    one = BigramTriggerSampler(shakespeare, 1, 1, trigger_mode="random").sample(50_000, gen(5)).triggers
    counts = torch.bincount(one[:, 0], minlength=65).double()
    assert float(z_scores(counts, shakespeare.unigram).abs().max()) < 5.5


# ---------------------------------------------------------------- outputs


def test_uniform_outputs(shakespeare):
    outputs = BigramTriggerSampler(shakespeare, 1, 5).sample(20_000, gen(6)).outputs
    counts = torch.bincount(outputs.reshape(-1), minlength=65).double()
    assert float(z_scores(counts, torch.full((65,), 1 / 65, dtype=torch.float64)).abs().max()) < 5.5


def test_bigram_outputs(shakespeare):
    sampler = BigramTriggerSampler(shakespeare, 1, 1, output_mode="bigram")
    space = shakespeare.vocab.index(" ")
    assert sampler.fixed_triggers.tolist() == [space]
    outputs = sampler.sample(50_000, gen(7)).outputs[:, 0]
    counts = torch.bincount(outputs, minlength=65).double()
    assert float(z_scores(counts, shakespeare.bigram[space]).abs().max()) < 5.5


@pytest.mark.parametrize("output_mode", ["uniform", "bigram"])
def test_ood_split(shakespeare, output_mode):
    cut = ood_split_cut(65)
    assert cut == 49
    common = {"trigger_mode": "random", "output_mode": output_mode}
    train = BigramTriggerSampler(shakespeare, 32, 5, output_split="train", **common).sample(2000, gen(8))
    test = BigramTriggerSampler(shakespeare, 32, 5, output_split="test", **common).sample(2000, gen(8))
    assert int(train.outputs.max()) < cut and int(train.outputs.min()) == 0
    assert int(test.outputs.min()) >= cut and int(test.outputs.max()) == 64
    check_trigger_rule(train)
    check_trigger_rule(test)


def test_bigram_outputs_fall_back_to_uniform_over_allowed():
    # row 0 puts no mass on the test ids (≥ 3): its outputs are uniform over {3}
    bigram = torch.tensor(
        [[0.5, 0.5, 0.0, 0.0], [0.25] * 4, [0.25] * 4, [0.25] * 4], dtype=torch.float64
    )
    src = BigramSource("toy", torch.full((4,), 0.25, dtype=torch.float64), bigram)
    sampler = BigramTriggerSampler(src, 4, 1, output_mode="bigram", output_split="test")
    sampler._fixed = torch.tensor([0])
    assert bool((sampler.sample(200, gen(0)).outputs == 3).all())


def test_no_repeat(shakespeare):
    plain = BigramTriggerSampler(shakespeare, 4, 5, trigger_mode="random").sample(5000, gen(9))
    assert bool((plain.outputs == plain.triggers).any())  # the option has something to remove
    for mode in ("uniform", "bigram"):
        sampler = BigramTriggerSampler(
            shakespeare, 4, 5, trigger_mode="random", output_mode=mode, no_repeat=True
        )
        batch = sampler.sample(5000, gen(9))
        assert not bool((batch.outputs == batch.triggers).any())


# ---------------------------------------------------------------- degenerate sequences


def degenerate_of(inputs: list[int], triggers: list[int], outputs: list[int], n: int = 10) -> bool:
    inp = torch.tensor([inputs])
    trig = torch.tensor([triggers])
    out = torch.tensor([outputs])
    return bool(find_degenerate(trigger_slots(inp, trig, n), trig, out)[0])


def test_degenerate_hand_built_cases():
    assert degenerate_of([1, 3, 3, 3], [3, 5], [3, 7])  # self loop 3 → 3, reached
    assert not degenerate_of([1, 2, 4, 6], [3, 5], [3, 7])  # self loop never reached
    assert degenerate_of([1, 5, 3, 5], [3, 5], [5, 3])  # 2-cycle 3 → 5 → 3
    assert degenerate_of([0, 2, 3, 5], [2, 3, 5], [3, 5, 3])  # 2 leads into the cycle 3 ↔ 5
    assert not degenerate_of([0, 8, 1, 4], [3, 5, 8], [5, 3, 1])  # cycle 3 ↔ 5 not reached from 8
    assert not degenerate_of([3, 5, 9, 1], [3, 5], [5, 9])  # chain 3 → 5 → 9 exits
    assert not degenerate_of([0, 1, 2], [], [])  # no triggers


def test_degenerate_rows_repeat_forever(shakespeare):
    sampler = BigramTriggerSampler(shakespeare, 128, 5)
    batch = sampler.sample(2000, gen(10))
    flagged = batch.degenerate.nonzero().squeeze(1).tolist()
    assert 20 < len(flagged) < 400  # several percent
    period_ok = 0
    for b in flagged:
        # after the last non-trigger input only triggers follow: a path of < K steps into a
        # cycle of length ≤ K, which then repeats to the end
        non_trigger = (batch.labels[b] == 0).nonzero()
        start = int(non_trigger.max()) + 1 if non_trigger.numel() else 0
        tail = batch.tokens[b, start:]
        period_ok += any(
            torch.equal(tail[o + p :], tail[o : tail.numel() - p]) for o in range(5) for p in range(1, 6)
        )
    assert period_ok == len(flagged)
    # rows not flagged never end on an endless trigger cycle of more than K steps
    ok = (~batch.degenerate).nonzero().squeeze(1)
    assert bool((batch.labels[ok, -6:] == 0).any(dim=1).all())


def test_exclude_degenerate(shakespeare):
    raw = BigramTriggerSampler(shakespeare, 128, 5).sample(1000, gen(11))
    clean = BigramTriggerSampler(shakespeare, 128, 5, exclude_degenerate=True).sample(1000, gen(11))
    assert bool(raw.degenerate.any()) and not bool(clean.degenerate.any())
    kept = ~raw.degenerate
    assert torch.equal(raw.tokens[kept], clean.tokens[kept])  # only flagged rows are redrawn
    check_trigger_rule(clean)
    assert torch.equal(clean.labels, reference_labels(clean))


def test_degenerate_rate(shakespeare):
    sampler = BigramTriggerSampler(shakespeare, 256, 5, exclude_degenerate=True)
    rate = degenerate_rate(sampler, 5000, gen(12), batch_size=2048)
    assert 0.02 < rate < 0.2


def test_exclude_degenerate_impossible():
    src = dirichlet_source(3, 1.0, seed=0)  # K = N: every token is a trigger, every row cycles
    sampler = BigramTriggerSampler(src, 4, 3, exclude_degenerate=True)
    with pytest.raises(ConfigError, match="degenerate"):
        sampler.sample(8, gen(0))


# ---------------------------------------------------------------- reproducibility, lengths, devices


@pytest.mark.parametrize("trigger_mode", ["fixed", "random"])
def test_reproducible(shakespeare, trigger_mode):
    sampler = BigramTriggerSampler(shakespeare, 64, 5, trigger_mode=trigger_mode)
    a, b, c = (sampler.sample(128, gen(s)) for s in (13, 13, 14))
    for name in ("tokens", "labels", "triggers", "outputs", "degenerate"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.tokens, c.tokens)


@pytest.mark.parametrize("seq_len", [1, 7, 1000])
def test_any_length(shakespeare, seq_len):
    batch = BigramTriggerSampler(shakespeare, seq_len, 5, trigger_mode="random").sample(16, gen(15))
    assert batch.tokens.shape == (16, seq_len + 1) and batch.labels.shape == (16, seq_len)
    check_trigger_rule(batch)
    assert torch.equal(batch.labels, reference_labels(batch))


def test_chunked_batches(shakespeare, monkeypatch):
    monkeypatch.setattr(bigram_module, "CHUNK_ROWS", 16)
    sampler = BigramTriggerSampler(shakespeare, 32, 5, trigger_mode="random", exclude_degenerate=True)
    batch = sampler.sample(40, gen(16))
    assert batch.tokens.shape == (40, 33) and not bool(batch.degenerate.any())
    check_trigger_rule(batch)
    assert torch.equal(batch.labels, reference_labels(batch))


def test_no_triggers(shakespeare):
    batch = BigramTriggerSampler(shakespeare, 32, 0).sample(8, gen(0))
    assert batch.triggers.shape == (8, 0)
    assert not bool(batch.labels.any()) and not bool(batch.degenerate.any())


def test_batch_to(shakespeare):
    batch = BigramTriggerSampler(shakespeare, 8, 2).sample(4, gen(0)).to("cpu")
    assert isinstance(batch, TriggerBatch) and batch.tokens.device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_sampling(shakespeare):
    sampler = BigramTriggerSampler(
        shakespeare, 256, 5, trigger_mode="random", exclude_degenerate=True, device="cuda"
    )
    a = sampler.sample(512, gen(17, "cuda"))
    b = sampler.sample(512, gen(17, "cuda"))
    assert a.tokens.device.type == "cuda" and torch.equal(a.tokens, b.tokens)
    cpu = a.to("cpu")
    check_trigger_rule(cpu)
    assert torch.equal(cpu.labels, reference_labels(cpu)) and not bool(cpu.degenerate.any())
    with pytest.raises(ConfigError, match="generator"):
        sampler.sample(4, gen(0))


# ---------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"seq_len": 0}, "seq_len"),
        ({"seq_len": 2.0}, "seq_len"),
        ({"n_triggers": -1}, "n_triggers"),
        ({"n_triggers": 66}, "n_triggers"),
        ({"n_triggers": 5, "trigger_offset": 61}, "trigger_offset"),
        ({"trigger_offset": -1}, "trigger_offset"),
        ({"trigger_mode": "sometimes"}, "trigger_mode"),
        ({"output_mode": "zipf"}, "output_mode"),
        ({"output_split": "val"}, "output_split"),
    ],
)
def test_bad_arguments(shakespeare, kwargs, field):
    args = {"seq_len": 16, "n_triggers": 5, **kwargs}
    with pytest.raises(ConfigError, match=field):
        BigramTriggerSampler(shakespeare, **args)


def test_bad_arguments_small_vocab():
    src = dirichlet_source(4, 1.0, seed=0)
    # N = 4: the test split is the single id 3, too few for no_repeat
    BigramTriggerSampler(src, 8, 1, output_split="test")
    with pytest.raises(ConfigError, match="output_split"):
        BigramTriggerSampler(src, 8, 1, output_split="test", no_repeat=True)
    sparse = BigramSource("sparse", torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=torch.float64),
                          torch.full((4, 4), 0.25, dtype=torch.float64))
    with pytest.raises(ConfigError, match="n_triggers"):
        BigramTriggerSampler(sparse, 8, 3, trigger_mode="random")
    with pytest.raises(ConfigError, match="batch_size"):
        BigramTriggerSampler(src, 8, 1).sample(0, gen(0))


@pytest.mark.parametrize("trigger_mode", ["fixed", "random"])
def test_the_chain_in_numpy_equals_the_torch_loop(shakespeare, trigger_mode, monkeypatch):
    """On the CPU the token chain runs in NumPy; elsewhere (CUDA) the torch loop: the same tokens."""
    sampler = BigramTriggerSampler(shakespeare, 96, 5, trigger_mode=trigger_mode)
    fast = sampler.sample(40, gen(21))

    def torch_loop(self, first, row_of, seq_offset, v, col):
        tokens = torch.empty((first.shape[0], v.shape[0] + 1), dtype=torch.int64)
        tokens[:, 0] = first
        self._chain(tokens, row_of, seq_offset, v, col)
        return tokens[:, 1:].T

    monkeypatch.setattr(BigramTriggerSampler, "_chain_on_cpu", torch_loop)
    assert torch.equal(sampler.sample(40, gen(21)).tokens, fast.tokens)
