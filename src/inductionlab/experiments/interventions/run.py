"""Experiment "interventions" (docs/science.md §6, §7, §8): which part has to go right, and when, for an
induction head to form?

Bietti's setting (b) of the birth experiment (in-context loss, no ``W_F``, fixed triggers, frozen
embeddings, SGD), every trained matrix starting at zero, so that the arms differ only by their
intervention; at least five seeds per arm, the same seeds in every arm:

- ``none``: no intervention (the null of the milestone claims; with layer 1 removed at evaluation, the
  model of the equivalence claims);
- ``clamp-previous-token``: layer 1's pattern clamped to perfect previous-token from step 0;
- ``freeze-wk2``: ``W_K²`` frozen at zero until step ``s``;
- ``ablate-layer1``: layer 1's attention output zero-ablated throughout (training and evaluation): a
  one-layer model by construction, so a check, not a claim;
- ``one-layer``: a one-layer model of the same width, the reference of the check and of the equivalence
  claims;
- ``clamp-induction``: layer 2's pattern clamped to perfect induction from step 0.

Milestones: the first evaluation step with in-context accuracy ≥ 0.9 (non-degenerate sequences),
and the first step with the ``wo`` probe ≥ 0.9 (logged every step), interpolated. The claims and the
check are taken seed by seed, paired on the seed (:mod:`.claims`); the README's medians count a
milestone never reached as later than every step (a median that falls on one is undefined).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import torch

from inductionlab.config import InterventionConfig
from inductionlab.experiments.interventions.claims import EVALUATION_ABLATIONS, MILESTONE, checks, claims
from inductionlab.experiments.interventions.report import readme, setting, write_figures
from inductionlab.experiments.kit.curves import (
    censored_median,
    evaluations,
    final_values,
    interpolated_milestone,
    last_evaluation,
    seed_spread,
)
from inductionlab.experiments.kit.experiment import experiment_preset
from inductionlab.experiments.kit.finish import finish
from inductionlab.experiments.kit.runs import trained_runs
from inductionlab.interventions import Interventions
from inductionlab.models.names import hook_name
from inductionlab.runs import RunDir, RunSpec, seed_overrides
from inductionlab.tasks.bigram_task import label_metrics
from inductionlab.tasks.build import make_task
from inductionlab.train import open_trained

PRESETS = {
    "quick": {"base": "interventions-quick", "seeds": (0, 1, 2, 3, 4), "freeze_until": 50},
    "paper": {"base": "interventions-paper", "seeds": tuple(range(10)), "freeze_until": 200},
    "smoke": {"base": "interventions-quick", "seeds": (0, 1), "freeze_until": 10,
              "set": ("train.steps=30", "model.d_model=32", "train.eval_every=10", "train.checkpoint_every=10")},
}
FINAL_KEYS = ("acc_in_context", "acc_in_context_all", "loss_in_context", "wo", "wk2", "wk1", "attn1_prev_token",
              "attn2_induction")
QUESTION = ("Which part has to go right, and when, for an induction head to form? Interventions during training "
            "(docs/science.md §8) in Bietti's setting (b): a perfect previous-token head, a key matrix held at "
            "zero, layer 1 removed, a perfect induction pattern.")


def arms(freeze_until: int) -> dict[str, tuple[str, ...]]:
    """Each arm's overrides of the base preset (docs/science.md §8)."""
    def one(spec: str) -> tuple[str, ...]:
        return (f"interventions=[{spec}]",)
    return {
        "none": (),
        "clamp-previous-token": one(f"{{target: {hook_name('pattern', 0)}, op: clamp, pattern: previous-token}}"),
        "freeze-wk2": one(f"{{target: wk2, op: freeze, value: zero, stop: {freeze_until}}}"),
        "ablate-layer1": one(f"{{target: {hook_name('attn_out', 0)}, op: zero-ablate}}"),
        "one-layer": ("model.n_layers=1",),
        "clamp-induction": one(f"{{target: {hook_name('pattern', 1)}, op: clamp, pattern: induction}}"),
    }


def plan(preset_name: str) -> list[RunSpec]:
    """Every arm × the preset's seeds."""
    preset = experiment_preset(PRESETS, preset_name)
    extra = preset.get("set", ())
    return [RunSpec(f"interventions-{preset_name}-{arm}-s{seed}", preset["base"],
                    (*extra, *overrides, *seed_overrides(seed)), (("arm", arm), ("seed", seed)))
            for arm, overrides in arms(preset["freeze_until"]).items() for seed in preset["seeds"]]


def milestones(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """When in-context accuracy and ``wo`` first reach 0.9 (interpolated; None: never reached)."""
    out = {"acc_in_context": interpolated_milestone(rows, "acc_in_context", MILESTONE)}
    if any("wo" in r for r in rows):
        out["wo"] = interpolated_milestone(rows, "wo", MILESTONE)
    return out


def summarise(curves: dict[str, dict[int, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Per arm: each seed's milestones and its values at step 0, the censored medians, and the final numbers
    (mean, spread and value per seed)."""
    out = {}
    for arm, runs in curves.items():
        ms = {str(seed): milestones(rows) for seed, rows in runs.items()}
        first = {str(seed): evaluations(rows)[0] for seed, rows in runs.items()}
        last = {seed: last_evaluation(rows) for seed, rows in runs.items()}
        out[arm] = {
            "milestones": ms,
            "at_step_0": {key: {seed: row.get(key) for seed, row in first.items()} for key in ("acc_in_context", "wo")},
            "median": {key: censored_median([m.get(key) for m in ms.values()]) for key in ("acc_in_context", "wo")},
            "final": final_values(runs, FINAL_KEYS),
            "steps": max(row["step"] for row in last.values()),
        }
    return out


def analyse(runs_dir: Path, out: Path, preset_name: str) -> dict[str, Any]:
    """Milestones per arm, the claims and the check, figures and README from the finished runs."""
    preset = experiment_preset(PRESETS, preset_name)
    curves: dict[str, dict[int, list[dict[str, Any]]]] = {}
    specs, diverged = trained_runs(runs_dir, plan(preset_name))
    for spec in specs:
        p = dict(spec.params)
        curves.setdefault(p["arm"], {})[p["seed"]] = RunDir(runs_dir / spec.folder).metrics()
    removed = {str(dict(spec.params)["seed"]): ablated_at_evaluation(runs_dir / spec.folder) for spec in specs
               if dict(spec.params)["arm"] == "none"}
    results: dict[str, Any] = {
        "experiment": "interventions", "preset": preset_name, "runs": [s.folder for s in specs],
        "freeze_until": preset["freeze_until"], "arms": summarise(curves), "question": QUESTION,
        "setting": setting(runs_dir, specs, preset["freeze_until"]),
        "none_ablated_at_evaluation": {
            op: {**seed_spread(list(by_seed.values())), "per_seed": by_seed}
            for op in EVALUATION_ABLATIONS for by_seed in [{seed: acc[op] for seed, acc in removed.items()}]},
    }
    return finish(out, results, claims=claims(results), checks=checks(results), diverged=diverged,
                  figures=partial(write_figures, curves), readme=readme)


@torch.no_grad()
def ablated_at_evaluation(run_dir: Path) -> dict[str, float]:
    """In-context accuracy of a trained run on its own evaluation batch with layer 1's attention output ablated at
    evaluation only (docs/science.md §8), by each op of :data:`EVALUATION_ABLATIONS`: ``zero-ablate`` (zeros) and
    ``mean-ablate`` (its mean over the evaluation batch's sequences, position by position: the whole batch runs in
    one forward, so that the mean is over all of it)."""
    cfg, model, step = open_trained(run_dir)
    task = make_task(cfg, torch.device("cpu"))
    batch = task.evaluation_batch(cfg.train.eval_batch_size, cfg.seeds.eval)
    model.eval()
    out = {}
    for op in EVALUATION_ABLATIONS:
        ablate = InterventionConfig(target=hook_name("attn_out", 0), op=op, phase="eval")
        forward = Interventions([ablate], model).forward(model, step, "eval")
        out[op] = label_metrics(forward, batch, task.source.bigram, chunk=batch.tokens.shape[0])["acc_in_context"]
    return out
