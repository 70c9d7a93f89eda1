"""The folder results are written into (an experiment's, a report's, a tool's)."""

from __future__ import annotations

from pathlib import Path

from inductionlab.errors import ConfigError


def results_folder(out: str | Path) -> Path:
    """Create the results folder ``out`` (ConfigError when it cannot be written)."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"--out {out}: cannot write there ({err.strerror})") from None
    return out
