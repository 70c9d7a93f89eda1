"""Experiment "nope3" (SCIENCE §3.2, §4.2, §6): a three-layer position-free model forms an induction head.

Without positional information, a causal transformer can still find the previous token: the first
layer's uniform causal attention gives every position a different mixture of the past. The general
transformer with three layers, two heads and no positions is trained attention-only and with MLPs;
each is evaluated at the training length and beyond, with the TransformerLens head scores of §4.2
on repeated random tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from inductionlab.experiments import experiment_preset, write_results
from inductionlab.experiments.claims import Rule, claim
from inductionlab.experiments.length import batch_at_length, evaluate_length
from inductionlab.models.build import build_model
from inductionlab.sweep import RunSpec
from inductionlab.train import open_trained

PRESETS = {
    "quick": {"preset": "nope3-quick", "factors": (0.5, 1, 2, 4, 8), "eval_batch": 64},
    "paper": {"preset": "nope3-quick", "factors": (0.5, 1, 2, 4, 8), "eval_batch": 256},
    "smoke": {"preset": "nope3-quick", "set": ("train.steps=40", "model.d_model=32", "train.eval_every=20"),
              "factors": (0.5, 1, 2), "eval_batch": 8},
}
VARIANTS = {"attention-only": "model.mlp=false", "with-mlp": "model.mlp=true"}
QUESTION = "Can a transformer with no positional encoding at all form an induction head (SCIENCE §6)?"


def plan(preset_name: str) -> list[RunSpec]:
    """The attention-only and the with-MLP variants of the preset's three-layer model."""
    preset = experiment_preset(PRESETS, preset_name)
    return [RunSpec(f"nope3-{preset_name}-{variant}", preset["preset"], (*preset.get("set", ()), override),
                    (("variant", variant),)) for variant, override in VARIANTS.items()]


def analyse(runs_dir: Path, out: Path, preset_name: str) -> dict[str, Any]:
    """Accuracy at every test length and head scores of both variants; results, figure, README."""
    from inductionlab.probes.attention import head_scores
    from inductionlab.runs import RunDir

    preset = experiment_preset(PRESETS, preset_name)
    variants: dict[str, Any] = {}
    for spec in plan(preset_name):
        run_dir = runs_dir / spec.folder
        cfg, model, _ = open_trained(run_dir)
        model.eval()
        rows = RunDir(run_dir).metrics()
        train_len = cfg.data.seq_len
        first = {level: next((r["step"] for r in rows if r["acc_in_context"] >= level), None) for level in (0.5, 0.9)}
        untrained = build_model(cfg.model, cfg.data.n_tokens, cfg.seeds.init).eval()
        by_length, untrained_by_length = {}, {}
        for seq_len in (max(2, int(f * train_len)) for f in preset["factors"]):
            batch = batch_at_length(cfg, seq_len, preset["eval_batch"])
            by_length[str(seq_len)] = evaluate_length(model, batch, train_len)
            untrained_by_length[str(seq_len)] = evaluate_length(untrained, batch, train_len)["acc_in_context"]
        scores, untrained_scores = (head_scores(m, cfg.data.n_tokens, 2 * train_len, 32,
                                                torch.Generator().manual_seed(7)) for m in (model, untrained))
        variants[dict(spec.params)["variant"]] = {
            "run": spec.folder,
            "config": {"n_layers": cfg.model.n_layers, "n_heads": cfg.model.n_heads, "d_model": cfg.model.d_model,
                       "mlp": cfg.model.mlp, "steps": cfg.train.steps, "train_len": train_len},
            "first_step_acc_in_context": {str(k): v for k, v in first.items()},
            "final_acc_in_context_train_len": rows[-1]["acc_in_context"],
            "by_length": by_length,
            "head_scores": {k: v.tolist() for k, v in scores.items()},
            "untrained": {"acc_in_context_by_length": untrained_by_length,
                          "head_scores": {k: v.tolist() for k, v in untrained_scores.items()}},
            "curve": [{"step": r["step"], "acc_in_context": r["acc_in_context"]} for r in rows],
        }
    results: dict[str, Any] = {"experiment": "nope3", "preset": preset_name, "variants": variants,
                               "test_lengths": [int(t) for t in next(iter(variants.values()))["by_length"]]}
    from inductionlab.experiments.nope3_report import write_figure, write_readme

    cfg = variants["with-mlp"]["config"]
    results.update(question=QUESTION, claims=claims(results), setting=(
        f"General transformer (SCIENCE §3.2): {cfg['n_layers']} layers, {cfg['n_heads']} heads, d = {cfg['d_model']},"
        f" pre-LayerNorm, no positional encoding, trained {cfg['steps']} AdamW steps at T_train = {cfg['train_len']} "
        "on in-context targets, attention-only and with MLPs; evaluated up to "
        f"{results['test_lengths'][-1]} tokens; head scores on repeated random tokens."))
    results["figures"] = [write_figure(results, out)]
    write_readme(results, out)
    write_results(results, out)
    return results


def _best(scores: dict[str, list[list[float]]], kind: str) -> float:
    return max(max(row) for row in scores[kind])


def claims(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Does the model learn the in-context targets, keep them at longer T, and show the heads of §4.2?

    Each against the untrained model of the same config (SCIENCE §7).
    """
    mlp = results["variants"]["with-mlp"]
    attn = results["variants"]["attention-only"]
    untrained = mlp["untrained"]
    lengths = results["test_lengths"]
    train_len = str(mlp["config"]["train_len"])
    longest = mlp["by_length"][str(lengths[-1])]["acc_in_context"]
    heads = {kind: _best(mlp["head_scores"], kind) for kind in ("previous_token", "induction")}
    untrained_heads = {kind: _best(untrained["head_scores"], kind) for kind in heads}
    weaker = min(heads, key=heads.get)
    return [
        claim("A 3-layer position-free transformer (with MLPs) learns the in-context targets",
              "in-context accuracy ≥ 0.9 at T_train, ≥ 0.3 above the untrained model",
              "in-context accuracy at T_train (fresh evaluation sequences)",
              mlp["by_length"][train_len]["acc_in_context"], untrained["acc_in_context_by_length"][train_len],
              "the untrained model (same config and init seed) on the same sequences",
              Rule("higher", 0.9, 0.3), attention_only=attn["final_acc_in_context_train_len"]),
        claim("With no positions to outgrow, it keeps working on longer prompts",
              f"in-context accuracy at T = {lengths[-1]} ≥ 0.85, ≥ 0.3 above the untrained model",
              f"in-context accuracy at T = {lengths[-1]} ({lengths[-1] // mlp['config']['train_len']}× T_train)",
              longest, untrained["acc_in_context_by_length"][str(lengths[-1])], "the untrained model on the same "
              "sequences", Rule("higher", 0.85, 0.3), at_train_len=mlp["by_length"][train_len]["acc_in_context"]),
        claim("Its heads show the previous-token and induction patterns of §4.2",
              "a head of each kind with score ≥ 0.5, ≥ 0.2 above the untrained model's best",
              f"the weaker of the best previous-token and best induction head scores ({weaker}), on repeated "
              "random tokens", heads[weaker], untrained_heads[weaker], "the same score of the untrained model",
              Rule("higher", 0.5, 0.2), best=heads, untrained_best=untrained_heads),
    ]
