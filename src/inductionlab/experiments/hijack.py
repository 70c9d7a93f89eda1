"""Experiment "hijack" (SCIENCE §5, §6): designed prompts on trained models against §4.4/§4.5.

Families 1–3 and 5 run on a model trained with random triggers, all-target loss and a linear
``W_F`` (preset ``hijack-quick``); family 4 on the same model trained with fixed triggers. Every
prompt is evaluated on the model and on the three predictions of SCIENCE §4.5; the logit gap
``ξ_b − ξ_{j*}`` between the in-context successor ``b`` and the global favourite ``j*`` is the
quantity compared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from inductionlab.experiments import experiment_preset, write_results
from inductionlab.prompts import PromptSpec, contending_tokens, default_pair, make_prompts
from inductionlab.sweep import RunSpec
from inductionlab.tasks.sources import BigramSource
from inductionlab.theory.trained import (
    fit_scalar_form,
    fitted_scalar_logits,
    measured_layer2_pattern,
    readout_logits,
    recall_matrices,
    scalar_terms,
    score_decomposition,
    weights_only_logits,
)
from inductionlab.train import make_sampler, open_trained

PRESETS = {
    "quick": {"preset": "hijack-quick", "n_prompts": 64, "count_T": (32, 128, 512, 1024),
              "count_n": (0, 1, 2, 3, 4, 6, 8), "distance_T": (64, 128, 256)},
    "paper": {"preset": "hijack-quick", "n_prompts": 256, "count_T": (32, 64, 128, 256, 512, 1024, 2048),
              "count_n": (0, 1, 2, 3, 4, 6, 8, 12, 16), "distance_T": (64, 128, 256, 512)},
    "smoke": {"preset": "hijack-quick", "set": ("train.steps=40", "model.d_model=64", "train.eval_every=20"),
              "n_prompts": 8, "count_T": (32, 128), "count_n": (0, 1, 2), "distance_T": (64,)},
}
QUESTION = ("When the prompt and the stored bigram disagree, which wins, and do the closed-form logits of "
            "SCIENCE §4.4/§4.5 predict the model's choice?")
PREDICTIONS = ("weights_only", "readout", "scalar")


def r_squared(predicted: Tensor, measured: Tensor) -> float:
    """``1 − SS_res / SS_tot`` of ``predicted`` against ``measured`` (1-D tensors)."""
    ss_res = ((measured - predicted) ** 2).sum()
    ss_tot = ((measured - measured.mean()) ** 2).sum()
    return float(1 - ss_res / ss_tot) if ss_tot > 0 else float("nan")


def family_settings(preset: dict, train_len: int, source: BigramSource) -> list[PromptSpec]:
    """The designed prompts of families 1–3 and 5 for the random-trigger model."""
    a, b, _ = default_pair(source)
    c = int(torch.argsort(source.bigram[a])[1])  # the second least likely successor of a
    specs, n_prompts = [], preset["n_prompts"]
    for seq_len in preset["count_T"]:
        for n in preset["count_n"]:
            if 2 * n + 1 <= seq_len:
                specs.append(PromptSpec("count", seq_len, a, b, n=n, n_prompts=n_prompts, seed=seq_len * 100 + n))
        specs.append(PromptSpec("no-context", seq_len, a, b, n_prompts=n_prompts, seed=seq_len))
    for seq_len in preset["distance_T"]:
        for frac in (0.05, 0.25, 0.5, 0.75, 0.95):
            pos = min(max(int(frac * seq_len), 0), seq_len - 3)
            specs.append(PromptSpec("distance", seq_len, a, b, position=pos, n_prompts=n_prompts, seed=seq_len + pos))
    for n_b, n_c in ((1, 0), (1, 1), (2, 1), (1, 2), (3, 1), (1, 3), (2, 2)):
        specs.append(PromptSpec("conflict", 64, a, b, c, n_b=n_b, n_c=n_c, n_prompts=n_prompts, seed=10 * n_b + n_c))
    return specs


def non_trigger_settings(preset: dict, source: BigramSource, triggers: Tensor) -> list[PromptSpec]:
    """Family 4: a query token that is not a trigger of the fixed-trigger model."""
    order = torch.argsort(source.unigram, descending=True)
    a = int(next(t for t in order.tolist() if t not in set(triggers.tolist())))
    b = int(torch.argmin(source.bigram[a]))
    n_prompts = preset["n_prompts"]
    return [PromptSpec("non-trigger", 64, a, b, n=n, n_prompts=n_prompts, seed=n) for n in (0, 1, 2, 4, 8, 16)]


def evaluate_setting(model, rec, spec: PromptSpec, source: BigramSource, train_len: int,
                     triggers: Tensor | None) -> dict[str, Any]:
    """Model logits and the three predictions on one setting's prompts."""
    batch = make_prompts(spec, source, triggers)
    tokens = batch.tokens
    logits, beta2 = measured_layer2_pattern(model, tokens)
    preds = {
        "weights_only": weights_only_logits(rec, tokens),
        "readout": readout_logits(rec, tokens, beta2),
    }
    scalar = scalar_terms(rec, tokens, train_len, triggers)
    tokens_of_interest = contending_tokens(spec, source)
    b, rival = tokens_of_interest[0], tokens_of_interest[-1]
    gap = logits[:, b] - logits[:, rival]
    out: dict[str, Any] = {
        "family": spec.family, "seq_len": spec.seq_len, "n": spec.n, "n_b": spec.n_b, "n_c": spec.n_c,
        "position": spec.position, "beyond_train_len": spec.position is not None and spec.position >= train_len,
        "tokens": {"a": source.decode([spec.a]), "b": source.decode([b]), "rival": source.decode([rival])},
        "example": batch.decode(source, 0),
        "model_logits": {source.decode([t]): logits[:, t].mean().item() for t in tokens_of_interest},
        "model_p_b": torch.softmax(logits, -1)[:, b].mean().item(),
        "model_gap": gap.mean().item(),
        "model_b_wins": (logits.argmax(-1) == b).float().mean().item(),
    }
    out["_parts"] = {"rec": rec, "tokens": tokens, "train_len": train_len, "triggers": triggers, "b": b,
                     "rival": rival, "model_logits": logits}
    preds["scalar"] = (scalar.in_context + scalar.global_).float()  # read off; refitted in summarise
    for name, pred in preds.items():
        out[f"{name}_gap"] = (pred[:, b] - pred[:, rival]).mean().item()
        out[f"{name}_argmax_agreement"] = (pred.argmax(-1) == logits.argmax(-1)).float().mean().item()
    out["_gaps"] = {"model": gap, **{k: v[:, b] - v[:, rival] for k, v in preds.items()}}
    return out


def crossovers(rows: list[dict[str, Any]]) -> dict[str, dict[str, int | None]]:
    """Per prompt length, the smallest count n at which b beats j* (mean gap > 0), measured and predicted."""
    out: dict[str, dict[str, int | None]] = {}
    for seq_len in sorted({r["seq_len"] for r in rows if r["family"] == "count"}):
        sweep = sorted((r for r in rows if r["family"] == "count" and r["seq_len"] == seq_len), key=lambda r: r["n"])
        out[str(seq_len)] = {
            key: next((r["n"] for r in sweep if r[f"{key}_gap"] > 0), None) for key in ("model", *PREDICTIONS)
        }
    return out


def plan(preset_name: str) -> list[RunSpec]:
    """The two models: random triggers (families 1–3, 5) and fixed triggers (family 4)."""
    preset = experiment_preset(PRESETS, preset_name)
    return [RunSpec(f"hijack-{preset_name}-{mode}", preset["preset"], (*preset.get("set", ()),
                    f"data.trigger_mode={mode}"), (("trigger_mode", mode),)) for mode in ("random", "fixed")]


def analyse(runs_dir: Path, out: Path, preset_name: str) -> dict[str, Any]:
    """Evaluate every family on the two trained models; write results, figures and README."""
    preset = experiment_preset(PRESETS, preset_name)
    runs = {dict(spec.params)["trigger_mode"]: runs_dir / spec.folder for spec in plan(preset_name)}
    rows: list[dict[str, Any]] = []
    decompositions, fits = {}, {}
    for kind, run_dir in runs.items():
        cfg, model, _ = open_trained(run_dir)
        model.eval()
        source, sampler = make_sampler(cfg, torch.device("cpu"))
        train_len = cfg.data.seq_len
        triggers = sampler.fixed_triggers
        specs = (family_settings(preset, train_len, source) if kind == "random"
                 else non_trigger_settings(preset, source, triggers))
        max_len = max(max(s.seq_len for s in specs), train_len)
        rec = recall_matrices(model, max_len)
        for spec in specs:
            rows.append({"model": kind, **evaluate_setting(model, rec, spec, source, train_len, triggers)})
        fit_rows = [r for r in rows if r["model"] == kind and r["family"] in ("count", "distance", "conflict")] or [
            r for r in rows if r["model"] == kind]
        fits[kind] = fit_scalar_form(rec, [(r["_parts"]["tokens"], r["_parts"]["b"], r["_parts"]["rival"])
                                           for r in fit_rows], torch.cat([r["_gaps"]["model"] for r in fit_rows]),
                                     train_len, triggers)
        probe = make_prompts(next(s for s in specs if s.n_pairs >= 2), source, triggers).tokens
        decompositions[kind] = score_decomposition(model, probe)

    refit_scalar(rows, fits)
    results = summarise(rows, decompositions, preset_name, runs)
    results["scalar_fit"] = fits
    from inductionlab.experiments.hijack_report import claims, setting, write_figures, write_readme

    results.update(question=QUESTION, setting=setting(preset, runs_dir, runs), claims=claims(results))
    results["figures"] = write_figures(rows, results, out)
    write_readme(results, out)
    write_results(results, out)
    return results


def refit_scalar(rows: list[dict[str, Any]], fits: dict[str, dict[str, float]]) -> None:
    """Replace every row's read-off scalar prediction by the least-squares fit of its model."""
    for r in rows:
        p = r["_parts"]
        fitted = fitted_scalar_logits(p["rec"], p["tokens"], p["train_len"], p["triggers"], fits[r["model"]])
        gap = fitted[:, p["b"]] - fitted[:, p["rival"]]
        r["scalar_read_off_gap"] = r["scalar_gap"]
        r["_gaps"]["scalar_read_off"] = r["_gaps"]["scalar"]
        r["_gaps"]["scalar"] = gap
        r["scalar_gap"] = gap.mean().item()
        r["scalar_argmax_agreement"] = (fitted.argmax(-1) == p["model_logits"].argmax(-1)).float().mean().item()


def summarise(rows, decompositions, preset_name, runs) -> dict[str, Any]:
    """R² and argmax agreement per family and prediction, crossovers, and the per-setting rows."""
    by_family: dict[str, Any] = {}
    for family in sorted({r["family"] for r in rows}):
        fam = [r for r in rows if r["family"] == family]
        measured = torch.cat([r["_gaps"]["model"] for r in fam])
        stats = {"n_prompts": int(measured.numel()), "model_b_wins": sum(r["model_b_wins"] for r in fam) / len(fam)}
        for name in PREDICTIONS:
            predicted = torch.cat([r["_gaps"][name] for r in fam])
            stats[f"{name}_r2_gap"] = r_squared(predicted, measured)
            stats[f"{name}_argmax_agreement"] = sum(r[f"{name}_argmax_agreement"] for r in fam) / len(fam)
        by_family[family] = stats
    core = [r for r in rows if r["family"] in ("count", "distance", "conflict")]
    measured = torch.cat([r["_gaps"]["model"] for r in core])
    families_1_3 = {f"{name}_r2_gap": r_squared(torch.cat([r["_gaps"][name] for r in core]), measured)
                    for name in PREDICTIONS}
    families_1_3["scalar_read_off_r2_gap"] = r_squared(
        torch.cat([r["_gaps"]["scalar_read_off"] for r in core]), measured)
    settings = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    return {
        "experiment": "hijack", "preset": preset_name, "runs": {k: v.name for k, v in runs.items()},
        "families_1_to_3": families_1_3, "by_family": by_family, "crossover_n": crossovers(rows),
        "layer2_score_decomposition": decompositions, "settings": settings,
    }
