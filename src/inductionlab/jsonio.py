"""Strict JSON: every JSON file inductionlab writes parses with a parser that rejects ``NaN``/``Infinity``.

A non-finite number is written as ``null`` with the reason beside it: in a mapping, the key
``KEY_nonfinite`` holds ``"nan"``, ``"inf"`` or ``"-inf"`` for a number, or ``{"INDEX": reason}`` for
the non-finite entries of a list (``"2.0"`` for row 2, column 0 of a nested list). So a metric that
was NaN reads ``"loss": null, "loss_nonfinite": "nan"``, and a reader never mistakes it for a number.
"""

from __future__ import annotations

import json
import math
from typing import Any

SUFFIX = "_nonfinite"


def _reason(value: float) -> str:
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _is_nonfinite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _clean_list(values: list | tuple, path: str, reasons: dict[str, str]) -> list:
    out = []
    for i, value in enumerate(values):
        where = f"{path}.{i}" if path else str(i)
        if _is_nonfinite(value):
            reasons[where] = _reason(value)
            out.append(None)
        elif isinstance(value, list | tuple):
            out.append(_clean_list(value, where, reasons))
        else:
            out.append(to_strict(value))
    return out


def to_strict(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` and its reason recorded beside it."""
    if _is_nonfinite(value):
        return None  # a bare number has no place for a reason; inside a mapping it gets one
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if _is_nonfinite(item):
                out[key], out[f"{key}{SUFFIX}"] = None, _reason(item)
            elif isinstance(item, list | tuple):
                reasons: dict[str, str] = {}
                out[key] = _clean_list(item, "", reasons)
                if reasons:
                    out[f"{key}{SUFFIX}"] = reasons
            else:
                out[key] = to_strict(item)
        return out
    if isinstance(value, list | tuple):
        return _clean_list(value, "", {})
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """Strict JSON text of ``value`` (non-finite numbers become ``null`` with their reason)."""
    return json.dumps(to_strict(value), allow_nan=False, **kwargs)


def _reject(name: str) -> Any:
    raise ValueError(f"not strict JSON: {name}")


def loads(text: str | bytes) -> Any:
    """Parse strict JSON: ``NaN``, ``Infinity`` and ``-Infinity`` are refused (ValueError)."""
    return json.loads(text, parse_constant=_reject)
