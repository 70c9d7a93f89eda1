"""Experiments of SCIENCE §6: each is a function from a preset to a results folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inductionlab.errors import ConfigError


def open_experiment(out_dir: str | Path, preset_name: str, presets: dict[str, dict[str, Any]]
                    ) -> tuple[dict[str, Any], Path]:
    """The experiment preset named ``preset_name`` and the created results folder, or a ConfigError."""
    if preset_name not in presets:
        raise ConfigError(f"--preset: unknown preset {preset_name!r}; allowed: {', '.join(presets)}")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--out {out}: cannot create ({err.strerror})") from None
    return presets[preset_name], out
