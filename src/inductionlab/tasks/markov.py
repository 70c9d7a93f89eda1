"""In-context Markov chains and their reference predictors (docs/science.md §10; Edelman et al. 2024).

Every sequence draws its **own** order-``n`` chain over ``k`` states: for each context (the previous
``n − 1`` tokens, indexed in base ``k``) a row of transition probabilities ``~ Dirichlet(α·1)``.
The first ``n − 1`` tokens come from the stationary distribution of the chain on contexts (option:
uniform), then ``z_{t+1} ~ P(context_t, ·)``. Nothing carries over between sequences, so a model
must estimate ``P`` from the context.

Reference predictors of ``z_{t+1}`` from ``z_1..z_t`` (:func:`reference_probs`), batched and in
closed form:

- ``uniform``: ``1/k``;
- ``unigram``: ``(count of j in z_1..z_t + α) / (t + kα)``;
- ``bayes``: ``(c(context_t → j) + α) / (c(context_t → ·) + kα)``, the counts over the transitions
  completed within ``z_1..z_t``: the posterior mean of ``P(context_t, ·)`` (exactly Bayes-optimal
  with the uniform start; with the stationary start it ignores what the first tokens say about
  ``P``);
- ``true``: ``P(context_t, ·)``, the floor no predictor beats on average.

Targets whose context is incomplete (the first ``n − 2`` of them) are left out of every loss.
Sampling and predictors are vectorised over the batch; the chain itself is drawn one position at a
time (each token depends on the previous ones), every draw from the caller's generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inductionlab.config import TrainConfig
from inductionlab.errors import ConfigError, MemoryEstimateError
from inductionlab.models.hooks import Forward
from inductionlab.probes.progress import progress_measures
from inductionlab.tasks.base import Batch, Task
from inductionlab.tasks.configs import MarkovConfig

DOUBLE = 8
STARTS = ("stationary", "uniform")


@dataclass
class MarkovBatch(Batch):
    """tokens: (B, T+1) int64 ``z_1..z_{T+1}``; loss_mask: (B, T) bool, the targets with a complete context (all
    but the first ``n − 2``); transitions: (B, k^(n−1), k) float64, row ``c`` the next-token law after context
    ``c`` (base-``k`` index of the previous ``n − 1`` tokens); order: n."""

    transitions: Tensor
    order: int

    @classmethod
    def of(cls, tokens: Tensor, transitions: Tensor, order: int) -> MarkovBatch:
        """The batch of ``tokens`` drawn from ``transitions``, its loss mask made from the order."""
        loss_mask = torch.ones(tokens.shape[0], tokens.shape[1] - 1, dtype=torch.bool, device=tokens.device)
        loss_mask[:, : order - 2] = False
        return cls(tokens, loss_mask, transitions, order)


def dirichlet(shape: tuple[int, ...], k: int, alpha: float, generator: torch.Generator,
              device: torch.device | str = "cpu") -> Tensor:
    """Rows ``~ Dirichlet(α·1_k)``: (*shape, k) float64, from normalised Gamma(α) draws (Marsaglia–Tsang,
    vectorised rejection; ``α < 1`` through ``Gamma(α + 1)·U^{1/α}``), every draw from ``generator``."""
    a = alpha + 1.0 if alpha < 1 else alpha
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    n = math.prod(shape) * k
    out = torch.empty(n, dtype=torch.float64, device=device)
    todo = torch.arange(n, device=device)
    while todo.numel():
        x = torch.randn(todo.numel(), generator=generator, dtype=torch.float64, device=device)
        u = torch.rand(todo.numel(), generator=generator, dtype=torch.float64, device=device)
        v = (1 + c * x) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * x * x + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        out[todo[ok]] = d * v[ok]
        todo = todo[~ok]
    if alpha < 1:
        out = out * torch.rand(n, generator=generator, dtype=torch.float64, device=device) ** (1.0 / alpha)
    out = out.view(*shape, k)
    return out / out.sum(-1, keepdim=True)


def context_transitions(transitions: Tensor, k: int) -> Tensor:
    """The chain on contexts: (B, C, C) with ``C = k^(n−1)``; context ``(a_1..a_{n−1})`` goes to
    ``(a_2..a_{n−1}, j)`` with probability ``P(context, j)``."""
    batch, contexts, _ = transitions.shape
    shifted = (torch.arange(contexts, device=transitions.device) * k) % contexts  # drop a_1, make room for j
    out = torch.zeros(batch, contexts, contexts, dtype=transitions.dtype, device=transitions.device)
    columns = shifted[:, None] + torch.arange(k, device=transitions.device)  # (C, k)
    out.scatter_(2, columns.expand(batch, -1, -1), transitions)
    return out


def stationary(transitions: Tensor) -> Tensor:
    """The stationary law ``π = πQ`` of each row-stochastic (B, C, C) matrix: (B, C) (a linear solve with
    the normalisation replacing one equation; Dirichlet rows are positive, so ``π`` is unique)."""
    batch, size, _ = transitions.shape
    system = transitions.transpose(1, 2) - torch.eye(size, dtype=transitions.dtype, device=transitions.device)
    system[:, -1, :] = 1.0
    rhs = torch.zeros(batch, size, 1, dtype=transitions.dtype, device=transitions.device)
    rhs[:, -1] = 1.0
    return torch.linalg.solve(system, rhs).squeeze(-1).clamp_min(0)


class ICLMarkovSampler:
    """Sequences of in-context Markov chains (docs/science.md §10): ``k`` states, order ``n ≥ 2``,
    rows ``~ Dirichlet(α·1)``, stationary (or uniform) start, any length ``T``."""

    def __init__(self, n_states: int = 3, seq_len: int = 100, order: int = 2, alpha: float = 1.0,
                 start: str = "stationary", device: torch.device | str = "cpu"):
        if n_states < 2:
            raise ConfigError(f"data.k: need at least 2 states, got {n_states}")
        if order < 2:
            raise ConfigError(f"data.order: the order n must be ≥ 2 (2: bigram), got {order}")
        if not alpha > 0:
            raise ConfigError(f"data.alpha: the Dirichlet concentration must be > 0, got {alpha}")
        if start not in STARTS:
            raise ConfigError(f"data.start: unknown start {start!r}; allowed: {', '.join(STARTS)}")
        if seq_len < order:
            raise ConfigError(f"data.seq_len: T={seq_len} must be at least the order n={order}")
        self.k, self.seq_len, self.order, self.alpha, self.start = n_states, seq_len, order, alpha, start
        self.device = torch.device(device)
        self.n_contexts = n_states ** (order - 1)

    def sample(self, batch: int, generator: torch.Generator) -> MarkovBatch:
        """``batch`` sequences of ``T + 1`` tokens, each with its own chain."""
        k, n, dev = self.k, self.order, self.device
        transitions = dirichlet((batch, self.n_contexts), k, self.alpha, generator, dev)
        if self.start == "stationary":
            first = stationary(context_transitions(transitions, k)) if n > 2 else stationary(transitions)
            context = torch.multinomial(first.float(), 1, generator=generator).squeeze(1)  # (B,) base-k tuple
        else:
            context = torch.randint(self.n_contexts, (batch,), generator=generator, device=dev)
        length = self.seq_len + 1
        tokens = torch.empty(batch, length, dtype=torch.int64, device=dev)
        digits = self.n_contexts // k ** torch.arange(1, n, device=dev)  # place values, first token first
        tokens[:, : n - 1] = (context[:, None] // digits) % k
        uniforms = torch.rand(batch, length, generator=generator, dtype=torch.float64, device=dev)
        # the next token every context would emit with each position's uniform draw, all at once: (B, T+1, C)
        cumulative = transitions.cumsum(-1)[:, None]  # (B, 1, C, k)
        would = (uniforms[:, :, None, None] > cumulative).sum(-1).clamp_max(k - 1).flatten()
        base = torch.arange(batch, device=dev) * (length * self.n_contexts)
        if dev.type == "cpu":  # NumPy: the same integer steps at a fraction of a torch call's overhead each
            drawn = chain(would.numpy(), base.numpy(), context.numpy(), range(n - 1, length), self.n_contexts, k)
            tokens[:, n - 1 :] = torch.from_numpy(np.stack(drawn, 1))
        else:
            tokens[:, n - 1 :] = torch.stack(chain(would, base, context, range(n - 1, length), self.n_contexts, k), 1)
        return MarkovBatch.of(tokens, transitions, n)


def chain(would, base, context, positions: range, n_contexts: int, k: int) -> list:
    """The tokens at ``positions`` of each sequence's chain, one (B,) array per position: at position ``t`` the
    token its context would emit (``would``, flat (B·(T+1)·C,), ``base`` the offset of each sequence's block),
    then the context moves on by that token. Torch tensors or NumPy arrays alike (the same integer steps).
    Each token depends on the previous ones: a loop over positions only."""
    drawn = []
    for t in positions:
        nxt = would[base + (t * n_contexts) + context]
        drawn.append(nxt)
        context = (context * k + nxt) % n_contexts
    return drawn


def contexts_of(inputs: Tensor, k: int, order: int) -> Tensor:
    """Base-``k`` index of the ``n − 1`` tokens ending at each position: (B, T) int64; −1 where fewer exist."""
    out = torch.zeros_like(inputs)
    for lag in range(order - 1):  # n − 1 ≤ a few: a loop over the context's length, not over tokens
        shifted = torch.roll(inputs, lag, dims=1)
        out = out + shifted * k**lag
    out[:, : order - 2] = -1
    return out


def reference_probs(batch: MarkovBatch, k: int, alpha: float) -> dict[str, Tensor]:
    """Each strategy's predictive law of ``z_{t+1}`` at every input position: name → (B, T, k) float64.

    Rows before the first complete context (the first ``n − 2`` positions) are uniform in every
    strategy and excluded from the losses (:func:`reference_losses`).
    """
    inputs, order = batch.inputs, batch.order
    b, t = inputs.shape
    dev = inputs.device
    onehot = torch.nn.functional.one_hot(inputs, k).double()
    seen = torch.arange(1, t + 1, device=dev, dtype=torch.float64)[None, :, None]
    unigram = (onehot.cumsum(1) + alpha) / (seen + k * alpha)
    contexts = contexts_of(inputs, k, order)
    # transition s → s+1 completes at input position s+1: pair index context_s·k + z_{s+1}
    pair = torch.full_like(inputs, -1)
    pair[:, 1:] = torch.where(contexts[:, :-1] >= 0, contexts[:, :-1] * k + inputs[:, 1:], -1)
    counts = torch.zeros(b, t, batch.transitions.shape[1] * k + 1, dtype=torch.float64, device=dev)
    counts.scatter_(2, (pair + 1)[..., None], 1.0)  # slot 0 collects "no transition"
    counts = counts[..., 1:].cumsum(1).view(b, t, -1, k)  # (B, T, C, k): transitions seen up to t
    ctx = contexts.clamp_min(0)
    own = torch.gather(counts, 2, ctx[:, :, None, None].expand(-1, -1, 1, k)).squeeze(2)  # (B, T, k)
    bayes = (own + alpha) / (own.sum(-1, keepdim=True) + k * alpha)
    true = torch.gather(batch.transitions, 1, ctx[..., None].expand(-1, -1, k))
    uniform = torch.full_like(bayes, 1.0 / k)
    incomplete = (contexts < 0)[..., None]
    return {"uniform": uniform, "unigram": torch.where(incomplete, uniform, unigram),
            "bayes": torch.where(incomplete, uniform, bayes), "true": torch.where(incomplete, uniform, true)}


def target_nll(probs: Tensor, batch: MarkovBatch) -> Tensor:
    """``−log p(z_{t+1})`` of a predictive law ``probs`` (B, T, k) at the batch's targets with a complete
    context: (B, T − n + 2)."""
    start = batch.order - 2
    return -torch.log(torch.gather(probs[:, start:], 2, batch.targets[:, start:, None]).squeeze(-1).clamp_min(1e-300))


def reference_losses(batch: MarkovBatch, k: int, alpha: float) -> dict[str, dict[str, object]]:
    """Cross-entropy of each strategy on the batch's next tokens: overall mean and per position
    (mean over sequences), over the targets with a complete context."""
    out = {}
    for name, p in reference_probs(batch, k, alpha).items():
        nll = target_nll(p, batch)
        out[name] = {"loss": nll.mean().item(), "per_position": nll.mean(0).tolist(), "first_position": batch.order - 2}
    return out


# --------------------------------------------------------------------------- the task icl-mc


class MarkovTask(Task):
    """Sequences of in-context Markov chains, each with its own transition matrix (docs/science.md §10)."""

    name = "icl-mc"
    config_model = MarkovConfig
    summary_keys = ("loss_in_context", "loss_uniform", "loss_unigram", "loss_bayes", "loss_true", "kl_unigram",
                    "kl_bayes")
    progress_keys = {"kl_bayes": "kl_bayes"}

    def __init__(self, config: MarkovConfig, device: torch.device | str = "cpu"):
        super().__init__(config, device)
        self.sampler = ICLMarkovSampler(config.k, config.seq_len, order=config.order, alpha=config.alpha,
                                        start=config.start, device=self.device)

    def sample(self, batch_size: int, generator: torch.Generator) -> MarkovBatch:
        return self.sampler.sample(batch_size, generator)

    def evaluate(self, model: nn.Module, batch: MarkovBatch, train_len: int, forward: Forward | None = None
                 ) -> dict[str, float]:
        return markov_metrics(model, batch, self.config.k, self.config.alpha, forward)

    @classmethod
    def memory(cls, config: MarkovConfig, train: TrainConfig) -> dict[str, tuple[int, str]]:
        """Each sequence's transition rows and context chain, and the count tables the Bayes reference fills
        over an evaluation batch."""
        d = config
        if d.order * math.log(d.k) > math.log(2**50):
            raise MemoryEstimateError(f"data.order: k^n = {d.k}^{d.order} transition entries per sequence cannot "
                                      "be held in memory; lower data.order or data.k")
        contexts = d.k ** (d.order - 1)
        rows = max(train.batch_size, train.eval_batch_size)
        chain = rows * contexts * contexts if d.start == "stationary" else 0  # the context chain, solved
        return {"task tables": (DOUBLE * (3 * rows * contexts * d.k + 2 * chain), "data.k"),
                "reference predictors": (DOUBLE * train.eval_batch_size * d.seq_len * (contexts * d.k + 1),
                                         "data.order")}


@torch.no_grad()
def markov_metrics(model: nn.Module, batch: MarkovBatch, k: int, alpha: float, forward: Forward | None = None,
                   probe_batch: int = 32) -> dict[str, float]:
    """An evaluation step of the in-context Markov-chain task (docs/science.md §10, §9).

    ``loss_in_context``: the model's cross-entropy over the targets with a complete context;
    ``loss_<strategy>``: each reference predictor's on the same targets; ``kl_<strategy>``:
    ``KL(p_strategy ‖ p_model)`` averaged over those positions; ``kl_unigram_to_bayes``, the distance
    between the two in-context strategies (the scale of the stages); then the §9 progress measures.
    """
    forward = forward or model
    start = batch.order - 2
    log_model = F.log_softmax(forward(batch.inputs).double(), -1)[:, start:]  # (B, T', k)
    out = {"loss_in_context": -log_model.gather(2, batch.targets[:, start:, None]).mean().item()}
    refs = reference_probs(batch, k, alpha)
    for name, probs in refs.items():
        p = probs[:, start:]
        out[f"loss_{name}"] = target_nll(probs, batch).mean().item()
        out[f"kl_{name}"] = (p * (torch.log(p.clamp_min(1e-300)) - log_model)).sum(-1).mean().item()
    unigram, bayes = refs["unigram"][:, start:], refs["bayes"][:, start:]
    out["kl_unigram_to_bayes"] = (unigram * (unigram.log() - bayes.log())).sum(-1).mean().item()  # the stages' scale
    if batch.order > 2:  # where a model stops that ignores the oldest token of the context: order n − 1's Bayes
        rows = torch.full((len(batch.tokens), k ** (batch.order - 2), k), 1.0 / k, dtype=torch.float64,
                          device=batch.tokens.device)  # only its shape is read
        lower = reference_probs(MarkovBatch.of(batch.tokens, rows, batch.order - 1), k, alpha)["bayes"]
        out["loss_bayes_lower_order"] = target_nll(lower, batch).mean().item()  # the same targets as the model
    rows = slice(0, probe_batch)
    out.update(progress_measures(model, batch.tokens[rows], batch.probe_labels()[rows], forward=forward))
    return out
