"""Experiment "icl-mc" (docs/science.md §10, §7): statistical induction heads on in-context Markov chains.

Every sequence draws its own chain over ``k = 3`` states; a two-layer **attention-only** transformer
with relative positions (as in Edelman et al. 2024) and a one-layer attention-only control of the
same width train on it over seeds. With ``Δ = L_unigram − L_Bayes`` (the reference losses on the
evaluation batch), the claims:

- the two-layer model ends within ``0.2 Δ`` of the Bayes loss (null: the unigram strategy, ``Δ``);
- the one-layer model stays above ``L_Bayes + 0.5 Δ`` (null: the two-layer model);
- a **unigram plateau**: the share of training during which ``KL(unigram ‖ model) < 0.25 κ`` while
  ``KL(Bayes ‖ model) > 0.5 κ`` (``κ = KL(unigram ‖ Bayes)``) is at least 5 % in at least two thirds
  of the seeds (null: no plateau, 0 seeds);
- the trained two-layer model has a previous-token head in layer 1 and an induction-style head in
  layer 2 by the head scores of §4.2 on held-out sequences of its own task (null: the same heads at
  step 0).

At ``paper`` an order-3 chain (two heads per layer) asks whether the model reaches the trigram
Bayes loss or stops at the bigram one.
"""

from __future__ import annotations

import statistics
from functools import partial
from pathlib import Path
from typing import Any

import torch

from inductionlab.experiments.icl_mc.report import readme, setting, write_figures
from inductionlab.experiments.kit.claims import Rule, SeedValues, claim
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
PLATEAU_SHARE = 0.05
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


def summarise(curves: dict[tuple[int, str], dict[int, list[dict[str, Any]]]], runs_dir: Path,
              specs: list[RunSpec]) -> dict[str, Any]:
    """Per (order, depth): final losses and KLs over seeds, plateau shares, and (two layers) head scores."""
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
    return finish(out, results, claims=claims(results), diverged=diverged, figures=partial(write_figures, curves),
                  readme=readme)


def claims(results: dict[str, Any]) -> list[dict[str, Any]]:
    """docs/science.md §10's statements, each against a null (docs/science.md §7)."""
    two, one = results["models"]["n2-two-layer"], results["models"]["n2-one-layer"]
    bayes, unigram = two["final"]["loss_bayes"]["mean"], two["final"]["loss_unigram"]["mean"]
    delta = unigram - bayes

    def excess(model: dict[str, Any]) -> float:
        return (model["final"]["loss_in_context"]["mean"] - bayes) / delta

    def excess_by_seed(model: dict[str, Any]) -> dict[str, float | None]:
        """(final loss − L_Bayes) / Δ of each seed, with that seed's own references (for the intervals)."""
        final = {k: model["final"][k]["per_seed"] for k in ("loss_in_context", "loss_bayes", "loss_unigram")}
        out = {}
        for seed, loss in final["loss_in_context"].items():
            seed_bayes, seed_unigram = final["loss_bayes"].get(seed), final["loss_unigram"].get(seed)
            usable = None not in (loss, seed_bayes, seed_unigram) and seed_unigram > seed_bayes
            out[seed] = (loss - seed_bayes) / (seed_unigram - seed_bayes) if usable else None
        return out

    def plateau_passed(model: dict[str, Any]) -> dict[str, float]:
        seeds = model["plateau_share"]
        return {s: float(seeds[s] >= PLATEAU_SHARE and bool(model["left_for_bayes"][s])) for s in seeds}

    def passed_plateau(model: dict[str, Any]) -> float:
        passed = plateau_passed(model)
        return sum(passed.values()) / len(passed)

    heads = list(two["heads"].values())
    gains = {key: statistics.fmean(h["trained"][key] - h["untrained"][key] for h in heads)
             for key in ("previous_token_layer1", "induction_layer2")}
    scores = {key: statistics.fmean(h["trained"][key] for h in heads) for key in gains}
    one_learnt = one["final"]["kl_unigram"]["mean"] < 0.25 * one["final"]["kl_unigram_to_bayes"]["mean"]
    out = [
        claim("The two-layer attention-only model reaches the in-context Bayes loss", "within 0.2 Δ of L_Bayes",
              "(final loss − L_Bayes) / Δ, Δ = L_unigram − L_Bayes, mean over seeds", excess(two), 1.0,
              "the in-context unigram strategy (excess Δ, i.e. 1)", Rule("lower", 0.2, 0.3),
              seeds=SeedValues(excess_by_seed(two), 1.0), delta=delta, loss_bayes=bayes, loss_unigram=unigram),
        claim("A one-layer attention-only model of the same width cannot: it stays above L_Bayes + 0.5 Δ, having "
              "learnt what one layer can (the unigram strategy)", "excess ≥ 0.5",
              "(final loss − L_Bayes) / Δ of the one-layer model, mean over seeds", excess(one), excess(two),
              "the two-layer model", Rule("higher", 0.5, 0.3),
              seeds=SeedValues(excess_by_seed(one), excess_by_seed(two)),
              also=("the one-layer model ends at the unigram strategy (KL(unigram ‖ model) < 0.25 κ)", one_learnt)),
        claim(f"Training passes a unigram plateau and leaves it: at least {PLATEAU_SHARE:.0%} of training with "
              "KL(unigram ‖ model) < 0.25 κ while KL(Bayes ‖ model) > 0.5 κ (κ = KL(unigram ‖ Bayes)), then ending "
              "with KL(Bayes ‖ model) < 0.25 κ, in at least two thirds of the seeds", "≥ 2/3 of the seeds",
              "fraction of seeds (two-layer) with such a plateau, left", passed_plateau(two), passed_plateau(one),
              "the one-layer model (it sits on the plateau and never leaves it)", Rule("higher", 2 / 3, 0.3),
              seeds=SeedValues(plateau_passed(two), passed_plateau(one), fraction=True),
              plateau_share=two["plateau_share"], left_for_bayes=two["left_for_bayes"],
              one_layer_plateau_share=one["plateau_share"]),
        claim("The trained two-layer model has a previous-token head in layer 1 and an induction head in layer 2 "
              "(docs/science.md §4.2, held-out sequences of its task)", "each score ≥ 0.5 and ≥ 0.2 above step 0",
              "the smaller gain over step 0 of the best layer-1 previous-token and layer-2 induction scores, mean "
              "over seeds", min(gains.values()), 0.0, "the same heads at step 0 (gain 0)", Rule("higher", 0.3, 0.2),
              also=("both trained scores ≥ 0.5", min(scores.values()) >= 0.5), gains=gains, scores=scores),
    ]
    if "n3-two-layer" in results["models"]:
        three = results["models"]["n3-two-layer"]["final"]
        trigram, bigram = three["loss_bayes"]["mean"], three["loss_bayes_lower_order"]["mean"]
        delta3 = bigram - trigram
        out.append(claim(
            "At order 3 (two heads per layer) the two-layer model reaches the trigram Bayes loss rather than "
            "stopping at the bigram one", "within 0.2 Δ₃ of the trigram Bayes loss",
            "(final loss − L_Bayes(trigram)) / Δ₃, Δ₃ = L_Bayes(bigram) − L_Bayes(trigram)",
            (three["loss_in_context"]["mean"] - trigram) / delta3 if delta3 > 0 else None, 1.0,
            "the bigram Bayes strategy (excess 1)", Rule("lower", 0.2, 0.3), delta3=delta3))
    return out
