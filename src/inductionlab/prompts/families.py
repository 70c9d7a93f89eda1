"""Designed prompt families (docs/science.md §5), built from a seeded :class:`PromptSpec`.

Every prompt is ``z_1..z_T`` (0-based ``tokens[:, 0..T-1]``) and ends in the query ``a``
(``tokens[:, -1] == a``). Apart from the query, ``a`` appears *only* where the family plants it,
always immediately followed by its successor, so the in-context evidence is exactly the spec:

- ``count``:       ``n`` pairs ``(a, b)`` at seeded random non-overlapping places;
- ``distance``:    one pair ``(a, b)`` with ``a`` at 0-based ``position``;
- ``conflict``:    ``n_b`` pairs ``(a, b)`` and ``n_c`` pairs ``(a, c)``, places and order seeded;
- ``non-trigger``: as ``count``, for a fixed-trigger model and ``a ∉ Q`` (checked when the triggers
  are given);
- ``no-context``:  no pair at all: ``a`` occurs only as the query; optionally ``n_filler`` copies of
  ``b`` planted as single tokens at seeded random places (the in-context unigram term of §4.4 (v)).

**The filler.** Every other token is a bigram chain *without* ``a``: ``z_1 ~ π_u(· | ≠ a)``, and
each unplanted token is drawn from ``π_b(·|z_{t-1})`` restricted to tokens ``≠ a`` and renormalised
(a row whose whole mass is on ``a`` falls back to ``π_u(· | ≠ a)``). The chain runs *through* the
planted tokens: the token after a planted successor ``b`` is drawn from ``π_b(·|b)`` without ``a``,
so planting never creates an extra ``a`` or an extra ``(a, x)`` pair. (The token *before* a planted
``a`` is an ordinary filler draw, not conditioned on the ``a`` that follows it.)

**Placement.** The ``m`` pairs occupy ``m`` non-overlapping dominoes in the ``T - 1`` cells before
the query (so ``2m + 1 ≤ T``); the placement is uniform over all such arrangements: draw ``m``
sorted distinct values ``v_k`` from ``[0, T - 1 - m)`` and put pair ``k`` at ``v_k + k``.

Randomness is drawn in a fixed order (placements, conflict order, planted ``b`` copies, filler) from
``torch.Generator().manual_seed(spec.seed)`` on the CPU, so a batch is a pure function of
(spec, source).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, replace

import torch

from inductionlab.errors import ConfigError
from inductionlab.tasks.alias import alias_tables
from inductionlab.tasks.sources import BigramSource

FAMILIES = ("count", "distance", "conflict", "non-trigger", "no-context")
_NEEDS_B = ("count", "distance", "conflict", "non-trigger")


@dataclass(frozen=True)
class PromptSpec:
    """One designed family (docs/science.md §5) and its parameters.

    family:    one of FAMILIES.
    seq_len:   T, the prompt length including the final query token ``a``; T ≥ 2.
    a:         the query token.
    b:         the in-context successor (chosen unlikely after ``a`` under ``π_b``); required by
               every family but ``no-context`` (where it only names a contending token).
    c:         the second successor (``conflict`` only).
    n:         number of ``(a, b)`` pairs (``count``, ``non-trigger``); ignored elsewhere.
    n_b, n_c:  ``conflict``: number of pairs ``(a, b)`` and ``(a, c)``.
    position:  ``distance``: 0-based position of ``a`` in the single pair; ``position + 1 < T - 1``.
    n_filler:  ``no-context``: copies of ``b`` planted as single tokens before the query (needs ``b``).
    n_prompts: how many prompts (different fillers and placements) to draw.
    seed:      the generator seed.
    """

    family: str
    seq_len: int
    a: int
    b: int | None = None
    c: int | None = None
    n: int = 1
    n_b: int = 0
    n_c: int = 0
    position: int | None = None
    n_filler: int = 0
    n_prompts: int = 64
    seed: int = 0

    @property
    def n_pairs(self) -> int:
        """How many ``(a, ·)`` pairs each prompt holds before the query."""
        if self.family in ("count", "non-trigger"):
            return self.n
        if self.family == "distance":
            return 1
        if self.family == "conflict":
            return self.n_b + self.n_c
        return 0


@dataclass
class PromptBatch:
    """``n_prompts`` prompts of one spec.

    tokens:         (P, T) int64; ``tokens[:, -1] == a``.
    pair_positions: (P, n_pairs) int64, ascending: 0-based position of each in-context ``a`` (each
                    is followed by its successor); -1 pads rows with fewer pairs (none here: every
                    family puts the same number of pairs in each prompt).
    successors:     (P, n_pairs) int64: the token after each such ``a``; -1 where padded.
    j_star:         ``argmax_j π_b(j|a)``, the global favourite (see :func:`global_favourite`).
    n_tokens:       the source's vocabulary size N (the width of the count tables).
    """

    spec: PromptSpec
    tokens: torch.Tensor
    pair_positions: torch.Tensor
    successors: torch.Tensor
    j_star: int
    n_tokens: int

    @property
    def n_prompts(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.tokens.shape[1])

    def decode(self, source: BigramSource, i: int = 0, marked: bool = False) -> str:
        """The text of prompt ``i``.

        With ``marked=False`` (default) exactly ``source.decode(tokens[i])``, so
        ``source.encode`` inverts it. With ``marked=True`` each planted pair is wrapped in square
        brackets and the query too, e.g. ``"…an[tz]he wor[t]"`` for a character source (neither
        bracket is a tiny-Shakespeare character); for a synthetic source ``"… [3 7] … [3]"``.
        Marked text is for reading, not for ``encode``.
        """
        if not -self.n_prompts <= i < self.n_prompts:
            raise ConfigError(f"prompt index i={i} is outside [0, {self.n_prompts})")
        row = self.tokens[i]
        if not marked:
            return source.decode(row)
        starts = {int(p) for p in self.pair_positions[i].tolist() if p >= 0}
        t_len = row.shape[0]
        sep = "" if source.vocab is not None else " "
        parts: list[str] = []
        t = 0
        while t < t_len:
            if t in starts:
                parts.append("[" + source.decode(row[t : t + 2]) + "]")
                t += 2
            elif t == t_len - 1:
                parts.append("[" + source.decode(row[t : t + 1]) + "]")
                t += 1
            else:
                parts.append(source.decode(row[t : t + 1]))
                t += 1
        return sep.join(parts)

    def counts(self) -> dict[str, torch.Tensor]:
        """The in-context counts of docs/science.md §4.4, per prompt, over the keys ``s = 1..T`` (1-based).

        A key ``s`` *matches* when ``z_{s-1} = a``. Key ``s = 1`` has no previous token; in the
        ``α_1 → ∞`` limit its layer-1 attention is on itself, so it matches when ``z_1 = a`` (read
        ``z_0 := z_1``), the convention of ``theory/closed_form.py``. This only matters when a pair
        sits at position 0: then ``n`` is one more than the number of pairs and ``c_a`` is 1.

        n:        (P,) number of matching keys;
        c:        (P, N) ``c_j`` = matching keys with ``z_s = j``;
        u:        (P, N) ``u_j`` = the other keys with ``z_s = j`` (so ``Σ_j (c_j + u_j) = T``);
        n_pairs:  (P,) in-context pairs: ``#{t < T-1 : z_t = a}`` (0-based), the spec's ``n``,
                  ``1`` or ``n_b + n_c``;
        c_b, u_b, c_c, u_c, c_j_star, u_j_star: (P,) the columns of the contending tokens (the
                  ``_b`` keys when the spec names ``b``, the ``_c`` keys for ``conflict``).

        In every family ``z_{T-1} ≠ a``, so key ``s = T`` never matches.
        """
        tokens = self.tokens
        spec = self.spec
        previous = torch.cat((tokens[:, :1], tokens[:, :-1]), dim=1)  # z_{s-1}, with z_0 := z_1
        matches = (previous == spec.a).to(torch.int64)
        c = torch.zeros(tokens.shape[0], self.n_tokens, dtype=torch.int64, device=tokens.device)
        c.scatter_add_(1, tokens, matches)
        u = torch.zeros_like(c).scatter_add_(1, tokens, 1 - matches)
        n_pairs = (tokens[:, :-1] == spec.a).sum(dim=1)
        out = {"n": matches.sum(dim=1), "c": c, "u": u, "n_pairs": n_pairs}
        for key, tok in (("b", spec.b), ("c", spec.c), ("j_star", self.j_star)):
            if tok is not None and (key != "c" or spec.family == "conflict"):
                out[f"c_{key}"] = c[:, tok]
                out[f"u_{key}"] = u[:, tok]
        return out

    def to(self, device: torch.device | str) -> PromptBatch:
        """A copy with every tensor on ``device``."""
        return replace(
            self,
            tokens=self.tokens.to(device),
            pair_positions=self.pair_positions.to(device),
            successors=self.successors.to(device),
        )


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"PromptSpec.{name} must be an integer, got {value!r}")
    if value < low:
        raise ConfigError(f"PromptSpec.{name} must be ≥ {low}, got {value}")
    return value


def _check_token(name: str, value: object, n_tokens: int) -> None:
    _check_int(name, value, 0)
    if value >= n_tokens:  # type: ignore[operator]
        raise ConfigError(f"PromptSpec.{name}={value} is outside the vocabulary [0, {n_tokens})")


def validate_spec(spec: PromptSpec, source: BigramSource) -> None:
    """Raise ConfigError (naming the field) when ``spec`` cannot be built on ``source``."""
    if spec.family not in FAMILIES:
        raise ConfigError(f"PromptSpec.family {spec.family!r} is unknown; allowed: {', '.join(FAMILIES)}")
    t_len = _check_int("seq_len", spec.seq_len, 2)
    _check_int("n_prompts", spec.n_prompts, 1)
    _check_int("seed", spec.seed, -(2**63))
    n = source.n_tokens
    _check_token("a", spec.a, n)
    if spec.family in _NEEDS_B and spec.b is None:
        raise ConfigError(f"PromptSpec.b is required by family {spec.family!r}")
    if spec.b is not None:
        _check_token("b", spec.b, n)
        if spec.b == spec.a:
            raise ConfigError(f"PromptSpec.b must differ from a (both {spec.a})")
    if spec.family == "conflict":
        if spec.c is None:
            raise ConfigError("PromptSpec.c is required by family 'conflict'")
        _check_token("c", spec.c, n)
        if spec.c == spec.a:
            raise ConfigError(f"PromptSpec.c must differ from a (both {spec.a})")
        if spec.c == spec.b:
            raise ConfigError(f"PromptSpec.c must differ from b (both {spec.b})")
        n_b, n_c = _check_int("n_b", spec.n_b, 0), _check_int("n_c", spec.n_c, 0)
        if 2 * (n_b + n_c) + 1 > t_len:
            raise ConfigError(
                f"PromptSpec.n_b + n_c = {n_b + n_c} pairs do not fit in seq_len={t_len}: need 2·(n_b+n_c) + 1 ≤ T"
            )
    if spec.family in ("count", "non-trigger"):
        if 2 * _check_int("n", spec.n, 0) + 1 > t_len:
            raise ConfigError(f"PromptSpec.n = {spec.n} pairs do not fit in seq_len={t_len}: need 2·n + 1 ≤ T")
    if _check_int("n_filler", spec.n_filler, 0) and spec.family != "no-context":
        raise ConfigError(f"PromptSpec.n_filler is for family 'no-context' only, not {spec.family!r}")
    if spec.n_filler:
        if spec.b is None:
            raise ConfigError("PromptSpec.n_filler needs b, the token to plant")
        if spec.n_filler > t_len - 1:
            raise ConfigError(f"PromptSpec.n_filler = {spec.n_filler} does not fit in seq_len={t_len}: "
                              "need n_filler ≤ T - 1")
    if spec.family == "distance":
        if spec.position is None:
            raise ConfigError("PromptSpec.position is required by family 'distance'")
        position = _check_int("position", spec.position, 0)
        if position + 1 >= t_len - 1:
            raise ConfigError(
                f"PromptSpec.position={position} out of range for seq_len={t_len}: need position ≤ T - 3 = {t_len - 3}"
            )
    without_a = source.unigram.clone()
    without_a[spec.a] = 0.0
    if not bool((without_a > 0).any()):
        raise ConfigError(f"PromptSpec.a={spec.a}: the source has no other token to fill the prompt with")


def global_favourite(source: BigramSource, a: int) -> int:
    """``j* = argmax_j π_b(j|a)``, the bigram's favourite successor of ``a`` (docs/science.md §4.4 (i)).

    Ties go to the smallest id. ``j*`` may equal ``a`` itself (e.g. newline after newline).
    """
    return int(torch.argmax(source.bigram[a]))


def default_pair(source: BigramSource) -> tuple[int, int, int]:
    """``(a, b, j*)`` for the designed prompts (docs/science.md §5).

    A character source holding ``'t'`` and ``'z'`` (tiny Shakespeare) gets the §5 prototype
    ``a = 't'``, ``b = 'z'`` (``π_b('z'|'t') ≈ 4.5e-5``). Any other source gets the most frequent
    token under ``π_u`` as ``a`` and its least likely successor ``b ≠ a`` under ``π_b(·|a)`` (ties
    to the smallest id). ``j* = argmax_j π_b(j|a)`` in both cases (``'h'`` for Shakespeare,
    ``π_b('h'|'t') ≈ 0.34``).
    """
    if source.vocab is not None and "t" in source.vocab and "z" in source.vocab:
        a, b = source.vocab.index("t"), source.vocab.index("z")
    else:
        if source.n_tokens < 2:
            raise ConfigError(f"source {source.name!r} has a single token: no pair (a, b) with b ≠ a")
        a = int(torch.argmax(source.unigram))
        row = source.bigram[a].clone()
        row[a] = float("inf")
        b = int(torch.argmin(row))
    return a, b, global_favourite(source, a)


def contending_tokens(spec: PromptSpec, source: BigramSource) -> tuple[int, ...]:
    """The tokens whose logits docs/science.md §5 compares: ``(b, j*)``, or ``(b, c, j*)`` for ``conflict``.

    For ``no-context`` without ``b``: ``(j*,)``. Entries can coincide (when ``j*`` is ``b`` or
    ``c``); the gaps are then zero by construction, which is worth knowing rather than hiding.
    """
    validate_spec(spec, source)
    j_star = global_favourite(source, spec.a)
    if spec.family == "conflict":
        return (spec.b, spec.c, j_star)  # type: ignore[return-value]
    if spec.b is None:
        return (j_star,)
    return (spec.b, j_star)


def _pair_placements(spec: PromptSpec, generator: torch.Generator) -> torch.Tensor:
    """(P, m) int64 ascending 0-based positions of the ``a`` of each pair (see module docstring)."""
    p, m, t_len = spec.n_prompts, spec.n_pairs, spec.seq_len
    if spec.family == "distance":
        return torch.full((p, 1), spec.position, dtype=torch.int64)  # type: ignore[arg-type]
    if m == 0:
        return torch.empty((p, 0), dtype=torch.int64)
    free = t_len - 1 - m  # choose m of these "compressed" slots, then spread them apart by k
    keys = torch.rand((p, free), generator=generator, dtype=torch.float64)
    chosen = keys.argsort(dim=1)[:, :m].sort(dim=1).values
    return chosen + torch.arange(m, dtype=torch.int64)


def _pair_successors(spec: PromptSpec, generator: torch.Generator) -> torch.Tensor:
    """(P, m) int64: the successor of each pair, in position order."""
    p, m = spec.n_prompts, spec.n_pairs
    if spec.family != "conflict":
        return torch.full((p, m), -1 if spec.b is None else spec.b, dtype=torch.int64)
    base = torch.tensor([spec.b] * spec.n_b + [spec.c] * spec.n_c, dtype=torch.int64)
    if m == 0:
        return torch.empty((p, 0), dtype=torch.int64)
    order = torch.rand((p, m), generator=generator, dtype=torch.float64).argsort(dim=1)
    return base[order]


_FILLER_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # source → {a: tables}


def _filler_tables(source: BigramSource, a: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The tables of :func:`_build_filler_tables`, built once per (source, a) (never modified)."""
    by_query = _FILLER_TABLES.setdefault(source, {})
    if a not in by_query:
        by_query[a] = _build_filler_tables(source, a)
    return by_query[a]


def _build_filler_tables(source: BigramSource, a: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat alias tables for the filler chain without ``a``: N + 1 rows of N.

    Row ``i < N`` is ``π_b(·|i)`` with column ``a`` removed and renormalised (falling back to the
    start row when nothing is left); row ``N`` (the start) is ``π_u`` without ``a``. Returned as
    ``threshold`` (column + prob, so a draw ``v ∈ [0, N)`` keeps ``⌊v⌋`` iff ``v < threshold``) and
    ``alias``, both flattened to ``((N+1)·N,)``.
    """
    start = source.unigram.to(torch.float64).clone()
    start[a] = 0.0
    rows = source.bigram.to(torch.float64).clone()
    rows[:, a] = 0.0
    empty = rows.sum(dim=1) <= 0
    rows[empty] = start
    weights = torch.cat([rows, start[None]], dim=0)
    prob, alias = alias_tables(weights)
    n = source.n_tokens
    threshold = prob + torch.arange(n, dtype=torch.float64)
    return threshold.reshape(-1), alias.reshape(-1)


def make_prompts(spec: PromptSpec, source: BigramSource, triggers: torch.Tensor | None = None) -> PromptBatch:
    """Build ``spec.n_prompts`` prompts of one docs/science.md §5 family (see the module docstring).

    triggers: the fixed triggers ``Q`` of the model the prompts are for (any shape of int ids);
    ``non-trigger`` raises ConfigError when ``a ∈ Q``. Other families ignore it.
    Returns CPU tensors; time loop over T, vectorised over the prompts.
    """
    validate_spec(spec, source)
    if spec.family == "non-trigger" and triggers is not None:
        if bool((torch.as_tensor(triggers).reshape(-1).cpu() == spec.a).any()):
            raise ConfigError(f"PromptSpec.a={spec.a} is a fixed trigger: family 'non-trigger' needs a ∉ Q")
    generator = torch.Generator(device="cpu").manual_seed(spec.seed)
    positions = _pair_placements(spec, generator)
    successors = _pair_successors(spec, generator)

    p, t_len, n = spec.n_prompts, spec.seq_len, source.n_tokens
    forced = torch.full((p, t_len), -1, dtype=torch.int64)
    forced.scatter_(1, positions, spec.a)
    forced.scatter_(1, positions + 1, successors)
    if spec.n_filler:  # single copies of b at seeded distinct cells before the query
        cells = torch.rand((p, t_len - 1), generator=generator, dtype=torch.float64).argsort(dim=1)[:, : spec.n_filler]
        forced.scatter_(1, cells, spec.b)
    forced[:, -1] = spec.a

    threshold, alias = _filler_tables(source, spec.a)
    v = torch.rand((t_len, p), generator=generator, dtype=torch.float64).mul_(n)
    col = v.to(torch.int64).clamp_max_(n - 1)
    forced = forced.T.contiguous()  # (T, P): one contiguous row per time step
    is_forced = forced >= 0
    by_time = torch.empty((t_len, p), dtype=torch.int64)
    previous = torch.full((p,), n, dtype=torch.int64)  # row N: the start distribution
    idx = torch.empty(p, dtype=torch.int64)
    for t in range(t_len):
        torch.add(col[t], previous, alpha=n, out=idx)
        drawn = torch.where(v[t] < threshold.index_select(0, idx), col[t], alias.index_select(0, idx))
        torch.where(is_forced[t], forced[t], drawn, out=by_time[t])
        previous = by_time[t]
    return PromptBatch(
        spec=spec,
        tokens=by_time.T.contiguous(),
        pair_positions=positions,
        successors=successors,
        j_star=global_favourite(source, spec.a),
        n_tokens=n,
    )
