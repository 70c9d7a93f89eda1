"""The ``data`` sections of the built-in tasks: each task's own fields and cross-field checks.

They live apart from the tasks (which import torch) so that validating a config imports no torch; the
registry (tasks/registry.py) finds them by the task's name, and each task class names its own as
``config_model``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from inductionlab.tasks.registry import SEED_LIMIT, DataConfig


class BigramConfig(DataConfig):
    """``data`` of the task ``bigram-triggers`` (docs/science.md §2)."""

    source: Literal["shakespeare", "dirichlet"] = "shakespeare"
    vocab_size: int = Field(65, gt=1, description="N for the dirichlet source (shakespeare is always 65)")
    concentration: float = Field(0.1, gt=0, description="Dirichlet concentration of the bigram rows")
    source_seed: int = Field(0, ge=0, lt=SEED_LIMIT, description="seed of the dirichlet source")
    n_triggers: int = Field(5, gt=0, description="K")
    trigger_mode: Literal["fixed", "random"] = "fixed"
    trigger_offset: int = Field(0, ge=0, description="fixed triggers skip the top `offset` tokens")
    output_mode: Literal["uniform", "bigram"] = "uniform"
    no_repeat: bool = False
    output_split: Literal["none", "train", "test"] = "none"
    exclude_degenerate: bool = False

    @property
    def n_tokens(self) -> int:
        return 65 if self.source == "shakespeare" else self.vocab_size

    @model_validator(mode="after")
    def _triggers_fit(self) -> BigramConfig:
        n, k = self.n_tokens, self.n_triggers
        if k > n:
            raise ValueError(f"data.n_triggers: K={k} exceeds the vocabulary size N={n}")
        if self.trigger_mode == "fixed" and k + self.trigger_offset > n:
            raise ValueError(f"data.trigger_offset: offset {self.trigger_offset} + K={k} exceeds N={n}")
        return self


class MarkovConfig(DataConfig):
    """``data`` of the task ``icl-mc``, in-context Markov chains (docs/science.md §10)."""

    k: int = Field(3, ge=2, description="number of states")
    alpha: float = Field(1.0, gt=0, description="Dirichlet concentration of each transition row")
    order: int = Field(2, ge=2, description="order n of the chain (2: bigram; n conditions on n − 1 tokens)")
    start: Literal["stationary", "uniform"] = Field("stationary", description="law of the first n − 1 tokens")

    @property
    def n_tokens(self) -> int:
        return self.k

    @model_validator(mode="after")
    def _long_enough(self) -> MarkovConfig:
        if self.seq_len < self.order:
            raise ValueError(f"data.seq_len: T={self.seq_len} must be at least the order n={self.order}")
        return self
