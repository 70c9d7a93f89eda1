"""Experiment "icl-mc" (docs/science.md §10, §7): statistical induction heads on in-context Markov chains.

Every sequence draws its own chain over ``k = 3`` states; a two-layer **attention-only** transformer
with relative positions (as in Edelman et al. 2024) and a one-layer attention-only control of the
same width train on it over seeds. With ``Δ = L_unigram − L_Bayes`` (the reference losses on the
evaluation batch) and ``κ = KL(unigram ‖ Bayes)``, the claims (:mod:`.claims`, each seed by seed):

- the two-layer model ends within ``0.2 Δ`` of the Bayes loss (null: the unigram strategy, ``Δ``);
- a **unigram plateau**, left: the share of training during which ``KL(unigram ‖ model) < 0.25 κ``
  while ``KL(Bayes ‖ model) > 0.5 κ`` is at least 5 %, and longer than that of a path going straight
  from uniform to Bayes along the model's own loss curve (null: :mod:`.path`);
- the trained two-layer model has a previous-token head in layer 1 and an induction-style head in
  layer 2 by the head scores of §4.2 on held-out sequences of its own task (null: the same heads at
  step 0);

and a check: the one-layer attention-only control stays above ``L_Bayes + 0.5 Δ``, as it must (its
logits have no term for the pair ``(z_{s−1}, z_s)``, docs/science.md §10).

At ``paper`` an order-3 chain (two heads per layer) asks whether the model reaches the trigram
Bayes loss or stops at the bigram one.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import torch

from inductionlab.experiments.icl_mc.claims import checks, claims
from inductionlab.experiments.icl_mc.path import straight_path
from inductionlab.experiments.icl_mc.report import readme, setting, write_figures
from inductionlab.experiments.kit.curves import evaluations, final_values, last_evaluation
from inductionlab.experiments.kit.experiment import experiment_preset
from inductionlab.experiments.kit.finish import finish
from inductionlab.experiments.kit.runs import trained_runs
from inductionlab.models.build import build_model
from inductionlab.probes.attention import task_head_scores
from inductionlab.runs import RunDir, RunSpec, seed_overrides
from inductionlab.tasks.build import make_task
from inductionlab.train import open_trained

PRESETS = {
    "quick": {"base": "icl-mc-quick", "seeds": (0, 1, 2), "orders": (2,)},
    "paper": {"base": "icl-mc-paper", "seeds": (0, 1, 2, 3, 4), "orders": (2, 3)},
    "smoke": {"base": "icl-mc-quick", "seeds": (0,), "orders": (2,),
              "set": ("train.steps=30", "model.d_model=16", "data.seq_len=40")},
}
DEPTHS = {"two-layer": 2, "one-layer": 1}
QUESTION = ("On in-context Markov chains, does a two-layer attention-only transformer reach the Bayes predictor "
            "through a unigram plateau while a one-layer one cannot, and does it do so with a previous-token head "
            "and an induction head (docs/science.md §10)?")


def plan(preset_name: str) -> list[RunSpec]:
    """Two and one layers × seeds (order 2); at ``paper`` also order 3, two layers."""
    preset = experiment_preset(PRESETS, preset_name)
    extra = preset.get("set", ())
    runs = []
    for order in preset["orders"]:
        depths = DEPTHS if order == 2 else {"two-layer": 2}
        runs += [RunSpec(f"icl-mc-{preset_name}-n{order}-{depth}-s{seed}", preset["base"],
                         (*extra, f"data.order={order}", f"model.n_layers={layers}", *seed_overrides(seed)),
                         (("order", order), ("depth", depth), ("seed", seed)))
                 for depth, layers in depths.items() for seed in preset["seeds"]]
    return runs


def _on_plateau(row: dict[str, Any]) -> bool:
    kappa = row["kl_unigram_to_bayes"]
    return row["kl_unigram"] < 0.25 * kappa and row["kl_bayes"] > 0.5 * kappa


def plateau_share(rows: list[dict[str, Any]], steps: int) -> float:
    """Share of training spent on the unigram plateau: the evaluation intervals with both ends where
    ``KL(unigram ‖ model) < 0.25 κ`` and ``KL(Bayes ‖ model) > 0.5 κ`` (``κ = KL(unigram ‖ Bayes)``)."""
    evals = evaluations(rows)
    on = sum(b["step"] - a["step"] for a, b in zip(evals, evals[1:], strict=False) if _on_plateau(a) and _on_plateau(b))
    return on / steps


def left_for_bayes(rows: list[dict[str, Any]]) -> bool:
    """Whether the model ends at the Bayes strategy, ``KL(Bayes ‖ model) < 0.25 κ`` at the last evaluation:
    a plateau counts only if it was left (a model that stays at the unigram strategy sits on it forever)."""
    last = last_evaluation(rows)
    return last["kl_bayes"] < 0.25 * last["kl_unigram_to_bayes"]


@torch.no_grad()
def head_scores_held_out(run_dir: Path, n: int = 64) -> dict[str, dict[str, float]]:
    """The best previous-token score in layer 1 and induction score in layer 2 (docs/science.md §4.2, on
    held-out sequences of the run's task), for the trained model and the same model at step 0."""
    cfg, trained, _ = open_trained(run_dir)
    batch = make_task(cfg, torch.device("cpu")).sample(n, torch.Generator().manual_seed(10_000))
    out = {}
    for name, model in (("trained", trained), ("untrained", build_model(cfg.model, cfg.data.n_tokens, cfg.seeds.init))):
        model.eval()
        scores = task_head_scores(model, batch.tokens, batch.probe_labels())
        out[name] = {"previous_token_layer1": scores["previous_token"][0].max().item(),
                     "induction_layer2": scores["induction"][-1].max().item(),
                     "previous_token": scores["previous_token"].tolist(), "induction": scores["induction"].tolist()}
    return out


def straight_path_plateau(run_dir: Path, rows: list[dict[str, Any]], steps: int) -> dict[str, Any]:
    """The plateau of the null path along a run's loss curve (:mod:`.path`), on the run's evaluation batch: its
    share of training on the unigram plateau, whether it leaves it, how close it comes to the unigram strategy
    (the smallest ``KL(unigram ‖ p_t) / κ``) and its last mixture weight ``λ``."""
    cfg = RunDir(run_dir).config()
    batch = make_task(cfg, torch.device("cpu")).evaluation_batch(cfg.train.eval_batch_size, cfg.seeds.eval)
    path = straight_path(rows, batch, cfg.data.k, cfg.data.alpha)
    return {"plateau_share": plateau_share(path, steps), "left_for_bayes": left_for_bayes(path),
            "closest_to_unigram": min(r["kl_unigram"] / r["kl_unigram_to_bayes"] for r in path),
            "final_lambda": path[-1]["lambda"]}


def summarise(curves: dict[tuple[int, str], dict[int, list[dict[str, Any]]]], runs_dir: Path,
              specs: list[RunSpec]) -> dict[str, Any]:
    """Per (order, depth): final losses and KLs over seeds, plateau shares, and (two layers) head scores and the
    plateau of the straight path along each seed's loss curve."""
    keys = ("loss_in_context", "loss_uniform", "loss_unigram", "loss_bayes", "loss_true", "loss_bayes_lower_order",
            "kl_unigram", "kl_bayes", "kl_unigram_to_bayes")
    folders = {(dict(s.params)["order"], dict(s.params)["depth"], dict(s.params)["seed"]): s.folder for s in specs}
    out: dict[str, Any] = {}
    for (order, depth), runs in curves.items():
        steps = RunDir(runs_dir / folders[(order, depth, next(iter(runs)))]).config().train.steps
        entry: dict[str, Any] = {
            "final": final_values(runs, keys),
            "plateau_share": {str(seed): plateau_share(rows, steps) for seed, rows in runs.items()},
            "left_for_bayes": {str(seed): left_for_bayes(rows) for seed, rows in runs.items()},
        }
        if depth == "two-layer":
            entry["heads"] = {str(seed): head_scores_held_out(runs_dir / folders[(order, depth, seed)])
                              for seed in runs}
            entry["straight_path"] = {str(seed): straight_path_plateau(runs_dir / folders[(order, depth, seed)],
                                                                       rows, steps) for seed, rows in runs.items()}
        out[f"n{order}-{depth}"] = entry
    return out


def analyse(runs_dir: Path, out: Path, preset_name: str) -> dict[str, Any]:
    """Final losses against the references, the stages, head scores; claims, figures, README."""
    specs, diverged = trained_runs(runs_dir, plan(preset_name))
    curves: dict[tuple[int, str], dict[int, list[dict[str, Any]]]] = {}
    for spec in specs:
        p = dict(spec.params)
        curves.setdefault((p["order"], p["depth"]), {})[p["seed"]] = RunDir(runs_dir / spec.folder).metrics()
    results: dict[str, Any] = {"experiment": "icl-mc", "preset": preset_name, "runs": [s.folder for s in specs],
                               "question": QUESTION, "setting": setting(runs_dir, specs),
                               "models": summarise(curves, runs_dir, specs)}
    return finish(out, results, claims=claims(results), checks=checks(results), diverged=diverged,
                  figures=partial(write_figures, curves), readme=readme)
