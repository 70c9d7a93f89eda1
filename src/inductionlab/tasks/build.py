"""The one place that builds a task's sampler from a config (docs/science.md §2)."""

from __future__ import annotations

import torch

from inductionlab.config import RunConfig
from inductionlab.tasks.bigram import BigramTriggerSampler
from inductionlab.tasks.sources import BigramSource, make_source


def make_sampler(cfg: RunConfig, device: torch.device) -> tuple[BigramSource, BigramTriggerSampler]:
    """The source and sampler a config describes (docs/science.md §2)."""
    d = cfg.data
    source = make_source(d.source, d.vocab_size, d.concentration, d.source_seed)
    sampler = BigramTriggerSampler(
        source, d.seq_len, d.n_triggers, trigger_mode=d.trigger_mode, trigger_offset=d.trigger_offset,
        output_mode=d.output_mode, no_repeat=d.no_repeat, output_split=d.output_split,
        exclude_degenerate=d.exclude_degenerate, device=device,
    )
    return source, sampler
