"""Bigram sources: the fixed distributions ``π_u`` and ``π_b(·|i)`` of docs/science.md §2.

Two sources:

- **shakespeare** (default): character-level tiny Shakespeare, ``N = 65``, vocabulary in sorted
  code-point order (id 0 is newline, id 1 is space). The package ships only the derived counts
  (``inductionlab/data/shakespeare_counts.json``, written by ``scripts/derive_shakespeare_counts.py``
  through :func:`derive_counts`); the text itself never enters the repository.
- **dirichlet**: rows ``π_b(·|i) ~ Dirichlet(concentration)`` drawn from a seed, ``π_u`` the
  stationary distribution of that chain; any ``N``, no file needed.

A source is data only: the sampler (``tasks/bigram.py``) turns it into sequences.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np
import torch

from inductionlab.errors import ConfigError

SOURCE_NAMES = ("shakespeare", "dirichlet")
SHAKESPEARE_COUNTS_FILE = "shakespeare_counts.json"


@dataclass(frozen=True, eq=False)
class BigramSource:
    """The two distributions of docs/science.md §2 over the vocabulary ``[N]``.

    name:    "shakespeare", or "dirichlet(N=…, concentration=…, seed=…)".
    unigram: (N,) float64, ``π_u``; sums to 1.
    bigram:  (N, N) float64, row-stochastic, ``π_b(j|i)`` at ``[i, j]``.
    vocab:   the N characters for decoding (character sources), ``None`` for synthetic ones.

    Frozen so a cached source cannot be rebound; the tensors are shared (e.g. by the cached
    :func:`shakespeare_source`), so never modify them in place. ``eq=False``: sources compare by
    identity, since elementwise tensor equality has no single truth value.
    """

    name: str
    unigram: torch.Tensor
    bigram: torch.Tensor
    vocab: str | None = None

    def __post_init__(self) -> None:
        n = self.unigram.shape[0] if self.unigram.dim() == 1 else -1
        if n < 1 or self.bigram.shape != (n, n):
            raise ConfigError(
                f"BigramSource {self.name!r}: unigram must be (N,) and bigram (N, N); got "
                f"{tuple(self.unigram.shape)} and {tuple(self.bigram.shape)}"
            )
        if self.vocab is not None and len(self.vocab) != n:
            raise ConfigError(f"BigramSource {self.name!r}: vocab has {len(self.vocab)} characters, N = {n}")
        if not torch.allclose(self.unigram.sum(), torch.ones((), dtype=self.unigram.dtype), atol=1e-9):
            total = float(self.unigram.sum())
            raise ConfigError(f"BigramSource {self.name!r}: unigram sums to {total}, not 1")
        row_sums = self.bigram.sum(dim=1)
        if not torch.allclose(row_sums, torch.ones_like(row_sums), atol=1e-9):
            raise ConfigError(f"BigramSource {self.name!r}: bigram rows must sum to 1")

    @property
    def n_tokens(self) -> int:
        """The vocabulary size ``N``."""
        return int(self.unigram.shape[0])

    def decode(self, tokens: torch.Tensor | Sequence[int]) -> str:
        """Token ids (1-D) to text: characters for a vocab source, space-separated ids otherwise."""
        ids = [int(t) for t in (tokens.reshape(-1).tolist() if isinstance(tokens, torch.Tensor) else tokens)]
        bad = [i for i in ids if not 0 <= i < self.n_tokens]
        if bad:
            raise ConfigError(f"token id {bad[0]} is outside the vocabulary [0, {self.n_tokens})")
        if self.vocab is None:
            return " ".join(str(i) for i in ids)
        return "".join(self.vocab[i] for i in ids)

    def encode(self, text: str) -> torch.Tensor:
        """Text to token ids ``(len,) int64``; the inverse of :meth:`decode`.

        For a synthetic source the text is whitespace-separated integer ids.
        Raises ConfigError naming the first character (or id) outside the vocabulary.
        """
        if self.vocab is None:
            ids = []
            for word in text.split():
                if not word.isdigit() or int(word) >= self.n_tokens:
                    raise ConfigError(
                        f"unknown token {word!r} for source {self.name!r}: "
                        f"expected ids in [0, {self.n_tokens})"
                    )
                ids.append(int(word))
            return torch.tensor(ids, dtype=torch.int64)
        index = {c: i for i, c in enumerate(self.vocab)}
        for c in text:
            if c not in index:
                raise ConfigError(f"unknown character {c!r} for source {self.name!r}")
        return torch.tensor([index[c] for c in text], dtype=torch.int64)


def derive_counts(text: str) -> dict:
    """Character counts of ``text`` as shipped in ``shakespeare_counts.json`` (docs/science.md §2).

    Returns a JSON-ready dict of plain ints and strings:
      vocab:          the sorted distinct characters, one string of length N (code-point order);
      unigram_counts: N ints, occurrences of each character in the whole text;
      bigram_counts:  N lists of N ints, ``[i][j]`` = occurrences of the adjacent pair (i, j);
      n_chars:        len(text).
    """
    if not text:
        return {"vocab": "", "unigram_counts": [], "bigram_counts": [], "n_chars": 0}
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    code_points, ids = np.unique(codes, return_inverse=True)
    n = len(code_points)
    ids = ids.astype(np.int64).reshape(-1)
    unigram = np.bincount(ids, minlength=n)
    bigram = np.bincount(ids[:-1] * n + ids[1:], minlength=n * n).reshape(n, n)
    return {
        "vocab": "".join(chr(int(c)) for c in code_points),
        "unigram_counts": [int(c) for c in unigram],
        "bigram_counts": [[int(c) for c in row] for row in bigram],
        "n_chars": len(text),
    }


def load_shakespeare_counts() -> dict:
    """The shipped counts (the dict :func:`derive_counts` returns for tiny Shakespeare)."""
    path = resources.files("inductionlab").joinpath("data").joinpath(SHAKESPEARE_COUNTS_FILE)
    return json.loads(path.read_text(encoding="utf-8"))


def source_from_counts(name: str, counts: dict) -> BigramSource:
    """A source from character counts: ``π_u`` = counts / total, ``π_b`` = row-normalised pairs.

    A character whose bigram row is all zero (it occurs only as the text's last character)
    has no observed successor; its row falls back to ``π_u`` so every row stays a distribution.
    (Tiny Shakespeare has no such row: its last character, newline, also occurs elsewhere.)
    """
    unigram_counts = torch.tensor(counts["unigram_counts"], dtype=torch.float64)
    bigram_counts = torch.tensor(counts["bigram_counts"], dtype=torch.float64)
    unigram = unigram_counts / unigram_counts.sum()
    row_totals = bigram_counts.sum(dim=1, keepdim=True)
    bigram = torch.where(row_totals > 0, bigram_counts / row_totals.clamp_min(1.0), unigram)
    return BigramSource(name=name, unigram=unigram, bigram=bigram, vocab=counts["vocab"])


@functools.lru_cache(maxsize=1)
def shakespeare_source() -> BigramSource:
    """Character-level tiny Shakespeare, ``N = 65`` (docs/science.md §2, default source). Cached."""
    return source_from_counts("shakespeare", load_shakespeare_counts())


def stationary_distribution(bigram: torch.Tensor) -> torch.Tensor:
    """The stationary distribution ``π`` with ``π P = π``, ``Σ π = 1`` of a row-stochastic ``P``.

    bigram: (N, N) float64.  Returns (N,) float64.
    Solves ``(Pᵀ - I) π = 0`` with one equation replaced by ``Σ π = 1`` (unique when the chain
    has a single recurrent class, as a Dirichlet chain with positive rows does), then polishes
    with a few power-iteration steps. Raises ConfigError when no valid distribution comes out.
    """
    p = bigram.to(torch.float64)
    n = p.shape[0]
    system = p.T - torch.eye(n, dtype=torch.float64)
    system[-1] = 1.0
    rhs = torch.zeros(n, dtype=torch.float64)
    rhs[-1] = 1.0
    try:
        pi = torch.linalg.solve(system, rhs)
    except RuntimeError:  # singular: several recurrent classes; take the long-run average from uniform
        pi = torch.full((n,), 1.0 / n, dtype=torch.float64)
        lazy = 0.5 * (p + torch.eye(n, dtype=torch.float64))
        for _ in range(10_000):
            pi = pi @ lazy
    pi = pi.clamp_min(0.0)
    pi = pi / pi.sum()
    for _ in range(5):
        pi = pi @ p
    pi = pi / pi.sum()
    residual = float((pi @ p - pi).abs().max())
    if not torch.isfinite(pi).all() or residual > 1e-9 or abs(float(pi.sum()) - 1.0) > 1e-12:
        raise ConfigError(f"could not find a stationary distribution (residual {residual:.2e})")
    return pi


def dirichlet_source(n_tokens: int, concentration: float, seed: int) -> BigramSource:
    """A synthetic source: rows ``π_b(·|i) ~ Dirichlet(concentration · 1_N)``, ``π_u`` stationary.

    docs/science.md §2, synthetic source. Rows are drawn as normalised Gamma(concentration) variables from
    ``torch.Generator().manual_seed(seed)`` on the CPU in float64, so the source is identical on
    every machine. Very small concentrations make sparse rows (entries can underflow to 0).
    """
    if isinstance(n_tokens, bool) or not isinstance(n_tokens, int) or n_tokens < 1:
        raise ConfigError(f"n_tokens must be a positive integer, got {n_tokens!r}")
    if not concentration > 0 or not np.isfinite(concentration):
        raise ConfigError(f"concentration must be a positive number, got {concentration!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    alpha = torch.full((n_tokens, n_tokens), float(concentration), dtype=torch.float64)
    gammas = torch._standard_gamma(alpha, generator=generator)
    totals = gammas.sum(dim=1, keepdim=True)
    if not bool((totals > 0).all()):
        raise ConfigError(f"concentration {concentration!r} is too small: a Dirichlet row underflowed to 0")
    bigram = gammas / totals
    unigram = stationary_distribution(bigram)
    name = f"dirichlet(N={n_tokens}, concentration={concentration:g}, seed={seed})"
    return BigramSource(name=name, unigram=unigram, bigram=bigram, vocab=None)


def make_source(name: str, n_tokens: int, concentration: float, seed: int) -> BigramSource:
    """The source named ``name`` (one of SOURCE_NAMES).

    For "shakespeare", ``n_tokens``, ``concentration`` and ``seed`` are ignored (N is 65).
    """
    if name == "shakespeare":
        return shakespeare_source()
    if name == "dirichlet":
        return dirichlet_source(n_tokens, concentration, seed)
    raise ConfigError(f"unknown source {name!r}; allowed: {', '.join(SOURCE_NAMES)}")
