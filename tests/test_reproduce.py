"""``inductionlab reproduce``: the report in a real browser, interruption and resume, self-containment.

Uses the ``smoke`` preset (every experiment, tiny models, about 20 seconds): the plumbing is the
subject here; the quick preset's numbers are checked by test_birth, test_hijack and test_length.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from inductionlab.experiments import EXPERIMENTS, get_experiment
from inductionlab.experiments.kit.claims import VERDICTS

pytestmark = pytest.mark.slow  # every test here runs a reproduction or waits on one
NAME = '<script>alert("hijacked")</script> smoke & co'
SMOKE_RUNS = len({spec for exp in EXPERIMENTS for spec in get_experiment(exp).plan("smoke")})  # shared runs once


def reproduce_cmd(out: Path) -> list[str]:
    return [sys.executable, "-m", "inductionlab", "reproduce", "--preset", "smoke", "--out", str(out),
            "--name", NAME, "--quiet"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reproduce") / "smoke"
    done = subprocess.run(reproduce_cmd(out), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"report: {out / 'report.html'}" in done.stdout
    return out


def test_results_hold_every_experiment_with_claims_and_figures(smoke):
    results = json.loads((smoke / "results.json").read_text())
    assert results["name"] == NAME and list(results["experiments"]) == list(EXPERIMENTS)
    for exp, res in results["experiments"].items():
        assert res["question"] and res["setting"] and res["claims"], exp
        for c in res["claims"]:  # docs/science.md §7: a statistic, its null and the rule, side by side
            assert c["verdict"] in VERDICTS and c["null_name"] and c["rule"].startswith("holds when"), (exp, c)
            assert all(c[k] is None or isinstance(c[k], float) for k in ("measured", "null")), (exp, c)
            found = c["intervals"]  # docs/science.md §7.1: every claim judged by its intervals over seeds
            assert {"measured_ci", "null_ci", "difference_ci", "n_seeds", "sensitivity"} <= set(found), (exp, c)
            assert c["verdict"] in ("holds", "fails", "inconclusive") and found["sensitivity"], (exp, c)
        assert all(k["passed"] for k in res.get("checks", [])), (exp, res["checks"])
        assert res["figures"] and all((smoke / exp / f).is_file() for f in res["figures"])
        assert (smoke / exp / "README.md").is_file()
    runs = pd.read_parquet(smoke / "runs.parquet")
    assert runs["finished"].all() and len(runs) == SMOKE_RUNS
    assert {"torch", "numpy"} <= set(results["environment"]["packages"])


def test_report_is_self_contained(smoke):
    html = (smoke / "report.html").read_text()
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", html), "a resource outside the file"
    assert "<script" not in html.replace("&lt;script", "")
    figures = sum(len(r["figures"]) for r in json.loads((smoke / "results.json").read_text())["experiments"].values())
    assert html.count('src="data:image/png;base64,') == figures


def test_report_renders_in_chromium(smoke, chromium):
    page = chromium(smoke / "report.html")
    assert page.console_errors == []
    assert page.script_elements == 0
    assert NAME in page.title and NAME in page.body_text  # shown as text, not run as markup
    results = json.loads((smoke / "results.json").read_text())
    figures = [f"{exp}: {f}" for exp, r in results["experiments"].items() for f in r["figures"]]
    assert sorted(image.alt for image in page.images) == sorted(figures)
    for image in page.images:
        assert image.complete and image.natural_width > 100, image.alt
        assert image.nonblank, image.alt
    for verdict_text in ("Claims: measured against a null", "Environment", "Setting."):
        assert verdict_text in page.body_text


def _finished(out: Path) -> list[Path]:
    return sorted((out / "runs").glob("*/summary.json"))


def test_interrupted_reproduce_finishes_only_what_is_missing(smoke, tmp_path):
    out = tmp_path / "interrupted"
    # a shell starts background jobs with Ctrl-C ignored, and an ignored signal stays ignored across exec:
    # give the command the terminal's default, as when a user runs it
    proc = subprocess.Popen(reproduce_cmd(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while len(_finished(out)) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "reproduce ended before it could be interrupted"
    at_signal = len(_finished(out))
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, f"{at_signal} of {SMOKE_RUNS} runs finished at the signal; stderr: {err[-2000:]}"
    assert err.strip().splitlines()[-1].startswith("interrupted;") and "Traceback" not in err
    assert not (out / "results.json").exists()
    kept = {p: p.stat().st_mtime_ns for p in _finished(out)}
    assert 3 <= len(kept) < SMOKE_RUNS

    done = subprocess.run(reproduce_cmd(out), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # finished runs were not retrained
    assert (out / "results.json").read_text() == (smoke / "results.json").read_text()
    columns = ["name", "step", "acc_in_context", "loss_global", "wo", "wk1"]
    pd.testing.assert_frame_equal(pd.read_parquet(out / "runs.parquet")[columns],
                                  pd.read_parquet(smoke / "runs.parquet")[columns])


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    out = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(proc.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def _workers(pid: int) -> list[int]:
    """The sweep's worker processes among ``pid``'s children (not multiprocessing's resource tracker)."""
    workers = []
    for child in _children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            workers.append(child)
    return workers


def test_reproduce_with_a_killed_worker_finishes_on_its_own_with_the_same_results(smoke, tmp_path):
    out, log = tmp_path / "killed", tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        proc = subprocess.Popen(reproduce_cmd(out), stdout=subprocess.PIPE, stderr=stderr, text=True)
        deadline, killed = time.monotonic() + 300, 0
        # kill a worker while runs train (the out-of-memory killer's SIGKILL); a worker caught idle between
        # runs is replaced without a word, so kill again until one was training
        while "worker killed by signal 9" not in log.read_text() and time.monotonic() < deadline:
            training = [p for p in (out / "runs").glob("*/metrics.jsonl") if not (p.parent / "summary.json").exists()]
            workers = _workers(proc.pid)
            if training and workers and proc.poll() is None:
                os.kill(workers[0], signal.SIGKILL)
                killed += 1
                time.sleep(2.0)
            else:
                assert proc.poll() is None, "reproduce ended before a worker could be killed"
                time.sleep(0.02)
        stdout, _ = proc.communicate(timeout=600)
    err = log.read_text()
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err and "the run resumes from its last checkpoint (attempt 2 of 3)" in err
    assert f"report: {out / 'report.html'}" in stdout
    assert (out / "results.json").read_text() == (smoke / "results.json").read_text()
