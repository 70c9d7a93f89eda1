"""What an analysis was computed from: the runs it read and the code that read them, as one fingerprint.

``reproduce`` records :func:`analysis_inputs` in each experiment's ``results.json`` (under ``inputs``), taken
before the analysis reads its runs, and analyses an experiment again when the fingerprint no longer matches:
after a run was retrained, or after inductionlab (or an experiment's own module outside the package) changed.

A run is known by what its analysis can read of it: its ``summary.json``, its metrics log and its newest
checkpoint (the JSON that names the checksum of its tensors, so the tensors themselves are not read again). The
wall-clock fields of the summary and the log (:data:`TIMING`) are left out: they tell how long a run took, not
what it learnt, so a run trained again to the same weights leaves the fingerprint as it was.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import inductionlab
from inductionlab.runs import RunDir, RunSpec

PACKAGE_DIR = Path(inductionlab.__file__).resolve().parent
TIMING = ("elapsed_s",)  # how long a run took so far: in every metrics row and in the summary


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()


@functools.cache
def package_source_hash() -> str:
    """One hash of the installed package's files (its ``.py`` files, presets, data and templates, in sorted
    order; compiled files left out), computed once per process."""
    return files_hash(p for p in PACKAGE_DIR.rglob("*")
                      if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo"))


def files_hash(paths: Iterable[Path]) -> str:
    """One hash of the files ``paths`` (each path, relative to the package or as given, and its bytes)."""
    h = hashlib.sha256()
    for path in sorted(Path(p).resolve() for p in paths):
        name = path.relative_to(PACKAGE_DIR) if path.is_relative_to(PACKAGE_DIR) else path
        h.update(f"{name.as_posix()}\0".encode())
        h.update(_digest(path.read_bytes()).encode())
    return h.hexdigest()


def source_hash(outside: Iterable[Path] = ()) -> str:
    """The code an analysis runs: the package (:func:`package_source_hash`), and ``outside`` (an experiment's own
    module defined outside the package) when given."""
    outside = [Path(p) for p in outside]
    return package_source_hash() if not outside else _digest(f"{package_source_hash()}:{files_hash(outside)}".encode())


def _without_timing(row: Any) -> Any:
    return {k: v for k, v in row.items() if k not in TIMING} if isinstance(row, dict) else row


def run_hash(run_dir: Path) -> dict[str, str | None]:
    """What an analysis can read of the run in ``run_dir``, hashed: its summary and its metrics log (wall-clock
    fields left out) and its newest checkpoint's JSON (step, state and the checksum of its tensors); ``None`` for
    a part that is missing. A file that does not parse is hashed as it is."""
    run = RunDir(run_dir)
    out: dict[str, str | None] = {}
    for part, path, rows in (("summary", run.summary_path, False), ("metrics", run.metrics_path, True)):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            out[part] = None
            continue
        try:
            text = data.decode()
            parsed = ([_without_timing(json.loads(line)) for line in text.splitlines() if line.strip()] if rows
                      else _without_timing(json.loads(text)))
            out[part] = _digest(_canonical(parsed))
        except (UnicodeDecodeError, ValueError, RecursionError):
            out[part] = _digest(data)
    step = run.latest_step()
    checkpoint = None if step is None else run.checkpoint_dir / f"step_{step:08d}.json"
    try:
        out["checkpoint"] = None if checkpoint is None else _digest(checkpoint.read_bytes())
    except FileNotFoundError:  # removed between the listing and the read
        out["checkpoint"] = None
    return out


def analysis_inputs(runs_dir: Path, specs: list[RunSpec], preset: str, source: str) -> dict[str, Any]:
    """The fingerprint of an analysis of ``specs`` (the runs under ``runs_dir`` it reads) at ``preset`` by the code
    ``source`` (:func:`source_hash`): ``fingerprint`` (everything), ``source``, ``runs_fingerprint`` (the runs
    alone) and ``runs`` (how many)."""
    runs = {spec.folder: run_hash(runs_dir / spec.folder) for spec in dict.fromkeys(specs)}
    runs_fingerprint = _digest(_canonical(runs))
    return {"fingerprint": _digest(_canonical({"preset": preset, "source": source, "runs": runs_fingerprint})),
            "source": source, "runs_fingerprint": runs_fingerprint, "runs": len(runs)}


def changed(stored: Any, now: dict[str, Any]) -> str | None:
    """What changed between the ``inputs`` an analysis recorded (``stored``) and ``now`` (None: nothing), in
    words."""
    if not isinstance(stored, dict) or "fingerprint" not in stored:
        return "its results.json does not record what it was computed from"
    if stored["fingerprint"] == now["fingerprint"]:
        return None
    runs, code = stored.get("runs_fingerprint") != now["runs_fingerprint"], stored.get("source") != now["source"]
    if runs and code:
        return "its runs and the code changed since its analysis"
    if code:
        return "the code (inductionlab or the experiment's module) changed since its analysis"
    return "its runs changed since its analysis" if runs else "its preset changed since its analysis"
