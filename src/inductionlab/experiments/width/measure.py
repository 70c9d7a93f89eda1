"""What the width experiment measures on one model, trained or ideal (docs/science.md §11).

On the designed prompts of ``hijack`` (:mod:`inductionlab.prompts.query_pairs`) a model's logit gaps
``ξ_b − ξ_rival`` are set against two fit-free predictions of docs/science.md §4.5 read off its own weights:
the weights-only prediction and the scalar form (and, for diagnosis, the readout with the model's own
layer-2 attention). Per prediction:

- within-setting R² and RMSE (each setting's mean removed from both sides, as in ``hijack``);
- the **relative disagreement**: that RMSE over the RMS of the model's own within-setting gaps
  (``√(1 − R²)``). A model whose gaps are ten times larger has ten times the RMSE for the same agreement;
  the ideal AMT's gaps are several times the trained model's at the same scalars (its ``W_F`` reads the
  copied token too), so agreement is compared on this scale-free number;
- the crossover ``n*`` error (count family; never crossing counts as ``n_max + 1``).

Beside them: each memory's cross-talk (:func:`~inductionlab.theory.trained.cross_talk`), the ``W_O²`` (through
``W_F``) and ``W_K²`` probe accuracies (:mod:`inductionlab.probes.memory`) and their margins in units of the
stored strength (:func:`recall_margin`: the raw margins scale with the embeddings' norm, which differs between
the trained models' initialisation and the ideal AMT's), and the read-off scalars' means.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from inductionlab.experiments.hijack.analysis import crossovers
from inductionlab.experiments.hijack.eval import PromptTable, evaluate_model
from inductionlab.experiments.hijack.stats import crossover_error, group_means, within_r_squared
from inductionlab.models.amt import AMTransformer
from inductionlab.probes.memory import wk2_probe, wo_probe
from inductionlab.prompts.query_pairs import SettingPrompts
from inductionlab.theory.scalar import read_off_scalars
from inductionlab.theory.trained import RecallMatrices, cross_talk, recall_matrices

PREDICTIONS = ("weights_only", "scalar_read_off")  # fit-free predictions from the weights alone: the claims
REPORTED = (*PREDICTIONS, "readout")  # and the readout with the model's own layer-2 attention, for diagnosis


def _rms(x: Tensor) -> float:
    return float(x.double().square().mean().sqrt())


def disagreement(table: PromptTable) -> dict[str, Any]:
    """Within-setting R², RMSE (logits) and relative RMSE of each of :data:`REPORTED` against the model's gaps,
    and the RMS of the model's within-setting gaps (``gap_rms``) they are relative to. The readout takes the
    model's measured layer-2 attention: where it agrees and the weights-only prediction does not, what the
    weights miss is where layer 2 attends."""
    measured = table.gaps["model"].double()
    centred = measured - group_means(measured, table.setting)
    scale = _rms(centred)
    out: dict[str, Any] = {"gap_rms": scale}
    for name in REPORTED:
        predicted = table.gaps[name].double()
        rmse = _rms(predicted - group_means(predicted, table.setting) - centred)
        out[name] = {"within_r2": within_r_squared(predicted, measured, table.setting), "rmse": rmse,
                     "relative_rmse": rmse / scale if scale > 0 else math.nan}
    return out


def n_star_error(table: PromptTable, count_mask: Tensor, n_max: int) -> dict[str, Any]:
    """Mean ``|n*_predicted − n*_model|`` over the (T, pair) points where the model crosses, per prediction."""
    points = [p for p in crossovers(table, count_mask, ("model", *PREDICTIONS)) if p["model"] is not None]
    return {"points": len(points),
            **{name: (sum(crossover_error(p[name], p["model"], n_max + 1) for p in points) / len(points)
                      if points else None) for name in PREDICTIONS}}


def recall_margin(matrix: Tensor, stored_in_rows: bool) -> float:
    """Mean over stored associations of (stored entry − the largest competitor), in units of the RMS stored entry:
    a probe margin that does not depend on the embeddings' scale. ``stored_in_rows``: each row's own column is
    stored and competes with that row's others (``R2[a, ·]``); otherwise with its column's others (``R3[·, k]``:
    attending to ``k`` should write ``k`` above every other output)."""
    m = matrix.double() if stored_in_rows else matrix.double().T
    stored = m.diagonal()
    rival = m.masked_fill(torch.eye(m.shape[0], dtype=torch.bool), float("-inf")).max(1).values
    return float((stored - rival).mean()) / _rms(stored)


def measure(model: AMTransformer, prompts: list[SettingPrompts], n_max: int, train_len: int,
            rec: RecallMatrices | None = None, closed_form: Tensor | None = None) -> tuple[dict[str, Any], Tensor]:
    """Every statistic above for one model (random triggers: every token a trigger) on ``prompts``, and the gaps
    (P,) of the scalar form it was judged against.

    n_max: the largest count of the count family; rec: the model's recall matrices at the longest prompt
    (computed when not given); closed_form: the scalar form's gaps the model answers to, when they are not its
    own read-off (an ideal twin answers to the scalars written into it: its trained model's).
    """
    model.eval()
    longest = max(p.tokens.shape[1] for p in prompts)
    rec = recall_matrices(model, max(longest, train_len)) if rec is None else rec
    table = evaluate_model(model, rec, prompts, train_len, None, grid=(1.0,))
    if closed_form is not None:
        table.gaps["scalar_read_off"] = closed_form
    count_mask = torch.cat([torch.full((len(p.tokens),), p.setting.family == "count") for p in prompts])
    scalars = read_off_scalars(rec, train_len)
    with torch.no_grad():
        probes = {**wo_probe(model), **wk2_probe(model, None)}
    return {
        "disagreement": disagreement(table), "n_star_error": n_star_error(table, count_mask, n_max),
        "cross_talk": cross_talk(rec, None, train_len),
        "probes": {"wo_ff": probes["wo_ff"], "wk2": probes["wk2"], "wo_margin": recall_margin(rec.R3, False),
                   "wk2_margin": recall_margin(rec.R2, True)},
        "scalars": {"alpha1": float(scalars["alpha1"]) if "alpha1" in scalars else None,
                    "alpha2_mean": float(scalars["alpha2_a"].mean()), "alpha3_mean": float(scalars["alpha3_j"].mean()),
                    "g_rms": _rms(scalars["g"])},
    }, table.gaps["scalar_read_off"]
