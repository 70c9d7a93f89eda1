"""Bigram sources (docs/science.md §2): shipped Shakespeare counts and the Dirichlet source."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from inductionlab.errors import ConfigError
from inductionlab.tasks.sources import (
    BigramSource,
    derive_counts,
    dirichlet_source,
    load_shakespeare_counts,
    make_source,
    shakespeare_source,
    source_from_counts,
    stationary_distribution,
)


def shakespeare_text_path() -> Path:
    """The tiny Shakespeare text: $INDUCTIONLAB_SHAKESPEARE, else ``../shared/data`` beside the repo."""
    env = os.environ.get("INDUCTIONLAB_SHAKESPEARE")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared/data/tinyshakespeare.txt"


def test_shakespeare_source_shape_and_vocab():
    src = shakespeare_source()
    assert src.n_tokens == 65
    assert src.vocab is not None and len(src.vocab) == 65
    assert src.vocab[0] == "\n" and src.vocab[1] == " "
    assert list(src.vocab) == sorted(src.vocab)
    assert src.unigram.dtype == torch.float64 and src.bigram.dtype == torch.float64
    assert src.bigram.shape == (65, 65)
    torch.testing.assert_close(src.bigram.sum(dim=1), torch.ones(65, dtype=torch.float64))
    assert abs(float(src.unigram.sum()) - 1.0) < 1e-12
    assert bool((src.unigram > 0).all())
    assert shakespeare_source() is src  # cached


def test_shakespeare_counts_are_consistent():
    counts = load_shakespeare_counts()
    assert counts["n_chars"] == 1_115_394
    assert sum(counts["unigram_counts"]) == counts["n_chars"]
    assert sum(map(sum, counts["bigram_counts"])) == counts["n_chars"] - 1
    src = shakespeare_source()
    # the space is the most frequent character, and "e" the most frequent letter
    assert int(src.unigram.argmax()) == 1
    letters = [src.vocab.index(c) for c in "abcdefghijklmnopqrstuvwxyz"]
    assert src.vocab[letters[int(src.unigram[letters].argmax())]] == "e"


def test_shipped_counts_match_the_text():
    path = shakespeare_text_path()
    if not path.is_file():
        pytest.skip(f"tiny Shakespeare text not found at {path} (set INDUCTIONLAB_SHAKESPEARE)")
    assert derive_counts(path.read_text(encoding="utf-8")) == load_shakespeare_counts()


def test_derive_counts_small_text():
    counts = derive_counts("abab\n")
    assert counts == {
        "vocab": "\nab",
        "unigram_counts": [1, 2, 2],
        "bigram_counts": [[0, 0, 0], [0, 0, 2], [1, 1, 0]],
        "n_chars": 5,
    }
    assert derive_counts("")["n_chars"] == 0


def test_zero_bigram_row_falls_back_to_unigram():
    counts = derive_counts("aab")  # "b" only ends the text: no successor observed
    src = source_from_counts("toy", counts)
    torch.testing.assert_close(src.bigram[1], src.unigram)
    torch.testing.assert_close(src.bigram[0], torch.tensor([0.5, 0.5], dtype=torch.float64))


def test_encode_decode_round_trip():
    src = shakespeare_source()
    text = "First Citizen:\nBefore we proceed any further, hear me speak."
    ids = src.encode(text)
    assert ids.dtype == torch.int64 and ids.shape == (len(text),)
    assert src.decode(ids) == text
    assert src.decode(ids.tolist()) == text
    with pytest.raises(ConfigError, match="'#'"):
        src.encode("no # here")


def test_synthetic_encode_decode():
    src = dirichlet_source(7, 1.0, seed=0)
    assert src.vocab is None
    assert src.decode(torch.tensor([3, 0, 6])) == "3 0 6"
    assert src.encode("3 0 6").tolist() == [3, 0, 6]
    with pytest.raises(ConfigError, match="'7'"):
        src.encode("1 7")
    with pytest.raises(ConfigError):
        src.decode([9])


def test_dirichlet_reproducible_and_stationary():
    a = dirichlet_source(20, 0.5, seed=3)
    b = dirichlet_source(20, 0.5, seed=3)
    c = dirichlet_source(20, 0.5, seed=4)
    assert torch.equal(a.bigram, b.bigram) and torch.equal(a.unigram, b.unigram)
    assert not torch.equal(a.bigram, c.bigram)
    assert a.n_tokens == 20 and a.bigram.dtype == torch.float64
    torch.testing.assert_close(a.bigram.sum(dim=1), torch.ones(20, dtype=torch.float64))
    assert abs(float(a.unigram.sum()) - 1.0) < 1e-12
    torch.testing.assert_close(a.unigram @ a.bigram, a.unigram, rtol=0, atol=1e-12)
    assert bool((a.unigram >= 0).all())


@pytest.mark.parametrize("n_tokens", [1, 2, 200])
def test_dirichlet_any_size(n_tokens):
    src = dirichlet_source(n_tokens, 0.1, seed=0)
    assert src.bigram.shape == (n_tokens, n_tokens)
    torch.testing.assert_close(src.unigram @ src.bigram, src.unigram, rtol=0, atol=1e-10)


def test_stationary_distribution_known_chain():
    p = torch.tensor([[0.9, 0.1], [0.5, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(stationary_distribution(p), torch.tensor([5 / 6, 1 / 6], dtype=torch.float64))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_tokens": 0, "concentration": 1.0, "seed": 0}, "n_tokens"),
        ({"n_tokens": 2.5, "concentration": 1.0, "seed": 0}, "n_tokens"),
        ({"n_tokens": 5, "concentration": 0.0, "seed": 0}, "concentration"),
        ({"n_tokens": 5, "concentration": -1.0, "seed": 0}, "concentration"),
        ({"n_tokens": 5, "concentration": float("nan"), "seed": 0}, "concentration"),
        ({"n_tokens": 5, "concentration": 1.0, "seed": "x"}, "seed"),
    ],
)
def test_dirichlet_bad_arguments(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        dirichlet_source(**kwargs)


def test_make_source_dispatch():
    assert make_source("shakespeare", 10, 1.0, 0) is shakespeare_source()
    src = make_source("dirichlet", 10, 1.0, 5)
    assert torch.equal(src.bigram, dirichlet_source(10, 1.0, 5).bigram)
    with pytest.raises(ConfigError, match="shakespeare, dirichlet"):
        make_source("markov", 10, 1.0, 0)


def test_bigram_source_validation():
    uni = torch.full((3,), 1 / 3, dtype=torch.float64)
    with pytest.raises(ConfigError, match="rows"):
        BigramSource("bad", uni, torch.ones(3, 3, dtype=torch.float64))
    with pytest.raises(ConfigError, match="vocab"):
        BigramSource("bad", uni, torch.full((3, 3), 1 / 3, dtype=torch.float64), vocab="ab")
    with pytest.raises(ConfigError):
        BigramSource("bad", uni, torch.full((2, 2), 0.5, dtype=torch.float64))
