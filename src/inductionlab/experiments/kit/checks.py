"""Checks: what holds by construction, computed and kept apart from the claims (docs/science.md §7).

A statement that cannot fail while the code is right — layer 1 ablated throughout makes layer 2 a
one-layer model; a one-layer attention-only model cannot reach a strategy that needs two layers;
``ape`` positions beyond ``T_train`` never get a gradient — is not evidence about learning, so it is
no claim. It is still computed on every reproduction: were it ever to fail, the code or the setting
is wrong, and the report says so at its top and ``reproduce`` exits non-zero (after writing
everything, so nothing is lost).
"""

from __future__ import annotations

import math
from typing import Any

from inductionlab.jsonio import to_strict
from inductionlab.report.format import number


def check(text: str, statistic: str, value: float | None, expected: str, passed: bool, **detail: Any
          ) -> dict[str, Any]:
    """One check: ``text`` what must hold by construction, ``statistic`` what ``value`` is, ``expected`` the
    condition in words, ``passed`` whether ``value`` meets it (a value that could not be measured does not);
    ``detail``: per-seed values kept beside it."""
    measured = value is not None and isinstance(value, int | float) and math.isfinite(value)
    return {"check": text, "statistic": statistic, "value": float(value) if measured else None,
            "expected": expected, "passed": bool(passed and measured)} | to_strict(detail)


def failed_checks(experiments: dict[str, Any]) -> list[str]:
    """``"experiment: check"`` for every check of a report's experiments (``{name: results}``) that failed."""
    return [f"{name}: {c['check']}" for name, results in experiments.items()
            for c in results.get("checks", []) if not c["passed"]]


def checks_table(checks: list[dict[str, Any]]) -> str:
    """The checks as a Markdown table."""
    lines = ["| check (holds by construction) | statistic | value | expected | passed |", "|---|---|---|---|---|"]
    lines += [f"| {c['check']} | {c['statistic']} | {number(c['value'])} | {c['expected']} | "
              f"{'yes' if c['passed'] else '**NO: the code or the setting is wrong**'} |" for c in checks]
    return "\n".join(lines)
