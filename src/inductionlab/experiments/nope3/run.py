"""Experiment "nope3" (docs/science.md §3.2, §4.2, §6): a three-layer position-free model forms an induction head.

Without positional information, a causal transformer can still find the previous token: the first
layer's uniform causal attention gives every position a different mixture of the past. The general
transformer with three layers, two heads and no positions is trained with **random** triggers
(so that induction on any token pays), attention-only and with MLPs; each is evaluated at the
training length and beyond, and its heads are scored on two distributions (docs/science.md §4.2): the
TransformerLens head scores on repeated random tokens, and the same attention measured on the
task's own sequences (previous token at trigger outputs, induction keys at in-context targets).
Every claim is measured against the untrained model of the same config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from inductionlab.curves import first_crossing
from inductionlab.experiments.kit.claims import Rule, claim
from inductionlab.experiments.kit.curves import evaluations, last_evaluation
from inductionlab.experiments.kit.experiment import experiment_preset
from inductionlab.experiments.kit.finish import finish
from inductionlab.experiments.kit.runs import trained_runs
from inductionlab.experiments.nope3.report import readme, setting, write_figures
from inductionlab.models.build import build_model
from inductionlab.probes.attention import head_scores, task_head_scores
from inductionlab.runs import RunDir, RunSpec
from inductionlab.tasks.bigram_length import batch_at_length, evaluate_length
from inductionlab.train import open_trained

PRESETS = {
    "quick": {"preset": "nope3-quick", "factors": (0.5, 1, 2, 4, 8), "eval_batch": 64},
    "paper": {"preset": "nope3-paper", "factors": (0.5, 1, 2, 4, 8), "eval_batch": 128},
    "smoke": {"preset": "nope3-quick", "set": ("train.steps=40", "model.d_model=32", "train.eval_every=20"),
              "factors": (0.5, 1, 2), "eval_batch": 8},
}
VARIANTS = {"attention-only": "model.mlp=false", "with-mlp": "model.mlp=true"}
QUESTION = "Can a transformer with no positional encoding at all form an induction head (docs/science.md §6)?"


def plan(preset_name: str) -> list[RunSpec]:
    """The attention-only and the with-MLP variants of the preset's three-layer model."""
    preset = experiment_preset(PRESETS, preset_name)
    return [RunSpec(f"nope3-{preset_name}-{variant}", preset["preset"], (*preset.get("set", ()), override),
                    (("variant", variant),)) for variant, override in VARIANTS.items()]


def analyse(runs_dir: Path, out: Path, preset_name: str) -> dict[str, Any]:
    """Accuracy at every test length and head scores of both variants; results, figure, README."""
    preset = experiment_preset(PRESETS, preset_name)
    variants: dict[str, Any] = {}
    specs, diverged = trained_runs(runs_dir, plan(preset_name))
    for spec in specs:
        run_dir = runs_dir / spec.folder
        cfg, model, _ = open_trained(run_dir)
        model.eval()
        rows = RunDir(run_dir).metrics()
        train_len = cfg.data.seq_len
        first = {level: first_crossing(rows, "acc_in_context", level) for level in (0.5, 0.9)}
        untrained = build_model(cfg.model, cfg.data.n_tokens, cfg.seeds.init).eval()
        by_length, untrained_by_length = {}, {}
        for seq_len in (max(2, int(f * train_len)) for f in preset["factors"]):
            batch = batch_at_length(cfg, seq_len, preset["eval_batch"])
            by_length[str(seq_len)] = evaluate_length(model, batch, train_len)
            untrained_by_length[str(seq_len)] = evaluate_length(untrained, batch, train_len)["acc_in_context"]
        probe = batch_at_length(cfg, train_len, preset["eval_batch"])
        keep = ~probe.degenerate
        scores = {}
        for name, m in (("trained", model), ("untrained", untrained)):
            scores[name] = {
                "random_tokens": {k: v.tolist() for k, v in head_scores(m, cfg.data.n_tokens, 2 * train_len, 32,
                                                                         torch.Generator().manual_seed(7)).items()},
                "task": {k: v.tolist() for k, v in task_head_scores(m, probe.tokens[keep], probe.labels[keep]).items()},
            }
        variants[dict(spec.params)["variant"]] = {
            "run": spec.folder,
            "config": {"n_layers": cfg.model.n_layers, "n_heads": cfg.model.n_heads, "d_model": cfg.model.d_model,
                       "mlp": cfg.model.mlp, "steps": cfg.train.steps, "train_len": train_len,
                       "trigger_mode": cfg.data.trigger_mode, "loss_on": cfg.train.loss_on},
            "first_step_acc_in_context": {str(k): v for k, v in first.items()},
            "final_acc_in_context_train_len": last_evaluation(rows)["acc_in_context"],
            "by_length": by_length,
            "head_scores": scores["trained"],
            "untrained": {"acc_in_context_by_length": untrained_by_length, "head_scores": scores["untrained"]},
            "curve": [{"step": r["step"], "acc_in_context": r["acc_in_context"]} for r in evaluations(rows)],
        }
    results: dict[str, Any] = {"experiment": "nope3", "preset": preset_name, "variants": variants,
                               "test_lengths": [int(t) for t in next(iter(variants.values()))["by_length"]]}
    results.update(question=QUESTION, setting=setting(variants["with-mlp"]["config"], results["test_lengths"]))
    return finish(out, results, claims=claims(results), diverged=diverged, figures=write_figures, readme=readme)


def _best(scores: dict[str, list[list[float]]], kind: str, layers: slice = slice(None)) -> float:
    """The best head of ``kind`` over the given layers (NaN entries ignored)."""
    values = [v for row in scores[kind][layers] for v in row if v == v]
    return max(values) if values else float("nan")


def _weaker_circuit(scores: dict[str, list[list[float]]]) -> tuple[float, str]:
    """The best circuit: a previous-token head in some layer and an induction head in a *later* one;
    its strength is the weaker of the two scores, maximised over the pairs of layers."""
    best_value, best_kind = float("nan"), "previous_token"
    layers = len(scores["previous_token"])
    for early in range(layers):
        for late in range(early + 1, layers):
            prev = _best(scores, "previous_token", slice(early, early + 1))
            ind = _best(scores, "induction", slice(late, late + 1))
            value, kind = (prev, "previous_token") if prev <= ind else (ind, "induction")
            if not best_value >= value:  # also replaces the initial NaN
                best_value, best_kind = value, kind
    return best_value, best_kind


def claims(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Does the model learn the in-context targets, keep them at longer T, and show the heads of §4.2?

    Each against the untrained model of the same config on the same sequences (docs/science.md §7).
    """
    mlp = results["variants"]["with-mlp"]
    attn = results["variants"]["attention-only"]
    untrained = mlp["untrained"]
    lengths = results["test_lengths"]
    train_len = str(mlp["config"]["train_len"])
    longest = mlp["by_length"][str(lengths[-1])]["acc_in_context"]
    out = [
        claim("A 3-layer position-free transformer (with MLPs) learns the in-context targets",
              "in-context accuracy ≥ 0.9 at T_train, ≥ 0.3 above the untrained model",
              "in-context accuracy at T_train, fresh non-degenerate sequences",
              mlp["by_length"][train_len]["acc_in_context"], untrained["acc_in_context_by_length"][train_len],
              "the untrained model (same config and init seed) on the same sequences",
              Rule("higher", 0.9, 0.3), attention_only=attn["by_length"][train_len]["acc_in_context"]),
        claim("With no positions to outgrow, it keeps working on longer prompts",
              f"in-context accuracy at T = {lengths[-1]} ≥ 0.85, ≥ 0.3 above the untrained model",
              f"in-context accuracy at T = {lengths[-1]} ({lengths[-1] // mlp['config']['train_len']}× T_train)",
              longest, untrained["acc_in_context_by_length"][str(lengths[-1])], "the untrained model on the same "
              "sequences", Rule("higher", 0.85, 0.3), at_train_len=mlp["by_length"][train_len]["acc_in_context"]),
    ]
    for where, label in (("task", "on the task's own sequences (previous token at trigger outputs, induction keys "
                                  "at in-context targets)"),
                         ("random_tokens", "on repeated random tokens (TransformerLens head scores)")):
        measured, kind = _weaker_circuit(mlp["head_scores"][where])
        null, _ = _weaker_circuit(untrained["head_scores"][where])
        out.append(claim(
            f"Its heads show the previous-token and induction patterns of §4.2, {label}",
            "a previous-token head and a later induction head, each with score ≥ 0.5, ≥ 0.2 above the untrained "
            "model", f"the weaker of the best previous-token head and the best induction head ({kind})", measured,
            null, "the same score of the untrained model", Rule("higher", 0.5, 0.2),
            attention_only=_weaker_circuit(attn["head_scores"][where])[0]))
    return out
