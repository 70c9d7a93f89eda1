"""Activation patching at evaluation: which layer and position carry the knowledge hijack (docs/science.md §5, §8).

**Prompts.** A *clean* prompt is one of the hijack experiment's family-1 prompts (docs/science.md §5,
``count``; :mod:`~inductionlab.prompts.query_pairs`): ``n`` pairs ``(a, b)`` in a bigram filler
that never emits ``a``, then the query ``a`` at the last position. Its *corrupted* twin is the same
prompt, same length, with every token right after an earlier ``a`` (the planted ``b``) replaced by a
filler drawn from the bigram row ``π_b(·|a)`` without ``a`` and ``b`` (:func:`corrupt`, seeded): what the
stored bigram would have put there, so only the in-context evidence for ``b`` is gone. Query pairs come
from :func:`~inductionlab.prompts.query_pairs.query_pairs` as the hijack experiment draws them:
any frequent token for a run trained with random triggers, a fixed trigger otherwise.

**Gap.** ``ξ_b − ξ_rival`` at the last position, ``rival = j* = argmax_j π_b(j|a)`` (docs/science.md §5).
``D = gap(clean) − gap(corrupted)`` is what the pairs are worth; only prompts with ``D > threshold`` are
patched and averaged (a prompt the pairs do not move has nothing to restore).

**Patching** (docs/science.md §8: a hook replaces an activation at evaluation). The corrupted prompt runs
with the clean value of one hook point put back at one position ``p`` — the residual stream
(``blocks.{l}.hook_resid_pre``/``hook_resid_post``) or attention output (``blocks.{l}.hook_attn_out``) at
``p``, or the query row ``p`` of the attention pattern (``blocks.{l}.attn.hook_pattern``, every head) — and
the *fraction restored* is ``(gap(patched) − gap(corrupted)) / D``: 1 when that value alone carries what
the pairs change, 0 when it carries nothing. Putting back the last layer's ``resid_post`` at the last
position restores exactly 1 (the logits are a function of it); putting back the corrupted value, 0.
Every position runs at full length (``query_positions=None``), so each activation exists everywhere.

:func:`patch_run` does it all for a run directory and writes ``patching.json`` and one heatmap per site
kind (rows: layers, columns: positions). The run's own evaluation interventions are not applied: the
trained weights are patched as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from inductionlab import jsonio
from inductionlab.errors import ConfigError, ShapeError
from inductionlab.models.names import HEAD_POINTS, block_name, hook_name, hook_template, is_hook_point
from inductionlab.prompts.query_pairs import PAIR_SEED, QueryPair, Setting, build_prompts, query_pairs
from inductionlab.report.figures import plt, save_figure  # the Agg backend, selected before pyplot loads
from inductionlab.report.output import results_folder
from inductionlab.runs import atomic_write
from inductionlab.tasks.bigram_task import make_sampler
from inductionlab.tasks.sources import BigramSource
from inductionlab.train import open_trained

SITE_KINDS = ("resid_pre", "attn_out", "pattern", "resid_post")  # hook points of models/names.py
COMPONENT_KINDS = ("attn_out", "pattern")  # what can *carry* the hijack; the residual stream only passes it on
N_QUERY_PAIRS = 8
MAX_BATCH_TOKENS = 1 << 16  # tokens per patched forward (positions × prompts × T)
QUESTION = ("Which layer carries the hijack? Fraction of D = gap(clean) − gap(corrupted) restored by putting one "
            "clean activation back into the corrupted run at one position (layers 0-based as in the hook names).")
CARRIER = ("carrier: the attention output or pattern restoring the most at the last position; the ranking leaves out "
           "the last layer's resid_post, which restores 1 by construction")


@dataclass
class PatchPrompts:
    """Clean/corrupted prompt pairs. clean, corrupted: (P, T) int64, equal except where ``replaced``
    (P, T) bool (each token right after an earlier ``a``); a, b, rival, pair: (P,) int64 (``pair``
    indexes ``pairs``)."""

    clean: Tensor
    corrupted: Tensor
    replaced: Tensor
    a: Tensor
    b: Tensor
    rival: Tensor
    pair: Tensor
    pairs: list[QueryPair]


def corrupt(tokens: Tensor, a: Tensor, b: Tensor, bigram: Tensor, generator: torch.Generator
            ) -> tuple[Tensor, Tensor]:
    """Replace every token right after an earlier ``a`` by a draw from ``π_b(·|a)`` without ``a`` and ``b``.

    tokens: (P, T) int64 prompts ending in the query ``a``; a, b: (P,) int64; bigram: (N, N) rows
    ``π_b(·|i)``; generator: a seeded CPU generator. Returns ``(corrupted, replaced)``: (P, T) int64, the
    same length, and (P, T) bool, true at the positions ``1 ≤ t ≤ T − 2`` with ``tokens[t − 1] == a``
    (the query itself is never replaced). A row with no mass left falls back to uniform over the tokens
    other than ``a`` and ``b``. docs/science.md §5.
    """
    if tokens.dim() != 2 or a.shape != (tokens.shape[0],) or b.shape != a.shape:
        raise ShapeError(f"corrupt: need tokens (P, T) and a, b (P,); got {tuple(tokens.shape)}, "
                         f"{tuple(a.shape)}, {tuple(b.shape)}")
    replaced = torch.zeros_like(tokens, dtype=torch.bool)
    replaced[:, 1:-1] = tokens[:, :-2] == a[:, None]
    weights = bigram.to(torch.float64)[a.cpu()].clone()  # (P, N)
    uniform = torch.ones_like(weights)
    for w in (weights, uniform):
        w.scatter_(1, a.cpu()[:, None], 0.0).scatter_(1, b.cpu()[:, None], 0.0)
    if bool((uniform.sum(1) <= 0).any()):
        raise ConfigError("corrupt: the vocabulary has no token other than a and b to put in b's place")
    weights = torch.where(weights.sum(1, keepdim=True) > 0, weights, uniform)
    fill = torch.multinomial(weights, tokens.shape[1], replacement=True, generator=generator).to(tokens.device)
    return torch.where(replaced, fill, tokens), replaced


def logit_gap(logits: Tensor, b: Tensor, rival: Tensor) -> Tensor:
    """``ξ_b − ξ_rival`` at the last position: logits (P, T, N) or (P, N), b and rival (P,) → (P,)."""
    last = logits[:, -1] if logits.dim() == 3 else logits
    return (last.gather(1, b[:, None]) - last.gather(1, rival[:, None]))[:, 0]


def fraction_restored(patched: Tensor, clean_gap: Tensor, corrupted_gap: Tensor) -> Tensor:
    """``(gap(patched) − gap(corrupted)) / D``, ``D = gap(clean) − gap(corrupted)``: patched (P, ...), gaps (P,)."""
    shape = (-1,) + (1,) * (patched.dim() - 1)
    corrupted = corrupted_gap.double().reshape(shape)
    return (patched.double() - corrupted) / (clean_gap.double().reshape(shape) - corrupted)


def _position_axis(site_name: str) -> int:
    """The axis of ``site_name``'s activation indexed by query position (a pattern's query row)."""
    return -2 if is_hook_point(site_name, *HEAD_POINTS) else 1


@torch.no_grad()
def patched_gaps(model: nn.Module, corrupted_tokens: Tensor, clean_value: Tensor, site_name: str, b: Tensor,
                 rival: Tensor, *, max_batch_tokens: int = MAX_BATCH_TOKENS) -> Tensor:
    """(P, T): entry ``[i, p]`` is the gap of corrupted prompt ``i`` with ``clean_value`` put back at position ``p``.

    corrupted_tokens: (P, T) int64; clean_value: the clean run's activation at ``site_name``, (P, T, d)
    for a residual/attention output or (P, H, T, T) for a pattern (query row ``p`` is replaced, every
    head); b, rival: (P,). Positions are batched: ``k`` positions × P prompts per forward, ``k`` chosen
    so a forward reads at most ``max_batch_tokens`` tokens.
    """
    n_prompts, seq_len = corrupted_tokens.shape
    axis = _position_axis(site_name)
    if clean_value.shape[0] != n_prompts or clean_value.shape[axis] != seq_len:
        raise ShapeError(f"{site_name}: clean activation {tuple(clean_value.shape)} does not fit {n_prompts} "
                         f"prompts of length {seq_len}; patch hook points with a batch and a position axis")
    chunk = max(1, max_batch_tokens // (n_prompts * seq_len))
    out = torch.empty(n_prompts, seq_len, dtype=torch.float64)
    positions = torch.arange(seq_len, device=corrupted_tokens.device)
    for start in range(0, seq_len, chunk):
        k = min(chunk, seq_len - start)
        at = positions[start : start + k].repeat_interleave(n_prompts)  # (k·P,): block i patches start + i
        where = positions[None, :] == at[:, None]  # (k·P, T)
        mask = where[:, :, None] if axis == 1 else where[:, None, :, None]
        clean = clean_value.repeat(k, *(1,) * (clean_value.dim() - 1))

        def put_back(value: Tensor, site, clean: Tensor = clean, mask: Tensor = mask) -> Tensor:
            if value.shape != clean.shape:
                raise ShapeError(f"{site.name}: activation {tuple(value.shape)} differs from the clean one "
                                 f"{tuple(clean.shape)}; run every position (query_positions=None)")
            return torch.where(mask, clean, value)

        logits = model(corrupted_tokens.repeat(k, 1), hooks={site_name: put_back})
        out[:, start : start + k] = logit_gap(logits, b.repeat(k), rival.repeat(k)).double().reshape(k, -1).T
    return out


@torch.no_grad()
def patch_positions(model: nn.Module, clean_tokens: Tensor, corrupted_tokens: Tensor, site_name: str, b: Tensor,
                    rival: Tensor, *, max_batch_tokens: int = MAX_BATCH_TOKENS) -> Tensor:
    """(P, T) fraction restored by putting the clean ``site_name`` back at each position (no filter on ``D``).

    clean_tokens, corrupted_tokens: (P, T) int64 of the same shape; b, rival: (P,) int64.
    """
    if clean_tokens.shape != corrupted_tokens.shape:
        raise ShapeError(f"clean {tuple(clean_tokens.shape)} and corrupted {tuple(corrupted_tokens.shape)} "
                         "prompts must have the same shape")
    cache: dict[str, Tensor] = {}
    clean_gap = logit_gap(model(clean_tokens, cache=cache), b, rival)
    if site_name not in cache:
        raise ConfigError(f"site {site_name!r} is not a hook point of this model; see its hook_names()")
    corrupted_gap = logit_gap(model(corrupted_tokens), b, rival)
    patched = patched_gaps(model, corrupted_tokens, cache[site_name], site_name, b, rival,
                           max_batch_tokens=max_batch_tokens)
    return fraction_restored(patched, clean_gap, corrupted_gap)


def patch_prompts(source: BigramSource, seq_len: int, n_pairs_in_context: int, n_prompts: int, seed: int,
                  fixed_triggers: Tensor | None = None) -> PatchPrompts:
    """``n_prompts`` clean/corrupted pairs of the hijack experiment's ``count`` family (T, n) (docs/science.md §5).

    Query pairs: ``query_pairs(source, 8, PAIR_SEED + seed)`` (seed 0 draws the hijack experiment's
    pairs; its prompts are seeded by setting and pair, see ``build_prompts``); with ``fixed_triggers``
    (K,) the query ``a`` is a fixed trigger, as in its trigger-contrast prompts. Prompts cycle through
    the pairs; the corruption draws from a generator seeded with ``seed``.
    """
    if n_prompts < 1:
        raise ConfigError(f"n_prompts must be ≥ 1, got {n_prompts}")
    exclude = () if fixed_triggers is None else [
        t for t in range(source.n_tokens) if t not in fixed_triggers.tolist()]
    pairs = query_pairs(source, min(N_QUERY_PAIRS, n_prompts), PAIR_SEED + seed, exclude=exclude, allow_fewer=True)
    per_pair = math.ceil(n_prompts / len(pairs))
    built = build_prompts(Setting("count", seq_len, n=n_pairs_in_context), pairs, per_pair, source, fixed_triggers)
    order = torch.arange(len(pairs) * per_pair).reshape(len(pairs), per_pair).T.reshape(-1)[:n_prompts]
    clean, a, b, rival = built.tokens[order], built.a[order], built.favoured[order], built.rival[order]
    corrupted, replaced = corrupt(clean, a, b, source.bigram, torch.Generator().manual_seed(seed))
    return PatchPrompts(clean, corrupted, replaced, a, b, rival, built.pair[order], pairs)


@torch.no_grad()
def patching_tables(model: nn.Module, prompts: PatchPrompts, *, threshold: float | None = 0.5,
                    kinds: tuple[str, ...] = tuple(SITE_KINDS), max_batch_tokens: int = MAX_BATCH_TOKENS
                    ) -> dict[str, Any]:
    """Patch every layer of every site kind at every position, on the prompts with ``D > threshold``.

    Returns tensors: ``clean_gap``, ``corrupted_gap`` (P,); ``kept`` (P,) bool (all when ``threshold`` is
    None); ``fractions``: kind → (n_layers, P_kept, T) float64 per kept prompt; ``tables``: kind →
    (n_layers, T), their mean over kept prompts (NaN when none is kept).
    """
    model.eval()
    cache: dict[str, Tensor] = {}
    clean_gap = logit_gap(model(prompts.clean, cache=cache), prompts.b, prompts.rival).double()
    corrupted_gap = logit_gap(model(prompts.corrupted), prompts.b, prompts.rival).double()
    diff = clean_gap - corrupted_gap
    kept = torch.ones_like(diff, dtype=torch.bool) if threshold is None else diff > threshold
    n_layers, seq_len = model.n_layers, prompts.clean.shape[1]
    b, rival, corrupted = prompts.b[kept], prompts.rival[kept], prompts.corrupted[kept]
    fractions, tables = {}, {}
    for kind in kinds:
        if kind not in SITE_KINDS:
            raise ConfigError(f"patching: unknown site kind {kind!r}; allowed: {', '.join(SITE_KINDS)}")
        per_layer = []
        for layer in range(n_layers):
            name = hook_name(kind, layer)
            if not bool(kept.any()):
                per_layer.append(torch.empty(0, seq_len, dtype=torch.float64))
                continue
            patched = patched_gaps(model, corrupted, cache[name][kept], name, b, rival,
                                   max_batch_tokens=max_batch_tokens)
            per_layer.append(fraction_restored(patched, clean_gap[kept], corrupted_gap[kept]))
        fractions[kind] = torch.stack(per_layer)
        tables[kind] = (fractions[kind].mean(1) if bool(kept.any())
                        else torch.full((n_layers, seq_len), math.nan, dtype=torch.float64))
    return {"clean_gap": clean_gap, "corrupted_gap": corrupted_gap, "kept": kept, "fractions": fractions,
            "tables": tables}


def _summary(prompts: PatchPrompts, found: dict[str, Any]) -> dict[str, Any]:
    """Per kind and layer: restoration at the last position, summed over each prompt's ``b`` positions and
    over all positions; the ranking at the last position and the component that restores the most."""
    kept, tables = found["kept"], found["tables"]
    replaced = prompts.replaced[kept].double()  # (P_kept, T)
    sites, ranking = {}, []
    for kind, table in tables.items():
        frac = found["fractions"][kind]  # (L, P_kept, T)
        any_kept = frac.shape[1] > 0
        mean = (lambda x: x.mean(1)) if any_kept else (lambda x: torch.full(x.shape[:1], math.nan))
        sites[kind] = {
            "hook": hook_template(kind), "fraction_restored": table.tolist(), "last_position": table[:, -1].tolist(),
            "b_positions_sum": mean((frac * replaced).sum(2)).tolist(), "all_positions_sum": mean(frac.sum(2)).tolist(),
        }
        for layer, value in enumerate(table[:, -1].tolist()):
            trivial = kind == "resid_post" and layer == table.shape[0] - 1
            if math.isfinite(value) and not trivial:
                ranking.append({"site": kind, "layer": layer, "hook": hook_name(kind, layer),
                                "fraction_restored": value})
    ranking.sort(key=lambda r: -r["fraction_restored"])
    carrier = next((r for r in ranking if r["site"] in COMPONENT_KINDS), None)
    return {"sites": sites, "last_position_ranking": ranking, "carrier": carrier,
            "b_share": replaced.mean(0).tolist() if len(replaced) else [math.nan] * replaced.shape[1]}


def write_heatmaps(tables: dict[str, Tensor], b_share: list[float], out: Path, title: str) -> list[str]:
    """One heatmap per site kind (rows: layers, columns: positions; colour: fraction restored, clipped to
    [−1, 1], diverging around 0), above the share of kept prompts whose token at ``p`` was corrupted."""
    names = []
    for kind, table in tables.items():
        n_layers, seq_len = table.shape
        fig = plt.figure(figsize=(max(6.0, seq_len / 8), 1.8 + 0.45 * n_layers))
        grid = fig.add_gridspec(2, 2, width_ratios=(40, 1), height_ratios=(max(n_layers, 1), 0.7))
        ax, cax = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
        strip = fig.add_subplot(grid[1, 0], sharex=ax)
        cmap = plt.get_cmap("RdBu_r").with_extremes(bad="lightgrey")
        image = ax.imshow(table.numpy(), cmap=cmap, vmin=-1.0, vmax=1.0, aspect="auto", interpolation="nearest")
        ax.set_yticks(range(n_layers), [f"layer {layer + 1} ({block_name(layer)})" for layer in range(n_layers)])
        ax.set_title(f"{kind} ({hook_template(kind).format(layer='l')}): {title}", fontsize=9)
        fig.colorbar(image, cax=cax, label="fraction restored")
        strip.bar(range(seq_len), b_share, width=1.0, color="0.4")
        shares = [v for v in b_share if math.isfinite(v)]
        strip.set_ylim(0, 1.15 * max(shares) if shares and max(shares) > 0 else 1.0)
        strip.set_ylabel("share with\nb at p", fontsize=8)
        strip.set_xlabel("position p (0-based; the query is last)")
        names.append(save_figure(fig, out, f"patching_{kind}"))
    return names


def patch_run(run_dir: Path, out: Path, *, seq_len: int | None = None, n_pairs_in_context: int = 4,
              n_prompts: int = 64, seed: int = 0, threshold: float | None = 0.5) -> dict[str, Any]:
    """Activation patching of a trained run (module docstring): prompts, tables, ``patching.json``, heatmaps.

    seq_len: T (default: the run's training length); threshold: keep prompts with ``D > threshold``
    (None keeps all). Writes into ``out`` the heatmaps ``patching_{kind}.png``/``.svg`` and
    ``patching.json`` (strict JSON, non-finite numbers as null), and returns what it holds:
    ``settings`` (T, n, prompts, seed, threshold, query pairs); ``prompts`` (total, kept, mean gaps and
    ``D``); ``sites``: per kind its hook, the (n_layers, T) table ``fraction_restored`` and per layer
    ``last_position``, ``b_positions_sum`` (each prompt's corrupted positions summed, then averaged) and
    ``all_positions_sum``; ``b_share`` (T,); ``last_position_ranking`` and ``carrier`` (the answer to
    "which layer carries the hijack?"); ``check_resid_post_last_layer_last_position`` (1 by construction).
    """
    cfg, model, step = open_trained(run_dir)
    source, sampler = make_sampler(cfg, torch.device("cpu"))
    seq_len = cfg.data.seq_len if seq_len is None else seq_len
    prompts = patch_prompts(source, seq_len, n_pairs_in_context, n_prompts, seed, sampler.fixed_triggers)
    found = patching_tables(model, prompts, threshold=threshold)
    out = results_folder(out)
    kept = found["kept"]
    diff = found["clean_gap"] - found["corrupted_gap"]
    results: dict[str, Any] = {
        "question": QUESTION, "run": str(run_dir), "step": step,
        "model": {"arch": cfg.model.arch, "n_layers": cfg.model.n_layers, "pos_enc": cfg.model.pos_enc},
        "trigger_mode": cfg.data.trigger_mode,
        "settings": {
            "family": "count", "seq_len": seq_len, "n_pairs_in_context": n_pairs_in_context, "n_prompts": n_prompts,
            "seed": seed, "threshold": threshold, "gap": "logit b − logit rival (j*) at the last position",
            "corruption": "each token after an earlier a redrawn from π_b(·|a) without a and b",
            "query_pairs": [{k: source.decode([getattr(p, k)]) for k in ("a", "b", "rival")} for p in prompts.pairs],
        },
        "prompts": {"total": len(kept), "kept": int(kept.sum()),
                    "mean_gap_clean": float(found["clean_gap"].mean()),
                    "mean_gap_corrupted": float(found["corrupted_gap"].mean()),
                    "mean_D": float(diff.mean()), "mean_D_kept": float(diff[kept].mean()) if kept.any() else None},
        **_summary(prompts, found),
    }
    last = found["tables"]["resid_post"][-1, -1].item()
    results["carrier_rule"] = CARRIER
    results["check_resid_post_last_layer_last_position"] = last  # 1 by construction when a prompt is kept
    title = f"kept {results['prompts']['kept']}/{len(kept)} prompts, T={seq_len}, n={n_pairs_in_context}"
    results["figures"] = write_heatmaps(found["tables"], results["b_share"], out, title)
    atomic_write(out / "patching.json", jsonio.dumps(results, indent=2) + "\n")
    return jsonio.to_strict(results)
