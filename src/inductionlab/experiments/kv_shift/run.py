"""Experiment "kv-shift" (docs/science.md §3.3, §6, §7): induction in one KV-shifting attention layer.

One attention layer whose keys and values are mixed with their predecessors (four scalars per head) next to
one and two vanilla layers, on two tasks, same widths and training:

- **bigram** — bigrams with fixed triggers, associative-memory transformers on every target with a linear
  ``W_F`` (birth's setting (a)): one KV-shift layer with no positional encoding, against birth's one- and
  two-layer runs (the same runs: :func:`plan` names them as birth does, and ``reproduce`` trains a run two
  experiments plan once);
- **markov** — in-context Markov chains, attention-only general transformers: one KV-shift layer with no
  positional encoding, against icl-mc's one- and two-layer models (``rpe``), again the same runs.

The claims (:mod:`.claims`) judge, seed by seed, whether one KV-shift layer learns what one vanilla layer
cannot, whether it gets there earlier than two vanilla layers, and whether its scalars move toward the pattern
of the construction (``α1 = 0, α2 = 1, β1 = 1, β2 = 0``); keeping the head at 4× the training length is a check.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import torch

from inductionlab.experiments.birth.run import PRESETS as BIRTH_PRESETS
from inductionlab.experiments.birth.run import plan as birth_plan
from inductionlab.experiments.icl_mc.run import PRESETS as ICL_MC_PRESETS
from inductionlab.experiments.icl_mc.run import plan as icl_mc_plan
from inductionlab.experiments.kit.experiment import experiment_preset
from inductionlab.experiments.kit.finish import finish
from inductionlab.experiments.kit.runs import trained_runs
from inductionlab.experiments.kv_shift.claims import checks, claims
from inductionlab.experiments.kv_shift.measure import summarise
from inductionlab.experiments.kv_shift.report import readme, setting, write_figures
from inductionlab.runs import RunDir, RunSpec, seed_overrides
from inductionlab.tasks.build import make_task
from inductionlab.train import open_trained

# per task: the training preset of the KV-shift arm (that of the vanilla arms); seeds; the check's longer prompts
PRESETS = {
    "quick": {"bigram": "birth-quick", "markov": "icl-mc-quick", "seeds": (0, 1, 2), "long_factor": 4,
              "long_batch": 128},
    "paper": {"bigram": "birth-paper", "markov": "icl-mc-paper", "seeds": (0, 1, 2, 3, 4), "long_factor": 4,
              "long_batch": 256},
    "smoke": {"bigram": "birth-quick", "markov": "icl-mc-quick", "seeds": (0,), "long_factor": 4, "long_batch": 32},
}
KV_SHIFT_ARM = ("model.n_layers=1", "model.kv_shift=true", "model.pos_enc=none")
ARMS = ("kv-shift", "one-layer", "two-layer")  # the KV-shift layer, then the vanilla arms of the other experiments
QUESTION = ("Does one KV-shifting attention layer learn induction, which one vanilla layer cannot, and earlier than "
            "two vanilla layers, with its scalars moving toward the construction's pattern (docs/science.md §3.3)?")


def _vanilla(preset_name: str) -> dict[str, list[RunSpec]]:
    """The vanilla arms per task: birth's setting-(a) runs and icl-mc's order-2 runs, exactly as they plan them."""
    return {"bigram": [s for s in birth_plan(preset_name) if dict(s.params)["setting"] == "all"],
            "markov": [s for s in icl_mc_plan(preset_name) if dict(s.params)["order"] == 2]}


def _smoke_set(task: str, preset_name: str) -> tuple[str, ...]:
    """The preset's overrides in the experiment that owns the task's vanilla arms (smoke: smaller sizes)."""
    return (BIRTH_PRESETS if task == "bigram" else ICL_MC_PRESETS)[preset_name].get("set", ())


def plan(preset_name: str) -> list[RunSpec]:
    """Per task: the one KV-shift layer × seeds, and the vanilla arms (the other experiments' own runs)."""
    preset = experiment_preset(PRESETS, preset_name)
    runs = []
    for task, vanilla in _vanilla(preset_name).items():
        extra = (*_smoke_set(task, preset_name), *(("data.order=2",) if task == "markov" else ()))
        runs += [RunSpec(f"kv-shift-{preset_name}-{task}-kv-shift-s{seed}", preset[task],
                         (*extra, *KV_SHIFT_ARM, *seed_overrides(seed)),
                         (("task", task), ("arm", "kv-shift"), ("seed", seed))) for seed in preset["seeds"]]
        runs += [s for s in vanilla if dict(s.params)["seed"] in preset["seeds"]]
    return runs


def arm_of(spec: RunSpec) -> tuple[str, str]:
    """(task, arm) of one of :func:`plan`'s runs."""
    p = dict(spec.params)
    if "task" in p:
        return p["task"], p["arm"]
    return ("bigram" if "setting" in p else "markov"), p["depth"]


@torch.no_grad()
def longer_accuracy(run_dir: Path, factor: int, batch_size: int) -> dict[str, float]:
    """The in-context accuracy of a trained run on its task at its training length and at ``factor``× it (the
    same evaluation seed; a model with no positions reads any length)."""
    cfg, model, _ = open_trained(run_dir)
    model.eval()
    out = {}
    for name, length in (("train_len", cfg.data.seq_len), ("long", factor * cfg.data.seq_len)):
        longer = cfg.model_copy(update={"data": cfg.data.model_copy(update={"seq_len": length})})
        task = make_task(longer, torch.device("cpu"))
        metrics = task.evaluate(model, task.evaluation_batch(batch_size, cfg.seeds.eval), cfg.data.seq_len)
        out[name] = metrics["acc_in_context"]
    return out | {"length": factor * cfg.data.seq_len, "train_length": cfg.data.seq_len}


def analyse(runs_dir: Path, out: Path, preset_name: str) -> dict[str, Any]:
    """Curves, milestones and scalars of the three arms per task; claims, the check, figures, README."""
    preset = experiment_preset(PRESETS, preset_name)
    specs, diverged = trained_runs(runs_dir, plan(preset_name))
    curves: dict[str, dict[str, dict[int, list[dict[str, Any]]]]] = {}
    never: dict[str, int] = {}
    long: dict[str, Any] = {}
    for spec in specs:
        task, arm = arm_of(spec)
        run = RunDir(runs_dir / spec.folder)
        curves.setdefault(task, {}).setdefault(arm, {})[dict(spec.params)["seed"]] = run.metrics()
        t = run.config().train
        never[task] = max(never.get(task, 0), t.steps + t.eval_every)  # the evaluation after the last
        if task == "bigram" and arm == "kv-shift":
            long[str(dict(spec.params)["seed"])] = longer_accuracy(runs_dir / spec.folder, preset["long_factor"],
                                                                   preset["long_batch"])
    results: dict[str, Any] = {"experiment": "kv-shift", "preset": preset_name, "runs": [s.folder for s in specs],
                               "question": QUESTION, "setting": setting(runs_dir, specs, arm_of),
                               "never_reached_at": never, "longer": long, "tasks": summarise(curves, never)}
    return finish(out, results, claims=claims(results), checks=checks(results), diverged=diverged,
                  figures=partial(write_figures, curves), readme=readme)
