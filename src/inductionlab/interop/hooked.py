"""Any inductionlab model as a TransformerLens ``HookedRootModule`` (docs/interop.md).

The adapter holds the model itself and a TransformerLens ``HookPoint`` at each of its hook names
(``model.hook_names()``, models/names.py: ``hook_embed``, ``blocks.{l}.attn.hook_pattern``, …). Its forward is
the model's own forward with every hook point routed through the matching ``HookPoint``, so TransformerLens's
``run_with_cache``, ``run_with_hooks``, ``hooks()`` context and ``ActivationCache`` work on it, the cache holding
exactly our activations under our names. Nothing is converted: it serves every setting, including those with no
TL-native form (the associative-memory transformer, ``rpe``, the per-distance bias, rotary on the first layer
only, KV-shifting attention; interop/tl.py). It needs transformer-lens (the ``interop`` extra) and inductionlab.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from inductionlab.errors import InductionLabError
from inductionlab.interop.hf import INSTALL

try:
    from transformer_lens import HookedRootModule
    from transformer_lens.hook_points import HookPoint
except ImportError:
    raise InductionLabError(f"the TransformerLens adapter needs transformer-lens: {INSTALL}") from None


def _place(root: nn.Module, name: str, leaf: nn.Module) -> None:
    """Register ``leaf`` under the dotted ``name`` below ``root``, making plain containers on the way."""
    *path, last = name.split(".")
    for part in path:
        if part not in root._modules:
            root.add_module(part, nn.Module())
        root = root._modules[part]
    root.add_module(last, leaf)


class HookedInductionModel(HookedRootModule):
    """``model`` behind TransformerLens hook points. ``tokens: (B, T) int64 → logits``, as ``model(tokens)``; keyword
    arguments (``query_positions``) pass through. ``hook_dict`` has one ``HookPoint`` per name of
    ``model.hook_names()``; the wrapped model is ``self.model`` (its trained and frozen tensors as they are)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        for name in model.hook_names():
            _place(self, name, HookPoint())
        self.setup()
        self.our_hook_names = tuple(model.hook_names())

    def forward(self, tokens: Tensor, **kwargs) -> Tensor:
        hooks = {name: (lambda value, site, point=self.hook_dict[name]: point(value)) for name in self.our_hook_names}
        return self.model(tokens, hooks=hooks, **kwargs)


def open_hooked(run_dir: str | Path) -> HookedInductionModel:
    """The trained model of ``run_dir`` (its final checkpoint) behind TransformerLens hook points."""
    from inductionlab.train import open_trained

    return HookedInductionModel(open_trained(run_dir)[1])
