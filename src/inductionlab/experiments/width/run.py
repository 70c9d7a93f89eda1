"""Experiment "width" (docs/science.md §11): the closed form against trained models as the width grows.

The ``hijack`` models (random triggers, ``rpe``, linear ``W_F``) are trained at several widths ``d``, the same
steps at every width, several seeds each; the width ``hijack`` trains rides along its runs (the runs differ only
in how long they train and how they are evaluated, :func:`~inductionlab.train.shared_trajectory`). Each
trained model gets an **ideal twin**: the ideal AMT at the same ``d`` with the scalars read off that model
(:func:`~inductionlab.theory.ideal.ideal_twin`, fresh embeddings), so both answer to one closed form: the
scalar form is the trained model's read-off for both. Both are measured on the designed prompts (:mod:`.measure`).

Claims, per prediction (weights-only, scalar form), on the relative disagreement ``D`` of :mod:`.measure`:

1. the trained models' excess over the ideal, ``(D_trained − D_ideal) / D_trained``, falls as ``d`` grows:
   Spearman ρ over the widths, seed by seed (null: no trend, ρ = 0);
2. at the largest width the trained ``D`` is within a factor 2 of the ideal's (null: the same factor at the
   smallest width, seed by seed).

Convergence is stated, not assumed: a run has converged when its evaluation loss, fitted by a line over the
last fifth of training, changes by less than 1 % there; runs that have not are named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from inductionlab.experiments.kit.curves import evaluations
from inductionlab.experiments.kit.experiment import experiment_preset
from inductionlab.experiments.kit.finish import finish
from inductionlab.experiments.kit.runs import trained_runs
from inductionlab.experiments.width.measure import measure
from inductionlab.experiments.width.report import checks, claims, readme, setting, summarise, write_figures
from inductionlab.prompts.query_pairs import PAIR_SEED, build_prompts, core_settings, query_pairs
from inductionlab.runs import RunDir, RunSpec, seed_overrides
from inductionlab.tasks.bigram_task import make_sampler
from inductionlab.theory.ideal import ideal_twin
from inductionlab.theory.trained import cross_talk, recall_matrices
from inductionlab.train import open_trained

PRESETS = {
    # quick: hijack's prompts without its longest count length and with half the prompts per pair (the budget)
    "quick": {"preset": "hijack-quick", "widths": (64, 96, 128, 192), "steps": 400, "seeds": (0, 1, 2),
              "n_pairs": 8, "per_pair": 4, "count_T": (32, 128, 512), "count_n": tuple(range(9)),
              "distance_T": (64, 128, 256)},
    "paper": {"preset": "hijack-paper", "widths": (128, 256, 512, 1024), "steps": 2000, "seeds": (0, 1, 2, 3, 4),
              "n_pairs": 12, "per_pair": 16, "count_T": (64, 256, 1024, 4096), "count_n": tuple(range(13)),
              "distance_T": (256, 512, 1024)},
    "smoke": {"preset": "hijack-quick", "set": ("train.eval_every=20",), "widths": (32, 48, 64, 96), "steps": 40,
              "seeds": (0, 1), "n_pairs": 8, "per_pair": 2, "count_T": (32, 128), "count_n": tuple(range(9)),
              "distance_T": (64,)},
}
TWIN_SEED = 10_000  # a twin's embeddings: seed TWIN_SEED + the trained run's seeds.init
CONVERGED_CHANGE = 0.01  # the largest relative change of the evaluation loss over the last fifth of training
QUESTION = ("As the width d grows, do trained models come to follow the closed form of docs/science.md §4.4 as "
            "closely as the ideal associative-memory transformer of the same width does?")


def plan(preset_name: str) -> list[RunSpec]:
    """The ``hijack`` random-trigger ``rpe`` model at every width × seeds, ``steps`` steps each."""
    preset = experiment_preset(PRESETS, preset_name)
    steps = preset["steps"]
    return [RunSpec(f"width-{preset_name}-d{d}-s{seed}", preset["preset"],
                    (*preset.get("set", ()), "data.trigger_mode=random", "model.pos_enc=rpe", f"model.d_model={d}",
                     f"train.steps={steps}", f"train.eval_every={max(1, steps // 10)}",
                     f"train.checkpoint_every={steps}", *seed_overrides(seed)),
                    (("d_model", d), ("seed", seed)))
            for d in preset["widths"] for seed in preset["seeds"]]


def convergence(rows: list[dict[str, Any]], steps: int) -> dict[str, Any]:
    """The evaluation loss's relative change over the last fifth of training (a least-squares line through the
    evaluations at steps ≥ 0.8·``steps``, from its value at 0.8·``steps`` to its value at ``steps``, over the
    latter), and whether it is below :data:`CONVERGED_CHANGE` in size."""
    last = [(r["step"], r["loss_all"]) for r in evaluations(rows) if r["step"] >= 0.8 * steps
            and r.get("loss_all") is not None]
    if len(last) < 2:
        return {"relative_change": None, "converged": False, "evaluations": len(last)}
    x, y = (torch.tensor(v, dtype=torch.float64) for v in zip(*last, strict=True))
    slope = float(((x - x.mean()) * (y - y.mean())).sum() / (x - x.mean()).square().sum())
    end = float(y.mean() + slope * (steps - x.mean()))
    change = slope * 0.2 * steps / end
    return {"relative_change": change, "converged": abs(change) < CONVERGED_CHANGE, "evaluations": len(last),
            "final_loss": float(y[-1])}


def analyse(runs_dir: Path, out: Path, preset_name: str) -> dict[str, Any]:
    """Measure every trained model and its ideal twin on the designed prompts; claims, figures, README."""
    preset = experiment_preset(PRESETS, preset_name)
    specs, diverged = trained_runs(runs_dir, plan(preset_name))
    cfg = open_trained(runs_dir / specs[0].folder)[0]
    source = make_sampler(cfg, torch.device("cpu"))[0]
    train_len, n_max = cfg.data.seq_len, max(preset["count_n"])
    pairs = query_pairs(source, preset["n_pairs"], PAIR_SEED)
    prompts = [build_prompts(s, pairs, preset["per_pair"], source) for s in core_settings(preset)]
    longest = max(p.tokens.shape[1] for p in prompts)

    models: dict[str, dict[str, dict[str, Any]]] = {}
    yardstick: dict[str, dict[str, dict[str, float]]] = {}  # the checks: one set of scalars at both end widths
    for spec in specs:
        d, seed = dict(spec.params)["d_model"], dict(spec.params)["seed"]
        run_cfg, model, _ = open_trained(runs_dir / spec.folder)
        rec = recall_matrices(model, max(longest, train_len))
        trained, closed_form = measure(model, prompts, n_max, train_len, rec)
        trained["convergence"] = convergence(RunDir(runs_dir / spec.folder).metrics(), preset["steps"])
        twin_seed = TWIN_SEED + run_cfg.seeds.init  # fresh embeddings, never the trained model's random stream
        twin = ideal_twin(rec, d, train_len, init_seed=twin_seed, max_len=longest)
        by_width = models.setdefault(str(d), {"trained": {}, "ideal": {}, "runs": {}})
        by_width["trained"][str(seed)] = trained
        by_width["ideal"][str(seed)] = measure(twin, prompts, n_max, train_len, closed_form=closed_form)[0]
        by_width["runs"][str(seed)] = spec.folder
        if d == preset["widths"][0]:
            wide = ideal_twin(rec, preset["widths"][-1], train_len, init_seed=twin_seed, max_len=longest)
            yardstick[str(seed)] = {"smallest": by_width["ideal"][str(seed)]["cross_talk"],
                                    "largest": cross_talk(recall_matrices(wide, train_len), None, train_len)}

    results: dict[str, Any] = {
        "experiment": "width", "preset": preset_name, "train_len": train_len, "steps": preset["steps"],
        "widths": list(preset["widths"]), "n_tokens": source.n_tokens, "question": QUESTION,
        "prompts": {"settings": len(prompts), "per_model": sum(len(p.tokens) for p in prompts)},
        "models": models, "yardstick": yardstick,
    }
    results["summary"] = summarise(models)
    results["setting"] = setting(preset, cfg, results)
    return finish(out, results, claims=claims(results), checks=checks(results), diverged=diverged,
                  figures=write_figures, readme=readme)
