"""Experiment "birth" (docs/science.md §2, §3.1, §4.1, §6): watch an induction head being born, in two settings.

Bietti et al.'s two questions need two training settings, kept apart here:

- **(a) all targets** (``birth-quick``): loss on every target with a linear ``W_F``, two layers
  and one layer of the same width over seeds. Claims: the two-layer model learns the in-context
  targets and the one-layer model cannot; the global bigram is learnt before the in-context
  targets (*global knowledge first*, on normalised progress; :mod:`.all_targets`).
- **(b) top-down** (``birth-topdown-quick``): Bietti's reference setting, loss on the in-context targets
  only, no ``W_F``, fixed triggers, frozen embeddings, SGD, random init at their ``T = 256`` (the main
  arm), with a ``T = 64`` control, the zero-init arm of the theorem and Bietti's two freezing runs
  (:mod:`.topdown`). The order ``W_O² → W_K² → W_K¹`` is judged on functional milestones, Bietti's
  argmax probes beside it.

An order is a statement over seeds (docs/science.md §7, §7.1): the fraction of seeds in which it holds
strictly, against the chance that random milestones fall in that order, judged with its exact
(Clopper–Pearson) interval (:mod:`.order`).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from inductionlab.experiments.birth.all_targets import (
    SETTING_A,
    claims_all_targets,
    summarise_all_targets,
    unigram_loss,
)
from inductionlab.experiments.birth.report import readme, setting, side_by_side, write_figures
from inductionlab.experiments.birth.topdown import (
    ARMS,
    FROZEN,
    UNFROZEN,
    claims_top_down,
    distance_from_init,
    setting_b,
    summarise_top_down,
)
from inductionlab.experiments.kit.experiment import experiment_preset
from inductionlab.experiments.kit.finish import finish
from inductionlab.experiments.kit.runs import trained_runs
from inductionlab.runs import RunDir, RunSpec, seed_overrides

# "short": the overrides that turn the main arm (T = 256) into the T = 64 arms, at the same tokens per step;
# "freeze_until": s of the freezing runs, fixed before any run (a third of the quick preset's steps)
PRESETS = {
    "quick": {"all": "birth-quick", "topdown": "birth-topdown-quick", "all_seeds": (0, 1, 2),
              "topdown_seeds": (0, 1, 2, 3, 4), "short": ("data.seq_len=64", "train.batch_size=64"),
              "freeze_until": 150},
    "paper": {"all": "birth-paper", "topdown": "birth-topdown-paper", "all_seeds": (0, 1, 2, 3, 4),
              "topdown_seeds": tuple(range(10)), "short": ("data.seq_len=64", "train.batch_size=2048"),
              "freeze_until": 300},
    "smoke": {"all": "birth-quick", "topdown": "birth-topdown-quick",
              "set": ("train.steps=40", "model.d_model=64", "train.eval_every=10", "train.checkpoint_every=10"),
              "all_seeds": (0,), "topdown_seeds": (0, 1), "short": ("data.seq_len=64", "train.batch_size=16"),
              "freeze_until": 10},
}
DEPTHS = {"two-layer": 2, "one-layer": 1}
QUESTION = ("Does a two-layer transformer learn the in-context targets that a one-layer one cannot, is the global "
            "bigram learnt first, and do the memories form top-down (docs/science.md §6)?")


def arm_overrides(preset: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """Each arm of setting (b) as overrides of the top-down preset (docs/science.md §6, §8)."""
    short, s = preset["short"], preset["freeze_until"]

    def frozen(matrix: str) -> tuple[str, ...]:
        return (*short, f"interventions=[{{target: {matrix}, op: freeze, value: init, stop: {s}}}]")
    return {"T256-random": ("model.zero_init=false",), "T64-random": (*short, "model.zero_init=false"),
            "T64-zero": (*short, "model.zero_init=true"),
            **{arm: (*frozen(matrix), "model.zero_init=false") for arm, matrix in FROZEN.items()}}


def plan(preset_name: str) -> list[RunSpec]:
    """Setting (a): two and one layers × seeds; setting (b): every arm × seeds."""
    preset = experiment_preset(PRESETS, preset_name)
    extra = preset.get("set", ())
    runs = [RunSpec(f"birth-{preset_name}-all-{depth}-s{seed}", preset["all"],
                    (*extra, f"model.n_layers={layers}", *seed_overrides(seed)),
                    (*SETTING_A[depth].items(), ("seed", seed)))
            for depth, layers in DEPTHS.items() for seed in preset["all_seeds"]]
    overrides = arm_overrides(preset)
    runs += [RunSpec(f"birth-{preset_name}-topdown-{arm}-s{seed}", preset["topdown"],
                     (*extra, *overrides[arm], *seed_overrides(seed)),
                     (*setting_b(arm)[0].items(), ("seed", seed)))
             for arm in ARMS for seed in preset["topdown_seeds"]]
    return runs


def analyse(runs_dir: Path, out: Path, preset_name: str) -> dict[str, Any]:
    """Both settings from the finished runs: milestones, orders, claims, figures, README."""
    preset = experiment_preset(PRESETS, preset_name)
    s = preset["freeze_until"]
    all_targets: dict[str, dict[int, list[dict[str, Any]]]] = {}
    top_down: dict[str, dict[int, list[dict[str, Any]]]] = {}
    distances: dict[str, dict[str, dict[str, float]]] = {}
    specs, diverged = trained_runs(runs_dir, plan(preset_name))
    for spec in specs:
        p = dict(spec.params)
        rows = RunDir(runs_dir / spec.folder).metrics()
        if p["setting"] == "all":
            all_targets.setdefault(p["depth"], {})[p["seed"]] = rows
            continue
        top_down.setdefault(p["arm"], {})[p["seed"]] = rows
        if p["arm"] in (*FROZEN, UNFROZEN):
            distances.setdefault(p["arm"], {})[str(p["seed"])] = distance_from_init(runs_dir / spec.folder, s)
    first_all = next(spec for spec in specs if dict(spec.params)["setting"] == "all")
    unigram = unigram_loss(RunDir(runs_dir / first_all.folder).config())
    results: dict[str, Any] = {
        "experiment": "birth", "preset": preset_name, "runs": [spec.folder for spec in specs],
        "all_targets": summarise_all_targets(all_targets, unigram),
        "top_down": summarise_top_down(top_down, distances, s),
        "question": QUESTION, "setting": setting(runs_dir, specs, s),
        "side_by_side": side_by_side(runs_dir, specs, preset_name, PRESETS["paper"]["topdown"]),
    }
    return finish(out, results, claims=claims(results), diverged=diverged,
                  figures=partial(write_figures, all_targets, top_down), readme=readme)


def claims(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The statements of docs/science.md §6 "birth", each a statistic against a null (docs/science.md §7)."""
    return [*claims_all_targets(results["all_targets"]), *claims_top_down(results["top_down"])]
