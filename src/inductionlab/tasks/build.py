"""The one place that builds a task from a config (docs/science.md §2, §10)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from inductionlab.config import RunConfig
from inductionlab.errors import ConfigError
from inductionlab.tasks.bigram import BigramTriggerSampler
from inductionlab.tasks.markov import ICLMarkovSampler
from inductionlab.tasks.sources import BigramSource, make_source


@dataclass
class Task:
    """What training and evaluation need of a task: its sampler (``sample(batch, generator)``: a batch with
    ``tokens`` (B, T+1), ``inputs``, ``targets``, ``labels`` (B, T) and ``degenerate`` (B,)), its vocabulary,
    and, for the bigram task, its source (``π_u``, ``π_b``); for icl-mc, ``k`` and ``alpha``."""

    name: str
    n_tokens: int
    sampler: BigramTriggerSampler | ICLMarkovSampler
    source: BigramSource | None = None

    @property
    def fixed_triggers(self) -> torch.Tensor | None:
        return getattr(self.sampler, "fixed_triggers", None)


def make_task(cfg: RunConfig, device: torch.device) -> Task:
    """The task a config describes (``data.task``)."""
    d = cfg.data
    if d.task == "icl-mc":
        sampler = ICLMarkovSampler(d.k, d.seq_len, order=d.order, alpha=d.alpha, start=d.start, device=device)
        return Task(d.task, d.k, sampler)
    source, sampler = make_sampler(cfg, device)
    return Task(d.task, source.n_tokens, sampler, source)


def evaluation_batch(cfg: RunConfig, task: Task, device: torch.device):
    """The run's fixed evaluation batch: ``train.eval_batch_size`` sequences, the first draw from ``seeds.eval``."""
    return task.sampler.sample(cfg.train.eval_batch_size, torch.Generator(device=device).manual_seed(cfg.seeds.eval))


def make_sampler(cfg: RunConfig, device: torch.device) -> tuple[BigramSource, BigramTriggerSampler]:
    """The source and sampler of the bigram-with-triggers task a config describes (docs/science.md §2)."""
    d = cfg.data
    if d.task != "bigram-triggers":
        raise ConfigError(f"data.task: this needs the bigram-triggers task, the config has {d.task!r}")
    source = make_source(d.source, d.vocab_size, d.concentration, d.source_seed)
    sampler = BigramTriggerSampler(
        source, d.seq_len, d.n_triggers, trigger_mode=d.trigger_mode, trigger_offset=d.trigger_offset,
        output_mode=d.output_mode, no_repeat=d.no_repeat, output_split=d.output_split,
        exclude_degenerate=d.exclude_degenerate, device=device,
    )
    return source, sampler
