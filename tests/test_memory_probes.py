"""The memory-recall probes of docs/science.md §4.1 on weights whose memories are known exactly."""

import math

import pytest
import torch

from inductionlab.models.amt import AMTransformer
from inductionlab.probes.memory import ff_probe, memory_probes, wk1_probe, wk2_probe, wo_probe
from inductionlab.tasks.sources import dirichlet_source
from inductionlab.theory.ideal import bigram_scores, ideal_amt

N, TAU = 16, 24


@pytest.fixture(scope="module")
def source():
    return dirichlet_source(N, 0.5, 3)


@pytest.mark.parametrize("pos_enc", ["ape", "rpe", "bias"])
def test_ideal_amt_recalls_every_memory(source, pos_enc):
    """At large d the ideal AMT's memories are recalled perfectly, with positive margins (§4.3)."""
    g = bigram_scores(source.bigram).float()
    triggers = torch.tensor([0, 3, 5, 9])
    model = ideal_amt(N, 2048, (6.0, 5.0, 4.0), g, pos_enc=pos_enc, train_len=TAU, triggers=triggers,
                      max_len=64)
    probes = memory_probes(model, TAU, triggers, source.bigram)
    assert probes["wo"] == 1.0 and probes["wo_margin"] > 1.0  # the literal W_O² W_V² memory
    assert probes["wk2"] == 1.0 and probes["wk2_margin"] > 1.0
    assert probes["wk2_triggers"] == 1.0 and probes["wk2_triggers_chance"] == 1 / 4
    assert probes["wk1"] == 1.0
    assert probes["wo_chance"] == probes["wk2_chance"] == 1 / N


def test_wo_is_the_literal_memory_and_wo_ff_the_readout_through_w_f():
    """Plant the copy memory in W_O² exactly, and a W_F whose readout names the next token instead:
    ``wo`` reads the memory itself (1), ``wo_ff`` what reaches the logits (0)."""
    model = AMTransformer(N, 256, ff="linear", init="theory", trained=(), init_seed=1)
    unemb, emb = model.unemb, model.emb
    shift = torch.eye(N).roll(1, dims=0)  # shift[j, k] = 1 when j = k + 1
    with torch.no_grad():
        # u_jᵀ W_O² W_V² e_k = 5 δ_jk exactly, and u_jᵀ W_F W_O² W_V² e_k = 100 shift[j, k]
        model.wo2.copy_(5.0 * torch.linalg.pinv(unemb) @ torch.linalg.pinv(model.wv2 @ emb.T))
        model.wf.copy_(20.0 * torch.linalg.pinv(unemb) @ shift @ unemb)
    probes = wo_probe(model)
    assert probes["wo"] == 1.0 and probes["wo_margin"] == pytest.approx(5.0, abs=1e-2)
    assert probes["wo_ff"] == 0.0 and probes["wo_ff_chance"] == 1 / N


def test_wk2_probe_finds_exactly_a_planted_association():
    """One association a → b planted in W_K² (e_aᵀ W_K² Φ₁ e_b = 10, every other pair 0)."""
    model = AMTransformer(N, 256, init="theory", trained=(), init_seed=2)
    emb, a = model.emb, 3

    def plant(b: int, also: tuple[int, int] | None = None) -> None:
        memory = torch.zeros(N, N)
        memory[a, b] = 10.0
        if also is not None:
            memory[also] = 5.0
        with torch.no_grad():
            model.wk2.copy_(torch.linalg.pinv(emb) @ memory @ torch.linalg.pinv(model.phi(1) @ emb.T))

    plant(7)
    recall = emb[a] @ model.wk2 @ model.phi(1) @ emb.T
    assert int(recall.argmax()) == 7 and recall[7] == pytest.approx(10.0, abs=1e-3)
    assert wk2_probe(model, torch.tensor([a]))["wk2"] == 0.0  # a recalls 7, not itself
    plant(a, also=(5, a))  # 5 → a: among the triggers a and 5, 5 recalls a (a tie at 0 would be decided by rounding)
    probes = wk2_probe(model, torch.tensor([a, 5]))
    assert probes["wk2"] == 0.5 and probes["wk2_triggers"] == 0.5  # a recalls itself; 5 recalls a


def test_wk1_finds_a_planted_previous_position_memory():
    """p_tᵀ W_K¹ p_{t−1} = 8 for 1 ≤ t < τ and 0 elsewhere: recalled inside τ, not beyond."""
    model = AMTransformer(N, 256, pos_enc="ape", max_len=32, init="theory", trained=(), init_seed=3)
    memory = torch.zeros(32, 32)
    memory[torch.arange(1, TAU), torch.arange(TAU - 1)] = 8.0
    with torch.no_grad():
        pinv = torch.linalg.pinv(model.pos)
        model.wk1.copy_(pinv @ memory @ pinv.T)
    probes = wk1_probe(model, TAU, eval_len=32)
    assert probes["wk1"] == 1.0 and probes["wk1_all"] == 1.0
    assert probes["wk1_beyond"] == 0.0  # positions never stored are not recalled


def test_ff_kl_is_zero_when_w_f_stores_the_bigram():
    """W_F with u_jᵀ W_F e_i = log π_b(j|i) (orthonormal embeddings): KL = 0; a zero W_F gives the chance KL."""
    model = AMTransformer(N, N, ff="linear", init="theory", trained=(), init_seed=4)
    bigram = dirichlet_source(N, 2.0, 5).bigram  # no probability so small that float32 loses it
    with torch.no_grad():
        model.emb.copy_(torch.eye(N))
        model.unemb.copy_(torch.eye(N))
        model.wf.copy_(torch.log(bigram.float()).T)  # [j, i] = log π_b(j|i)
    probes = ff_probe(model, bigram, None)
    assert probes["ff_kl"] == pytest.approx(0.0, abs=1e-5)
    with torch.no_grad():
        model.wf.zero_()
    probes = ff_probe(model, bigram, None)
    assert probes["ff_kl"] == pytest.approx(probes["ff_kl_chance"], abs=1e-5) and probes["ff_kl_chance"] > 0
    expected = float((bigram * (torch.log(bigram) + math.log(N))).sum(1).mean())
    assert probes["ff_kl_chance"] == pytest.approx(expected, rel=1e-5)


def test_wk1_all_64_reads_only_the_first_64_positions():
    """Bietti et al.'s L = 64 variant: a memory planted only at positions ≥ 64 does not reach it."""
    model = AMTransformer(N, 512, init="theory", max_len=256, init_seed=4)
    pos = model.pos
    with torch.no_grad():  # previous-token pairs planted for query positions 64..127 only
        model.wk1.copy_(torch.linalg.pinv(pos[64:128]) @ (20.0 * torch.eye(64)) @ torch.linalg.pinv(pos[63:127].T))
    out = wk1_probe(model, 128)
    assert out["wk1_all_64"] < 0.1 and out["wk1_all"] > 0.45  # the 64 planted of the 127 queries
    assert out["wk1_all_64_chance"] == 1 / 64
