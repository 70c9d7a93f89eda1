"""The task registry: a task's name (``data.task``) → its class, and the config every task's fields extend.

A task is a class (see :class:`inductionlab.tasks.base.Task`) found by name or by import path:

- the built-in names, ``bigram-triggers`` (docs/science.md §2) and ``icl-mc`` (§10);
- names added with :func:`register_task` (``register_task("my_package.tasks:CopyTask")``);
- an import path ``"package.module:ClassName"`` written directly as ``data.task``, imported when a config
  is validated. A config that names its task this way needs nothing registered, so a spawned worker or a
  Ray worker resolves the task from the config alone.

Each task validates its own ``data`` section with its config model (a subclass of :class:`DataConfig`), so a
config carries only the fields of its task. This module imports no task and no torch: the config layer
reads it, and a task module is imported only when a config names it.
"""

from __future__ import annotations

import importlib
import re
from abc import abstractmethod
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from inductionlab.errors import ConfigError

SEED_LIMIT = 2**63 - 100  # torch seeds are 64-bit; a sweep adds 100 to the data seed
DEFAULT_TASK = "bigram-triggers"
IMPORT_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")

_TASKS: dict[str, str] = {
    "bigram-triggers": "inductionlab.tasks.bigram_task:BigramTask",
    "icl-mc": "inductionlab.tasks.markov:MarkovTask",
}
# the built-in tasks' config models, in a module without torch: validating a config imports no task
_BUILT_IN_CONFIGS = {"bigram-triggers": "BigramConfig", "icl-mc": "MarkovConfig"}


class DataConfig(BaseModel):
    """The ``data`` section every task shares: the task's name (or import path) and T. A task's config model
    adds its own fields and cross-field checks, and says how they set the vocabulary size N (``n_tokens``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)

    task: str = DEFAULT_TASK
    seq_len: int = Field(256, ge=2, description="T, tokens the model reads per sequence")

    @property
    @abstractmethod
    def n_tokens(self) -> int:
        """N, the vocabulary the model reads and predicts."""


def task_names() -> tuple[str, ...]:
    """The names ``data.task`` accepts besides an import path: the built-in tasks and the registered ones."""
    return tuple(_TASKS)


def _import(path: str) -> type:
    """The task class at ``"package.module:ClassName"``; ConfigError naming ``data.task`` when there is none."""
    module_name, _, class_name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # a missing module, or one that fails to import: one line either way
        raise ConfigError(f"data.task: cannot import {module_name!r} for the task {path!r} "
                         f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    cls = getattr(module, class_name, None)
    config_model = getattr(cls, "config_model", None)
    if not (isinstance(cls, type) and isinstance(config_model, type) and issubclass(config_model, DataConfig)):
        raise ConfigError(f"data.task: {path!r} is not a task (a class with a config_model extending DataConfig)")
    return cls


def task_class(name: Any) -> type:
    """The task class ``data.task`` names: a built-in or registered name, or an import path. ConfigError (whose
    message names ``data.task`` and the allowed names) for anything else."""
    if isinstance(name, str) and name in _TASKS:
        return _import(_TASKS[name])
    if isinstance(name, str) and IMPORT_PATH.fullmatch(name):
        return _import(name)
    raise ConfigError(f"data.task: unknown task {name!r}; allowed: {', '.join(_TASKS)}, or an import path "
                     "'package.module:ClassName'")


def config_model(name: Any) -> type[DataConfig]:
    """The config model of the task ``data.task`` names (for a built-in task, without importing the task)."""
    if isinstance(name, str) and name in _BUILT_IN_CONFIGS:
        return getattr(importlib.import_module("inductionlab.tasks.configs"), _BUILT_IN_CONFIGS[name])
    return task_class(name).config_model


def register_task(path: str) -> type:
    """Register the task class at import path ``"package.module:ClassName"`` under its ``name``; returns the class.

    A registered name is known to this process only; a config for spawned or remote workers names the task
    by its import path instead.
    """
    if not IMPORT_PATH.fullmatch(path):
        raise ConfigError(f"register_task: {path!r} is not an import path 'package.module:ClassName'")
    cls = _import(path)
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or ":" in name:
        raise ConfigError(f"register_task: {path!r} has no name (a class attribute such as name = 'copy')")
    if name in _BUILT_IN_CONFIGS:
        raise ConfigError(f"register_task: {name!r} is the name of a built-in task; give {path!r} another name")
    _TASKS[name] = path
    return cls
