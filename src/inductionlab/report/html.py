"""A self-contained HTML report: figures embedded as data URIs, no script, no network.

Every string from results or configs goes through Jinja2's autoescaping, so a run name such as
``<script>…</script>`` shows as text.
"""

from __future__ import annotations

import base64
import datetime
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from inductionlab.report.figures import FOREST_FIGURE
from inductionlab.report.format import VERDICTS, interval_text, number
from inductionlab.runs import RunDir, atomic_write

RUN_COLUMNS = ("name", "status", "step", "acc_in_context", "loss_global", "wo", "wk2", "wk1", "elapsed_s")


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _runs_of(table: pd.DataFrame, experiment: str, preset: str) -> pd.DataFrame:
    return table[table["folder"].str.startswith(f"{experiment}-{preset}-")]


def _configs(out: Path, folders: list[str]) -> list[dict[str, str]]:
    """The resolved config of each run folder (YAML text)."""
    configs = []
    for folder in folders:
        path = RunDir(out / "runs" / folder).config_path
        if path.exists():
            configs.append({"name": folder, "yaml": path.read_text()})
    return configs


def write_report(results: dict[str, Any], table: pd.DataFrame, out: Path, titles: dict[str, str],
                 wall_s: float | None = None) -> Path:
    """Render ``out/report.html`` from the reproduce results and the runs table; ``titles``: experiment name →
    the heading of its section."""
    sections = []
    forest = f"{FOREST_FIGURE}.png"
    for exp, res in results["experiments"].items():
        runs = _runs_of(table, exp, results["preset"])
        columns = [c for c in RUN_COLUMNS if c in runs.columns]
        sections.append({
            "id": exp, "title": titles.get(exp, exp), "question": res.get("question", ""),
            "setting": res.get("setting", ""), "claims": res.get("claims", []), "checks": res.get("checks", []),
            "diverged_runs": res.get("diverged_runs") or [], "error": res.get("error"),
            "figures": [{"uri": _data_uri(out / exp / f), "alt": f"{exp}: {f}", "name": f}
                        for f in res.get("figures", []) if (out / exp / f).exists() and f != forest],
            "forest": _data_uri(out / exp / forest) if forest in res.get("figures", []) else None,
            "columns": columns, "runs": [[number(v) for v in row] for row in runs[columns].itertuples(index=False)],
            "configs": _configs(out, list(runs["folder"])),
        })
    counts = {v: sum(c["verdict"] == v for s in sections for c in s["claims"]) for v in VERDICTS}
    checks = [c for s in sections for c in s["checks"]]
    counts |= {"checks": len(checks), "checks_failed": [c["check"] for c in checks if not c["passed"]]}
    env = jinja2.Environment(loader=jinja2.PackageLoader("inductionlab.report", "."),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["number"] = number
    env.filters["intervals"] = interval_text
    html = env.get_template("template.html.j2").render(
        name=results["name"], preset=results["preset"], sections=sections, counts=counts, forest_name=forest,
        environment=results["environment"], wall_min=None if wall_s is None else wall_s / 60,
        generated=datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
    )
    atomic_write(out / "report.html", html)
    return out / "report.html"
