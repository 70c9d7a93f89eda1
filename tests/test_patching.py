"""Activation patching at evaluation (inductionlab.tools.patching; docs/science.md §5, §8): exact identities on tiny
models (full residual at the last position restores 1, the corrupted value itself 0, the last layer's attention
output what a direct computation gives), the clean/corrupted prompts, and one run end to end."""

import json
import math

import pytest
import torch

from inductionlab.errors import ConfigError, ShapeError
from inductionlab.models.amt import AMTransformer
from inductionlab.models.names import hook_name
from inductionlab.models.transformer import GeneralTransformer
from inductionlab.tasks.sources import make_source
from inductionlab.tools.patching import (
    SITE_KINDS,
    corrupt,
    fraction_restored,
    logit_gap,
    patch_positions,
    patch_prompts,
    patch_run,
    patched_gaps,
    patching_tables,
)
from inductionlab.train import train

N_TOKENS, T, N_PAIRS = 12, 24, 3


@pytest.fixture(scope="module")
def source():
    return make_source("dirichlet", N_TOKENS, 0.1, 0)


@pytest.fixture(scope="module")
def prompts(source):
    return patch_prompts(source, T, N_PAIRS, 12, seed=0)


@pytest.fixture(scope="module")
def amt():
    return AMTransformer(N_TOKENS, 16, n_layers=2, pos_enc="rpe", max_len=64, ff="linear", init_seed=0).double()


def test_corrupted_prompt_differs_exactly_at_b_after_earlier_a(prompts, source):
    clean, corrupted, replaced = prompts.clean, prompts.corrupted, prompts.replaced
    assert clean.shape == corrupted.shape == (12, T)
    assert (clean[:, -1] == prompts.a).all() and (corrupted[:, -1] == prompts.a).all()
    after_a = torch.zeros_like(replaced)
    after_a[:, 1:] = clean[:, :-1] == prompts.a[:, None]
    assert torch.equal(replaced, after_a)
    assert (replaced.sum(1) == N_PAIRS).all()
    assert torch.equal(clean[replaced], prompts.b[:, None].expand_as(clean)[replaced])  # the planted b
    assert torch.equal(corrupted != clean, replaced)  # only there, and every one of them changes
    fill, a = corrupted[replaced], prompts.a[:, None].expand_as(clean)[replaced]
    assert (fill != a).all() and (source.bigram[a, fill] > 0).all()  # a bigram draw after a, never a or b


def test_corrupt_is_seeded_and_checks_shapes(prompts, source):
    args = (prompts.clean, prompts.a, prompts.b, source.bigram)
    first = corrupt(*args, torch.Generator().manual_seed(3))[0]
    assert torch.equal(first, corrupt(*args, torch.Generator().manual_seed(3))[0])
    with pytest.raises(ShapeError):
        corrupt(prompts.clean, prompts.a[:2], prompts.b, source.bigram, torch.Generator())


def test_fixed_trigger_runs_query_a_trigger(source):
    triggers = torch.tensor([4, 9])
    batch = patch_prompts(source, T, 2, 6, seed=1, fixed_triggers=triggers)
    assert set(batch.a.tolist()) <= {4, 9}


def test_logit_gap_and_fraction():
    logits = torch.zeros(2, 3, 4)
    logits[0, -1] = torch.tensor([0.0, 2.0, 5.0, 1.0])
    logits[1, -1] = torch.tensor([1.0, 0.0, 0.0, 4.0])
    gap = logit_gap(logits, torch.tensor([2, 0]), torch.tensor([1, 3]))
    assert gap.tolist() == [3.0, -3.0]
    frac = fraction_restored(torch.tensor([[2.0, 1.0]]), torch.tensor([3.0]), torch.tensor([1.0]))
    assert frac.tolist() == [[0.5, 0.0]]


def test_full_residual_at_last_position_restores_one(amt, prompts):
    frac = patch_positions(amt, prompts.clean, prompts.corrupted, "blocks.1.hook_resid_post", prompts.b,
                           prompts.rival)
    assert frac.shape == (12, T)
    torch.testing.assert_close(frac[:, -1], torch.ones(12, dtype=torch.float64), atol=1e-5, rtol=0)
    # a position other than the last changes nothing after the last layer
    assert frac[:, :-1].abs().max() < 1e-5


def test_general_transformer_residual_at_last_position_gives_the_clean_gap(prompts):
    model = GeneralTransformer(N_TOKENS, 16, 2, 2, "rpe", 64, max_rel_dist=16, init_seed=0)
    cache = {}
    clean_gap = logit_gap(model(prompts.clean, cache=cache), prompts.b, prompts.rival)
    patched = patched_gaps(model, prompts.corrupted, cache["blocks.1.hook_resid_post"], "blocks.1.hook_resid_post",
                           prompts.b, prompts.rival)
    torch.testing.assert_close(patched[:, -1], clean_gap.double(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", list(SITE_KINDS))
def test_putting_back_the_corrupted_value_restores_nothing(amt, prompts, kind):
    cache = {}
    clean_gap = logit_gap(amt(prompts.clean), prompts.b, prompts.rival)
    corrupted_gap = logit_gap(amt(prompts.corrupted, cache=cache), prompts.b, prompts.rival)
    for layer in range(2):
        name = hook_name(kind, layer)
        patched = patched_gaps(amt, prompts.corrupted, cache[name], name, prompts.b, prompts.rival)
        frac = fraction_restored(patched, clean_gap, corrupted_gap)
        assert frac.abs().max() < 1e-9, (name, frac.abs().max())


def test_last_layer_attention_output_restores_what_a_direct_computation_says(amt, prompts):
    clean, corrupted = {}, {}
    clean_gap = logit_gap(amt(prompts.clean, cache=clean), prompts.b, prompts.rival)
    corrupted_gap = logit_gap(amt(prompts.corrupted, cache=corrupted), prompts.b, prompts.rival)
    # ξ_T = W_U (I + W_F) (h^1_T + attn_out^2_T): the corrupted residual with the clean attention output
    direct = amt.final_logits(corrupted["blocks.1.hook_resid_pre"][:, -1] + clean["blocks.1.hook_attn_out"][:, -1])
    expected = (logit_gap(direct, prompts.b, prompts.rival) - corrupted_gap) / (clean_gap - corrupted_gap)
    frac = patch_positions(amt, prompts.clean, prompts.corrupted, "blocks.1.hook_attn_out", prompts.b, prompts.rival)
    torch.testing.assert_close(frac[:, -1], expected, atol=1e-9, rtol=1e-9)
    assert frac[:, :-1].abs().max() < 1e-9  # earlier rows of the last layer do not reach the last logits


@pytest.mark.parametrize("name", ["blocks.0.attn.hook_pattern", "blocks.0.hook_attn_out"])
def test_batched_positions_equal_one_forward_per_position(amt, prompts, name):
    cache = {}
    amt(prompts.clean, cache=cache)
    batched = patched_gaps(amt, prompts.corrupted, cache[name], name, prompts.b, prompts.rival,
                           max_batch_tokens=5 * 12 * T)  # chunks of 5 positions, the last one shorter
    for p in (0, 7, T - 1):
        def one(value, site, p=p):
            value = value.clone()
            if value.dim() == 4:
                value[:, :, p] = cache[name][:, :, p]
            else:
                value[:, p] = cache[name][:, p]
            return value
        gap = logit_gap(amt(prompts.corrupted, hooks={name: one}), prompts.b, prompts.rival)
        torch.testing.assert_close(batched[:, p], gap, atol=1e-10, rtol=0)


def test_tables_filter_on_d_and_refuse_unknown_sites(amt, prompts):
    everything = patching_tables(amt, prompts, threshold=None, kinds=("resid_post",))
    assert everything["kept"].all() and everything["tables"]["resid_post"].shape == (2, T)
    none = patching_tables(amt, prompts, threshold=math.inf, kinds=("attn_out",))
    assert not none["kept"].any() and torch.isnan(none["tables"]["attn_out"]).all()
    diff = everything["clean_gap"] - everything["corrupted_gap"]
    some = patching_tables(amt, prompts, threshold=float(diff.median()), kinds=("resid_post",))
    assert torch.equal(some["kept"], diff > diff.median())
    torch.testing.assert_close(some["tables"]["resid_post"][-1, -1].item(), 1.0, atol=1e-5, rtol=0)
    with pytest.raises(ConfigError):
        patching_tables(amt, prompts, kinds=("mlp_out",))
    with pytest.raises(ShapeError):
        patched_gaps(amt, prompts.corrupted, torch.zeros(3, T, 16), "blocks.0.hook_attn_out", prompts.b, prompts.rival)


def _strict(text: str):
    def refuse(constant):
        raise AssertionError(f"non-finite {constant} in patching.json")
    return json.loads(text, parse_constant=refuse)


def test_patch_run_end_to_end(tmp_path, tiny):
    cfg = tiny(data={"trigger_mode": "random"}, model={"pos_enc": "rpe", "ff": "linear", "max_rel_dist": 16},
               train={"steps": 30, "loss_on": "all", "eval_every": 15, "checkpoint_every": 15})
    train(cfg, tmp_path / "run", progress=False)
    out = tmp_path / "patch"
    results = patch_run(tmp_path / "run", out, n_pairs_in_context=3, n_prompts=12, seed=0, threshold=0.0)
    data = _strict((out / "patching.json").read_text())
    assert data == json.loads(json.dumps(results))
    for kind in SITE_KINDS:
        for ext in ("png", "svg"):
            assert (out / f"patching_{kind}.{ext}").stat().st_size > 0
        table = data["sites"][kind]["fraction_restored"]
        assert len(table) == 2 and all(len(row) == cfg.data.seq_len for row in table)
    assert data["prompts"]["total"] == 12 and 0 <= data["prompts"]["kept"] <= 12
    assert data["settings"] | {"seq_len": 24, "n_pairs_in_context": 3, "seed": 0} == data["settings"]
    if data["prompts"]["kept"]:
        assert data["check_resid_post_last_layer_last_position"] == pytest.approx(1.0, abs=1e-4)
        assert data["carrier"]["site"] in ("attn_out", "pattern")
    # nothing kept: the tables are null, the files still strict JSON
    empty = patch_run(tmp_path / "run", tmp_path / "none", n_prompts=4, n_pairs_in_context=2, threshold=math.inf)
    assert empty["prompts"]["kept"] == 0 and empty["carrier"] is None
    _strict((tmp_path / "none" / "patching.json").read_text())
