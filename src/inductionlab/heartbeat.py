"""A sweep worker's sign of life, and how the sweep tells a hung worker from a slow one.

A run trained by a sweep worker (``train(..., heartbeat=True)``) rewrites ``RUN/heartbeat.json`` as it goes: at
every training step, before and after each evaluation and checkpoint write (at most once a second, atomically),
recording the longest gap between two such points so far (a step, an evaluation, a checkpoint write). The
process that waits on the worker reads it (:func:`stalled`): a run silent for longer than its stall limit,
``max(floor, factor × that longest gap)``, is hung (stopped, deadlocked, on a hung file system) and is ended
and resubmitted like a dead one (backends.py). Until the run's first beat (the worker starting, importing,
building the task), the time counts from the submission and the floor alone applies. A finished run removes
the file.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from inductionlab.errors import ConfigError
from inductionlab.runs import atomic_write

FILE = "heartbeat.json"
FLOOR_S = 300.0  # the default floor of the stall limit, seconds (--stall-limit)
FACTOR = 20  # the stall limit's multiple of the longest gap between beats measured so far
MIN_FLOOR_S = 3.0  # beats are written at most once a second: a floor below a few seconds would see ghosts


@dataclass(frozen=True)
class StallLimit:
    """When a silent run counts as hung: silent for longer than ``max(floor_s, factor × its longest gap)``."""

    floor_s: float = FLOOR_S
    factor: float = FACTOR

    def __post_init__(self) -> None:
        if not self.floor_s >= MIN_FLOOR_S:
            raise ConfigError(f"--stall-limit: at least {MIN_FLOOR_S:g} seconds (got {self.floor_s:g})")

    def seconds(self, longest_gap_s: float) -> float:
        return max(self.floor_s, self.factor * longest_gap_s)


class Heartbeat:
    """Writes ``run_dir/heartbeat.json`` for the sweep that waits on this run (module docstring)."""

    def __init__(self, run_dir: str | Path, every_s: float = 1.0):
        self.path, self.every_s = Path(run_dir) / FILE, every_s
        self.longest_s = 0.0
        self.last_beat = self.last_write = time.monotonic()

    def beat(self, step: int) -> None:
        """A sign of life at ``step``: the gap since the previous one is measured; written at most once per
        ``every_s``."""
        now = time.monotonic()
        self.longest_s = max(self.longest_s, now - self.last_beat)
        self.last_beat = now
        if now - self.last_write >= self.every_s:
            self.write(step)

    def write(self, step: int) -> None:
        self.last_write = time.monotonic()
        atomic_write(self.path, json.dumps({"pid": os.getpid(), "step": step, "longest_gap_s": self.longest_s}))

    def stop(self) -> None:
        """The run ended: nothing more to watch."""
        self.path.unlink(missing_ok=True)


def stalled(run_dir: str | Path, since: float, limit: StallLimit, now: float | None = None) -> str | None:
    """Why the run in ``run_dir``, (re)submitted at wall time ``since``, counts as hung now, or None."""
    path = Path(run_dir) / FILE
    last, longest = since, 0.0
    try:
        stamp = path.stat().st_mtime
        if stamp >= since:  # a beat of this attempt (an earlier attempt's file is older than its submission)
            last = stamp
            longest = float(json.loads(path.read_text())["longest_gap_s"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # not written yet, or caught mid-replace: the time since the submission or the last stamp counts
    silent, allowed = (time.time() if now is None else now) - last, limit.seconds(longest)
    if silent <= allowed:
        return None
    return f"worker silent for {silent:.0f} s, past its stall limit of {allowed:.0f} s"
