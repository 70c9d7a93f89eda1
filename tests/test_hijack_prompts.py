"""Query pairs, settings and the per-prompt evaluation of the hijack experiment (docs/science.md §5)."""

import torch

from inductionlab.experiments.hijack.eval import evaluate_model
from inductionlab.prompts.families import global_favourite
from inductionlab.prompts.query_pairs import QueryPair, Setting, build_prompts, query_pairs
from inductionlab.tasks.sources import dirichlet_source, shakespeare_source
from inductionlab.theory.ideal import ideal_amt
from inductionlab.theory.trained import recall_matrices


def test_query_pairs_vary_the_bigram_term():
    source = shakespeare_source()
    pairs = query_pairs(source, 8, seed=5)
    assert source.decode([pairs[0].a, pairs[0].b]) == "tz"  # the docs/science.md §5 prototype comes first
    assert len({p.a for p in pairs}) == 8
    for p in pairs:
        assert p.rival == global_favourite(source, p.a)
        assert len({p.a, p.b, p.c, p.rival}) == 4
    log_bigram = torch.log(source.bigram.clamp_min(1e-12))
    terms = torch.tensor([float(log_bigram[p.a, p.b] - log_bigram[p.a, p.rival]) for p in pairs])
    assert terms.std() > 1.0  # the bigram term differs a lot between pairs of one setting
    assert query_pairs(source, 8, seed=5) == pairs  # seeded


def test_query_pairs_respect_exclusions_and_unlikely_successors():
    source = shakespeare_source()
    triggers = torch.argsort(source.unigram, descending=True)[:5].tolist()
    for exclude, max_prob in (((), 0.01), (triggers, 0.001)):
        for p in query_pairs(source, 8, seed=5, exclude=exclude, max_prob=max_prob):
            assert p.a not in exclude
            assert source.bigram[p.a, p.b] < max_prob and source.bigram[p.a, p.c] < max_prob  # docs/science.md §5


def test_prompts_of_a_setting_cover_every_pair_and_name_the_conflict_rival():
    source = shakespeare_source()
    pairs = query_pairs(source, 3, seed=1)
    batch = build_prompts(Setting("conflict", 32, n_b=2, n_c=1), pairs, 4, source)
    assert batch.tokens.shape == (12, 32) and batch.pair.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert batch.favoured.tolist() == [p.b for p in pairs for _ in range(4)]
    assert batch.rival.tolist() == [p.c for p in pairs for _ in range(4)]  # the gap is ξ_b − ξ_c
    count = build_prompts(Setting("count", 32, n=2), pairs, 4, source)
    assert count.rival.tolist() == [p.rival for p in pairs for _ in range(4)]  # ξ_b − ξ_j*
    assert torch.equal(build_prompts(Setting("count", 32, n=2), pairs, 4, source).tokens, count.tokens)


def test_inside_means_every_pair_before_the_training_length():
    source = shakespeare_source()
    pairs = query_pairs(source, 2, seed=1)
    batch = build_prompts(Setting("distance", 128, position=70), pairs, 3, source)
    assert batch.last_pair_end.tolist() == [71] * 6
    assert not batch.inside(64).any() and batch.inside(72).all()
    assert build_prompts(Setting("count", 128, n=0), pairs, 3, source).inside(64).all()  # no pair: inside


def test_planted_copies_raise_the_count_of_b_only():
    source = shakespeare_source()
    pairs = query_pairs(source, 2, seed=1)
    none = build_prompts(Setting("no-context", 64, n_filler=0), pairs, 8, source)
    many = build_prompts(Setting("no-context", 64, n_filler=12), pairs, 8, source)
    for batch in (none, many):
        assert (batch.tokens[:, :-1] != batch.a[:, None]).all()  # a only as the query
    b_count = lambda batch: (batch.tokens == batch.favoured[:, None]).sum(1)  # noqa: E731
    assert (b_count(many) >= 12).all() and b_count(many).float().mean() > b_count(none).float().mean() + 10


def test_conflict_gap_has_the_sign_of_the_majority():
    """On the ideal AMT with no stored bigram, ξ_b − ξ_c > 0 when b follows a more often than c, < 0 otherwise."""
    source = dirichlet_source(12, 0.5, 0)
    g = torch.zeros(12, 12)
    model = ideal_amt(12, 1024, (6.0, 5.0, 4.0), g, pos_enc="rpe", train_len=64, init_seed=0)
    rec = recall_matrices(model, 64)
    pair = [QueryPair(a=0, b=1, c=2, rival=3)]
    majority_b = build_prompts(Setting("conflict", 48, n_b=3, n_c=1), pair, 16, source)
    majority_c = build_prompts(Setting("conflict", 48, n_b=1, n_c=3), pair, 16, source)
    table = evaluate_model(model, rec, [majority_b, majority_c], 64, None)
    gaps = table.gaps["model"]
    assert (gaps[:16] > 0).all() and (gaps[16:] < 0).all()
    for name in ("weights_only", "readout", "scalar_read_off"):  # the predictions agree on the sign
        assert (table.gaps[name][:16] > 0).all() and (table.gaps[name][16:] < 0).all(), name


def test_on_the_ideal_amt_the_predictions_explain_the_gaps_within_settings():
    """docs/science.md §4.4/§4.5 end to end: on the ideal AMT (large d) the fit-free predictions track the model
    prompt by prompt, also within settings (a wrong rival, favoured token or setting index breaks this)."""
    from inductionlab.experiments.hijack.stats import within_r_squared

    source = dirichlet_source(20, 0.3, 1)
    g = torch.log(source.bigram.clamp_min(1e-3)).float()
    g = g - g.mean(1, keepdim=True)
    model = ideal_amt(20, 2048, (6.0, 4.0, 5.0), g, pos_enc="rpe", train_len=64, init_seed=0)
    rec = recall_matrices(model, 128)
    pairs = query_pairs(source, 8, seed=2)
    settings = [Setting("count", t, n=n) for t in (32, 96) for n in (0, 1, 3)] + [Setting("conflict", 48, n_b=2, n_c=1)]
    table = evaluate_model(model, rec, [build_prompts(s, pairs, 4, source) for s in settings], 64, None)
    within = {name: within_r_squared(table.gaps[name], table.gaps["model"], table.setting)
              for name in ("weights_only", "readout")}
    assert within["weights_only"] > 0.9 and within["readout"] > 0.9, within
