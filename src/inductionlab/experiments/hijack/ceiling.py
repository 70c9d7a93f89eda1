"""The noise ceiling of the hijack gaps (docs/science.md §7.1): the same prompts with their filler re-drawn.

A prediction's within-setting R² is read against what is reproducible at all: the same setting and
query pair ``(a, b, c, rival)``, the same counts, with the filler (and, where the family places its
pairs at random, their places) drawn again from another prompt seed. :func:`redrawn_prompts` builds
them exactly as :func:`~inductionlab.prompts.query_pairs.build_prompts` builds the prompts, with the
draw mixed into each seed; :func:`redrawn_gaps` runs only the model on them (no prediction), so the
ceiling costs one forward pass per prompt; :func:`~.stats.noise_ceiling` compares the two draws.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from inductionlab.experiments.hijack.eval import last_position
from inductionlab.prompts.families import PromptSpec, make_prompts
from inductionlab.prompts.query_pairs import QueryPair, Setting, SettingPrompts
from inductionlab.tasks.sources import BigramSource

REDRAW = 1  # the draw of the ceiling's prompts (0 would be the prompts themselves)


def redrawn_prompts(setting: Setting, pairs: Sequence[QueryPair], per_pair: int, source: BigramSource,
                    draw: int = REDRAW) -> SettingPrompts:
    """``per_pair`` prompts of ``setting`` for each pair, seeded by (setting, pair, ``draw``): row by row the
    same setting, pair and counts as ``build_prompts``' prompts, with another filler."""
    if draw < 1:
        raise ValueError(f"redrawn_prompts: draw must be ≥ 1 (0 is the prompts themselves), got {draw}")
    parts = []
    for i, pair in enumerate(pairs):
        seed = zlib.crc32(f"{setting.label}|{pair.a},{pair.b},{pair.c}|draw {draw}".encode())
        conflict = setting.family == "conflict"
        spec = PromptSpec(setting.family, setting.seq_len, pair.a, pair.b, pair.c if conflict else None,
                          n=setting.n, n_b=setting.n_b, n_c=setting.n_c, position=setting.position,
                          n_filler=setting.n_filler, n_prompts=per_pair, seed=seed)
        batch = make_prompts(spec, source)
        ends = ((batch.pair_positions + 1).max(dim=1).values if batch.pair_positions.shape[1]
                else torch.full((per_pair,), -1, dtype=torch.int64))
        parts.append((batch.tokens, i, pair, pair.c if conflict else pair.rival, ends))

    def full(value: int, like: Tensor) -> Tensor:
        return torch.full((len(like),), value, dtype=torch.int64)

    return SettingPrompts(setting=setting, tokens=torch.cat([t for t, *_ in parts]),
                          pair=torch.cat([full(i, t) for t, i, *_ in parts]),
                          a=torch.cat([full(p.a, t) for t, _, p, *_ in parts]),
                          favoured=torch.cat([full(p.b, t) for t, _, p, *_ in parts]),
                          rival=torch.cat([full(r, t) for t, _, _, r, _ in parts]),
                          last_pair_end=torch.cat([e for *_, e in parts]))


@dataclass
class RedrawnGaps:
    """The model's gaps on the re-drawn prompts, (P,) each, in the order of the prompt table's rows."""

    setting: Tensor
    pair: Tensor
    inside: Tensor
    gap: Tensor


@torch.no_grad()
def redrawn_gaps(model, prompts: Sequence[SettingPrompts], train_len: int) -> RedrawnGaps:
    """The model's gap ``ξ_b − ξ_rival`` on every re-drawn prompt (settings in the order given)."""
    rows = []
    for index, batch in enumerate(prompts):
        logits, _ = last_position(model, batch.tokens)
        gap = (logits.gather(1, batch.favoured[:, None]) - logits.gather(1, batch.rival[:, None]))[:, 0].double()
        rows.append((torch.full_like(batch.pair, index), batch.pair, batch.inside(train_len), gap))
    return RedrawnGaps(*(torch.cat(column) for column in zip(*rows, strict=True)))
