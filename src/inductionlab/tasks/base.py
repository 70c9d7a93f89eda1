"""What a task is to the rest of the code: a :class:`Batch` it samples and a :class:`Task` that trains and evaluates.

The trainer, the evaluation, the memory estimate and the CLI read a task only through these two classes,
never by its name. A new task is one module: a config model (extending
:class:`~inductionlab.tasks.registry.DataConfig`), a :class:`Task` subclass, and either a line in the
registry (:func:`~inductionlab.tasks.registry.register_task`) or its import path written as ``data.task``.
See docs/architecture.md, "Adding a task, a model variant or an experiment".
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from inductionlab.models.hooks import Forward
from inductionlab.tasks.registry import DataConfig

# Every evaluation row logs it (the loss on the in-context targets, those of ``loss_mask``), and no probe-only or
# divergence row does: it is how the analyses tell an evaluation row (experiments/kit/curves.py).
EVALUATION_KEY = "loss_in_context"

if TYPE_CHECKING:  # types only: the config layer imports the registry, not the tasks
    from inductionlab.config import TrainConfig


@dataclass
class Batch:
    """One batch of sequences ``z_1..z_{T+1}``; a task's batch adds its own fields (labels, transitions, …).

    tokens:    (B, T+1) int64; the model reads ``tokens[:, :-1]`` and predicts ``tokens[:, 1:]``.
    loss_mask: (B, T) bool, the targets the training loss reads with ``train.loss_on = in-context``
               (with ``all`` it reads every target).
    """

    tokens: Tensor
    loss_mask: Tensor

    @property
    def inputs(self) -> Tensor:
        """(B, T) int64, ``z_1..z_T``."""
        return self.tokens[:, :-1]

    @property
    def targets(self) -> Tensor:
        """(B, T) int64, ``z_2..z_{T+1}``."""
        return self.tokens[:, 1:]

    def to(self, device: torch.device | str) -> Batch:
        """A copy with every tensor field on ``device``."""
        moved = {f.name: getattr(self, f.name).to(device) for f in fields(self) if isinstance(getattr(self, f.name),
                                                                                             Tensor)}
        return replace(self, **moved)

    def probe_labels(self) -> Tensor:
        """(B, T) int64 targets in the attention probes' convention (docs/science.md §4.2): 2 where the target is
        in-context (``loss_mask``), 1 elsewhere, so the previous-token score reads every position."""
        return torch.where(self.loss_mask, 2, 1)

    def rows_measured(self) -> Tensor:
        """(B,) bool, the sequences the task's metrics are measured on: every one, unless the task leaves some
        out (the bigram task leaves out the degenerate ones, docs/science.md §6)."""
        return torch.ones(self.tokens.shape[0], dtype=torch.bool, device=self.tokens.device)


@dataclass(frozen=True)
class Milestones:
    """What a run's summary records as milestones (``train.milestones``), from the logged evaluation rows.

    reached: keys whose first step at or above a level (0.9) is recorded under the key's name;
    fell:    keys whose first step having made 90% of their total fall is recorded as ``<key>_fell``;
    rose:    keys whose first step having made half of their total rise is recorded as ``<key>_rose``.
    """

    reached: tuple[str, ...] = ()
    fell: tuple[str, ...] = ()
    rose: tuple[str, ...] = ()


class Task(ABC):
    """A task: built from its config section on a device, it samples batches and evaluates a model on them.

    Class attributes a task sets:

    - ``name``: the name it registers under; ``config_model``: its ``data`` section (a DataConfig subclass);
    - ``summary_keys``: the final metrics ``inductionlab train`` prints; ``progress_keys``: label → metric shown
      on the progress bar at each evaluation; ``milestones``: see :class:`Milestones`;
    - ``n_counts``: how many integers :meth:`count` returns per training batch (0: the task counts nothing).
    """

    name: ClassVar[str]
    config_model: ClassVar[type[DataConfig]]
    summary_keys: ClassVar[tuple[str, ...]] = ()
    progress_keys: ClassVar[dict[str, str]] = {}
    milestones: ClassVar[Milestones] = Milestones()
    n_counts: ClassVar[int] = 0

    def __init__(self, config: DataConfig, device: torch.device | str = "cpu"):
        self.config = config
        self.device = torch.device(device)

    @property
    def n_tokens(self) -> int:
        """N, the vocabulary the model reads and predicts."""
        return self.config.n_tokens

    @abstractmethod
    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """``batch_size`` sequences, a pure function of the generator's state (on the task's device)."""

    def evaluation_batch(self, batch_size: int, seed: int) -> Batch:
        """A run's fixed evaluation batch: the first draw from a generator seeded with ``seed`` (``seeds.eval``)."""
        return self.sample(batch_size, torch.Generator(device=self.device).manual_seed(seed))

    @abstractmethod
    def evaluate(self, model: nn.Module, batch: Batch, train_len: int, forward: Forward | None = None
                 ) -> dict[str, float]:
        """Every metric an evaluation step logs, :data:`EVALUATION_KEY` (``loss_in_context``) among them. ``forward``
        runs the model with the interventions active at this step (docs/science.md §8; default: the model);
        ``train_len`` is the run's training length T."""

    def count(self, batch: Batch) -> Tensor:
        """(n_counts,) int64 counts over one training batch; the trainer sums them over the run (checkpointed)."""
        return torch.zeros(self.n_counts, dtype=torch.int64)

    def count_metrics(self, totals: list[int]) -> dict[str, Any]:
        """The metrics an evaluation row reports from the summed counts (none unless the task counts)."""
        return {}

    def weight_probes(self, model: nn.Module, train_len: int, eval_len: int) -> dict[str, float]:
        """Probes read from the weights alone, logged every ``train.probe_every`` steps between evaluations
        (docs/science.md §4.1); none unless the task and the model have them."""
        return {}

    @classmethod
    def memory(cls, config: DataConfig, train: TrainConfig) -> dict[str, tuple[int, str]]:
        """Bytes of the task's own tables at their peak, by part, each with the config field it grows with
        (:mod:`~inductionlab.footprint`); raises MemoryEstimateError for sizes no machine holds."""
        return {}
