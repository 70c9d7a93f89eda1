"""Experiment "nope3" (docs/science.md §3.2, §4.2, §6): a three-layer position-free model forms an induction head.

Without positional information, a causal transformer can still find the previous token: the first
layer's uniform causal attention gives every position a different mixture of the past. The general
transformer with three layers, two heads and no positions is trained with **random** triggers
(so that induction on any token pays), attention-only and with MLPs, each over the preset's seeds;
each run is evaluated at the training length and beyond, and its heads are scored on two
distributions (docs/science.md §4.2): the TransformerLens head scores on repeated random tokens, and
the same attention measured on the task's own sequences (previous token at trigger outputs,
induction keys at in-context targets). Beside every run: the in-context unigram predictor
(:func:`context_unigram`), a strategy without induction, on the same sequences, and the untrained
model of the same config and init seed. The claims are in :mod:`.claims`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from inductionlab.curves import first_crossing
from inductionlab.experiments.kit.curves import evaluations, last_evaluation, seed_spread
from inductionlab.experiments.kit.experiment import experiment_preset
from inductionlab.experiments.kit.finish import finish
from inductionlab.experiments.kit.runs import trained_runs
from inductionlab.experiments.nope3.claims import claims
from inductionlab.experiments.nope3.report import readme, setting, write_figures
from inductionlab.models.build import build_model
from inductionlab.probes.attention import head_scores, task_head_scores
from inductionlab.runs import RunDir, RunSpec, seed_overrides
from inductionlab.tasks.bigram import TriggerBatch
from inductionlab.tasks.bigram_length import batch_at_length, evaluate_length
from inductionlab.train import open_trained

# seed counts are fixed here, before any run (docs/science.md §7.1)
PRESETS = {
    "quick": {"preset": "nope3-quick", "seeds": (0, 1, 2), "factors": (0.5, 1, 2, 4, 8), "eval_batch": 64},
    "paper": {"preset": "nope3-paper", "seeds": (0, 1, 2), "factors": (0.5, 1, 2, 4, 8), "eval_batch": 128},
    "smoke": {"preset": "nope3-quick", "set": ("train.steps=40", "model.d_model=32", "train.eval_every=20"),
              "seeds": (0,), "factors": (0.5, 1, 2), "eval_batch": 8},
}
VARIANTS = {"attention-only": "model.mlp=false", "with-mlp": "model.mlp=true"}
HEAD_SCORE_SEQUENCES = 32  # repeated random-token sequences for the TransformerLens head scores
QUESTION = "Can a transformer with no positional encoding at all form an induction head (docs/science.md §6)?"


def plan(preset_name: str) -> list[RunSpec]:
    """The attention-only and the with-MLP variants of the preset's three-layer model, × the preset's seeds."""
    preset = experiment_preset(PRESETS, preset_name)
    return [RunSpec(f"nope3-{preset_name}-{variant}-s{seed}", preset["preset"],
                    (*preset.get("set", ()), override, *seed_overrides(seed)), (("variant", variant), ("seed", seed)))
            for variant, override in VARIANTS.items() for seed in preset["seeds"]]


def context_unigram(batch: TriggerBatch, train_len: int) -> dict[str, float | int | None]:
    """The in-context unigram predictor on ``batch``: at every position, the token most frequent so far.

    §4.4 (v)'s strategy without copying (the bigram adds nothing for random outputs): it knows which
    tokens the context holds but not which one followed the query's earlier occurrence, so it is what a
    model *without* an induction head can reach on the in-context targets. Accuracy over the
    non-degenerate in-context targets, all of them and before / beyond ``train_len``, with their counts.
    """
    inputs, targets = batch.tokens[:, :-1], batch.tokens[:, 1:]
    counts = F.one_hot(inputs, int(batch.tokens.max()) + 1).cumsum(1)  # (B, T, N): counts up to each position
    correct = counts.argmax(-1) == targets
    in_context = (batch.labels >= 2) & ~batch.degenerate[:, None]
    beyond = torch.arange(inputs.shape[1]).expand_as(inputs) >= train_len

    def acc(mask: torch.Tensor) -> float | None:
        return correct[mask].float().mean().item() if mask.any() else None

    return {"acc_in_context": acc(in_context), "acc_in_context_before_train_len": acc(in_context & ~beyond),
            "acc_in_context_beyond_train_len": acc(in_context & beyond),
            "targets_before_train_len": int((in_context & ~beyond).sum()),
            "targets_beyond_train_len": int((in_context & beyond).sum())}


def evaluate_run(run_dir: Path, preset: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """One trained run: its milestones and curve, accuracy at every test length (with the in-context unigram
    predictor on the same sequences, and the untrained model at ``T_train``), and head scores (trained and
    untrained)."""
    cfg, model, _ = open_trained(run_dir)
    model.eval()
    rows = RunDir(run_dir).metrics()
    train_len = cfg.data.seq_len
    untrained = build_model(cfg.model, cfg.data.n_tokens, cfg.seeds.init).eval()
    by_length, untrained_acc, no_induction = {}, {}, {}
    for seq_len in (max(2, int(f * train_len)) for f in preset["factors"]):
        batch = batch_at_length(cfg, seq_len, preset["eval_batch"])
        by_length[str(seq_len)] = evaluate_length(model, batch, train_len)
        if seq_len == train_len:  # chance-level everywhere; kept beside the learning claim
            untrained_acc[str(seq_len)] = evaluate_length(untrained, batch, train_len)["acc_in_context"]
        no_induction[str(seq_len)] = context_unigram(batch, train_len)
    probe = batch_at_length(cfg, train_len, preset["eval_batch"])
    keep = ~probe.degenerate
    scores = {}
    for name, m in (("trained", model), ("untrained", untrained)):
        random_tokens = head_scores(m, cfg.data.n_tokens, 2 * train_len, HEAD_SCORE_SEQUENCES,
                                    torch.Generator().manual_seed(7))
        scores[name] = {
            "random_tokens": {k: v.tolist() for k, v in random_tokens.items()},
            "task": {k: v.tolist() for k, v in task_head_scores(m, probe.tokens[keep], probe.labels[keep]).items()},
        }
    return cfg, {
        "run": run_dir.name,
        "first_step_acc_in_context": {str(level): first_crossing(rows, "acc_in_context", level)
                                      for level in (0.5, 0.9)},
        "final_acc_in_context_train_len": last_evaluation(rows)["acc_in_context"],
        "by_length": by_length, "untrained_acc_in_context": untrained_acc, "no_induction": no_induction,
        "head_scores": scores["trained"], "untrained_head_scores": scores["untrained"],
        "curve": [{"step": r["step"], "acc_in_context": r["acc_in_context"]} for r in evaluations(rows)],
    }


def summarise(seeds: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample spread over seeds: accuracy by test length (trained, in-context unigram; untrained at
    T_train)."""
    runs = list(seeds.values())
    lengths = runs[0]["by_length"]
    return {
        "by_length": {t: {"acc_in_context": seed_spread([s["by_length"][t]["acc_in_context"] for s in runs])}
                      for t in lengths},
        "untrained_by_length": {t: seed_spread([s["untrained_acc_in_context"][t] for s in runs])
                                for t in runs[0]["untrained_acc_in_context"]},
        "no_induction_by_length": {t: seed_spread([s["no_induction"][t]["acc_in_context"] for s in runs])
                                   for t in lengths},
    }


def analyse(runs_dir: Path, out: Path, preset_name: str) -> dict[str, Any]:
    """Every seed of both variants evaluated (:func:`evaluate_run`); results, claims, figures, README."""
    preset = experiment_preset(PRESETS, preset_name)
    variants: dict[str, Any] = {}
    specs, diverged = trained_runs(runs_dir, plan(preset_name))
    for spec in specs:
        params = dict(spec.params)
        cfg, found = evaluate_run(runs_dir / spec.folder, preset)
        entry = variants.setdefault(params["variant"], {"seeds": {}})
        entry["config"] = {"n_layers": cfg.model.n_layers, "n_heads": cfg.model.n_heads, "d_model": cfg.model.d_model,
                           "mlp": cfg.model.mlp, "steps": cfg.train.steps, "batch_size": cfg.train.batch_size,
                           "train_len": cfg.data.seq_len, "trigger_mode": cfg.data.trigger_mode,
                           "loss_on": cfg.train.loss_on}
        entry["seeds"][str(params["seed"])] = found
    for entry in variants.values():
        entry.update(summarise(entry["seeds"]))
    first = next(iter(variants.values()))
    results: dict[str, Any] = {"experiment": "nope3", "preset": preset_name, "variants": variants,
                               "eval_batch": preset["eval_batch"], "head_score_sequences": HEAD_SCORE_SEQUENCES,
                               "test_lengths": [int(t) for t in first["by_length"]]}
    results.update(question=QUESTION, setting=setting(first["config"], results["test_lengths"],
                                                      len(first["seeds"])))
    return finish(out, results, claims=claims(results), diverged=diverged, figures=write_figures, readme=readme)
