"""The one place that builds a run's task from its config (docs/science.md §2, §10).

``data.task`` names the task (:mod:`~inductionlab.tasks.registry`); the task class builds itself from the
validated ``data`` section.
"""

from __future__ import annotations

import torch

from inductionlab.config import RunConfig
from inductionlab.errors import ConfigError
from inductionlab.tasks.base import Batch, Task
from inductionlab.tasks.registry import task_class


def make_task(cfg: RunConfig, device: torch.device | str = "cpu") -> Task:
    """The task a config describes (``data.task``), its tables on ``device``."""
    return task_class(cfg.data.task)(cfg.data, device)


def evaluation_batch(cfg: RunConfig, task: Task, device: torch.device | str | None = None) -> Batch:
    """The run's fixed evaluation batch: ``train.eval_batch_size`` sequences, the first draw from ``seeds.eval``
    (on the task's device; ``device``, when given, must be it)."""
    if device is not None and torch.device(device).type != task.device.type:
        raise ConfigError(f"evaluation_batch: the task's tables are on {task.device}, not {device}")
    return task.evaluation_batch(cfg.train.eval_batch_size, cfg.seeds.eval)
