"""The AMT's fast forward (``_forward_from_tables``: one or two layers, no rope, no MLP) against the explicit path.

Every check runs on a model whose every matrix trains and has been moved off its init by random noise (so zero
biases, frozen embeddings or a symmetric init cannot hide a wrong term), in float64, and compares the fast
forward with ``forward(..., cache={})`` (the hook-point path, the reference): the logits at every position and
at chosen query positions, both ways :meth:`AMTransformer._second_layer` computes layer 2, the gradients, row
groups (models/hooks.py) and the table memo (:meth:`AMTransformer.table`) across weight updates. The explicit
path reads layer 1 from the same tables as the fast one; where that matters (the memo, and once per test of
logits and gradients) the reference is the explicit path with layer 1 computed in d-space (:func:`d_space`).
"""

from __future__ import annotations

import copy
import typing

import pytest
import torch

from inductionlab.models import hooks
from inductionlab.models.amt import AMTransformer
from inductionlab.models.build import build_model
from inductionlab.models.names import POS_ENCODINGS, RELATIVE_ENCODINGS, hook_name

ENCODINGS = tuple(enc for enc in POS_ENCODINGS if enc != "rope")  # the fast forward does not take rope
FEED_FORWARDS = ("none", "linear")  # nor the ReLU MLP
D_MODEL, SEQ_LEN, BATCH, MAX_REL = 6, 8, 5, 4  # MAX_REL < SEQ_LEN: relative distances get clipped
ATOL = RTOL = 1e-9  # float64
# row groups (models/hooks.py ``QueryGroups``): positions per consecutive block of rows, or (rows, positions) pairs
GROUPS_ARE_BLOCKS = typing.get_args(hooks.QueryGroups) == (torch.Tensor,)


pytestmark = pytest.mark.usefixtures("single_thread")  # conftest.py: one intra-op thread for tiny models


def _configs(n_layers: tuple[int, ...]) -> list:
    out = []
    for layers in n_layers:
        for pos_enc in ENCODINGS:
            for ff in FEED_FORWARDS:
                # the positional term in layer 2 too, where there is one to add (rpe, bias)
                all_layers = (False, True) if layers == 2 and pos_enc in RELATIVE_ENCODINGS else (False,)
                for pos_all in all_layers:
                    label = f"{pos_enc}-{ff}-L{layers}" + ("-pos_all" if pos_all else "")
                    out.append(pytest.param(pos_enc, ff, layers, pos_all, id=label))
    return out


CONFIGS = _configs((1, 2))
TWO_LAYER = _configs((2,))


def build(tiny, pos_enc: str, ff: str, n_layers: int, pos_all_layers: bool, seed: int = 0) -> AMTransformer:
    """The model a validated config describes, every matrix trained, float64, perturbed away from its init."""
    model_section = {"d_model": D_MODEL, "n_layers": n_layers, "pos_enc": pos_enc, "ff": ff, "max_len": 32,
                     "max_rel_dist": MAX_REL, "pos_all_layers": pos_all_layers}
    cfg = tiny(model=model_section)
    trained = list(AMTransformer.family.trainable_names(cfg.model))
    cfg = tiny(model={**model_section, "trained": trained})
    model = build_model(cfg.model, cfg.data.n_tokens, init_seed=seed)
    assert isinstance(model, AMTransformer)
    model = model.double()
    gen = torch.Generator().manual_seed(100 + seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.3 * torch.randn(param.shape, generator=gen, dtype=param.dtype))
    assert not list(model.buffers()), "every matrix should train (be a parameter)"
    return model


def tokens_for(model: AMTransformer, batch: int = BATCH, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.n_tokens, (batch, SEQ_LEN), generator=gen)


def random_queries(batch: int, width: int, seed: int = 1) -> torch.Tensor:
    """(batch, width) positions in [0, T), repeats allowed, not sorted."""
    return torch.randint(0, SEQ_LEN, (batch, width), generator=torch.Generator().manual_seed(seed))


def query_sets(batch: int = BATCH) -> dict[str, torch.Tensor | None]:
    """Query positions to read the logits at: every position, and (B, Tq) tensors of a few widths."""
    return {
        "all": None,
        "some": random_queries(batch, 3, seed=2),
        "last": torch.full((batch, 1), SEQ_LEN - 1),
        "many": random_queries(batch, 2 * SEQ_LEN, seed=3),
    }


def explicit(model: AMTransformer, tokens: torch.Tensor, query_positions=None, cache: dict | None = None):
    return model(tokens, query_positions=query_positions, cache={} if cache is None else cache)


# an identity hook on the first residual stream: the explicit path then computes layer 1 in d-space
# (``attention_scores`` on ``h^0``), not from the layer-1 tables (and their memo) it shares with the fast forward
D_SPACE_HOOKS = {hook_name("resid_pre", 0): lambda x, site: x}


def d_space(model: AMTransformer, tokens: torch.Tensor, query_positions=None):
    return model(tokens, query_positions=query_positions, hooks=D_SPACE_HOOKS)


def model_forward(model: AMTransformer, tokens: torch.Tensor, query_positions=None):
    return model(tokens, query_positions=query_positions)


def grads(model: AMTransformer) -> dict[str, torch.Tensor]:
    """Every parameter's gradient; an unused one (``bias2`` without ``pos_all_layers``) counts as zero."""
    return {name: torch.zeros_like(p) if p.grad is None else p.grad.clone() for name, p in model.named_parameters()}


def zero_grads(model: AMTransformer) -> None:
    for p in model.parameters():
        p.grad = None


def assert_close(actual, expected, msg: str = "") -> None:
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=ATOL, msg=(lambda m: f"{msg}\n{m}") if msg else None)


def assert_grads_close(actual: dict, expected: dict, what: str) -> None:
    assert actual.keys() == expected.keys()
    for name in expected:
        assert_close(actual[name], expected[name], f"{what}: gradient of {name}")


BRANCHES = ("h1", "tables")  # AMTransformer.second_layer_route: the dense way, and the one for a few queries


def force_branch(monkeypatch, model: AMTransformer, branch: str) -> list[str]:
    """Make ``model._second_layer`` take ``branch`` (one of ``BRANCHES``); returns the list the routes
    chosen are appended to."""
    taken = []

    def route(seq_len, n_queries):
        taken.append(branch)
        return branch

    monkeypatch.setattr(model, "second_layer_route", route)
    return taken


# --------------------------------------------------------------------------------------------- 1. logits


@pytest.mark.parametrize("pos_enc,ff,n_layers,pos_all", CONFIGS)
def test_fast_logits_equal_explicit(tiny, pos_enc, ff, n_layers, pos_all):
    model = build(tiny, pos_enc, ff, n_layers, pos_all)
    tokens = tokens_for(model)
    with torch.no_grad():
        for label, query in query_sets().items():
            fast = model(tokens, query_positions=query)
            rows = SEQ_LEN if query is None else query.shape[-1]
            assert fast.shape == (BATCH, rows, model.n_tokens), label
            assert_close(fast, explicit(model, tokens, query), f"{label}: fast vs explicit (cache={{}})")
            if label in ("all", "some"):
                assert_close(fast, d_space(model, tokens, query), f"{label}: fast vs explicit in d-space")
        single = copy.deepcopy(model).float()  # the dtype runs use
        for label in ("all", "some"):
            query = query_sets()[label]
            torch.testing.assert_close(single(tokens, query_positions=query), explicit(single, tokens, query),
                                       rtol=1e-5, atol=1e-5, msg=lambda m, label=label: f"float32 {label}\n{m}")


@pytest.mark.parametrize("pos_enc,ff,n_layers,pos_all", CONFIGS)
def test_one_dimensional_query_positions(tiny, monkeypatch, pos_enc, ff, n_layers, pos_all):
    """Query positions of shape (Tq,), the same for every row: what ``forward(tokens)`` itself passes to the last
    layer (``torch.arange(T)``), and what the explicit path takes; in either branch of ``_second_layer``."""
    model = build(tiny, pos_enc, ff, n_layers, pos_all)
    tokens = tokens_for(model)
    with torch.no_grad():
        for query in (torch.tensor([SEQ_LEN - 1, 0, 3]), None):
            want = explicit(model, tokens, query)
            for branch in ("chosen", *BRANCHES) if n_layers == 2 else ("chosen",):
                with monkeypatch.context() as patch:
                    if branch != "chosen":
                        force_branch(patch, model, branch)
                    got = model(tokens, query_positions=query)
                assert_close(got, want, f"(Tq,) positions {query}, {branch}")


# --------------------------------------------------------------------------------------------- 2. both branches


@pytest.mark.parametrize("pos_enc,ff,n_layers,pos_all", TWO_LAYER)
def test_second_layer_branches_agree(tiny, monkeypatch, pos_enc, ff, n_layers, pos_all):
    model = build(tiny, pos_enc, ff, n_layers, pos_all)
    tokens = tokens_for(model)
    all_pos = torch.arange(SEQ_LEN)
    queries = {**query_sets(), "all": all_pos.expand(BATCH, SEQ_LEN)}
    with torch.no_grad():
        for label, q in queries.items():
            cache = {}
            want_logits = explicit(model, tokens, q, cache)
            want_pattern = cache[hook_name("pattern", 1)][:, 0]
            for branch in BRANCHES:
                with monkeypatch.context() as patch:
                    taken = force_branch(patch, model, branch)
                    logits, pattern = model._forward_from_tables(tokens, all_pos, q, with_pattern=True)
                    assert taken == [branch], f"{label}: forced {branch}, took {taken}"
                    if label == "some":  # forward() itself goes through _second_layer
                        assert_close(model(tokens, query_positions=q), want_logits, f"{label}, {branch}: forward")
                        assert taken == [branch, branch]
                assert_close(logits, want_logits, f"{label}, {branch}: logits vs explicit")
                assert_close(pattern, want_pattern, f"{label}, {branch}: layer-2 pattern vs explicit")


# --------------------------------------------------------------------------------------------- 3. gradients


@pytest.mark.parametrize("pos_enc,ff,n_layers,pos_all", CONFIGS)
def test_gradients_equal_explicit(tiny, monkeypatch, pos_enc, ff, n_layers, pos_all):
    model = build(tiny, pos_enc, ff, n_layers, pos_all)
    tokens = tokens_for(model)
    gen = torch.Generator().manual_seed(7)
    every = torch.arange(SEQ_LEN).expand(BATCH, SEQ_LEN)  # (B, T): (T,) positions are test_one_dimensional_…
    for label, query in (("all", every), ("some", random_queries(BATCH, 3, seed=4))):
        rows = query.shape[-1]
        weight = torch.randn(BATCH, rows, model.n_tokens, generator=gen, dtype=torch.float64)
        zero_grads(model)
        (explicit(model, tokens, query) * weight).sum().backward()
        want = grads(model)
        if label == "some":
            zero_grads(model)
            (d_space(model, tokens, query) * weight).sum().backward()
            assert_grads_close(grads(model), want, f"{label}: explicit in d-space vs explicit")
        for branch in ("chosen", *BRANCHES) if n_layers == 2 else ("chosen",):
            with monkeypatch.context() as patch:
                if branch != "chosen":
                    force_branch(patch, model, branch)
                zero_grads(model)
                (model(tokens, query_positions=query) * weight).sum().backward()
            assert_grads_close(grads(model), want, f"{label}, {branch}: fast vs explicit")


# --------------------------------------------------------------------------------------------- 4. row groups


def row_blocks() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(rows, positions) of consecutive blocks of rows covering the batch, each with its own number of queries."""
    return [
        (torch.tensor([0, 1]), random_queries(2, 2, seed=5)),
        (torch.tensor([2]), torch.arange(SEQ_LEN)[None]),
        (torch.tensor([3, 4]), random_queries(2, 1, seed=6)),
    ]


def row_groups() -> list:
    """:func:`row_blocks` as the ``query_positions`` of a grouped call (``QueryGroups``, models/hooks.py): a list
    of positions, one tensor per consecutive block, or of (rows, positions) pairs, whichever the module defines."""
    blocks = row_blocks()
    return [positions for _, positions in blocks] if GROUPS_ARE_BLOCKS else blocks


@pytest.mark.parametrize("pos_enc,ff,n_layers,pos_all", CONFIGS)
def test_row_groups_equal_separate_calls(tiny, pos_enc, ff, n_layers, pos_all):
    model = build(tiny, pos_enc, ff, n_layers, pos_all)
    tokens, blocks, groups = tokens_for(model), row_blocks(), row_groups()
    gen = torch.Generator().manual_seed(9)
    weights = [torch.randn(len(rows), pos.shape[1], model.n_tokens, generator=gen, dtype=torch.float64)
               for rows, pos in blocks]

    zero_grads(model)  # the separate calls, explicit, one backward each: gradients accumulate into their sum
    want_logits = []
    for (rows, positions), weight in zip(blocks, weights, strict=True):
        want_logits.append(explicit(model, tokens[rows], positions))
        (want_logits[-1] * weight).sum().backward()
    want = grads(model)

    zero_grads(model)
    grouped = model(tokens, query_positions=groups)
    assert isinstance(grouped, list) and len(grouped) == len(groups)
    sum((g * w).sum() for g, w in zip(grouped, weights, strict=True)).backward()
    assert_grads_close(grads(model), want, "grouped fast call vs the sum of separate explicit calls")

    explicit_grouped = explicit(model, tokens, groups)
    for i, (rows, positions) in enumerate(blocks):
        assert grouped[i].shape == (len(rows), positions.shape[1], model.n_tokens)
        assert_close(grouped[i], want_logits[i], f"group {i}: grouped fast vs a separate explicit call")
        assert_close(explicit_grouped[i], want_logits[i], f"group {i}: grouped explicit vs a separate explicit call")
        with torch.no_grad():
            assert_close(model(tokens[rows], query_positions=positions), want_logits[i],
                         f"group {i}: separate fast call vs separate explicit call")


# --------------------------------------------------------------------------------------------- 5. the table memo
# The explicit path shares the layer-1 tables (and so the memo) with the fast one; the reference here is the
# d-space path, which builds no table.

MEMO_CONFIGS = [p for p in CONFIGS if p.id in ("ape-linear-L2", "ape-sincos-none-L1", "rpe-linear-L2-pos_all",
                                                 "bias-none-L2-pos_all", "none-linear-L1", "bias-linear-L1")]


@pytest.mark.parametrize("pos_enc,ff,n_layers,pos_all", MEMO_CONFIGS)
def test_memo_follows_in_place_updates_and_load_state_dict(tiny, pos_enc, ff, n_layers, pos_all):
    model = build(tiny, pos_enc, ff, n_layers, pos_all)
    tokens, query = tokens_for(model), random_queries(BATCH, 2, seed=10)
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        model(tokens), model(tokens, query_positions=query)  # tables built for these weights
        for name, param in model.named_parameters():  # one matrix at a time
            param.add_(0.5 * torch.randn(param.shape, generator=gen, dtype=param.dtype))
            assert_close(model(tokens, query_positions=query), d_space(model, tokens, query), f"after {name} += noise")
        assert_close(model(tokens), d_space(model, tokens), "after every update, all positions")

    model(tokens).sum()  # with gradients recorded
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(0.9)
    assert_close(model(tokens), d_space(model, tokens), "after an in-place update, gradients recorded")

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for step in range(2):  # optimiser steps between calls without gradients
        with torch.no_grad():
            model(tokens, query_positions=query)
        optimizer.zero_grad()
        d_space(model, tokens, query).square().sum().backward()  # a loss that builds no table
        optimizer.step()
        with torch.no_grad():
            assert_close(model(tokens, query_positions=query), d_space(model, tokens, query), f"after step {step}")

    other = build(tiny, pos_enc, ff, n_layers, pos_all, seed=1)
    with torch.no_grad():
        want = d_space(other, tokens)
        model(tokens)
        model.load_state_dict(copy.deepcopy(other.state_dict()))
        assert_close(model(tokens), want, "after load_state_dict")


TRAINING_CASES = [pytest.param(*p.values, "sgd", id=f"{p.id}-sgd") for p in MEMO_CONFIGS] + [
    pytest.param(*p.values, "adamw", id=f"{p.id}-adamw") for p in MEMO_CONFIGS if p.id in ("ape-linear-L2",
                                                                                           "bias-none-L2-pos_all")]


@pytest.mark.parametrize("pos_enc,ff,n_layers,pos_all,optimizer", TRAINING_CASES)
def test_training_steps_match_explicit(tiny, pos_enc, ff, n_layers, pos_all, optimizer):
    """Steps of the fast forward (every position and row groups in one loss, an evaluation without gradients
    between steps) against the same steps of the d-space path, parameter for parameter."""
    fast = build(tiny, pos_enc, ff, n_layers, pos_all)
    slow = copy.deepcopy(fast)

    def make(model):
        if optimizer == "sgd":
            return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        return torch.optim.AdamW(model.parameters(), lr=0.01)

    opt_fast, opt_slow = make(fast), make(slow)
    tokens, targets, groups = tokens_for(fast, seed=12), tokens_for(fast, seed=13), row_groups()
    for step in range(3):
        with torch.no_grad():
            assert_close(fast(tokens), d_space(slow, tokens), f"step {step}: evaluation logits")
        for model, opt, forward in ((fast, opt_fast, model_forward), (slow, opt_slow, d_space)):
            opt.zero_grad()
            logits = forward(model, tokens)
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
            loss = loss + sum(part.square().mean() for part in forward(model, tokens, groups))
            loss.backward()
            opt.step()
        for (name, p_fast), p_slow in zip(fast.named_parameters(), slow.parameters(), strict=True):
            assert_close(p_fast, p_slow, f"step {step}: {name} after the step")


@pytest.mark.parametrize("pos_enc,ff,n_layers,pos_all", MEMO_CONFIGS)
def test_gradient_accumulation_and_separate_graphs(tiny, pos_enc, ff, n_layers, pos_all):
    """Forward/backward twice with the same weights (no step between), and two forward calls before their two
    backward passes: an ordinary module allows both, so the memo must not make a call reuse a freed graph."""
    model = build(tiny, pos_enc, ff, n_layers, pos_all)
    a, b = tokens_for(model, seed=14), tokens_for(model, seed=15)
    zero_grads(model)
    d_space(model, a).sum().backward()
    d_space(model, b).sum().backward()
    want = grads(model)

    zero_grads(model)
    model(a).sum().backward()
    model(b).sum().backward()
    assert_grads_close(grads(model), want, "forward, backward, forward, backward")

    zero_grads(model)
    loss_a, loss_b = model(a).sum(), model(b).sum()
    loss_a.backward()
    loss_b.backward()
    assert_grads_close(grads(model), want, "forward, forward, backward, backward")


@pytest.mark.parametrize("pos_enc,ff,n_layers,pos_all", MEMO_CONFIGS)
def test_memo_follows_substituted_weights(tiny, pos_enc, ff, n_layers, pos_all):
    """``torch.func.functional_call`` with fresh substitute tensors (as interventions do), one after the other
    without gradients: each call must see the weights it is given, also when a new substitute lives at the memory
    of the previous one, which is freed (same ``data_ptr``, a fresh version counter at 0).

    First as it happens: a substitute made, used and dropped per call, which the CPU allocator often places at the
    address it just freed. Then deterministically: each substitute a new tensor over the same storage, holding new
    values from the moment it is made and never written to afterwards."""
    model = build(tiny, pos_enc, ff, n_layers, pos_all)
    tokens = tokens_for(model)
    gen = torch.Generator().manual_seed(16)
    noise = [torch.randn(D_MODEL, D_MODEL, generator=gen, dtype=torch.float64) for _ in range(6)]
    addresses = []
    with torch.no_grad():
        for i in range(len(noise)):
            substitute = {"wk1": model.wk1 + noise[i]}
            addresses.append(substitute["wk1"].data_ptr())
            got = torch.func.functional_call(model, substitute, (tokens,))
            want = torch.func.functional_call(model, substitute, (tokens,), {"hooks": D_SPACE_HOOKS})
            assert_close(got, want, f"substitute {i} for wk1 (addresses so far: {addresses})")
            del substitute

        storage = (model.wk1 + noise[0]).untyped_storage()
        for i in range(3):
            substitute = torch.empty(0, dtype=torch.float64).set_(storage, 0, (D_MODEL, D_MODEL), (D_MODEL, 1))
            got = torch.func.functional_call(model, {"wk1": substitute}, (tokens,))
            want = torch.func.functional_call(model, {"wk1": substitute}, (tokens,), {"hooks": D_SPACE_HOOKS})
            assert_close(got, want, f"substitute {i} over one storage (a new tensor at the same address each time)")
            substitute.copy_(model.wk1 + noise[i + 1])  # the next one's values, written before it exists


@pytest.mark.parametrize("pos_enc,ff,n_layers,pos_all", CONFIGS)
def test_logits_and_pattern_equal_explicit(tiny, pos_enc, ff, n_layers, pos_all):
    """``logits_and_pattern`` (the hijack analysis's last-query read) gives the explicit path's logits and last-layer
    pattern, for 1-D and (B, Tq) query positions."""
    model = build(tiny, pos_enc, ff, n_layers, pos_all)
    tokens = tokens_for(model)
    last = torch.full((1,), tokens.shape[1] - 1, dtype=torch.int64)
    for query_positions in (last, random_queries(tokens.shape[0], 3)):
        cache: dict = {}
        with torch.no_grad():
            logits, pattern = model.logits_and_pattern(tokens, query_positions)
            want = model(tokens, query_positions=query_positions, cache=cache)
        assert_close(logits, want, "logits")
        assert_close(pattern, cache[hook_name("pattern", n_layers - 1)][:, 0], "last layer's pattern")


@pytest.mark.parametrize("pos_enc,ff,n_layers,pos_all", _configs((1,)))
def test_the_mask_folded_into_the_layer1_tables_gives_the_same_pattern_bit_for_bit(tiny, pos_enc, ff, n_layers,
                                                                                    pos_all):
    """``layer1_pattern_from_tables`` folds the causal mask into a table (the position block, the rpe products,
    the bias over distances) instead of adding it to the (B, Tq, T) scores: the same numbers, not just close."""
    model = build(tiny, pos_enc, ff, n_layers, pos_all)
    tokens = tokens_for(model)
    for label, queries in query_sets().items():
        q = torch.arange(SEQ_LEN) if queries is None else queries
        added = AMTransformer.pattern(model.layer1_scores_from_tables(tokens, q), q)
        assert torch.equal(model.layer1_pattern_from_tables(tokens, q), added), label
