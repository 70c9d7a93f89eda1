"""The package's import layers: no cycle, the experiments imported only by the CLI and ``reproduce``, and an
experiment defined outside the package run through the registry and ``reproduce`` (docs/architecture.md)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pandas as pd
import pytest

from inductionlab.errors import ConfigError
from inductionlab.experiments import EXPERIMENTS, experiment_names, get_experiment, register_experiment
from inductionlab.reproduce import planned_runs, reproduce
from inductionlab.runs import RunDir

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "inductionlab"
TOY = "toy_plugin:TOY"  # tests/ is on sys.path under pytest, and so in the processes it spawns


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Module → the package modules it imports at module level (``from a import b`` counts ``a.b`` when it is
    a module, else ``a``)."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        found = set()
        for node in ast.parse(path.read_text()).body:  # module level only: a function's import runs later
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in files else node.module
                          for a in node.names}
        graph[name] = {m for m in found if m in files and m != name}
    return graph


def test_only_the_cli_and_reproduce_import_the_experiments():
    graph = _imports()
    outside = {m for m in graph if not m.startswith("inductionlab.experiments")}
    importers = {m for m in outside if any(i.startswith("inductionlab.experiments") for i in graph[m])}
    assert importers <= {"inductionlab.reproduce"}, importers  # the CLI imports them inside its commands
    assert "inductionlab.tools.patching" in graph and "inductionlab.prompts.query_pairs" in graph


def test_the_package_has_no_import_cycle():
    graph = _imports()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " → ".join(path[path.index(dep):] + [module, dep]))
            if dep not in state:
                visit(dep, path + [module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_the_registry_resolves_names_and_import_paths():
    assert EXPERIMENTS == ("birth", "hijack", "length", "nope3", "interventions", "icl-mc", "width",
                           "kv-shift")
    assert [get_experiment(e).name for e in EXPERIMENTS] == list(EXPERIMENTS)
    assert get_experiment("icl-mc").title
    assert get_experiment("hijack").analysis_cost > get_experiment("birth").analysis_cost  # the longest first
    toy = register_experiment(TOY)
    assert toy.name == "toy" and "toy" in experiment_names() and get_experiment("toy") is toy
    assert [s.name for s in planned_runs("smoke", (TOY,))] == ["toy-smoke-s0", "toy-smoke-s1"]
    for bad, message in (("nope", "unknown experiment 'nope'"), ("no_such_module:X", "cannot import"),
                         ("toy_plugin:plan", "defines no Experiment"), ("toy_plugin", "unknown"),
                         (".toy:TOY", "an import path is"), ("toy_plugin:", "an import path is")):
        with pytest.raises(ConfigError, match=message):
            get_experiment(bad)


@pytest.mark.slow
def test_an_experiment_from_outside_the_package_runs_through_reproduce(tmp_path):
    """A task and an experiment from tests/toy_plugin.py, named by import path only: the local sweep trains two
    smoke runs of the task in spawned workers, a spawned worker analyses them, and the report has its section."""
    results = reproduce(tmp_path, "smoke", (TOY,), workers=2, progress=False)
    runs = pd.read_parquet(tmp_path / "runs.parquet")
    assert sorted(runs["name"]) == ["toy-smoke-s0", "toy-smoke-s1"] and set(runs["status"]) == {"finished"}
    for name in runs["name"]:  # trained on the task outside the package, named by its import path
        assert RunDir(tmp_path / "runs" / name).config().data.task == "toy_plugin:RepeatTask"
    toy = results["experiments"]["toy"]
    assert list(results["experiments"]) == ["toy"] and "error" not in toy, toy
    assert [c["intervals"]["n_seeds"] for c in toy["claims"]] == [2]  # judged over its two seeds
    assert toy["figures"] == ["claims_forest.png", "toy.png"]
    for c in toy["claims"]:  # Holm's adjustment runs across the whole report, so only the report's file has it
        assert c["intervals"].pop("p_holm", None) is None or "p_value" in c["intervals"]
    assert json.loads((tmp_path / "toy" / "results.json").read_text()) == toy
    assert (tmp_path / "toy" / "README.md").read_text().startswith("# Toy")
    assert "A toy experiment from outside the package" in (tmp_path / "report.html").read_text()
