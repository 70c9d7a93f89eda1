"""Attention probes and head scores (docs/science.md §4.2).

Two kinds of measurement, both read from the attention patterns a model records under
``model(tokens, cache=cache)`` (``blocks.{l}.attn.hook_pattern``, (B, H, Tq, T), 0-based ``l``):

- :func:`attention_probes` — on sequences of the bigram-with-triggers task (docs/science.md §2): does
  layer 1 attend the previous token where a trigger's output sits, does layer 2 attend the
  positions that followed earlier occurrences of the current token at in-context targets
  (label ``c ≥ 2``), and is the predicted token the one layer 2 attends?
- :func:`head_scores` — the TransformerLens / ARENA previous-token, induction (prefix-matching)
  and copying scores on repeated random sequences, per (layer, head).

Layers: "layer 1" is the first layer (index 0) and "layer 2" the last (index ``n_layers - 1``),
so a three-layer position-free model is read at its first and last layers unless
``prev_layer`` / ``induction_layer`` say otherwise.  Heads: the AMT has one head per layer; for a
multi-head general transformer each probe reports its best head in the chosen layer (the
head with the highest value of *that* probe, chosen separately per probe), which biases the
multi-head numbers upwards relative to their chance levels.

Positions are 0-based in code; query position ``t`` sees the ``t + 1`` keys ``s = 0..t``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from inductionlab.errors import ConfigError
from inductionlab.models.names import hook_name


def _layer_index(model: nn.Module, layer: int, what: str) -> int:
    n_layers = model.n_layers
    if not -n_layers <= layer < n_layers:
        raise ConfigError(f"{what}={layer} is out of range for a model with {n_layers} layers "
                          f"(use 0..{n_layers - 1}, or a negative index from the end)")
    return layer % n_layers


def _model_device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _best_head(per_head: Tensor) -> float:
    """Max over heads of a per-head mean (H,); NaN when there was nothing to average."""
    return float("nan") if per_head.numel() == 0 or per_head.isnan().any() else per_head.max().item()


# --------------------------------------------------------------------------- probes on task data


def run_with_cache(forward, inputs: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """``(logits, cache)`` of one forward of ``inputs`` (B, T) through every hook point."""
    cache: dict[str, Tensor] = {}
    return forward(inputs, cache=cache), cache


@torch.no_grad()
def attention_probes(
    model: nn.Module,
    tokens: Tensor,
    labels: Tensor,
    *,
    prev_layer: int = 0,
    induction_layer: int | None = None,
    forward=None,
    ran: tuple[Tensor, dict[str, Tensor]] | None = None,
) -> dict[str, float]:
    """docs/science.md §4.2 attention probes on sequences of the bigram-with-triggers task.

    tokens: (B, T+1) int64, ``z_1..z_{T+1}``; the model reads ``tokens[:, :-1]`` (positions
    ``t = 0..T-1``) and the target at ``t`` is ``tokens[:, t+1]``.
    labels: (B, T) int64 per target position: 0 = bigram target, ``c ≥ 1`` = the c-th firing of
    the trigger that is the *input* at ``t``.

    Returns floats (each with a ``<name>_chance`` companion computed on the same batch: what a
    model with uniform causal attention, or a random prediction, would score):

    - ``attn1_prev_token``: mean layer-``prev_layer`` attention weight on ``t-1`` at trigger-output
      positions (``labels[:, t-1] ≥ 1``: the input at ``t-1`` was a trigger, the input at ``t`` its
      output).  ``attn1_prev_token_argmax``: fraction of those where ``t-1`` is the argmax key.
      Chance (both): mean of ``1/(t+1)``.
    - ``attn2_induction``: at in-context positions (``labels ≥ 2``), the layer-``induction_layer``
      attention mass on keys ``1 ≤ s ≤ t`` whose previous token equals the current one
      (``z_{s-1} = z_t``); ``attn2_induction_argmax``: fraction where the argmax key is such a key.
      Chance (both): mean fraction of such keys among the ``t+1`` keys.
    - ``attn2_copy_agreement``: at in-context positions, fraction where the argmax of the logits
      equals the token at the layer-``induction_layer`` argmax key.  Chance: ``1/N``.

    ``prev_layer`` defaults to the first layer (0) and ``induction_layer`` to the last
    (``n_layers - 1``); negative indices count from the end.  Multi-head models: each probe takes
    its best head in the layer (the maximum over heads of that probe's batch mean).  A probe with
    no qualifying position in the batch is NaN (its chance too). ``forward`` runs the model with the
    interventions of the current step (docs/science.md §8); default ``model``. ``ran``: the
    ``(logits, cache)`` of a forward already run on ``tokens[:, :-1]``, to read instead of running one.
    """
    if tokens.dim() != 2 or tokens.shape[1] < 2:
        raise ConfigError(f"tokens must be (batch, T+1) with T ≥ 1; got shape {tuple(tokens.shape)}")
    inputs = tokens[:, :-1]
    if labels.shape != inputs.shape:
        raise ConfigError(f"labels must have shape (batch, T) = {tuple(inputs.shape)} to match tokens "
                          f"(batch, T+1) = {tuple(tokens.shape)}; got {tuple(labels.shape)}")
    labels = labels.to(inputs.device)
    prev_layer = _layer_index(model, prev_layer, "prev_layer")
    induction_layer = _layer_index(model, model.n_layers - 1 if induction_layer is None else induction_layer,
                                   "induction_layer")
    logits, cache = ran if ran is not None else run_with_cache(forward or model, inputs)  # (B, T, N)
    n_tokens = logits.shape[-1]
    out: dict[str, float] = {}

    # Layer 1 at trigger-output positions: the query t whose previous input was a trigger.
    pattern = cache[hook_name("pattern", prev_layer)]  # (B, H, T, T)
    after_trigger = torch.zeros_like(labels, dtype=torch.bool)
    after_trigger[:, 1:] = labels[:, :-1] >= 1
    b, t = after_trigger.nonzero(as_tuple=True)
    rows = pattern[b, :, t].float()  # (n, H, T): advanced indices first
    prev = (t - 1)[:, None]
    on_prev = rows.gather(-1, prev[..., None].expand(-1, rows.shape[1], 1)).squeeze(-1)  # (n, H)
    chance = (1.0 / (t + 1).double()).mean().item() if t.numel() else float("nan")
    out["attn1_prev_token"] = _best_head(on_prev.mean(0))
    out["attn1_prev_token_chance"] = chance
    out["attn1_prev_token_argmax"] = _best_head((rows.argmax(-1) == prev).float().mean(0))
    out["attn1_prev_token_argmax_chance"] = chance

    # Layer 2 at in-context targets: keys s whose previous token z_{s-1} equals the query's z_t.
    pattern = cache[hook_name("pattern", induction_layer)]
    b, t = (labels >= 2).nonzero(as_tuple=True)
    rows = pattern[b, :, t].float()  # (n, H, T)
    seq_len = inputs.shape[1]
    before = torch.cat((torch.full_like(inputs[:, :1], -1), inputs[:, :-1]), dim=1)  # z_{s-1}; -1 at s=0
    keys = torch.arange(seq_len, device=inputs.device)
    match = (before[b] == inputs[b, t][:, None]) & (keys <= t[:, None])  # (n, T)
    top = rows.argmax(-1)  # (n, H)
    chance = (match.sum(-1).double() / (t + 1)).mean().item() if t.numel() else float("nan")
    out["attn2_induction"] = _best_head((rows * match[:, None]).sum(-1).mean(0))
    out["attn2_induction_chance"] = chance
    out["attn2_induction_argmax"] = _best_head(match.gather(1, top).float().mean(0))
    out["attn2_induction_argmax_chance"] = chance
    predicted = logits[b, t].argmax(-1)  # (n,)
    attended = inputs[b[:, None], top]  # (n, H): z_s at s = argmax_s β²_ts
    out["attn2_copy_agreement"] = _best_head((attended == predicted[:, None]).float().mean(0))
    out["attn2_copy_agreement_chance"] = 1.0 / n_tokens if t.numel() else float("nan")
    return out


@torch.no_grad()
def task_head_scores(model: nn.Module, tokens: Tensor, labels: Tensor) -> dict[str, Tensor]:
    """Per-head scores on the task's own sequences (docs/science.md §4.2), each (n_layers, n_heads) float32.

    tokens: (B, T+1), labels: (B, T) as for :func:`attention_probes`. For every layer and head:

    - ``previous_token``: the mean attention on ``t − 1`` at trigger-output positions (the input at
      ``t − 1`` was a trigger), where a previous-token head must look;
    - ``induction``: the mean attention mass on the keys whose previous token equals the current
      one, at in-context targets (label ≥ 2), where an induction head must look.

    These mean something for a model trained on this task whatever its trigger mode; head scores
    on repeated random tokens (:func:`head_scores`) only for one whose training rewarded induction
    on arbitrary tokens. NaN where the batch has no such position.
    """
    inputs = tokens[:, :-1]
    cache: dict[str, Tensor] = {}
    model(inputs, cache=cache)
    return head_scores_on_cache(cache, inputs, labels.to(inputs.device), model.n_layers)


def head_scores_on_cache(cache: dict[str, Tensor], inputs: Tensor, labels: Tensor, n_layers: int) -> dict[str, Tensor]:
    """:func:`task_head_scores` from the patterns of a forward already run on ``inputs`` (B, T)."""
    b1, t1 = (labels[:, :-1] >= 1).nonzero(as_tuple=True)
    t1 = t1 + 1  # the query right after a trigger
    b2, t2 = (labels >= 2).nonzero(as_tuple=True)
    before = torch.cat((torch.full_like(inputs[:, :1], -1), inputs[:, :-1]), dim=1)  # z_{s-1}; -1 at s=0
    keys = torch.arange(inputs.shape[1], device=inputs.device)
    match = ((before[b2] == inputs[b2, t2][:, None]) & (keys <= t2[:, None])).float()  # (n, T)
    previous, induction = [], []
    for layer in range(n_layers):
        pattern = cache[hook_name("pattern", layer)].float()  # (B, H, T, T)
        previous.append(pattern[b1, :, t1, t1 - 1].mean(0) if t1.numel() else torch.full(pattern.shape[1:2], math.nan))
        induction.append((pattern[b2, :, t2] * match[:, None]).sum(-1).mean(0) if t2.numel()
                         else torch.full(pattern.shape[1:2], math.nan))
    return {"previous_token": torch.stack(previous).cpu(), "induction": torch.stack(induction).cpu()}


# --------------------------------------------------------------------------- head scores


def ov_circuits(model: nn.Module, include_ff: bool = False) -> Tensor:
    """The full OV circuit of every head as token-to-logit maps: (n_layers, n_heads, N, N).

    Convention: ``out[l, h, j, k]`` is the logit of token ``j`` (row, output) when head ``(l, h)``
    copies token ``k``'s embedding (column, input), i.e. column ``k`` is what the head writes to
    the logits when it attends a position holding ``k`` (``l`` 0-based). Each model family computes
    its own (``model.ov_circuits``):

    - :class:`~inductionlab.models.amt.AMTransformer` (one head): ``W_U Φ_ℓ E^T`` with
      ``Φ_ℓ = W_O^ℓ W_V^ℓ``, i.e. ``u_jᵀ Φ_ℓ e_k``, positions left out.  With ``include_ff`` the final
      feed-forward is applied to ``Φ_ℓ e_k`` too (``W_U (I + W_F) Φ_ℓ e_k``, the docs/science.md §4.5
      readout ``R_3`` for the last layer; for the ReLU MLP this is the MLP's response to the head
      output alone).
    - :class:`~inductionlab.models.transformer.GeneralTransformer`: ``(W_E W_V^h W_O^h W_U)ᵀ``
      (TransformerLens row convention, transposed), with LayerNorm handled as TransformerLens's
      ``fold_ln`` + ``center_writing_weights`` do: embeddings and head outputs centred over
      ``d_model``, the ``ln1`` and ``ln_final`` gains folded in, biases and the per-token normalising
      scale ignored.  ``include_ff`` is not supported (the MLPs are nonlinear in the residual).
    """
    circuits = getattr(model, "ov_circuits", None)
    if circuits is None:
        raise ConfigError(f"ov_circuits: unsupported model type {type(model).__name__}; "
                          "expected a model of models/ (AMTransformer or GeneralTransformer)")
    return circuits(include_ff=include_ff)


def copying_scores(circuits: Tensor) -> Tensor:
    """TransformerLens/ARENA copying score ``Σ λ / Σ |λ|`` over the eigenvalues of each OV circuit.

    circuits: (..., N, N) → (...,).  1 for a pure copying head (positive eigenvalues), about 0 for
    a random one, -1 for an anti-copying head.  ``Σ λ`` is the trace, so its real part is taken.
    Computed in float64 on the CPU (eigenvalues are not available on every accelerator).
    """
    eig = torch.linalg.eigvals(circuits.detach().double().cpu())
    return (eig.sum(-1).real / eig.abs().sum(-1).clamp_min(1e-300)).float()


@torch.no_grad()
def head_scores(
    model: nn.Module, n_tokens: int, seq_len: int, batch: int, generator: torch.Generator
) -> dict[str, Tensor]:
    """docs/science.md §4.2 head scores (TransformerLens / ARENA definitions), each (n_layers, n_heads).

    Draws ``batch`` sequences of ``L = seq_len // 2`` uniform random tokens from ``[n_tokens]`` with
    ``generator`` (on the generator's device, then moved to the model's) and repeats each once,
    giving length ``2L`` (an odd ``seq_len`` loses one position; no BOS).

    - ``previous_token``: mean attention from ``t`` to ``t-1`` over ``t = 1..2L-1`` (both copies);
    - ``induction``: mean attention from ``t`` in the second copy (``t ≥ L``) to ``t - L + 1``,
      the position after the previous occurrence of ``z_t`` (prefix matching);
    - ``copying``: :func:`copying_scores` of :func:`ov_circuits` (no data needed);
    - ``copying_diagonal``: fraction of tokens ``k`` whose own logit is the largest in column
      ``k`` of the OV circuit.

    Returned as float32 CPU tensors.  Under fixed triggers the AMT's layer-2 key memory stores
    only the triggers, so its induction score on random tokens is low by design.
    """
    half = seq_len // 2
    if half < 1 or batch < 1:
        raise ConfigError(f"head_scores needs seq_len ≥ 2 and batch ≥ 1; "
                          f"got seq_len={seq_len}, batch={batch}")
    if not 1 <= n_tokens <= model.n_tokens:
        raise ConfigError(f"n_tokens={n_tokens} must be in 1..{model.n_tokens} (the model's vocabulary)")
    first = torch.randint(n_tokens, (batch, half), generator=generator, device=generator.device)
    tokens = first.repeat(1, 2).to(_model_device(model))
    cache: dict[str, Tensor] = {}
    model(tokens, cache=cache)
    previous, induction = [], []
    for layer in range(model.n_layers):
        pattern = cache[hook_name("pattern", layer)].float()  # (B, H, 2L, 2L)
        # diagonal(-k) holds pattern[i + k, i]: query t, key t - k.
        previous.append(pattern.diagonal(-1, -2, -1).mean(dim=(0, -1)))
        induction.append(pattern.diagonal(-(half - 1), -2, -1)[..., 1:].mean(dim=(0, -1)))  # t = L..2L-1
    circuits = ov_circuits(model).detach().float().cpu()  # (L, H, N, N)
    n_vocab = circuits.shape[-1]
    own_is_top = circuits.argmax(-2) == torch.arange(n_vocab)  # (L, H, N_in)
    return {
        "previous_token": torch.stack(previous).cpu(),
        "induction": torch.stack(induction).cpu(),
        "copying": copying_scores(circuits),
        "copying_diagonal": own_is_top.float().mean(-1),
    }


def head_scores_chance(n_tokens: int, seq_len: int) -> dict[str, float]:
    """What a head with uniform causal attention (and a random OV circuit) would score.

    ``previous_token``: mean over ``t = 1..2L-1`` of ``1/(t+1)``; ``induction``: mean over
    ``t = L..2L-1`` of ``1/(t+1)``; ``copying``: 0; ``copying_diagonal``: ``1/N``.
    """
    half = seq_len // 2
    inverse_keys = 1.0 / torch.arange(1, 2 * half + 1, dtype=torch.float64)  # 1/(t+1), t = 0..2L-1
    return {
        "previous_token": inverse_keys[1:].mean().item() if half else math.nan,
        "induction": inverse_keys[half:].mean().item() if half else math.nan,
        "copying": 0.0,
        "copying_diagonal": 1.0 / n_tokens,
    }
