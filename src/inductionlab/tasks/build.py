"""The one place that builds a run's task from its config (docs/science.md §2, §10).

``data.task`` names the task (:mod:`~inductionlab.tasks.registry`); the task class builds itself from the
validated ``data`` section.
"""

from __future__ import annotations

import torch

from inductionlab.config import RunConfig
from inductionlab.tasks.base import Task
from inductionlab.tasks.registry import task_class


def make_task(cfg: RunConfig, device: torch.device | str = "cpu") -> Task:
    """The task a config describes (``data.task``), its tables on ``device``."""
    return task_class(cfg.data.task)(cfg.data, device)
