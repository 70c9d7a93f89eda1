"""Experiment "hijack" (docs/science.md §5, §6, §7): designed prompts on trained models against §4.4/§4.5.

Families 1–3 and 5 run on models trained with random triggers, all-target loss and a linear
``W_F``, once with relative (``rpe``) and once with absolute (``ape``) positions; family 4 on the
same model trained with fixed triggers. Every configuration is trained with several seeds. Each
setting's prompts come from several query pairs (:mod:`~inductionlab.prompts.query_pairs`),
every prompt is evaluated on the model and on the predictions of docs/science.md §4.5, and every
claim compares a statistic of the theory with the same statistic of a null (docs/science.md §7, §7.1):

- the logit gaps: within-setting R² of the weights-only prediction, the held-out scalar form and the
  readout with ``R3 = θ·I``, each against the strongest of the bigram alone, a count regression with
  setting fixed effects, the other seeds' pair lookup and this seed's own gap for the pair in the other
  settings (leave one setting out), with the noise ceiling (the same prompts, filler re-drawn) beside;
- the crossover ``n*``: the theory's error against that of the best constant ``n*``;
- ``n*`` grows with ``T``: rank correlation against its permutation null, seed by seed;
- families 4 and 5: the slope of the in-context unigram term, relative to the theory's slope, against
  the null slope 0.

Checks (what holds by construction): the readout with the measured layer-2 attention rebuilds the model's
gaps exactly once the positional and layer-1 parts of the residual are added (an exactness check of the
algebra); a query that is not a trigger is not hijacked on the fixed-trigger model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from inductionlab.errors import ConfigError
from inductionlab.experiments.hijack.analysis import analyse_encoding, analyse_non_trigger, mean_decomposition
from inductionlab.experiments.hijack.ceiling import redrawn_gaps, redrawn_prompts
from inductionlab.experiments.hijack.eval import PromptTable, copy_strength, decomposition_error, evaluate_model
from inductionlab.experiments.hijack.figures import write_figures
from inductionlab.experiments.hijack.report import checks, claims, readme, setting
from inductionlab.experiments.kit.experiment import experiment_preset
from inductionlab.experiments.kit.finish import finish
from inductionlab.experiments.kit.runs import trained_runs
from inductionlab.models.names import ABSOLUTE_ENCODINGS
from inductionlab.prompts.query_pairs import (
    PAIR_SEED,
    SettingPrompts,
    build_prompts,
    core_settings,
    non_trigger_settings,
    query_pairs,
    trigger_contrast_settings,
    unigram_settings,
)
from inductionlab.runs import RunSpec, seed_overrides
from inductionlab.tasks.bigram_task import make_sampler
from inductionlab.theory.trained import recall_matrices, score_decomposition
from inductionlab.train import open_trained

PRESETS = {
    "quick": {"preset": "hijack-quick", "seeds": (0, 1, 2), "n_pairs": 8, "per_pair": 8,
              "count_T": (32, 128, 512, 1024), "count_n": tuple(range(9)), "distance_T": (64, 128, 256),
              "filler_T": (64, 256), "filler_copies": (0, 2, 4, 8, 16), "non_trigger_n": (0, 1, 2, 4, 8, 16)},
    "paper": {"preset": "hijack-paper", "seeds": (0, 1, 2, 3, 4), "n_pairs": 12, "per_pair": 16,
              "count_T": (64, 256, 1024, 4096), "count_n": tuple(range(13)),
              "distance_T": (256, 512, 1024), "filler_T": (256, 1024), "filler_copies": (0, 4, 16, 32, 64),
              "non_trigger_n": (0, 1, 2, 4, 8, 16)},
    "smoke": {"preset": "hijack-quick", "set": ("train.steps=40", "model.d_model=64", "train.eval_every=20"),
              "seeds": (0, 1), "n_pairs": 8, "per_pair": 2, "count_T": (32, 128), "count_n": tuple(range(9)),
              "distance_T": (64,), "filler_T": (64,), "filler_copies": (0, 4, 8), "non_trigger_n": (0, 4, 16)},
}
MODELS = (("random", "rpe"), ("random", "ape"), ("fixed", "rpe"))
ENCODINGS = ("rpe", "ape")
QUESTION = ("When the prompt and the stored bigram disagree, which wins, and do the closed-form logits of "
            "docs/science.md §4.4/§4.5 predict the model's choice better than predictors that know nothing of the "
            "mechanism?")


def plan(preset_name: str) -> list[RunSpec]:
    """Random triggers with ``rpe`` and with ``ape``, fixed triggers with ``rpe``; × seeds."""
    preset = experiment_preset(PRESETS, preset_name)
    return [RunSpec(f"hijack-{preset_name}-{mode}-{pos_enc}-s{seed}", preset["preset"],
                    (*preset.get("set", ()), f"data.trigger_mode={mode}", f"model.pos_enc={pos_enc}",
                     *seed_overrides(seed)),
                    (("trigger_mode", mode), ("pos_enc", pos_enc), ("seed", seed)))
            for mode, pos_enc in MODELS for seed in preset["seeds"]]


def _runs(runs_dir: Path, specs: list[RunSpec]) -> dict[tuple[str, str], dict[int, Path]]:
    out: dict[tuple[str, str], dict[int, Path]] = {}
    for spec in specs:
        p = dict(spec.params)
        out.setdefault((p["trigger_mode"], p["pos_enc"]), {})[p["seed"]] = runs_dir / spec.folder
    return out


def _evaluate(run_dir: Path, prompts: list[SettingPrompts], per_pair: int = 0,
              redrawn: list[SettingPrompts] | None = None) -> tuple[PromptTable, dict[str, Any]]:
    """One trained model on every prompt: its prompt table and the layer-2 score decomposition; with
    ``per_pair`` (the random-trigger models), also ``θ`` and the exactness check of the readout's algebra on
    the first prompt of every pair of every setting; with ``redrawn``, the model's gaps on those prompts
    (the noise ceiling) and the seconds they took."""
    cfg, model, _ = open_trained(run_dir)
    model.eval()
    longest = max(p.tokens.shape[1] for p in prompts)
    if cfg.model.pos_enc in ABSOLUTE_ENCODINGS and cfg.model.max_len < longest:
        raise ConfigError(f"{run_dir.name}: model.max_len {cfg.model.max_len} < the longest prompt {longest}")
    triggers = make_sampler(cfg, torch.device("cpu"))[1].fixed_triggers
    rec = recall_matrices(model, max(longest, cfg.data.seq_len))
    table = evaluate_model(model, rec, prompts, cfg.data.seq_len, triggers)
    probe = next(p for p in prompts if p.setting.family == "count" and p.setting.n >= 2)
    extra: dict[str, Any] = {"score_decomposition": score_decomposition(model, probe.tokens)}
    if per_pair:
        errors = [decomposition_error(model, rec, p.tokens[::per_pair], p.favoured[::per_pair], p.rival[::per_pair])
                  for p in prompts]
        extra["theta"] = copy_strength(rec, cfg.data.seq_len)
        extra["decomposition"] = {"max_abs_gap_error": max(e["max_abs_gap_error"] for e in errors),
                                  "max_abs_gap": max(e["max_abs_gap"] for e in errors),
                                  "prompts": sum(e["prompts"] for e in errors)}
    if redrawn is not None:
        extra["redrawn"] = redrawn_gaps(model, redrawn, cfg.data.seq_len)
    return table, extra


def analyse(runs_dir: Path, out: Path, preset_name: str) -> dict[str, Any]:
    """Evaluate every family on every trained model; fit across seeds; claims, figures, README."""
    preset = experiment_preset(PRESETS, preset_name)
    specs, diverged = trained_runs(runs_dir, plan(preset_name))
    runs = _runs(runs_dir, specs)
    cfg = open_trained(next(iter(runs[("random", "rpe")].values())))[0]
    source = make_sampler(cfg, torch.device("cpu"))[0]
    train_len = cfg.data.seq_len
    pairs = query_pairs(source, preset["n_pairs"], PAIR_SEED)
    core, unigram = core_settings(preset), unigram_settings(preset)
    fixed = make_sampler(cfg.model_copy(update={"data": cfg.data.model_copy(update={"trigger_mode": "fixed"})}),
                         torch.device("cpu"))[1].fixed_triggers
    non_trigger_pairs = query_pairs(source, preset["n_pairs"], PAIR_SEED, exclude=fixed.tolist())
    trigger_pairs = query_pairs(source, preset["n_pairs"], PAIR_SEED, allow_fewer=True,
                                exclude=[t for t in range(source.n_tokens) if t not in fixed.tolist()])
    fixed_settings = non_trigger_settings(preset) + trigger_contrast_settings(preset)
    n_non_trigger = len(non_trigger_settings(preset))
    per_pair = preset["per_pair"]
    random_prompts = [build_prompts(s, pairs, per_pair, source) for s in core + unigram]
    redrawn = [redrawn_prompts(s, pairs, per_pair, source) for s in core]
    fixed_prompts = [build_prompts(s, non_trigger_pairs if i < n_non_trigger else trigger_pairs, per_pair, source,
                                   fixed) for i, s in enumerate(fixed_settings)]

    results: dict[str, Any] = {
        "experiment": "hijack", "preset": preset_name, "train_len": train_len,
        "runs": {f"{mode}-{enc}": [p.name for p in by_seed.values()] for (mode, enc), by_seed in runs.items()},
        "pairs": {name: [{k: source.decode([getattr(p, k)]) for k in ("a", "b", "c", "rival")} for p in ps]
                  for name, ps in (("families_1_to_3_and_5", pairs), ("family_4_non_trigger", non_trigger_pairs),
                                   ("family_4_trigger_contrast", trigger_pairs))},
        "encodings": {},
    }
    tables_by_encoding = {}
    for pos_enc in ENCODINGS:
        tables, extras = {}, {}
        for seed, run_dir in runs[("random", pos_enc)].items():
            tables[seed], extras[seed] = _evaluate(run_dir, random_prompts, per_pair, redrawn)
        enc = analyse_encoding(tables, {s: e["redrawn"] for s, e in extras.items()}, core, unigram, preset, pos_enc,
                               train_len)
        enc["score_decomposition"] = mean_decomposition({s: e["score_decomposition"] for s, e in extras.items()})
        enc["fits"]["theta"] = {str(s): e["theta"] for s, e in extras.items()}
        enc["decomposition_check"] = {str(s): e["decomposition"] for s, e in extras.items()}
        results["encodings"][pos_enc] = enc
        tables_by_encoding[pos_enc] = tables
    fixed_tables = {seed: _evaluate(run_dir, fixed_prompts)[0] for seed, run_dir in runs[("fixed", "rpe")].items()}
    results["family_4"] = analyse_non_trigger(fixed_tables, fixed_settings, n_non_trigger, preset)

    results.update(question=QUESTION, setting=setting(preset, cfg, runs))

    def figures(results: dict[str, Any], out: Path) -> list[str]:
        return write_figures(results, tables_by_encoding, core, unigram, out)

    return finish(out, results, claims=claims(results), checks=checks(results), diverged=diverged, figures=figures,
                  readme=readme)
