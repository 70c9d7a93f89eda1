"""The run directory: the contract everything downstream reads (docs/architecture.md, "Run directory").

::

    RUN/config.yaml                    the fully resolved RunConfig
    RUN/metrics.jsonl                  one JSON object per evaluation step
    RUN/checkpoints/step_XXXXXXXX.safetensors   model, optimiser and RNG tensors
    RUN/checkpoints/step_XXXXXXXX.json          step, optimiser hyper-parameters, file checksum
    RUN/summary.json                   final metrics, written when the run finishes

Every file is written atomically (a temporary file in the same folder, then ``os.replace``), and a
checkpoint counts only once its JSON, written last, names the checksum of its tensors.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from inductionlab import jsonio
from inductionlab.config import RunConfig, load_config, to_yaml, validate_stored
from inductionlab.errors import CheckpointError, ConfigError, RunDirError, RunInUseError

KEEP_CHECKPOINTS = 2  # the default of train.keep_checkpoints
# What the logged metrics mean. 2: ``wo`` is the literal W_O² W_V² memory (``wo_ff`` reads through
# W_F), ``wk2_triggers`` ranks among the triggers, label metrics exclude degenerate sequences.
# Rows of another version are refused, never read with the wrong meaning.
METRICS_VERSION = 2


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def hold_run(path: str | Path) -> Iterator[None]:
    """One writer per run folder: ``path`` (made if missing) is this process's until the block ends; another
    process that asks meanwhile gets RunInUseError at once, before it writes anything.

    The lock is the kernel's advisory lock on the folder itself (``flock``): no file is written, and it is
    released when the process ends however it ends (a killed run leaves no stale lock behind)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as err:
        raise RunDirError(f"{path}: cannot open the run directory ({err.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunInUseError(f"{path}: in use by another process training this run; wait for it to end, or stop "
                              "it (the run resumes from its last checkpoint)") from None
        yield
    finally:
        os.close(fd)  # releases the lock


def first_line(err: BaseException) -> str:
    """The first line of an error's message (its type when it has none): what a one-line report shows."""
    return (str(err).splitlines() or [type(err).__name__])[0]


class RunDir:
    """A run directory on disk; see the module docstring for its layout."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config_path = self.path / "config.yaml"
        self.metrics_path = self.path / "metrics.jsonl"
        self.checkpoint_dir = self.path / "checkpoints"
        self.summary_path = self.path / "summary.json"

    # ---------------------------------------------------------------- config

    @classmethod
    def create(cls, path: str | Path, cfg: RunConfig) -> RunDir:
        """Open ``path`` for ``cfg``: a new directory, or an existing run of the same config."""
        run = cls(path)
        if run.config_path.exists():
            if run.config() != cfg:
                raise RunDirError(f"{run.path}: holds a run of a different config; choose another --out")
            run.metrics()  # refuses metrics written with another meaning
            return run
        try:
            run.path.mkdir(parents=True, exist_ok=True)
            atomic_write(run.config_path, to_yaml(cfg))
        except OSError as err:
            raise RunDirError(f"{run.path}: cannot write the run directory ({err.strerror})") from None
        return run

    def config(self) -> RunConfig:
        """The run's config, read back from ``config.yaml`` (one written before each task validated its own data
        fields opens too: the fields its task does not own are dropped, see ``config.validate_stored``)."""
        try:
            raw = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunDirError(f"{self.path}: not a run directory (no config.yaml)") from None
        except (OSError, ValueError, yaml.YAMLError, RecursionError) as err:
            raise RunDirError(f"{self.config_path}: unreadable ({first_line(err)})") from None
        try:
            return validate_stored(raw, str(self.config_path))
        except ConfigError as err:
            raise RunDirError(str(err)) from None

    # ---------------------------------------------------------------- metrics

    def metrics(self) -> list[dict[str, Any]]:
        """The logged rows; a last line cut short by a killed process is ignored (resume rewrites it)."""
        if not self.metrics_path.exists():
            return []
        try:
            text = self.metrics_path.read_text(encoding="utf-8")
            lines = [line for line in text.splitlines() if line.strip()]
            if lines and not text.endswith("\n"):
                try:
                    json.loads(lines[-1])
                except ValueError:
                    lines.pop()
            rows = [json.loads(line) for line in lines]
        except (OSError, ValueError, RecursionError) as err:
            raise RunDirError(f"{self.metrics_path}: unreadable ({first_line(err)})") from None
        if not all(isinstance(row, dict) and isinstance(row.get("step"), int) for row in rows):
            raise RunDirError(f"{self.metrics_path}: not a metrics log (every line must be an object with a step)")
        versions = {row.get("metrics_version", 1) for row in rows}
        if versions - {METRICS_VERSION}:
            raise RunDirError(f"{self.path}: metrics of version {min(versions)} (this inductionlab writes version "
                              f"{METRICS_VERSION}, whose probes and accuracies mean something else); delete the run "
                              "directory and train it again")
        return rows

    def append_metrics(self, row: dict[str, Any]) -> None:
        with self.metrics_path.open("a") as fh:
            fh.write(jsonio.dumps({"metrics_version": METRICS_VERSION, **row}) + "\n")

    def truncate_metrics(self, last_step: int) -> None:
        """Drop rows logged after ``last_step`` (they are recomputed exactly on resume)."""
        rows = [r for r in self.metrics() if r["step"] <= last_step]
        atomic_write(self.metrics_path, "".join(jsonio.dumps(r) + "\n" for r in rows))

    def summary(self) -> dict[str, Any] | None:
        """The final summary, or None before the run finished; refused when written with other metrics."""
        if not self.summary_path.exists():
            return None
        try:
            summary = json.loads(self.summary_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as err:
            raise RunDirError(f"{self.summary_path}: unreadable ({first_line(err)})") from None
        if not isinstance(summary, dict):
            raise RunDirError(f"{self.summary_path}: not a run summary (expected a JSON object)")
        if summary.get("finished") and summary.get("metrics_version", 1) != METRICS_VERSION:
            raise RunDirError(f"{self.path}: summary of metrics version {summary.get('metrics_version', 1)} (this "
                              f"inductionlab writes version {METRICS_VERSION}); delete the run directory and train "
                              "it again")
        return summary

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write(self.summary_path, jsonio.dumps(summary, indent=2) + "\n")

    # ---------------------------------------------------------------- checkpoints

    def _stem(self, step: int) -> Path:
        return self.checkpoint_dir / f"step_{step:08d}"

    def checkpoint_steps(self) -> list[int]:
        if not self.checkpoint_dir.exists():
            return []
        names = (re.fullmatch(r"step_(\d{8})\.json", p.name) for p in self.checkpoint_dir.glob("step_*.json"))
        return sorted(int(m.group(1)) for m in names if m)

    def latest_step(self) -> int | None:
        steps = self.checkpoint_steps()
        return steps[-1] if steps else None

    def save_checkpoint(self, step: int, tensors: dict[str, torch.Tensor], state: dict[str, Any],
                        keep: int = KEEP_CHECKPOINTS) -> None:
        """Write the tensors, then the JSON naming their checksum; keep the newest ``keep`` (0: all), and
        the newest checkpoint whose weights are finite (``state["finite"]``, default true) whatever ``keep``."""
        stem = self._stem(step)
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        tmp = stem.with_suffix(".safetensors.tmp")
        try:
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
        except (SafetensorError, OSError) as err:
            tmp.unlink(missing_ok=True)
            raise CheckpointError(f"{tmp.parent}: cannot write a checkpoint ({first_line(err)}); the last one is "
                                  "kept; free space and run the same command to resume") from None
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        os.replace(tmp, stem.with_suffix(".safetensors"))
        atomic_write(stem.with_suffix(".json"), jsonio.dumps({**state, "step": step, "sha256": digest}, indent=1))
        steps = self.checkpoint_steps()
        newest_finite = next((s for s in reversed(steps) if self._finite(s)), None)
        for old in (steps[:-keep] if keep else []):
            if old == newest_finite:
                continue
            self._stem(old).with_suffix(".json").unlink(missing_ok=True)
            self._stem(old).with_suffix(".safetensors").unlink(missing_ok=True)

    def _finite(self, step: int) -> bool:
        try:
            return json.loads(self._stem(step).with_suffix(".json").read_text()).get("finite", True) is not False
        except (OSError, ValueError, AttributeError):
            return False

    def load_checkpoint(self, step: int | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Tensors and state of checkpoint ``step`` (default: the latest), verified by checksum."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"{self.checkpoint_dir}: no checkpoint found")
        stem = self._stem(step)
        json_path, tensor_path = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
        try:
            state = json.loads(json_path.read_text(encoding="utf-8"))
            blob = tensor_path.read_bytes()
        except FileNotFoundError as err:
            raise CheckpointError(f"{err.filename}: missing checkpoint file") from None
        except (OSError, ValueError, RecursionError) as err:
            raise CheckpointError(f"{json_path}: corrupt checkpoint ({first_line(err)})") from None
        if not isinstance(state, dict) or state.get("step") != step:
            raise CheckpointError(f"{json_path}: corrupt checkpoint (not the state of step {step})")
        if hashlib.sha256(blob).hexdigest() != state.get("sha256"):
            raise CheckpointError(f"{tensor_path}: corrupt checkpoint (checksum mismatch)")
        try:
            tensors = load_file(str(tensor_path))
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{tensor_path}: corrupt checkpoint ({err})") from None
        return tensors, state


# ---------------------------------------------------------------------------- run specifications


def seed_overrides(seed: int) -> list[str]:
    """The one convention for a sweep seed: ``seeds.init = s``, ``seeds.data = s + 100``."""
    return [f"seeds.init={seed}", f"seeds.data={seed + 100}"]


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: ``preset`` (name or YAML path) with ``overrides``, named ``name``.

    ``params`` are the values that identify the run in the results table (grid values, seed).
    """

    name: str
    preset: str
    overrides: tuple[str, ...] = ()
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def folder(self) -> str:
        """The run's folder name under ``runs/``: the name with unsafe characters replaced."""
        return re.sub(r"[^A-Za-z0-9._=+-]+", "_", self.name).strip("._") or "run"

    def config(self) -> RunConfig:
        return load_config(self.preset, [*self.overrides, f"name={yaml.safe_dump(self.name).strip()}"])
