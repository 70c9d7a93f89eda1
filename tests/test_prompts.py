"""Designed prompt families (docs/science.md §5): structure, counts, seeds, decoding and errors."""

from __future__ import annotations

import pytest
import torch

from inductionlab.errors import ConfigError
from inductionlab.prompts.families import (
    FAMILIES,
    PromptSpec,
    contending_tokens,
    default_pair,
    global_favourite,
    make_prompts,
)
from inductionlab.tasks.sources import dirichlet_source, shakespeare_source


@pytest.fixture(scope="module")
def shakespeare():
    return shakespeare_source()


@pytest.fixture(scope="module")
def synthetic():
    return dirichlet_source(10, 0.5, seed=3)


def spec_for(family: str, a: int, b: int, c: int, **kw) -> PromptSpec:
    base = {
        "count": {"n": 3},
        "distance": {"position": 7},
        "conflict": {"c": c, "n_b": 3, "n_c": 2},
        "non-trigger": {"n": 4},
        "no-context": {},
    }[family]
    return PromptSpec(**{"family": family, "seq_len": 32, "a": a, "b": b, "n_prompts": 50, "seed": 1, **base, **kw})


def brute_force_pairs(row: list[int], a: int) -> list[tuple[int, int]]:
    """(position, successor) of every a before the query that has a successor."""
    return [(t, row[t + 1]) for t in range(len(row) - 1) if row[t] == a]


def brute_force_counts(row: list[int], a: int, n_tokens: int) -> tuple[int, list[int], list[int]]:
    """docs/science.md §4.4 counts over the keys s = 1..T; key 1 (no predecessor) matches when z_1 = a."""
    n, c, u = 0, [0] * n_tokens, [0] * n_tokens
    for s, z in enumerate(row):
        if row[max(s - 1, 0)] == a:
            n += 1
            c[z] += 1
        else:
            u[z] += 1
    return n, c, u


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("which", ["shakespeare", "synthetic"])
def test_family_structure(family, which, shakespeare, synthetic):
    source = shakespeare if which == "shakespeare" else synthetic
    a, b, _ = default_pair(source)
    c = next(t for t in range(source.n_tokens) if t not in (a, b))
    spec = spec_for(family, a, b, c)
    batch = make_prompts(spec, source)
    assert batch.tokens.shape == (50, 32) and batch.tokens.dtype == torch.int64
    assert batch.tokens.device.type == "cpu"
    assert bool((batch.tokens[:, -1] == a).all())
    assert int(batch.tokens.min()) >= 0 and int(batch.tokens.max()) < source.n_tokens
    expected = {"count": {b: 3}, "distance": {b: 1}, "conflict": {b: 3, c: 2}, "non-trigger": {b: 4}, "no-context": {}}
    for i, row in enumerate(batch.tokens.tolist()):
        pairs = brute_force_pairs(row[:-1], a)
        # `a` appears only in the planted pairs and as the query
        assert row.count(a) == len(pairs) + 1
        successors = {}
        for _, s in pairs:
            successors[s] = successors.get(s, 0) + 1
        assert successors == expected[family]
        assert [p for p, _ in pairs] == batch.pair_positions[i].tolist()
        assert [s for _, s in pairs] == batch.successors[i].tolist()
        if family == "distance":
            assert pairs[0][0] == 7
    assert batch.pair_positions.shape == (50, spec.n_pairs)


@pytest.mark.parametrize("family", FAMILIES)
def test_counts_match_brute_force(family, shakespeare):
    a, b, j_star = default_pair(shakespeare)
    c = shakespeare.vocab.index("q")
    batch = make_prompts(spec_for(family, a, b, c, n_prompts=20), shakespeare)
    counts = batch.counts()
    assert counts["c"].shape == counts["u"].shape == (20, shakespeare.n_tokens)
    for i, row in enumerate(batch.tokens.tolist()):
        n, cj, uj = brute_force_counts(row, a, shakespeare.n_tokens)
        assert int(counts["n"][i]) == n == batch.spec.n_pairs + (row[0] == a)
        assert int(counts["n_pairs"][i]) == batch.spec.n_pairs
        assert counts["c"][i].tolist() == cj
        assert counts["u"][i].tolist() == uj
        assert int(counts["c_b"][i]) == cj[b] and int(counts["u_b"][i]) == uj[b]
        assert int(counts["c_j_star"][i]) == cj[j_star] and int(counts["u_j_star"][i]) == uj[j_star]
        if family == "conflict":
            assert int(counts["c_c"][i]) == cj[c] == 2
    assert int(counts["c"].sum() + counts["u"].sum()) == 20 * 32
    assert ("c_c" in counts) == (family == "conflict")


def test_count_zero_pairs_and_tight_fit(shakespeare):
    a, b, _ = default_pair(shakespeare)
    empty = make_prompts(PromptSpec("count", 16, a, b, n=0, n_prompts=8), shakespeare)
    assert empty.pair_positions.shape == (8, 0)
    assert bool(((empty.tokens[:, :-1] == a).sum(dim=1) == 0).all())
    full = make_prompts(PromptSpec("count", 9, a, b, n=4, n_prompts=8), shakespeare)  # 2·4 + 1 = T
    assert full.tokens[0].tolist() == [a, b] * 4 + [a]
    # a pair at position 0: key s = 1 attends to itself and matches (z_0 := z_1), as in the theory
    counts = full.counts()
    assert counts["n_pairs"].tolist() == [4] * 8 and counts["n"].tolist() == [5] * 8
    assert counts["c_b"].tolist() == [4] * 8 and counts["c"][:, a].tolist() == [1] * 8


def test_placements_vary_and_cover_the_prompt(shakespeare):
    a, b, _ = default_pair(shakespeare)
    batch = make_prompts(PromptSpec("count", 12, a, b, n=2, n_prompts=2000, seed=5), shakespeare)
    starts = batch.pair_positions
    assert bool((starts[:, 1] - starts[:, 0] >= 2).all())
    assert int(starts.min()) == 0 and int(starts.max()) == 12 - 3
    # uniform over the C(9, 2) = 36 placements of two dominoes in 11 cells
    distinct = {tuple(r) for r in starts.tolist()}
    assert len(distinct) == 36


def test_filler_follows_the_bigram_without_a(synthetic):
    a, b, _ = default_pair(synthetic)
    batch = make_prompts(PromptSpec("no-context", 200, a, n_prompts=400, seed=2), synthetic)
    prev, nxt = batch.tokens[:, :-2].reshape(-1), batch.tokens[:, 1:-1].reshape(-1)
    n = synthetic.n_tokens
    counts = torch.zeros(n, n, dtype=torch.float64)
    counts.index_put_((prev, nxt), torch.ones_like(prev, dtype=torch.float64), accumulate=True)
    assert float(counts[:, a].sum()) == 0.0
    target = synthetic.bigram.clone()
    target[:, a] = 0.0
    target = target / target.sum(dim=1, keepdim=True)
    empirical = counts / counts.sum(dim=1, keepdim=True).clamp_min(1.0)
    busy = counts.sum(dim=1) > 2000
    assert int(busy.sum()) >= 5
    assert float((empirical[busy] - target[busy]).abs().max()) < 0.03


def test_seeds_reproduce_and_differ(shakespeare):
    a, b, _ = default_pair(shakespeare)
    c = shakespeare.vocab.index("q")
    for family in FAMILIES:
        one = make_prompts(spec_for(family, a, b, c, seed=11), shakespeare)
        two = make_prompts(spec_for(family, a, b, c, seed=11), shakespeare)
        other = make_prompts(spec_for(family, a, b, c, seed=12), shakespeare)
        assert torch.equal(one.tokens, two.tokens)
        assert torch.equal(one.pair_positions, two.pair_positions)
        assert torch.equal(one.successors, two.successors)
        assert not torch.equal(one.tokens, other.tokens)
    conflict = make_prompts(spec_for("conflict", a, b, c, n_prompts=200), shakespeare)
    assert len({tuple(r) for r in conflict.successors.tolist()}) > 1  # the b/c order is drawn too


def test_decode_round_trips(shakespeare, synthetic):
    a, b, _ = default_pair(shakespeare)
    batch = make_prompts(PromptSpec("count", 40, a, b, n=2, n_prompts=3), shakespeare)
    for i in range(3):
        text = batch.decode(shakespeare, i)
        assert len(text) == 40 and text.endswith("t") and text.count("tz") == 2 and text.count("t") == 3
        assert torch.equal(shakespeare.encode(text), batch.tokens[i])
    marked = batch.decode(shakespeare, 0, marked=True)
    assert marked.count("[tz]") == 2 and marked.endswith("[t]")
    assert marked.replace("[", "").replace("]", "") == batch.decode(shakespeare, 0)
    a, b, _ = default_pair(synthetic)
    syn = make_prompts(PromptSpec("distance", 10, a, b, position=0, n_prompts=2), synthetic)
    assert torch.equal(synthetic.encode(syn.decode(synthetic, 1)), syn.tokens[1])
    assert syn.decode(synthetic, 1, marked=True).startswith(f"[{a} {b}] ")
    with pytest.raises(ConfigError, match="prompt index"):
        syn.decode(synthetic, 2)


def test_default_pair_shakespeare_follows_the_data(shakespeare):
    a, b, j_star = default_pair(shakespeare)
    vocab = shakespeare.vocab
    assert (vocab[a], vocab[b]) == ("t", "z")
    # j* from the data: the most frequent character after 't' in tiny Shakespeare is 'h'
    row = shakespeare.bigram[a]
    assert j_star == int(row.argmax()) == vocab.index("h")
    assert float(row[b]) < 1e-3 < float(row[j_star])


def test_default_pair_synthetic(synthetic):
    a, b, j_star = default_pair(synthetic)
    assert a == int(synthetic.unigram.argmax())
    others = [j for j in range(synthetic.n_tokens) if j != a]
    assert b == min(others, key=lambda j: float(synthetic.bigram[a, j]))
    assert j_star == global_favourite(synthetic, a)


def test_contending_tokens(shakespeare):
    a, b, j_star = default_pair(shakespeare)
    c = shakespeare.vocab.index("q")
    assert contending_tokens(spec_for("count", a, b, c), shakespeare) == (b, j_star)
    assert contending_tokens(spec_for("conflict", a, b, c), shakespeare) == (b, c, j_star)
    assert contending_tokens(PromptSpec("no-context", 8, a), shakespeare) == (j_star,)
    assert contending_tokens(PromptSpec("no-context", 8, a, b), shakespeare) == (b, j_star)


def test_non_trigger_checks_the_triggers(shakespeare):
    a, b, _ = default_pair(shakespeare)
    spec = PromptSpec("non-trigger", 16, a, b, n=2, n_prompts=4)
    batch = make_prompts(spec, shakespeare, triggers=torch.tensor([0, 1, 2]))
    assert int(batch.counts()["c_b"][0]) == 2
    with pytest.raises(ConfigError, match="fixed trigger"):
        make_prompts(spec, shakespeare, triggers=torch.tensor([[1, a]]))


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"family": "counting"}, "family"),
        ({"seq_len": 1, "n": 0}, "seq_len"),
        ({"n": 8}, "n = 8"),  # 2·8 + 1 > 16
        ({"n": -1}, "n must be"),
        ({"family": "conflict", "c": 7, "n_b": 5, "n_c": 3}, "n_b \\+ n_c"),
        ({"family": "conflict", "c": None}, "c is required"),
        ({"family": "conflict", "c": "B"}, "c must be an integer"),
        ({"family": "conflict", "c": 64}, "c must differ from b"),
        ({"family": "conflict", "c": 58}, "c must differ from a"),
        ({"family": "conflict", "c": 7, "n_b": -1}, "n_b"),
        ({"family": "distance", "position": None}, "position is required"),
        ({"family": "distance", "position": 14}, "position=14"),
        ({"family": "distance", "position": -1}, "position must be"),
        ({"a": 65}, "a=65"),
        ({"a": -1}, "a must be"),
        ({"b": 65}, "b=65"),
        ({"b": 58}, "b must differ from a"),
        ({"b": None}, "b is required"),
        ({"family": "non-trigger", "b": None}, "b is required"),
        ({"n_prompts": 0}, "n_prompts"),
        ({"seq_len": 16.0}, "seq_len"),
    ],
)
def test_bad_specs_raise(fields, match, shakespeare):
    base = {"family": "count", "seq_len": 16, "a": 58, "b": 64, "n": 2, "n_prompts": 4}  # a="t", b="z"
    assert make_prompts(PromptSpec(**base), shakespeare).tokens.shape == (4, 16)  # the base itself is fine
    spec = PromptSpec(**{**base, **fields})
    with pytest.raises(ConfigError, match=match):
        make_prompts(spec, shakespeare)
