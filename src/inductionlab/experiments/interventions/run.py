"""Experiment "interventions" (docs/science.md §6, §7, §8): which part has to go right, and when, for an
induction head to form?

Bietti's setting (b) of the birth experiment (in-context loss, no ``W_F``, fixed triggers, frozen
embeddings, SGD), every trained matrix starting at zero, so that the arms differ only by their
intervention; at least five seeds per arm, the same seeds in every arm:

- ``none``: no intervention (the null of claims 1, 2 and 4);
- ``clamp-previous-token``: layer 1's pattern clamped to perfect previous-token from step 0;
- ``freeze-wk2``: ``W_K²`` frozen at zero until step ``s``;
- ``ablate-layer1``: layer 1's attention output zero-ablated throughout (training and evaluation);
- ``one-layer``: a one-layer model of the same width, what claim 3 compares the ablated arm with;
- ``clamp-induction``: layer 2's pattern clamped to perfect induction from step 0.

Milestones: the first evaluation step with in-context accuracy ≥ 0.9 (non-degenerate sequences),
and the first step with the ``wo`` probe ≥ 0.9 (logged every step). A milestone never reached is
*censored*: it counts as later than every step of the run, so a median over censored seeds is
undefined and the claim that needs it fails.
"""

from __future__ import annotations

import statistics
from functools import partial
from pathlib import Path
from typing import Any

import torch

from inductionlab.config import InterventionConfig
from inductionlab.experiments.interventions.report import readme, setting, write_figures
from inductionlab.experiments.kit.claims import Rule, claim
from inductionlab.experiments.kit.curves import (
    censored_median,
    evaluations,
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
MILESTONE = 0.9
RATIO_LEVEL = 0.7  # "the ratio of median milestones (clamped / unclamped) ≤ 0.7"
DELAY_TOLERANCE = 0.3  # "delays that milestone by s within ±30 %"
ONE_LAYER_GAP = 0.05  # "brings the in-context accuracy down to the one-layer model's": within 0.05
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
    """Per arm: each seed's milestones, their censored medians, and the final numbers."""
    out = {}
    for arm, runs in curves.items():
        ms = {str(seed): milestones(rows) for seed, rows in runs.items()}
        last = {seed: last_evaluation(rows) for seed, rows in runs.items()}
        out[arm] = {
            "milestones": ms,
            "at_step_0": {key: statistics.fmean(evaluations(rows)[0][key] for rows in runs.values())
                          for key in ("acc_in_context", "wo") if all(evaluations(rows)[0].get(key) is not None
                                                                    for rows in runs.values())},
            "median": {key: censored_median([m.get(key) for m in ms.values()]) for key in ("acc_in_context", "wo")},
            "final": {key: seed_spread([row.get(key) for row in last.values()])
                      for key in ("acc_in_context", "acc_in_context_all", "loss_in_context", "wo", "wk2", "wk1",
                                  "attn1_prev_token", "attn2_induction")},
            "steps": max(row["step"] for row in last.values()),
        }
    return out


def analyse(runs_dir: Path, out: Path, preset_name: str) -> dict[str, Any]:
    """Milestones per arm, the four claims, figures and README from the finished runs."""
    preset = experiment_preset(PRESETS, preset_name)
    curves: dict[str, dict[int, list[dict[str, Any]]]] = {}
    specs, diverged = trained_runs(runs_dir, plan(preset_name))
    for spec in specs:
        p = dict(spec.params)
        curves.setdefault(p["arm"], {})[p["seed"]] = RunDir(runs_dir / spec.folder).metrics()
    results: dict[str, Any] = {
        "experiment": "interventions", "preset": preset_name, "runs": [s.folder for s in specs],
        "freeze_until": preset["freeze_until"], "arms": summarise(curves), "question": QUESTION,
        "setting": setting(runs_dir, specs, preset["freeze_until"]),
        "none_ablated_at_evaluation": seed_spread([
            ablated_at_evaluation(runs_dir / spec.folder) for spec in specs
            if dict(spec.params)["arm"] == "none"]),
    }
    return finish(out, results, claims=claims(results), diverged=diverged, figures=partial(write_figures, curves),
                  readme=readme)


def ablated_at_evaluation(run_dir: Path) -> float:
    """In-context accuracy of a trained run on its own evaluation batch with layer 1's attention output
    zeroed at evaluation only (docs/science.md §8)."""
    cfg, model, step = open_trained(run_dir)
    task = make_task(cfg, torch.device("cpu"))
    batch = task.evaluation_batch(cfg.train.eval_batch_size, cfg.seeds.eval)
    ablate = InterventionConfig(target=hook_name("attn_out", 0), op="zero-ablate", phase="eval")
    model.eval()
    return label_metrics(Interventions([ablate], model).forward(model, step, "eval"), batch,
                         task.source.bigram)["acc_in_context"]


def _earlier(arm: dict[str, Any], base: dict[str, Any], key: str) -> tuple[float | None, bool, dict[str, Any]]:
    """The ratio of censored medians arm / base; whether every seed of ``arm`` is earlier than base's
    median and started below the milestone (a clamp must not satisfy the measure by itself at step
    0); the per-seed steps."""
    med, base_med = arm["median"][key], base["median"][key]
    ratio = med / base_med if med is not None and base_med else None
    steps = {seed: m.get(key) for seed, m in arm["milestones"].items()}
    every = base_med is not None and all(s is not None and s < base_med for s in steps.values())
    every = every and arm["at_step_0"].get(key, MILESTONE) < MILESTONE
    return ratio, every, {"arm": steps, "unclamped": {s: m.get(key) for s, m in base["milestones"].items()},
                          "median": med, "unclamped_median": base_med, "arm_at_step_0": arm["at_step_0"].get(key)}


def claims(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The four causal statements of docs/science.md §8, each against a null (docs/science.md §7)."""
    a, s = results["arms"], results["freeze_until"]
    ratio_rule = Rule("lower", RATIO_LEVEL, 0.1)
    condition = "every intervened seed starts below 0.9 and reaches it before the unclamped median"
    out = []
    ratio, every, detail = _earlier(a["clamp-previous-token"], a["none"], "acc_in_context")
    out.append(claim(
        "A perfect previous-token pattern clamped in layer 1 from step 0 makes the in-context accuracy milestone "
        "earlier", f"ratio ≤ {RATIO_LEVEL}", f"median step of in-context accuracy ≥ {MILESTONE}, clamped / unclamped",
        ratio, 1.0, "the unclamped arm against itself (ratio 1)", ratio_rule, (condition, every), **detail))

    frozen, free = a["freeze-wk2"]["milestones"], a["none"]["milestones"]
    delays = {seed: (None if frozen[seed]["acc_in_context"] is None or free[seed]["acc_in_context"] is None
                     else frozen[seed]["acc_in_context"] - free[seed]["acc_in_context"]) for seed in frozen}
    unfrozen_reached = all(free[seed]["acc_in_context"] is not None for seed in frozen)
    median_delay = censored_median(list(delays.values())) if unfrozen_reached else None  # None: censored
    error = abs(median_delay - s) / s if median_delay is not None else None
    out.append(claim(
        f"W_K² frozen at zero until step {s} delays the in-context accuracy milestone by about {s} steps",
        f"median delay within ±{DELAY_TOLERANCE:.0%} of {s}", "abs(median delay − s) / s (delay: frozen minus unfrozen "
        "milestone, same seed)", error, 1.0, "no delay (relative error 1)", Rule("lower", DELAY_TOLERANCE, 0.1),
        delays=delays, median_delay=median_delay))

    one = a["one-layer"]["final"]["acc_in_context"]["mean"]
    ablated = a["ablate-layer1"]["final"]["acc_in_context"]["mean"]
    intact = a["none"]["final"]["acc_in_context"]["mean"]
    gap = abs(ablated - one) if ablated is not None and one is not None else None
    null_gap = abs(intact - one) if intact is not None and one is not None else None
    out.append(claim(
        "Layer 1 ablated throughout brings the in-context accuracy down to the one-layer model's (with layer 1's "
        "output zeroed the model computes what a one-layer model computes, so the level is expected; the margin over "
        "the unablated model says layer 1 is necessary)",
        f"within {ONE_LAYER_GAP} of the one-layer model",
        "abs(final in-context accuracy − the one-layer model's), mean over seeds", gap, null_gap,
        "the unablated two-layer model", Rule("lower", ONE_LAYER_GAP, 0.3),
        ablated=ablated, one_layer=one, unablated=intact))

    removed = results["none_ablated_at_evaluation"]["mean"]
    out.append(claim(
        "Layer 1 removed at evaluation from the trained two-layer model (no intervention in training): the in-context "
        "accuracy is no better than the one-layer model's, so what layer 2 learnt relies on layer 1",
        f"at most {ONE_LAYER_GAP} above the one-layer model",
        "final in-context accuracy with blocks.0.hook_attn_out zeroed at evaluation minus the one-layer model's, mean "
        "over seeds", None if removed is None or one is None else removed - one, null_gap,
        "the same model without the ablation", Rule("lower", ONE_LAYER_GAP, 0.3),
        ablated_at_evaluation=results["none_ablated_at_evaluation"], one_layer=one, unablated=intact))

    ratio, every, detail = _earlier(a["clamp-induction"], a["none"], "wo")
    out.append(claim(
        "A perfect induction pattern clamped in layer 2 lets W_O² form earlier", f"ratio ≤ {RATIO_LEVEL}",
        f"median step of the wo probe ≥ {MILESTONE}, clamped / unclamped", ratio, 1.0,
        "the unclamped arm against itself (ratio 1)", ratio_rule, (condition, every), **detail))
    return out
