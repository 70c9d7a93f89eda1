"""The functional milestones of docs/science.md §6 (probes/functional.py) on models whose memories are known."""

import pytest
import torch

from inductionlab.models.amt import AMTransformer
from inductionlab.probes.functional import FORMED, FUNCTIONAL, QUERY_LIMIT, functional_probes
from inductionlab.tasks.bigram import BigramTriggerSampler
from inductionlab.tasks.bigram_task import probe_rows
from inductionlab.tasks.sources import dirichlet_source
from inductionlab.theory.ideal import bigram_scores, ideal_amt

N, T = 24, 80  # T > QUERY_LIMIT: only queries t < 64 are read


@pytest.fixture(scope="module")
def data():
    source = dirichlet_source(N, 0.5, 3)
    sampler = BigramTriggerSampler(source, T, 3, trigger_mode="fixed")
    batch = sampler.sample(96, torch.Generator().manual_seed(0))
    return source, sampler.fixed_triggers, probe_rows(batch)


def strong_ideal(source, triggers):
    """The ideal AMT with memories whose right key leads by far more than ln T."""
    return ideal_amt(N, 1024, (40.0, 40.0, 40.0), bigram_scores(source.bigram).float(), train_len=T,
                     triggers=triggers, max_len=128)


def test_every_memory_of_a_strong_ideal_amt_is_formed_at_step_0(data):
    source, triggers, (tokens, labels) = data
    out = functional_probes(strong_ideal(source, triggers), tokens, labels)
    for key in FUNCTIONAL:
        assert out[key] >= FORMED, (key, out[key])
        assert out[key] > out[f"{key}_chance"]
    assert out["fn_wk1"] > 0.95 and out["fn_wk2"] > 0.9


def test_zero_trained_matrices_form_no_memory(data):
    """Zero key matrices: uniform attention puts 1/(t + 1) on any one key; zero W_O²: nothing to copy."""
    _, _, (tokens, labels) = data
    model = AMTransformer(N, 64, zero_init=True, init_seed=1, max_len=128)
    out = functional_probes(model, tokens, labels)
    assert all(out[key] < FORMED for key in FUNCTIONAL), out
    assert out["fn_wk1"] == pytest.approx(out["fn_wk1_chance"], rel=1e-5)
    assert out["fn_wk2"] == pytest.approx(out["fn_wk2_chance"], rel=1e-5)


@pytest.mark.parametrize(("matrix", "measure"), [("wo2", "fn_wo"), ("wk2", "fn_wk2"), ("wk1", "fn_wk1")])
def test_a_matrix_held_at_zero_never_forms_and_the_others_still_do(data, matrix, measure):
    """Each measurement isolates its matrix: the clamps make the rest of the circuit ideal, so zeroing one memory
    of the ideal AMT (as a freeze at zero holds it) takes its milestone away and leaves the other two."""
    source, triggers, (tokens, labels) = data
    model = strong_ideal(source, triggers)
    with torch.no_grad():
        getattr(model, matrix).zero_()
    out = functional_probes(model, tokens, labels)
    assert out[measure] < FORMED
    for other in set(FUNCTIONAL) - {measure}:
        assert out[other] >= FORMED, (other, out[other])


def test_only_queries_before_the_limit_are_read(data):
    source, triggers, (tokens, labels) = data
    model = strong_ideal(source, triggers)
    later = tokens.clone()
    later[:, QUERY_LIMIT + 1:] = (later[:, QUERY_LIMIT + 1:] + 1) % N  # change every token after the window
    assert functional_probes(model, later, labels) == functional_probes(model, tokens, labels)


def test_a_one_layer_model_has_no_functional_milestones(data):
    _, _, (tokens, labels) = data
    assert functional_probes(AMTransformer(N, 32, n_layers=1, max_len=128), tokens, labels) == {}
