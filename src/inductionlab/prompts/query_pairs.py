"""Query pairs and settings of designed prompts (docs/science.md §5), as the hijack experiment and patching use them.

A **setting** fixes what the theory varies (family, ``T``, ``n``, the pair's position, ``n_b``/``n_c``,
planted copies); its prompts are drawn from several **query pairs** ``(a, b, c, rival)``, so that
the bigram term ``g_ab − g_a,rival`` varies *inside* a setting and a within-setting statistic has
something other than filler noise to explain. The same pairs serve every setting, and the prompts
are a pure function of (setting, pair, source): every trained model sees the same prompts.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from inductionlab.errors import ConfigError
from inductionlab.prompts.families import PromptSpec, default_pair, global_favourite, make_prompts
from inductionlab.tasks.sources import BigramSource

PAIR_SEED = 5  # the seed the hijack experiment draws its query pairs with (patching draws seed 0's pairs from it)


@dataclass(frozen=True)
class QueryPair:
    """The tokens of one query: ``a`` (query), ``b`` (planted successor), ``c`` (the conflict family's
    second successor) and ``rival = j* = argmax_j π_b(j|a)``, the stored favourite."""

    a: int
    b: int
    c: int
    rival: int


def query_pairs(source: BigramSource, n_pairs: int, seed: int, *, exclude: Sequence[int] = (), pool: int = 16,
                max_prob: float = 0.01, allow_fewer: bool = False) -> list[QueryPair]:
    """``n_pairs`` query pairs with distinct ``a`` (seeded).

    ``a`` comes from the ``pool`` most frequent tokens under ``π_u`` that are not in ``exclude`` and
    whose stored favourite ``j*`` is another token; the §5 prototype (``'t'``, ``'z'`` on tiny
    Shakespeare) is the first pair when it qualifies. ``b`` and ``c`` are *unlikely* after ``a``
    (docs/science.md §5): drawn uniformly from the tokens other than ``a`` and ``j*`` with
    ``π_b(· | a) < max_prob``, so the bigram term varies between pairs while the context, not the
    bigram, is what can make ``b`` win. With ``allow_fewer``, fewer candidate queries than
    ``n_pairs`` give fewer pairs instead of an error.
    """
    excluded = {int(t) for t in exclude}
    order = [t for t in torch.argsort(source.unigram, descending=True).tolist()
             if t not in excluded and global_favourite(source, t) != t][:pool]
    if len(order) < n_pairs and not (allow_fewer and order):
        raise ConfigError(f"query pairs: the source has {len(order)} candidate query tokens, fewer than {n_pairs}")
    gen = torch.Generator().manual_seed(seed)
    a0, b0, _ = default_pair(source)
    queries = [a0] if a0 in order else []
    queries += [t for t in (order[i] for i in torch.randperm(len(order), generator=gen).tolist()) if t not in queries]
    pairs = []
    for a in queries[:n_pairs]:
        rival = global_favourite(source, a)
        unlikely = [t for t in range(source.n_tokens) if t not in (a, rival) and float(source.bigram[a, t]) < max_prob]
        if len(unlikely) < 2:
            raise ConfigError(f"query pairs: token {a} has fewer than two successors with π_b < {max_prob}")
        if a == a0 and b0 in unlikely and not pairs:
            b = b0
        else:
            b = unlikely[int(torch.randint(len(unlikely), (1,), generator=gen))]
        rest = [t for t in unlikely if t != b]
        pairs.append(QueryPair(a, b, rest[int(torch.randint(len(rest), (1,), generator=gen))], rival))
    return pairs


@dataclass(frozen=True)
class Setting:
    """What the theory varies; the prompts of a setting differ only in pair, filler and placement."""

    family: str
    seq_len: int
    n: int = 0
    position: int | None = None
    n_b: int = 0
    n_c: int = 0
    n_filler: int = 0

    @property
    def label(self) -> str:
        extra = {"count": f"n={self.n}", "non-trigger": f"n={self.n}", "distance": f"s0={self.position}",
                 "conflict": f"n_b={self.n_b} n_c={self.n_c}", "no-context": f"copies={self.n_filler}"}[self.family]
        return f"{self.family} T={self.seq_len} {extra}"


@dataclass
class SettingPrompts:
    """The prompts of one setting over every pair, concatenated pair after pair.

    tokens: (P, T) int64; pair, a, favoured, rival: (P,) int64 (``favoured`` is ``b``, ``rival`` is
    ``j*``, or ``c`` in the conflict family, whose gap is ``ξ_b − ξ_c``); last_pair_end: (P,) int64,
    the 0-based position of the last planted successor (-1 when there is none).
    """

    setting: Setting
    tokens: Tensor
    pair: Tensor
    a: Tensor
    favoured: Tensor
    rival: Tensor
    last_pair_end: Tensor

    def inside(self, train_len: int) -> Tensor:
        """(P,) bool: every planted pair lies at positions ``< train_len``."""
        return self.last_pair_end < train_len


def build_prompts(setting: Setting, pairs: Sequence[QueryPair], per_pair: int, source: BigramSource,
                  triggers: Tensor | None = None) -> SettingPrompts:
    """``per_pair`` prompts of ``setting`` for each pair (seeded by setting and pair)."""
    parts = []
    for i, pair in enumerate(pairs):
        seed = zlib.crc32(f"{setting.label}|{pair.a},{pair.b},{pair.c}".encode())
        spec = PromptSpec(setting.family, setting.seq_len, pair.a, pair.b,
                          pair.c if setting.family == "conflict" else None, n=setting.n, n_b=setting.n_b,
                          n_c=setting.n_c, position=setting.position, n_filler=setting.n_filler,
                          n_prompts=per_pair, seed=seed)
        batch = make_prompts(spec, source, triggers)
        ends = (batch.pair_positions + 1).max(dim=1).values if batch.pair_positions.shape[1] else None
        rival = pair.c if setting.family == "conflict" else pair.rival
        parts.append((batch.tokens, i, pair, rival, ends))
    full = lambda value, p: torch.full((p,), value, dtype=torch.int64)  # noqa: E731
    return SettingPrompts(
        setting=setting,
        tokens=torch.cat([t for t, *_ in parts]),
        pair=torch.cat([full(i, len(t)) for t, i, *_ in parts]),
        a=torch.cat([full(p.a, len(t)) for t, _, p, *_ in parts]),
        favoured=torch.cat([full(p.b, len(t)) for t, _, p, *_ in parts]),
        rival=torch.cat([full(r, len(t)) for t, _, _, r, _ in parts]),
        last_pair_end=torch.cat([e if e is not None else full(-1, len(t)) for t, *_, e in parts]),
    )


def core_settings(preset: dict) -> list[Setting]:
    """Families 1–3: count (every ``n`` × ``T``), distance (positions × ``T``), conflict (docs/science.md §5)."""
    out = [Setting("count", t, n=n) for t in preset["count_T"] for n in preset["count_n"] if 2 * n + 1 <= t]
    for t in preset["distance_T"]:
        for frac in (0.05, 0.25, 0.5, 0.75, 0.95):
            out.append(Setting("distance", t, position=min(max(int(frac * t), 0), t - 3)))
    out += [Setting("conflict", 64, n_b=n_b, n_c=n_c)
            for n_b, n_c in ((1, 0), (0, 1), (1, 1), (2, 1), (1, 2), (3, 1), (1, 3), (2, 2))]
    return out


def unigram_settings(preset: dict) -> list[Setting]:
    """Family 5 with planted copies of a filler token ``b``: the in-context unigram term (§4.4 (v))."""
    return [Setting("no-context", t, n_filler=k) for t in preset["filler_T"] for k in preset["filler_copies"]
            if k <= t - 1]


def non_trigger_settings(preset: dict) -> list[Setting]:
    """Family 4: pairs ``(a, b)`` for a query the fixed-trigger model never saw as a trigger."""
    return [Setting("non-trigger", 64, n=n) for n in preset["non_trigger_n"]]


def trigger_contrast_settings(preset: dict) -> list[Setting]:
    """The same sweep with a trigger as the query: what copying looks like on the same model."""
    return [Setting("count", 64, n=n) for n in preset["non_trigger_n"]]
