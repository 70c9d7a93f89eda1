"""How much memory a run needs, estimated from its config before anything is allocated.

The estimate adds up, in bytes:

- **weights**: the model built on PyTorch's ``meta`` device (shapes only, no storage): every
  parameter and buffer, exactly;
- **optimiser**: a gradient per trained parameter, plus one state tensor (SGD momentum) or two
  (AdamW moments);
- **task tables**: what the task says its tables take (``Task.memory``): for the bigram task the source
  (``N × N`` float64, about 20 working copies at its peak); for in-context Markov chains each sequence's
  transition rows and context chain, and the count tables the Bayes reference fills over an evaluation batch;
- **activations**: the larger of a training step (per layer the residual stream, for the general
  transformer also the attention output and the MLP's hidden layer; the attention pattern; the
  logits; each with its gradient) and an evaluation (the same without gradients, over
  ``train.eval_batch_size`` sequences).

Checked against the peak resident memory of two training steps and an evaluation of each paper
preset (2-core CPU, torch 2.13.0; peak minus the ~0.25 GB of an idle process): estimate / measured
0.84 (birth), 0.83 (hijack), 0.37 (icl-mc), 0.89 (nope3). The estimate stays below what a run takes,
so a run that fits is never refused for it.

It is meant to catch a run that cannot fit (``--set model.d_model=100000000``) at once, with the
field to change, instead of an allocation failure after a long wait; it is not a promise that a
run below it fits. :func:`check_memory` compares it with what the device has (or a limit).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from inductionlab.config import RunConfig
from inductionlab.errors import ConfigError, MemoryEstimateError
from inductionlab.models.build import build_model
from inductionlab.models.families import family
from inductionlab.tasks.registry import task_class

FLOAT = 4  # bytes of a float32


@dataclass(frozen=True)
class Footprint:
    """Estimated bytes of each part of a run, and the config field each part grows with."""

    parts: dict[str, tuple[int, str]]

    @property
    def total(self) -> int:
        return sum(size for size, _ in self.parts.values())

    def largest(self) -> tuple[str, int, str]:
        name, (size, field) = max(self.parts.items(), key=lambda item: item[1][0])
        return name, size, field


def _model_sizes(cfg: RunConfig) -> tuple[int, int, int]:
    """(parameters, trained parameters, buffers) of the model, counted on the meta device."""
    with torch.device("meta"):
        model = build_model(cfg.model, cfg.data.n_tokens, cfg.seeds.init)
    params = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return params, trained, sum(b.numel() for b in model.buffers())


def _activations(cfg: RunConfig, batch: int, backward: bool) -> int:
    """Floats one forward pass keeps over ``batch`` sequences (twice as many with the backward pass)."""
    m, t, n = cfg.model, cfg.data.seq_len, cfg.data.n_tokens
    per_token = family(m.arch).stream_floats(m)  # streams kept per token and layer (models/families.py)
    per_layer = batch * t * per_token + batch * m.n_heads * t * t  # streams; the attention pattern
    floats = m.n_layers * per_layer + batch * t * n  # logits
    return floats * (2 if backward else 1)


def footprint(cfg: RunConfig) -> Footprint:
    """The estimate of the module docstring for ``cfg``."""
    d, t, m = cfg.data, cfg.train, cfg.model
    tables = task_class(d.task).memory(d, t)  # the task refuses its own sizes no machine holds first
    # sizes no machine holds are refused before a tensor shape could overflow (even on the meta device)
    for field, floats in (("model.d_model", m.d_model * m.d_model),
                          ("model.max_len", m.max_len * m.d_model), ("model.max_rel_dist", m.max_rel_dist * m.d_model),
                          ("model.d_mlp", (m.d_mlp or 0) * m.d_model), ("train.batch_size", t.batch_size * d.seq_len),
                          ("train.eval_batch_size", t.eval_batch_size * d.seq_len)):
        if floats > 2**60:
            raise MemoryEstimateError(f"{field}: tensors of {floats:.3g} entries cannot be held in memory; "
                                      f"lower {field}")
    try:
        params, trained, buffers = _model_sizes(cfg)
    except (RuntimeError, ValueError, OverflowError, TypeError) as err:
        raise ConfigError(f"model: cannot be built ({str(err).splitlines()[0]})") from None
    states = 1 + (2 if t.optimizer == "adamw" else 1 if t.momentum else 0)
    parts = {
        "weights": (FLOAT * (params + buffers), "model.d_model"),
        "optimiser": (FLOAT * states * trained, "model.d_model"),
        "activations": max((FLOAT * _activations(cfg, t.batch_size, backward=True), "train.batch_size"),
                           (FLOAT * _activations(cfg, t.eval_batch_size, backward=False), "train.eval_batch_size")),
    }
    parts.update(tables)
    return Footprint(parts)


# ------------------------------------------------------------------------------ what the machine has

UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": 2**20,
         "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12, "tib": 2**40}


def parse_size(text: str) -> int:
    """``"8GiB"``, ``"512MB"``, ``"2e9"`` → bytes (ConfigError naming the allowed forms)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*", text.lower())
    if not match or match.group(2) not in UNITS or not 1 <= float(match.group(1)) * UNITS[match.group(2)] < 2**63:
        raise ConfigError(f"--max-memory {text!r}: expected a positive size such as 8GiB, 512MB or 2e9 (bytes)")
    return int(float(match.group(1)) * UNITS[match.group(2)])


def human(size: float) -> str:
    """Bytes in binary units, three significant figures."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{size:.3g} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.3g} PiB"


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory(device: torch.device) -> int | None:
    """Bytes this process may still allocate on ``device`` (None when the machine does not say)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    limit, used = _read_int("/sys/fs/cgroup/memory.max"), _read_int("/sys/fs/cgroup/memory.current")
    if limit is not None and used is not None:
        found.append(max(0, limit - used))
    if not found and hasattr(os, "sysconf"):
        try:
            found.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
        except (OSError, ValueError):
            pass
    return min(found) if found else None


def check_memory(cfg: RunConfig, device: torch.device, max_memory: int | None = None) -> Footprint:
    """Refuse (MemoryEstimateError) a run whose estimate exceeds ``max_memory`` or what ``device`` has."""
    estimate = footprint(cfg)
    available = available_memory(device)
    limits = [(max_memory, f"the --max-memory limit is {human(max_memory)}")] if max_memory is not None else []
    limits += [(available, f"{device.type} has {human(available)} available")] if available is not None else []
    for limit, what in limits:
        if estimate.total > limit:
            name, size, field = estimate.largest()
            raise MemoryEstimateError(f"{field}: the run needs about {human(estimate.total)} ({name}: "
                                      f"{human(size)}) but {what}; lower {field}")
    return estimate


def check_concurrent_memory(configs: list[RunConfig], workers: int, available: int | None = None) -> None:
    """Refuse (MemoryEstimateError) a sweep whose ``workers`` largest runs on one device would not fit its memory
    together (each run alone is checked as it starts, :func:`check_memory`); ``available``: bytes, instead of
    what the device has."""
    by_device: dict[str, list[int]] = {}
    for cfg in configs:
        name = cfg.train.device
        kind = "cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu"
        by_device.setdefault(kind, []).append(footprint(cfg).total)
    for kind, sizes in by_device.items():
        largest = sorted(sizes, reverse=True)[:workers]
        if len(largest) < 2:
            continue
        limit = available if available is not None else available_memory(torch.device(kind))
        if limit is None or sum(largest) <= limit:
            continue
        fit = max((k for k in range(1, len(largest) + 1) if sum(largest[:k]) <= limit), default=1)
        raise MemoryEstimateError(f"--workers: the {len(largest)} largest runs that would train at once need about "
                                  f"{human(sum(largest))} together but {kind} has {human(limit)} available; use "
                                  f"--workers {fit}")
