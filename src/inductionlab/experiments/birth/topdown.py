"""Birth, setting (b): do the memories form top-down, ``W_O²`` → ``W_K²`` → ``W_K¹`` (docs/science.md §6)?

Arms (:data:`ARMS`), the same seeds in each:

- ``T256-random``: Bietti et al.'s reference setting at quick size, random init, ``T = 256`` (the main arm);
- ``T64-random``: the same at ``T = 64``, the control for the length;
- ``T64-zero``: every trained matrix starting at zero at ``T = 64``, the setting of the theorem;
- ``T64-freeze-wo2``, ``T64-freeze-wk1``: ``T64-random`` with ``W_O²`` (``W_K¹``) frozen at its initial value
  until step ``s`` (fixed in the experiment's preset), Bietti's freezing runs.

The order is judged on the **functional milestones** (probes/functional.py): the interpolated step at which
``fn_wo``, ``fn_wk2``, ``fn_wk1`` reach ½, a memory that works; a sensitivity row gives the same statistic at
the levels :data:`LEVELS`. ``fn_wo`` is an accuracy and the other two are attention masses, and ``fn_wk1`` ends
not far above ½, so one absolute level is not the only fair reading: the order at half of each measurement's
own rise from step 0 to the end (``own_progress``) is reported beside it, and so is the order of Bietti's argmax
probes (``wo``, ``wk2_triggers``, ``wk1_all`` at ``L = T`` and ``wk1_all_64``), which see a matrix's direction
rather than whether it works.

The freezing runs: with ``W_O²`` frozen, do ``W_K²`` and ``W_K¹`` stay near their initial values (each key's
distance ``‖W(s) − W(0)‖_F`` over the same without the freeze on the same seed, from the checkpoints at 0 and
``s``; the functional measurements at ``s`` beside it), and does ``W_K²`` wait (its functional milestone's delay
over the unfrozen arm, as a fraction of ``s``, against 0)? With ``W_K¹`` frozen, does ``W_K²`` still form on
time (the same delay against 1: the delay if it waited for ``W_K¹``)?
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import torch

from inductionlab.experiments.birth.all_targets import progress_step
from inductionlab.experiments.birth.order import order_seeds, order_statistic, order_text
from inductionlab.experiments.kit.claims import Rule, SeedValues, claim, uncertainty
from inductionlab.experiments.kit.curves import final_values, interpolated_milestone, milestone, seed_mean
from inductionlab.probes.functional import FORMED, FUNCTIONAL
from inductionlab.runs import RunDir

Rows = list[dict[str, Any]]
ARMS = {
    "T256-random": "Bietti's setting: random init, T = 256",
    "T64-random": "random init, T = 64 (the control for the length)",
    "T64-zero": "zero init, T = 64 (the theorem's setting)",
    "T64-freeze-wo2": "random init, T = 64, W_O² frozen at its initial value until s",
    "T64-freeze-wk1": "random init, T = 64, W_K¹ frozen at its initial value until s",
}
ORDER_ARMS = ("T256-random", "T64-random", "T64-zero")
FROZEN = {"T64-freeze-wo2": "wo2", "T64-freeze-wk1": "wk1"}  # arm → the matrix it freezes
UNFROZEN = "T64-random"  # the freezing arms' pair
LEVELS = (0.3, 0.4, 0.5, 0.6, 0.7)  # the sensitivity row; FORMED (½) is judged
ARGMAX = {"L = T": ("wo", "wk2_triggers", "wk1_all"), "L = 64": ("wo", "wk2_triggers", "wk1_all_64")}
OWN_PROGRESS = 0.5  # the reading beside: half of each measurement's own rise from step 0 to the end
ARGMAX_LEVEL = 0.9  # Bietti's probes read at 0.9 (the trigger probe moves in steps of 1/K: 0.8 < 0.9 ≤ 1.0)
TRAINED = ("wk1", "wk2", "wo2")  # the matrices setting (b) trains
KEYS = ("wk1", "wk2")  # the matrices whose distance from init is read while W_O² is frozen
FINAL_KEYS = ("acc_in_context", "loss_in_context", "wo", "wk2", "wk2_triggers", "wk1", "wk1_all", *FUNCTIONAL)
ORDER_RULE = Rule("higher", 1.0, 0.1, level_from="the prediction: the order on every seed (docs/science.md §6)")
STILL_RULE = Rule("lower", None, 0.5)  # each key at most half the unfrozen distance: "near their initial values"
ON_TIME_RULE = Rule("lower", None, 0.5)  # a delay under half of s: W_K² did not wait for W_K¹
WAITS_RULE = Rule("higher", None, 0.5)  # a delay over half of s: W_K² waited for W_O²


def functional_milestones(runs: dict[int, Rows], level: float) -> dict[str, dict[str, float | None]]:
    """Seed → memory → the interpolated step at which its functional measurement reaches ``level``."""
    return {str(seed): {m: interpolated_milestone(rows, m, level) for m in FUNCTIONAL} for seed, rows in runs.items()}


def _steps(ms: dict[str, dict[str, float | None]], keys: tuple[str, ...]) -> dict[str, Any]:
    reached = {k: [m[k] for m in ms.values() if m[k] is not None] for k in keys}
    return {"median_step": {k: statistics.median(v) if v else None for k, v in reached.items()},
            "range": {k: [min(v), max(v)] if v else None for k, v in reached.items()},
            "reached": {k: len(v) for k, v in reached.items()}}


def summarise_arm(runs: dict[int, Rows]) -> dict[str, Any]:
    """One arm: functional milestones and orders per level, Bietti's argmax-probe orders, final values."""
    functional = {}
    for level in LEVELS:
        ms = functional_milestones(runs, level)
        functional[str(level)] = {"milestones": ms, "order": order_statistic(ms, FUNCTIONAL), **_steps(ms, FUNCTIONAL)}
    own = {str(seed): {m: progress_step(rows, m, OWN_PROGRESS, falling=False) for m in FUNCTIONAL}
           for seed, rows in runs.items()}
    argmax = {}
    for name, keys in ARGMAX.items():
        ms = {str(seed): {k: milestone(rows, k, ARGMAX_LEVEL) for k in keys} for seed, rows in runs.items()}
        argmax[name] = {"keys": list(keys), "milestones": ms, "order": order_statistic(ms, keys), **_steps(ms, keys)}
    return {"functional": functional, "argmax": argmax, "final": final_values(runs, FINAL_KEYS),
            "own_progress": {"milestones": own, "order": order_statistic(own, FUNCTIONAL), **_steps(own, FUNCTIONAL)}}


def distance_from_init(run_dir: Path, step: int) -> dict[str, float]:
    """‖W(step) − W(0)‖_F of each matrix this setting trains (:data:`TRAINED`), from the run's checkpoints at 0
    and ``step``."""
    run = RunDir(run_dir)
    start, now = run.load_checkpoint(0)[0], run.load_checkpoint(step)[0]
    return {name: torch.linalg.matrix_norm(now[f"model.{name}"] - start[f"model.{name}"]).item() for name in TRAINED}


def summarise_top_down(curves: dict[str, dict[int, Rows]], distances: dict[str, dict[str, dict[str, float]]],
                       freeze_until: int) -> dict[str, Any]:
    """Every arm (:func:`summarise_arm`) and, per freezing arm and its unfrozen pair, each seed's distances from
    init at step ``s`` (``distances``: arm → seed → matrix → distance)."""
    at_s = {arm: {str(seed): {m: _value_at(rows, m, freeze_until) for m in FUNCTIONAL} for seed, rows in runs.items()}
            for arm, runs in curves.items() if arm in (*FROZEN, UNFROZEN)}
    return {"freeze_until": freeze_until, "arms": {arm: summarise_arm(runs) for arm, runs in curves.items()},
            "distance_at_s": distances, "functional_at_s": at_s}


def setting_b(*arms: str) -> tuple[dict[str, str], ...]:
    """The run params of each of ``arms`` (what a claim reads, :func:`~inductionlab.experiments.kit.claims.claim`)."""
    return tuple({"setting": "topdown", "arm": arm} for arm in arms)


def _value_at(rows: Rows, key: str, step: int) -> float | None:
    """``key`` at the last evaluation at or before ``step``."""
    logged = [r[key] for r in rows if r["step"] <= step and r.get(key) is not None]
    return logged[-1] if logged else None


def order_claim(arm: str, data: dict[str, Any]) -> dict[str, Any]:
    """The order on functional milestones in one arm, with the six orders and a sensitivity row over levels."""
    row = data["functional"][str(FORMED)]
    by_level = {}
    for level, other in data["functional"].items():
        found = uncertainty(ORDER_RULE, order_seeds(other["milestones"], FUNCTIONAL, 1 / 6))
        by_level[level] = {"fraction": other["order"]["fraction"], "orders": other["order"]["orders"],
                           "verdict": found["interval_verdict"]}
    argmax = {name: {"fraction": a["order"]["fraction"], "orders": a["order"]["orders"],
                     "median_step": a["median_step"]} for name, a in data["argmax"].items()}
    return claim(
        f"(b, {arm}: {ARMS[arm]}) The memories work top-down: W_O², then W_K², then W_K¹ (functional milestones: "
        f"fn_wo, fn_wk2, fn_wk1 reach {FORMED:g})", "fn_wo < fn_wk2 < fn_wk1 on every seed", order_text(row["order"]),
        row["order"]["fraction"], 1 / 6, "chance that three milestones fall in one given order (1/6)", ORDER_RULE,
        seeds=order_seeds(row["milestones"], FUNCTIONAL, 1 / 6), reads=setting_b(arm), orders=row["order"]["orders"],
        milestones=row["milestones"], median_step=row["median_step"], range=row["range"], by_level=by_level,
        argmax_order=argmax, own_progress_order={"fraction": data["own_progress"]["order"]["fraction"],
                                                 "orders": data["own_progress"]["order"]["orders"],
                                                 "median_step": data["own_progress"]["median_step"]})


def _delays(top: dict[str, Any], arm: str) -> dict[str, float | None]:
    """Per seed: (``W_K²``'s functional milestone in ``arm`` − in the unfrozen arm) / s; None where either is
    never reached."""
    s = top["freeze_until"]
    frozen = top["arms"][arm]["functional"][str(FORMED)]["milestones"]
    free = top["arms"][UNFROZEN]["functional"][str(FORMED)]["milestones"]
    return {seed: None if m["fn_wk2"] is None or free.get(seed, {}).get("fn_wk2") is None
            else (m["fn_wk2"] - free[seed]["fn_wk2"]) / s for seed, m in frozen.items()}


def frozen_output_still_claim(top: dict[str, Any]) -> dict[str, Any]:
    """``W_O²`` frozen until s: each key's distance from init at s, frozen over unfrozen (the larger of the two)."""
    s, arm = top["freeze_until"], "T64-freeze-wo2"
    frozen, free = top["distance_at_s"].get(arm, {}), top["distance_at_s"].get(UNFROZEN, {})
    per_key = {seed: {k: None if not free.get(seed, {}).get(k) else d[k] / free[seed][k] for k in KEYS}
               for seed, d in frozen.items()}
    larger = {seed: None if None in r.values() else max(r.values()) for seed, r in per_key.items()}
    return claim(
        f"(b) With W_O² frozen at its initial value until step {s}, W_K² and W_K¹ stay near their initial values "
        "until then", "each key's distance at most half the unfrozen one, on every seed",
        f"the larger over W_K¹ and W_K² of ‖W(s) − W(0)‖_F with W_O² frozen / the same without the freeze, same "
        f"seed, at s = {s}, mean over seeds", seed_mean(larger), 1.0, "the unfrozen arm against itself (ratio 1)",
        STILL_RULE, seeds=SeedValues(larger, 1.0), reads=setting_b(arm, UNFROZEN), ratio_per_key=per_key,
        distance_frozen=frozen,
        distance_unfrozen=free,
        functional_at_s={"frozen": top["functional_at_s"].get(arm), "unfrozen": top["functional_at_s"].get(UNFROZEN)})


def frozen_output_waits_claim(top: dict[str, Any]) -> dict[str, Any]:
    """``W_O²`` frozen until s: ``W_K²``'s functional milestone delayed, over s, against no delay."""
    s = top["freeze_until"]
    delay = _delays(top, "T64-freeze-wo2")
    return claim(
        f"(b) With W_O² frozen at its initial value until step {s}, W_K² waits: it forms about s later than "
        "without the freeze (W_O² must be learnt before the keys can be)", "delay ≥ s/2 on every seed",
        "(W_K²'s functional milestone with W_O² frozen − without, same seed) / s, mean over seeds", seed_mean(delay),
        0.0, "no delay: W_K² not needing W_O² (0)", WAITS_RULE, seeds=SeedValues(delay, 0.0),
        reads=setting_b("T64-freeze-wo2", UNFROZEN), delay_over_s=delay,
        milestones_frozen=top["arms"]["T64-freeze-wo2"]["functional"][str(FORMED)]["milestones"],
        milestones_unfrozen=top["arms"][UNFROZEN]["functional"][str(FORMED)]["milestones"])


def frozen_layer1_claim(top: dict[str, Any]) -> dict[str, Any]:
    """``W_K¹`` frozen until s: the delay of ``W_K²``'s functional milestone over the unfrozen arm, over s."""
    s = top["freeze_until"]
    delay = _delays(top, "T64-freeze-wk1")
    return claim(
        f"(b) With W_K¹ frozen at its initial value until step {s}, W_K² still forms on time: it does not wait "
        "for W_K¹ (its functional milestone reads layer 2 with layer 1 clamped to previous-token at evaluation; in "
        "training layer 2 sees layer 1 as it is)", "delay < s/2 on every seed",
        "(W_K²'s functional milestone with W_K¹ frozen − without, same seed) / s, mean over seeds", seed_mean(delay),
        1.0,
        "W_K² waiting for W_K¹: a delay of s (1)", ON_TIME_RULE, seeds=SeedValues(delay, 1.0),
        reads=setting_b("T64-freeze-wk1", UNFROZEN), delay_over_s=delay,
        milestones_frozen=top["arms"]["T64-freeze-wk1"]["functional"][str(FORMED)]["milestones"],
        milestones_unfrozen=top["arms"][UNFROZEN]["functional"][str(FORMED)]["milestones"],
        functional_at_s={"frozen": top["functional_at_s"].get("T64-freeze-wk1"),
                         "unfrozen": top["functional_at_s"].get(UNFROZEN)})


def claims_top_down(top: dict[str, Any]) -> list[dict[str, Any]]:
    """(b)'s claims: the order per arm on functional milestones; the two freezing runs."""
    out = [order_claim(arm, top["arms"][arm]) for arm in ORDER_ARMS if arm in top["arms"]]
    if "T64-freeze-wo2" in top["arms"]:
        out += [frozen_output_still_claim(top), frozen_output_waits_claim(top)]
    if "T64-freeze-wk1" in top["arms"]:
        out.append(frozen_layer1_claim(top))
    return out
