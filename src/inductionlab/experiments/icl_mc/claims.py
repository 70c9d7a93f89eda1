"""The icl-mc experiment's claims and its check (docs/science.md §7, §7.1, §10), each seed by seed.

With ``Δ = L_unigram − L_Bayes`` and ``κ = KL(unigram ‖ Bayes)`` on the evaluation batch:

- **reaches Bayes**: ``(final loss − L_Bayes) / Δ`` per seed, with that seed's own references; null:
  the unigram strategy (excess 1);
- **a unigram plateau, left**: a seed's share of training on the plateau (``KL(unigram ‖ model) <
  0.25 κ`` while ``KL(Bayes ‖ model) > 0.5 κ``, :func:`~.run.plateau_share`), counted only if the model
  leaves it (``KL(Bayes ‖ model) < 0.25 κ`` at the end; 0 otherwise); null: the same for the path that
  goes straight from uniform to Bayes along the seed's own loss curve (:mod:`.path`), which has the
  loss curve and lacks the unigram strategy;
- **heads**: the weaker of the best layer-1 previous-token score and the best layer-2 induction score
  (docs/science.md §4.2), per seed, which must reach 0.5 (both heads at once); null: the same model at
  step 0;
- (``paper``) **order 3**: ``(final loss − L_Bayes(trigram)) / Δ₃`` per seed, ``Δ₃`` the gap from the
  bigram Bayes loss; null: the bigram Bayes strategy (excess 1).

The **check**: a one-layer attention-only model stays above ``L_Bayes + 0.5 Δ``. Its logits are mixtures
over positions with no term for the pair ``(z_{s−1}, z_s)`` (docs/science.md §10), so it cannot compute the
transition counts the Bayes predictor reads: that holds by construction and is no claim.
"""

from __future__ import annotations

from typing import Any

from inductionlab.experiments.kit.checks import check
from inductionlab.experiments.kit.claims import Rule, SeedValues, claim
from inductionlab.experiments.kit.curves import seed_mean

PLATEAU_SHARE = 0.05  # a plateau is at least 5 % of training
HEAD_LEVEL = 0.5
ONE_LAYER_LEVEL = 0.5  # the one-layer control stays above L_Bayes + 0.5 Δ
TWO_LAYER = ({"order": 2, "depth": "two-layer"},)  # the run params of the claims' model (order 2, two layers)
REACH_RULE = Rule("lower", 0.2, 0.3, level_from="'reaches' read as within a fifth of the unigram–Bayes gap Δ "
                  "(docs/icl-mc.md)")


def excess_by_seed(final: dict[str, Any], loss: str = "loss_bayes", above: str = "loss_unigram"
                   ) -> dict[str, float | None]:
    """``(final loss − L_loss) / (L_above − L_loss)`` per seed, with that seed's own references (None where one is
    missing or the gap is not positive)."""
    out = {}
    for seed, model in final["loss_in_context"]["per_seed"].items():
        low, high = final[loss]["per_seed"].get(seed), final[above]["per_seed"].get(seed)
        usable = None not in (model, low, high) and high > low
        out[seed] = (model - low) / (high - low) if usable else None
    return out


def plateau_left(model: dict[str, Any]) -> dict[str, float]:
    """Each seed's share of training on the unigram plateau, 0 where the model never leaves it."""
    return {s: share if model["left_for_bayes"][s] else 0.0 for s, share in model["plateau_share"].items()}


def path_plateau_left(model: dict[str, Any]) -> dict[str, float]:
    """The same for the straight path along each seed's loss curve (:mod:`.path`)."""
    return {s: path["plateau_share"] if path["left_for_bayes"] else 0.0 for s, path in model["straight_path"].items()}


def weaker_head(heads: dict[str, Any], state: str) -> dict[str, float]:
    """Per seed, the weaker of the best layer-1 previous-token and the best layer-2 induction score of the
    ``trained`` or ``untrained`` model."""
    return {s: min(h[state]["previous_token_layer1"], h[state]["induction_layer2"]) for s, h in heads.items()}


def claims(results: dict[str, Any]) -> list[dict[str, Any]]:
    """docs/science.md §10's statements, each against a null (§7), judged over seeds (§7.1)."""
    two = results["models"]["n2-two-layer"]
    final = two["final"]
    bayes, unigram = final["loss_bayes"]["mean"], final["loss_unigram"]["mean"]
    delta = unigram - bayes
    measured, null = plateau_left(two), path_plateau_left(two)
    trained, untrained = weaker_head(two["heads"], "trained"), weaker_head(two["heads"], "untrained")
    per_head = {state: {key: {s: h[state][key] for s, h in two["heads"].items()}
                        for key in ("previous_token_layer1", "induction_layer2")} for state in ("trained", "untrained")}
    out = [
        claim("The two-layer attention-only model reaches the in-context Bayes loss", "within 0.2 Δ of L_Bayes",
              "(final loss − L_Bayes) / Δ, Δ = L_unigram − L_Bayes, mean over seeds",
              (final["loss_in_context"]["mean"] - bayes) / delta, 1.0,
              "the in-context unigram strategy (excess Δ, i.e. 1)", REACH_RULE,
              seeds=SeedValues(excess_by_seed(final), 1.0), reads=TWO_LAYER, delta=delta, loss_bayes=bayes,
              loss_unigram=unigram),
        claim(f"Training passes a unigram plateau and leaves it: at least {PLATEAU_SHARE:.0%} of training with "
              "KL(unigram ‖ model) < 0.25 κ while KL(Bayes ‖ model) > 0.5 κ (κ = KL(unigram ‖ Bayes)), more than a "
              "path straight from uniform to Bayes along the same loss curve spends there, then ending with "
              "KL(Bayes ‖ model) < 0.25 κ", f"≥ {PLATEAU_SHARE:.0%} of training, ≥ {PLATEAU_SHARE:.0%} above the path",
              "share of training on the unigram plateau (two layers), 0 for a seed that never leaves it, mean over "
              "seeds", seed_mean(measured), seed_mean(null),
              "the mixture (1 − λ_t)·uniform + λ_t·Bayes whose loss follows "
              "the model's at every evaluation (same plateau definition)",
              Rule("higher", PLATEAU_SHARE, PLATEAU_SHARE, level_from=f"a plateau is at least {PLATEAU_SHARE:.0%} of "
                   "training (docs/icl-mc.md); the margin asks as much again beyond the path's"),
              seeds=SeedValues(measured, null), reads=TWO_LAYER, plateau_share=two["plateau_share"],
              left_for_bayes=two["left_for_bayes"], straight_path=two["straight_path"],
              one_layer_plateau_share=results["models"]["n2-one-layer"]["plateau_share"]),
        claim("The trained two-layer model has a previous-token head in layer 1 and an induction head in layer 2 "
              "(docs/science.md §4.2, held-out sequences of its task)",
              f"both scores ≥ {HEAD_LEVEL}, ≥ 0.2 above step 0",
              "the weaker of the best layer-1 previous-token score and the best layer-2 induction score, per seed, "
              "mean over seeds", seed_mean(trained), seed_mean(untrained), "the same heads at step 0 (untrained)",
              Rule("higher", HEAD_LEVEL, 0.2, level_from="half the head's attention where its pattern points "
                   "(docs/science.md §4.2; the level nope3 uses), not normalised by chance: with k = 3 states "
                   "about a third of the keys match by chance, so an untrained induction score is near 0.39"),
              seeds=SeedValues(trained, untrained), reads=TWO_LAYER, scores=per_head),
    ]
    if "n3-two-layer" in results["models"]:
        three = results["models"]["n3-two-layer"]["final"]
        trigram, bigram = three["loss_bayes"]["mean"], three["loss_bayes_lower_order"]["mean"]
        delta3 = bigram - trigram
        out.append(claim(
            "At order 3 (two heads per layer) the two-layer model reaches the trigram Bayes loss rather than "
            "stopping at the bigram one", "within 0.2 Δ₃ of the trigram Bayes loss",
            "(final loss − L_Bayes(trigram)) / Δ₃, Δ₃ = L_Bayes(bigram) − L_Bayes(trigram), mean over seeds",
            (three["loss_in_context"]["mean"] - trigram) / delta3 if delta3 > 0 else None, 1.0,
            "the bigram Bayes strategy (excess 1)", REACH_RULE,
            seeds=SeedValues(excess_by_seed(three, above="loss_bayes_lower_order"), 1.0),
            reads=({"order": 3, "depth": "two-layer"},), delta3=delta3))
    return out


def checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The one-layer attention-only control (the module docstring): it stays above ``L_Bayes + 0.5 Δ`` on every
    seed. Beside it, per seed, whether it ends at the unigram strategy (``KL(unigram ‖ model) < 0.25 κ``): what
    one layer can learn, reported, not checked."""
    one = results["models"]["n2-one-layer"]["final"]
    excess = excess_by_seed(one)
    present = [v for v in excess.values() if v is not None]
    lowest = min(present) if present else None
    at_unigram = {s: None if kl is None or one["kl_unigram_to_bayes"]["per_seed"].get(s) is None
                  else kl < 0.25 * one["kl_unigram_to_bayes"]["per_seed"][s]
                  for s, kl in one["kl_unigram"]["per_seed"].items()}
    return [check(
        "A one-layer attention-only model cannot reach the in-context Bayes loss (no term for the pair "
        "(z_{s−1}, z_s), docs/science.md §10)", "smallest (final loss − L_Bayes) / Δ of the one-layer model over "
        "seeds", lowest, f"≥ {ONE_LAYER_LEVEL} on every seed", lowest is not None and len(present) == len(excess)
        and lowest >= ONE_LAYER_LEVEL, per_seed=excess, ends_at_unigram_strategy=at_unigram)]
