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

import torch
from torch import Tensor

from inductionlab.errors import ConfigError

STRATEGIES = ("uniform", "unigram", "bayes", "true")
STARTS = ("stationary", "uniform")


@dataclass
class MarkovBatch:
    """tokens: (B, T+1) int64 ``z_1..z_{T+1}``; transitions: (B, k^(n−1), k) float64, row ``c`` the
    next-token law after context ``c`` (base-``k`` index of the previous ``n − 1`` tokens)."""

    tokens: Tensor
    transitions: Tensor
    order: int

    @property
    def inputs(self) -> Tensor:
        return self.tokens[:, :-1]

    @property
    def targets(self) -> Tensor:
        return self.tokens[:, 1:]

    @property
    def labels(self) -> Tensor:
        """(B, T) int64 in the bigram task's convention (docs/science.md §2): every target with a complete
        context is in-context (2); the first ``n − 2``, with none, are unpredictable (1)."""
        labels = torch.full_like(self.inputs, 2)
        labels[:, : self.order - 2] = 1
        return labels

    @property
    def degenerate(self) -> Tensor:
        """(B,) bool: no sequence of this task is degenerate."""
        return torch.zeros(self.tokens.shape[0], dtype=torch.bool, device=self.tokens.device)


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
        drawn = []
        for t in range(n - 1, length):  # each token depends on the previous ones: a loop over positions only
            nxt = would[base + (t * self.n_contexts) + context]
            drawn.append(nxt)
            context = (context * k + nxt) % self.n_contexts
        tokens[:, n - 1 :] = torch.stack(drawn, 1)
        return MarkovBatch(tokens, transitions, n)


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
