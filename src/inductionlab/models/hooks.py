"""Hook points shared by both model families (docs/science.md §3, §8).

A forward pass takes two optional, explicit arguments (no hook state lives on the module):

- ``cache``: a dict that receives every activation under its TransformerLens-style name;
- ``hooks``: ``{name: fn}``; at the hook point ``name`` the activation is replaced by
  ``fn(value, site)`` before the rest of the forward reads it, and the gradient flows through the
  replacement (docs/science.md §8). ``site`` says where the hook fires: its name, the input tokens
  and the query positions of that layer.

Without either the models take their fast paths, untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from inductionlab.errors import ShapeError


@dataclass(frozen=True)
class HookSite:
    """Where a hook fires. ``tokens``: (B, T) int64 model inputs; ``query_pos``: (Tq,) or (B, Tq) int64,
    the query positions of the layer (every position except in a last layer read at chosen positions)."""

    name: str
    tokens: Tensor
    query_pos: Tensor


HookFn = Callable[[Tensor, HookSite], Tensor]
Hooks = Mapping[str, HookFn]
Forward = Callable[..., Tensor]  # a model, or a callable with its signature (running interventions: interventions.py)
# Row groups: ``[positions (b_1, Tq_1), positions (b_2, Tq_2), …]`` for consecutive blocks of rows that cover the
# batch in order (``Σ b_g = B``). A forward given them as ``query_positions`` returns one ``(b_g, Tq_g, N)`` logits
# tensor per block: the logits of those rows at those positions. The models run the layers below the last once
# for the whole batch where they can, so a loss that reads rows with few targets pads each block only to its own
# widest row (evaluation.training_loss sorts the rows so that such blocks form).
QueryGroups = list[Tensor]


def query_positions_for(tokens: Tensor, query_positions: Tensor | QueryGroups | None) -> Tensor | QueryGroups | None:
    """``query_positions`` of a forward on ``tokens`` (B, T) as the models read them: ``None`` (every position),
    row groups whose blocks cover the batch, or a tensor: (Tq,) the same positions in every row, (1, Tq) read as
    (Tq,), (B, Tq) row by row. Anything else is a ShapeError naming the shapes."""
    batch = tokens.shape[0]
    if query_positions is None:
        return None
    if isinstance(query_positions, list):
        if any(q.dim() != 2 for q in query_positions) or sum(q.shape[0] for q in query_positions) != batch:
            raise ShapeError(f"query_positions: row groups must be (b_g, Tq_g) blocks covering the batch's {batch} "
                             f"rows; got shapes {[tuple(q.shape) for q in query_positions]}")
        return query_positions
    if query_positions.dim() == 2 and query_positions.shape[0] == 1 and batch != 1:
        return query_positions[0]
    if query_positions.dim() == 1 or (query_positions.dim() == 2 and query_positions.shape[0] == batch):
        return query_positions
    raise ShapeError(f"query_positions: expected (Tq,), (1, Tq) or ({batch}, Tq) for tokens of shape "
                     f"{tuple(tokens.shape)}; got {tuple(query_positions.shape)}")


def split_groups(x: Tensor, groups: QueryGroups) -> tuple[Tensor, ...]:
    """``x`` (B, …) cut into the groups' consecutive blocks of rows: views, nothing copied."""
    return torch.split(x, [positions.shape[0] for positions in groups])


def per_group(forward: Forward, tokens: Tensor, groups: QueryGroups, **kwargs) -> list[Tensor]:
    """The logits of each row group from one forward call per group (the path with hooks or a cache)."""
    return [forward(rows, query_positions=positions, **kwargs)
            for rows, positions in zip(split_groups(tokens, groups), groups, strict=True)]


class HookPoints:
    """The hook points of one forward call: records into ``cache`` and applies ``hooks``."""

    def __init__(self, tokens: Tensor, cache: dict | None, hooks: Hooks | None):
        self.tokens, self.cache, self.hooks = tokens, cache, hooks or {}
        self.all_pos = torch.arange(tokens.shape[1], device=tokens.device)

    def __call__(self, name: str, value: Tensor, query_pos: Tensor | None = None) -> Tensor:
        fn = self.hooks.get(name)
        if fn is not None:
            value = fn(value, HookSite(name, self.tokens, self.all_pos if query_pos is None else query_pos))
        if self.cache is not None:
            self.cache[name] = value
        return value

    def hooked(self, name: str) -> bool:
        return name in self.hooks
