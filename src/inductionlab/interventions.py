"""Interventions during training and evaluation (docs/science.md §8, "artificial optogenetics").

A run's config lists :class:`~inductionlab.config.InterventionConfig` entries; :class:`Interventions`
turns them, at a given step and phase (``train`` or ``eval``), into

- **hooks** for the model's hook points (models/hooks.py): clamp an attention pattern to an ideal
  one with a strength ``λ`` (``λ·ideal + (1 − λ)·model``), zero- or mean-ablate, scale or
  stop-gradient an activation. The gradient flows through the replaced forward, so a clamp shapes
  what the rest of the network learns;
- **weight replacements** for one forward call (``torch.func.functional_call``): scale or
  stop-gradient a matrix without touching the stored parameter;
- **freezes**, applied around the optimiser step: the matrix is set to its held value (its
  initialisation, zero, or another run's checkpoint) before the forward and gets no update.

Everything is a pure function of the step, so a run resumed inside a window ends exactly as an
uninterrupted one. With no intervention active, :meth:`Interventions.forward` is the model itself:
the fast paths are untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from inductionlab.config import IDEAL_PATTERNS, InterventionConfig
from inductionlab.errors import CheckpointError, ConfigError, ShapeError
from inductionlab.models.hooks import Forward, HookFn, HookSite, QueryGroups
from inductionlab.runs import RunDir


def ideal_pattern(kind: str, tokens: Tensor, query_pos: Tensor) -> Tensor:
    """The ideal attention pattern of docs/science.md §8: (B, Tq, T) float32, rows summing to 1 over ``s ≤ t``.

    tokens: (B, T) int64 model inputs; query_pos: (Tq,) or (b, Tq) int64 with b ∈ {1, B}.

    - ``previous-token``: all mass on ``s = t − 1`` (``t = 0`` attends to itself);
    - ``induction``: uniform over the keys ``1 ≤ s ≤ t`` whose previous token equals the current
      one (``z_{s−1} = z_t``), and uniform over ``s ≤ t`` where there is none (the ``α₂ → ∞`` limit
      of docs/science.md §4.4);
    - ``uniform``: uniform over ``s ≤ t``.
    """
    batch, seq_len = tokens.shape
    qp = query_pos if query_pos.dim() == 2 else query_pos[None]
    qp = qp.expand(batch, -1)
    keys = torch.arange(seq_len, device=tokens.device)
    causal = (keys <= qp[..., None]).float()  # (B, Tq, T)
    if kind == "uniform":
        weights = causal
    elif kind == "previous-token":
        weights = (keys == (qp - 1).clamp_min(0)[..., None]).float()
    elif kind == "induction":
        before = torch.cat((torch.full_like(tokens[:, :1], -1), tokens[:, :-1]), dim=1)  # z_{s-1}; -1 at s = 0
        current = torch.gather(tokens, 1, qp)  # (B, Tq)
        match = (before[:, None, :] == current[..., None]).float() * causal
        weights = torch.where(match.sum(-1, keepdim=True) > 0, match, causal)
    else:
        raise ConfigError(f"pattern: unknown ideal pattern {kind!r}; allowed: {', '.join(IDEAL_PATTERNS)}")
    return weights / weights.sum(-1, keepdim=True)


def clamp_hook(kind: str, strength: float = 1.0, head: int | None = None) -> HookFn:
    """A hook that clamps an attention pattern (B, H, Tq, T) to the ideal ``kind`` (:func:`ideal_pattern`), mixed
    ``strength · ideal + (1 − strength) · model``, on every head or on ``head`` alone."""
    def fn(value: Tensor, site: HookSite) -> Tensor:  # value: (B, H, Tq, T)
        ideal = ideal_pattern(kind, site.tokens, site.query_pos).to(value.dtype)[:, None]
        if ideal.shape[-2:] != value.shape[-2:]:
            raise ShapeError(f"{site.name}: pattern {tuple(value.shape)} does not fit the ideal {tuple(ideal.shape)}")
        mixed = strength * ideal + (1 - strength) * value if strength < 1 else ideal.expand_as(value)
        return mixed if head is None else _on_head(value, mixed, head)
    return fn


def _on_head(value: Tensor, replaced: Tensor, head: int) -> Tensor:
    """``value`` with head ``head`` (dim 1) taken from ``replaced``."""
    chosen = torch.zeros(value.shape[1], dtype=torch.bool, device=value.device)
    chosen[head] = True
    return torch.where(chosen[:, None, None], replaced, value)


def _activation_hook(iv: InterventionConfig) -> HookFn:
    if iv.op == "clamp":
        return clamp_hook(iv.pattern, iv.strength, iv.head)
    ops: dict[str, Callable[[Tensor], Tensor]] = {
        "zero-ablate": torch.zeros_like,
        "mean-ablate": lambda v: v.mean(0, keepdim=True).expand_as(v),
        "scale": lambda v, f=iv.factor: v * f,
        "stop-gradient": lambda v: v.detach(),
    }
    op = ops[iv.op]

    def fn(value: Tensor, site: HookSite) -> Tensor:
        out = op(value)
        return out if iv.head is None else _on_head(value, out, iv.head)
    return fn


def _compose(first: HookFn, second: HookFn) -> HookFn:
    return lambda value, site: second(first(value, site), site)


class Interventions:
    """The interventions of a run, bound to its model (docs/science.md §8).

    ``model``: the freshly built model, *before* any checkpoint is loaded, so that ``value: init``
    holds the initialisation a resumed run would rebuild too.
    """

    def __init__(self, specs: Sequence[InterventionConfig], model: nn.Module):
        self.specs = tuple(specs)
        tensors = dict(model.named_parameters()) | dict(model.named_buffers())
        self.weight_targets = {iv.target for iv in self.specs if iv.target in tensors}
        self.held: dict[int, Tensor] = {}  # index of a freeze → the value it holds
        for i, iv in enumerate(self.specs):
            if iv.op != "freeze":
                continue
            current = tensors[iv.target].detach()
            if iv.value == "init":
                self.held[i] = current.clone()
            elif iv.value == "zero":
                self.held[i] = torch.zeros_like(current)
            else:
                self.held[i] = _from_checkpoint(iv.checkpoint, iv.target, current)

    def __bool__(self) -> bool:
        return bool(self.specs)

    def active(self, step: int, phase: str) -> list[tuple[int, InterventionConfig]]:
        return [(i, iv) for i, iv in enumerate(self.specs) if iv.active(step, phase)]

    def hooks(self, step: int, phase: str) -> dict[str, HookFn]:
        """The hook functions active at ``step`` in ``phase``, composed in config order per hook name."""
        out: dict[str, HookFn] = {}
        for _, iv in self.active(step, phase):
            if iv.target in self.weight_targets:
                continue
            fn = _activation_hook(iv)
            out[iv.target] = _compose(out[iv.target], fn) if iv.target in out else fn
        return out

    def weights(self, model: nn.Module, step: int, phase: str) -> dict[str, Tensor]:
        """Replacement tensors for one forward call (scale, stop-gradient on matrices)."""
        if not self.weight_targets:
            return {}
        tensors = dict(model.named_parameters()) | dict(model.named_buffers())
        out: dict[str, Tensor] = {}
        for _, iv in self.active(step, phase):
            if iv.target not in self.weight_targets or iv.op == "freeze":
                continue
            value = out.get(iv.target, tensors[iv.target])
            out[iv.target] = value * iv.factor if iv.op == "scale" else value.detach()
        return out

    def forward(self, model: nn.Module, step: int, phase: str) -> Forward:
        """``model`` itself when nothing acts at ``step``; else a callable with its signature
        ``(tokens, query_positions=None, cache=None) → logits`` running the interventions."""
        hooks, weights = self.hooks(step, phase), self.weights(model, step, phase)
        if not hooks and not weights:
            return model

        def run(tokens: Tensor, query_positions: Tensor | QueryGroups | None = None, cache: dict | None = None
                ) -> Tensor | list[Tensor]:
            kwargs = {"query_positions": query_positions, "cache": cache, "hooks": hooks}
            if weights:
                return torch.func.functional_call(model, weights, (tokens,), kwargs)
            return model(tokens, **kwargs)
        return run

    @torch.no_grad()
    def hold(self, model: nn.Module, step: int) -> None:
        """Set every matrix frozen at ``step`` to its held value (before the forward of that step)."""
        if not self.held:
            return
        tensors = dict(model.named_parameters()) | dict(model.named_buffers())
        for i, iv in self.active(step, "train"):
            if i in self.held:
                tensors[iv.target].copy_(self.held[i])

    def drop_gradients(self, model: nn.Module, step: int, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Remove the gradients of the matrices frozen at ``step``: the optimiser then skips them (no
        update, no momentum, no weight decay). Their optimiser state (momentum, moment estimates) is
        cleared too, so a matrix released at the end of its window starts afresh, not with the
        momentum it had before the window."""
        if not self.held:
            return
        params = dict(model.named_parameters())
        for i, iv in self.active(step, "train"):
            if i in self.held and iv.target in params:
                params[iv.target].grad = None
                if optimizer is not None:
                    optimizer.state.pop(params[iv.target], None)


def _from_checkpoint(source: str | None, name: str, like: Tensor) -> Tensor:
    """Matrix ``name`` from another run's latest checkpoint (a run directory) or a checkpoint file."""
    path = Path(source or "")
    if path.is_dir():
        tensors, _ = RunDir(path).load_checkpoint()
    else:
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path}: cannot read the checkpoint to freeze {name} from ({err})") from None
    value = tensors.get(f"model.{name}", tensors.get(name))
    if value is None:
        raise CheckpointError(f"{path}: the checkpoint holds no matrix {name!r}")
    if value.shape != like.shape:
        raise CheckpointError(f"{path}: {name} has shape {tuple(value.shape)}, this model needs {tuple(like.shape)}")
    return value.to(like.device, like.dtype)
