"""Experiment "length" (docs/science.md §3.1, §4.4 (iv), §6): positional encodings and length generalisation.

The same task is trained at ``T_train`` with each encoding and several seeds, then evaluated at
``T ∈ {T/2, T, 2T, 4T, 8T}``: in-context accuracy overall; for targets before ``T_train`` and
beyond it, the latter split into *query beyond, key inside* (the induction key, the position after
the trigger's previous occurrence, lies before ``T_train``) and *both beyond*; by the distance between
the trigger's previous occurrence and the query; and the layer-1 previous-token attention by
position. §4.4 (iv) predicts that ``ape`` loses pairs whose key lies beyond ``τ = T_train`` (its
previous-token memory is tied to trained positions) while relative encodings do not. Family 2
(one pair at ``s₀``, query at ``8 T_train``) tests the §4.4 closed form with each model's read-off
memories against the bigram-only prediction of the same read-off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from inductionlab.errors import ConfigError
from inductionlab.experiments.kit.curves import seed_spread
from inductionlab.experiments.kit.experiment import experiment_preset
from inductionlab.experiments.kit.finish import finish
from inductionlab.experiments.kit.runs import trained_runs
from inductionlab.experiments.length.claims import checks, claims
from inductionlab.experiments.length.report import readme, setting, write_figures
from inductionlab.models.names import POS_ENCODINGS
from inductionlab.prompts.families import PromptSpec, default_pair, make_prompts
from inductionlab.runs import RunSpec, seed_overrides
from inductionlab.tasks.bigram_length import batch_at_length, evaluate_length
from inductionlab.tasks.bigram_task import make_sampler
from inductionlab.theory.scalar import scalar_terms
from inductionlab.theory.trained import recall_matrices
from inductionlab.train import open_trained

PRESETS = {
    "quick": {"preset": "length-quick", "seeds": (0, 1, 2), "factors": (0.5, 1, 2, 4, 8), "eval_batch": 64},
    "paper": {"preset": "length-paper", "seeds": (0, 1, 2, 3, 4), "factors": (0.5, 1, 2, 4, 8), "eval_batch": 128},
    "smoke": {"preset": "length-quick", "set": ("train.steps=40", "model.d_model=32", "train.eval_every=20"),
              "seeds": (0,), "factors": (0.5, 1, 2), "eval_batch": 8},
}
THEORY_ENCODINGS = ("ape", "ape-sincos", "rpe", "bias")  # the §4.4 closed form covers these
QUESTION = ("Does an induction head trained at T_train keep working on longer prompts, and how does the answer "
            "depend on the positional encoding (docs/science.md §3.1, §4.4 (iv))?")


def plan(preset_name: str) -> list[RunSpec]:
    """Every positional encoding × seed, trained at the preset's ``T_train``."""
    preset = experiment_preset(PRESETS, preset_name)
    return [RunSpec(f"length-{preset_name}-{pos_enc}-s{seed}", preset["preset"],
                    (*preset.get("set", ()), f"model.pos_enc={pos_enc}", *seed_overrides(seed)),
                    (("pos_enc", pos_enc), ("seed", seed)))
            for pos_enc in POS_ENCODINGS for seed in preset["seeds"]]


def analyse(runs_dir: Path, out: Path, preset_name: str) -> dict[str, Any]:
    """Evaluate every trained encoding × seed at every test length; write results, figures, README."""
    preset = experiment_preset(PRESETS, preset_name)
    specs, diverged = trained_runs(runs_dir, plan(preset_name))
    base = specs[0].config()
    train_len = base.data.seq_len
    lengths = [max(2, int(f * train_len)) for f in preset["factors"]]
    if base.model.max_len < max(lengths):
        raise ConfigError(f"preset {preset['preset']}: max_len {base.model.max_len} < longest test {max(lengths)}")
    per_run: dict[str, dict[str, dict[str, Any]]] = {}
    runs: dict[str, dict[int, tuple[Any, torch.nn.Module]]] = {}
    for spec in specs:
        params = dict(spec.params)
        cfg, model, _ = open_trained(runs_dir / spec.folder)  # each run opened once, for both analyses
        model.eval()
        runs.setdefault(params["pos_enc"], {})[params["seed"]] = (cfg, model)
        for seq_len in lengths:
            batch = batch_at_length(cfg, seq_len, preset["eval_batch"])
            per_run.setdefault(params["pos_enc"], {}).setdefault(str(seq_len), {})[str(params["seed"])] = (
                evaluate_length(model, batch, train_len))
    results = summarise(per_run, train_len, lengths, preset_name)
    results["eval_batch"] = preset["eval_batch"]
    results["designed_distance"] = designed_distance(runs, preset, base, lengths[-1])
    results.update(question=QUESTION, setting=setting(preset, base, lengths))
    return finish(out, results, claims=claims(results), checks=checks(results), diverged=diverged,
                  figures=write_figures, readme=readme)


def designed_distance(runs: dict[str, dict[int, tuple[Any, torch.nn.Module]]], preset: dict, base, seq_len: int
                      ) -> dict[str, Any]:
    """Family 2 (docs/science.md §5): one pair (a, b) at position s₀, query at T, s₀ before and beyond T_train.

    For every seed of each encoding and every s₀, over ``eval_batch`` prompts: the measured ``p(b)``
    and logit gap ``ξ_b − ξ_{j*}``; where the theory applies (ape, ape-sincos, rpe, bias) the §4.4 gap
    with the model's read-off memories (:func:`~inductionlab.theory.scalar.scalar_terms`, no fit) and
    the bigram-only gap of the same read-off (its global term ``g_ab − g_aj*`` alone, no induction
    term: the §5 null). Each row holds the mean and sample spread over seeds and the value per seed.
    """
    train_len = base.data.seq_len
    positions = sorted(p for p in {2, train_len // 2, train_len - 4, train_len + 8, 2 * train_len, seq_len // 2,
                                   seq_len - 4} if 0 <= p <= seq_len - 3)
    out_rows: dict[str, Any] = {}
    for pos_enc, by_seed in runs.items():
        per_seed: dict[int, dict[str, dict[str, float]]] = {}  # position → seed → values
        for seed, (cfg, model) in by_seed.items():
            source, sampler = make_sampler(cfg, torch.device("cpu"))
            a, b, j_star = default_pair(source)
            triggers = sampler.fixed_triggers
            rec = recall_matrices(model, seq_len) if pos_enc in THEORY_ENCODINGS else None
            for pos in positions:
                spec = PromptSpec("distance", seq_len, a, b, position=pos, n_prompts=preset["eval_batch"], seed=pos)
                tokens = make_prompts(spec, source, triggers).tokens
                last = torch.full((1,), seq_len - 1, dtype=torch.int64)
                with torch.no_grad():
                    logits = model(tokens, query_positions=last)[:, -1]  # the last layer at the query only
                row = {"model_p_b": torch.softmax(logits, -1)[:, b].mean().item(),
                       "model_gap": (logits[:, b] - logits[:, j_star]).mean().item()}
                if rec is not None:
                    theory = scalar_terms(rec, tokens, train_len, triggers)
                    row["theory_gap"] = (theory.logits[:, b] - theory.logits[:, j_star]).mean().item()
                    row["bigram_gap"] = (theory.global_[:, b] - theory.global_[:, j_star]).mean().item()
                per_seed.setdefault(pos, {})[str(seed)] = row
        if per_seed:
            out_rows[pos_enc] = [
                {"position": pos, "beyond_train_len": pos >= train_len,
                 **{key: {**seed_spread([r[key] for r in rows.values()]),
                          "per_seed": {seed: r[key] for seed, r in rows.items()}}
                    for key in next(iter(rows.values()))}}
                for pos, rows in sorted(per_seed.items())
            ]
    return {"seq_len": seq_len, "train_len": train_len, "pair": "a='t', b='z', rival j*='h'",
            "n_prompts": preset["eval_batch"], "rows": out_rows}



def summarise(per_run, train_len: int, lengths: list[int], preset_name: str) -> dict[str, Any]:
    """Mean and sample spread over seeds of every metric, per encoding and test length, and every seed's values."""
    table: dict[str, Any] = {}
    for pos_enc, by_len in per_run.items():
        table[pos_enc] = {}
        for seq_len, by_seed in by_len.items():
            rows = list(by_seed.values())
            entry = {key: seed_spread([r.get(key) for r in rows])
                     for key in rows[0] if key != "acc_in_context_by_distance"}
            entry["acc_in_context_by_distance"] = {
                bucket: seed_spread([r["acc_in_context_by_distance"][bucket] for r in rows])
                for bucket in rows[0]["acc_in_context_by_distance"]
            }
            entry["per_seed"] = by_seed
            table[pos_enc][seq_len] = entry
    return {"experiment": "length", "preset": preset_name, "train_len": train_len, "test_lengths": lengths,
            "encodings": table}
