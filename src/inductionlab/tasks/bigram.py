"""The bigram-with-triggers sampler (docs/science.md §2), vectorised over the batch.

One sequence ``z_1..z_{T+1}`` (the model reads ``z_1..z_T``, targets are ``z_2..z_{T+1}``):

1. triggers ``q_1..q_K``: *fixed* (the K most frequent tokens under ``π_u`` after skipping the top
   ``trigger_offset``) or *random* (per sequence, K distinct tokens from ``π_u`` without
   replacement, by Gumbel-top-k);
2. outputs ``o_k``, one per trigger and sequence, from a weight table over ``[N]`` built once:
   uniform or ``π_b(·|q_k)``, times the allowed ids of the output split, times ``1{o ≠ q_k}``
   under ``no_repeat``;
3. ``z_1 ~ π_u``; then ``z_{t+1} = o_k`` if ``z_t = q_k``, else ``z_{t+1} ~ π_b(·|z_t)``;
4. labels per target: 0 for a bigram draw, ``c`` for the c-th firing of that trigger;
5. degenerate sequences flagged (and optionally resampled).

How the time loop stays cheap: every categorical draw uses the alias method (Walker 1977,
built once per sampler by a row-vectorised Vose sweep). One uniform ``v ∈ [0, N)`` per draw gives the
column ``c = ⌊v⌋`` and the test ``v < c + prob[row, c]``, so a draw is two gathers, a compare and a
where. The trigger rule costs nothing extra: the alias table has N more "deterministic" rows
(``N + o`` always yields ``o``), and a per-sequence table ``row_of[b, i]`` maps the current token
to its bigram row, or to the deterministic row of its output when ``i`` is a trigger of sequence
``b``. All random numbers are drawn up front, in a fixed order, from the caller's generator, so a
batch is a pure function of (sampler, batch size, generator state).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from inductionlab.errors import ConfigError
from inductionlab.tasks.alias import alias_tables
from inductionlab.tasks.base import Batch
from inductionlab.tasks.sources import BigramSource

TRIGGER_MODES = ("fixed", "random")
OUTPUT_MODES = ("uniform", "bigram")
OUTPUT_SPLITS = ("none", "train", "test")
MAX_RESAMPLE_ROUNDS = 50
CHUNK_ROWS = 8192  # rows generated together; bigger chunks fall out of the CPU cache


def ood_split_cut(n_tokens: int) -> int:
    """First token id of the out-of-distribution *test* outputs: ``⌈3N/4⌉`` (docs/science.md §2, step 2).

    "train" outputs are the ids ``< cut`` (the first 75% of ids, rounded up), "test" outputs the
    ids ``≥ cut``. For Shakespeare (N = 65) the cut is 49: train outputs are newline, punctuation,
    digits, capitals and ``a``–``j``; test outputs are ``k``–``z``.
    """
    return (3 * n_tokens + 3) // 4


@dataclass
class TriggerBatch(Batch):
    """One batch of docs/science.md §2 sequences.

    tokens:     (B, T+1) int64, ``z_1..z_{T+1}``; the model reads ``tokens[:, :-1]``.
    loss_mask:  (B, T) bool, the in-context targets (``labels ≥ 2``), which the in-context loss reads.
    labels:     (B, T) int64 per target position t (target ``z_{t+1}``, input ``z_t``): 0 = a
                bigram draw (input not a trigger); c ≥ 1 = the c-th firing of that trigger.
    triggers:   (B, K) int64, ``q_k`` per sequence (the fixed ones repeated in fixed mode).
    outputs:    (B, K) int64, ``o_k`` follows ``q_k``.
    degenerate: (B,) bool, the sequence entered a trigger cycle (see ``find_degenerate``).
    """

    labels: torch.Tensor
    triggers: torch.Tensor
    outputs: torch.Tensor
    degenerate: torch.Tensor

    def probe_labels(self) -> torch.Tensor:
        """The labels themselves: the attention probes read this task's convention (docs/science.md §4.2)."""
        return self.labels

    def rows_measured(self) -> torch.Tensor:
        """The non-degenerate sequences, over which accuracies are measured (docs/science.md §6)."""
        return ~self.degenerate


_BATCH_FIELDS = tuple(f.name for f in fields(TriggerBatch))


def trigger_slots(inputs: torch.Tensor, triggers: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """Which trigger each input token is: (B, T) int64, k in [0, K), or K for a non-trigger.

    inputs: (B, T) int64; triggers: (B, K) int64, distinct within a row.
    """
    b, k = triggers.shape
    lookup = torch.full((b, n_tokens), k, dtype=torch.int64, device=inputs.device)
    lookup.scatter_(1, triggers, torch.arange(k, device=inputs.device).expand(b, k))
    return torch.gather(lookup, 1, inputs)


def trigger_labels(slots: torch.Tensor, n_triggers: int) -> torch.Tensor:
    """Labels (B, T) int64 from ``trigger_slots`` (docs/science.md §2, step 4): at a position whose input
    is trigger k, how many times k has fired up to and including it; 0 where the input is not a
    trigger.

    Vectorised as running counts packed into int64 bit fields: with ``w`` bits per counter (enough
    for T), ``⌊63 / w⌋`` triggers share one cumsum, so K = 5 at T ≤ 4095 needs a single pass.
    """
    t_len = slots.shape[1]
    width = max(t_len, 1).bit_length()
    per_pass = 63 // width
    field = (1 << width) - 1
    labels = torch.zeros_like(slots)
    for first in range(0, n_triggers, per_pass):
        in_pass = (slots >= first) & (slots < min(first + per_pass, n_triggers))
        shift = (slots - first if first else slots).clamp(0, per_pass - 1).mul_(width)
        counts = in_pass.to(torch.int64).bitwise_left_shift_(shift).cumsum_(dim=1)
        counts.bitwise_right_shift_(shift).bitwise_and_(field)
        labels = torch.where(in_pass, counts, labels)
    return labels


def find_degenerate(slots: torch.Tensor, triggers: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the sequence fired a trigger from which the trigger rule never exits.

    Following ``q_k → o_k`` while ``o_k`` is again a trigger either leaves the trigger set or
    enters a cycle (a self-loop ``q→q``, or ``q→q'→q``, …); in the second case the rest of the
    sequence repeats forever (docs/science.md §2, step 5). A sequence is flagged only when one of its
    inputs ``z_1..z_T`` is such a trigger (on the cycle or on a path into it), i.e. the
    repetition actually started; a cycle that the sequence never reaches is not flagged.

    slots: (B, T) from ``trigger_slots``; triggers, outputs: (B, K) int64.
    """
    b, k = triggers.shape
    dev = triggers.device
    if k == 0:
        return torch.zeros(b, dtype=torch.bool, device=dev)
    match = outputs[:, :, None] == triggers[:, None, :]  # (B, K, K): o_k is trigger k'
    succ = torch.where(match.any(dim=2), match.to(torch.int64).argmax(dim=2), k)
    succ = torch.cat([succ, torch.full((b, 1), k, dtype=torch.int64, device=dev)], dim=1)  # K: exit
    state = torch.arange(k + 1, device=dev).expand(b, k + 1)
    for _ in range(k):  # after K steps a chain that never exits is on its cycle
        state = torch.gather(succ, 1, state)
    trapped = state < k  # (B, K+1); column K (not a trigger) is always False
    return torch.gather(trapped, 1, slots).any(dim=1)


class BigramTriggerSampler:
    """Batches of docs/science.md §2 sequences from a bigram source, on CPU or CUDA.

    Args:
        source: the distributions ``π_u``, ``π_b``.
        seq_len: T ≥ 1, inputs per sequence (tokens hold T+1).
        n_triggers: K, 0 ≤ K ≤ N.
        trigger_mode: "fixed" (top-K of ``π_u`` after ``trigger_offset``) or "random".
        trigger_offset: how many of the most frequent tokens "fixed" skips.
        output_mode: "uniform" (``o_k`` uniform over the allowed ids) or "bigram"
            (``o_k ~ π_b(·|q_k)`` restricted to the allowed ids; where ``π_b(·|q_k)`` puts no mass
            on them, uniform over the allowed ids instead).
        no_repeat: forbid ``o_k = q_k``.
        output_split: "none" (all ids), "train" (ids < ``ood_split_cut(N)``), "test" (ids ≥ it).
        exclude_degenerate: resample degenerate rows so returned batches have none.
        device: where tables live and batches are made; the generator must be on it too.
    """

    def __init__(
        self,
        source: BigramSource,
        seq_len: int,
        n_triggers: int,
        trigger_mode: str = "fixed",
        trigger_offset: int = 0,
        output_mode: str = "uniform",
        no_repeat: bool = False,
        output_split: str = "none",
        exclude_degenerate: bool = False,
        device: torch.device | str = "cpu",
    ) -> None:
        n = source.n_tokens
        _check_int("seq_len", seq_len, 1)
        _check_int("n_triggers", n_triggers, 0)
        _check_int("trigger_offset", trigger_offset, 0)
        _check_choice("trigger_mode", trigger_mode, TRIGGER_MODES)
        _check_choice("output_mode", output_mode, OUTPUT_MODES)
        _check_choice("output_split", output_split, OUTPUT_SPLITS)
        if n_triggers > n:
            raise ConfigError(f"n_triggers = {n_triggers} exceeds the vocabulary size N = {n}")
        if trigger_mode == "fixed" and n_triggers + trigger_offset > n:
            raise ConfigError(
                f"n_triggers + trigger_offset = {n_triggers + trigger_offset} exceeds N = {n} "
                "for trigger_mode 'fixed'"
            )
        n_possible = int((source.unigram > 0).sum())
        if trigger_mode == "random" and n_triggers > n_possible:
            raise ConfigError(
                f"n_triggers = {n_triggers} exceeds the {n_possible} tokens with π_u > 0 "
                "(trigger_mode 'random')"
            )
        self.source = source
        self.seq_len = seq_len
        self.n_triggers = n_triggers
        self.trigger_mode = trigger_mode
        self.trigger_offset = trigger_offset
        self.output_mode = output_mode
        self.no_repeat = bool(no_repeat)
        self.output_split = output_split
        self.exclude_degenerate = bool(exclude_degenerate)
        self.device = torch.device(device)

        cut = ood_split_cut(n)
        ids = torch.arange(n)
        allowed = {"none": ids >= 0, "train": ids < cut, "test": ids >= cut}[output_split]
        n_allowed = int(allowed.sum())
        if n_allowed < (2 if self.no_repeat else 1):
            raise ConfigError(
                f"output_split {output_split!r} leaves {n_allowed} allowed output id(s) at N = {n}"
                + (" and no_repeat needs at least 2" if self.no_repeat else "")
            )
        # (N, N) output weights: row q = the distribution of o_k given q_k = q
        mask = allowed.to(torch.float64).expand(n, n).clone()
        if self.no_repeat:
            mask.fill_diagonal_(0.0)
        out_w = source.bigram.to("cpu", torch.float64) * mask if output_mode == "bigram" else mask.clone()
        out_w = torch.where(out_w.sum(dim=1, keepdim=True) > 0, out_w, mask)

        # bigram rows 0..N-1, then deterministic rows N+o (prob 0 → always the alias o)
        bigram_prob, bigram_alias = alias_tables(source.bigram)
        det_alias = torch.arange(n)[:, None].expand(n, n)
        step_prob = torch.cat([bigram_prob, torch.zeros(n, n, dtype=torch.float64)])
        step_alias = torch.cat([bigram_alias, det_alias])
        cols = torch.arange(n, dtype=torch.float64)
        dev = self.device
        # threshold form: draw = c if v < c + prob[row, c] else alias[row, c], with v ∈ [c, c+1)
        self._step_threshold = (step_prob + cols).reshape(-1).to(dev)
        self._step_alias = step_alias.reshape(-1).to(dev)
        out_prob, out_alias = alias_tables(out_w)
        self._out_threshold = (out_prob + cols).reshape(-1).to(dev)
        self._out_alias = out_alias.reshape(-1).to(dev)
        uni_prob, uni_alias = alias_tables(source.unigram[None, :])
        self._uni_threshold = (uni_prob[0] + cols).to(dev)
        self._uni_alias = uni_alias[0].to(dev)
        self._log_unigram = source.unigram.to(torch.float64).log().to(dev)
        self._bigram_rows = (torch.arange(n, dtype=torch.int64) * n).to(dev)
        self._fixed = None
        if trigger_mode == "fixed":
            order = torch.sort(source.unigram, descending=True, stable=True).indices
            self._fixed = order[trigger_offset : trigger_offset + n_triggers].to(dev)

    @property
    def n_tokens(self) -> int:
        return self.source.n_tokens

    @property
    def fixed_triggers(self) -> torch.Tensor | None:
        """(K,) int64, the triggers of trigger_mode "fixed" in decreasing ``π_u``; None otherwise."""
        return None if self._fixed is None else self._fixed.clone()

    def sample(self, batch_size: int, generator: torch.Generator) -> TriggerBatch:
        """A batch of ``batch_size`` sequences (docs/science.md §2); see :class:`TriggerBatch` for shapes.

        Deterministic given the generator's state; ``generator`` must be on the sampler's device.
        With ``exclude_degenerate``, flagged rows are replaced by fresh non-degenerate rows.
        """
        _check_int("batch_size", batch_size, 1)
        batch = self._draw(batch_size, generator)
        if not self.exclude_degenerate:
            return batch
        for _ in range(MAX_RESAMPLE_ROUNDS):
            bad = batch.degenerate.nonzero().squeeze(1)
            if bad.numel() == 0:
                return batch
            fresh = self._draw(max(2 * bad.numel(), 64), generator)
            good = (~fresh.degenerate).nonzero().squeeze(1)[: bad.numel()]
            bad = bad[: good.numel()]
            for name in _BATCH_FIELDS:
                getattr(batch, name)[bad] = getattr(fresh, name)[good]
        n_left = int(batch.degenerate.sum())
        raise ConfigError(
            f"exclude_degenerate: {n_left} of {batch_size} rows still degenerate after "
            f"{MAX_RESAMPLE_ROUNDS} resampling rounds; with these triggers and outputs nearly every "
            "sequence is degenerate (check n_triggers, output_split, no_repeat)"
        )

    def _draw(self, batch_size: int, generator: torch.Generator) -> TriggerBatch:
        """One raw batch, degenerate rows included, made in chunks of CHUNK_ROWS rows."""
        if generator.device.type != self.device.type:
            raise ConfigError(
                f"generator is on {generator.device} but the sampler is on {self.device}; "
                f"make it with torch.Generator(device={str(self.device)!r})"
            )
        if batch_size <= CHUNK_ROWS:
            return self._draw_chunk(batch_size, generator)
        chunks = [
            self._draw_chunk(min(CHUNK_ROWS, batch_size - start), generator)
            for start in range(0, batch_size, CHUNK_ROWS)
        ]
        return TriggerBatch(
            **{name: torch.cat([getattr(c, name) for c in chunks]) for name in _BATCH_FIELDS}
        )

    def _draw_chunk(self, batch_size: int, generator: torch.Generator) -> TriggerBatch:
        """Raw rows; random numbers in this order: triggers (random mode), outputs, ``z_1``, then
        the (T, B) step uniforms."""
        n, k, t_len, dev = self.n_tokens, self.n_triggers, self.seq_len, self.device
        b = batch_size
        if self._fixed is not None:
            triggers = self._fixed.expand(b, k).clone()
        else:  # Gumbel-top-k on log π_u: K distinct tokens, without replacement
            u = torch.rand((b, n), generator=generator, device=dev, dtype=torch.float64)
            gumbel = -torch.log(-torch.log(u.clamp_min(1e-300)))
            triggers = torch.topk(self._log_unigram + gumbel, k, dim=1).indices
        outputs = self._alias_draw(triggers * n, self._out_threshold, self._out_alias, generator)
        # row_of[b, i]: the flat offset of the alias row used after token i in sequence b
        row_of = self._bigram_rows.expand(b, n).clone()
        row_of.scatter_(1, triggers, (n + outputs) * n)
        row_of = row_of.reshape(-1)
        seq_offset = torch.arange(b, device=dev) * n

        tokens = torch.empty((b, t_len + 1), dtype=torch.int64, device=dev)
        tokens[:, 0] = self._alias_draw(
            torch.zeros(b, dtype=torch.int64, device=dev), self._uni_threshold, self._uni_alias, generator
        )
        v = torch.rand((t_len, b), generator=generator, device=dev, dtype=torch.float64).mul_(n)
        col = v.to(torch.int64).clamp_max_(n - 1)
        if dev.type == "cpu":
            tokens[:, 1:] = self._chain_on_cpu(tokens[:, 0], row_of, seq_offset, v, col).T
        else:
            self._chain(tokens, row_of, seq_offset, v, col)
        slots = trigger_slots(tokens[:, :-1], triggers, n)
        labels = trigger_labels(slots, k)
        return TriggerBatch(
            tokens=tokens,
            loss_mask=labels >= 2,
            labels=labels,
            triggers=triggers,
            outputs=outputs,
            degenerate=find_degenerate(slots, triggers, outputs),
        )

    def _chain_on_cpu(self, first: torch.Tensor, row_of: torch.Tensor, seq_offset: torch.Tensor, v: torch.Tensor,
                      col: torch.Tensor) -> torch.Tensor:
        """:meth:`_chain` in NumPy, whose operations on a few dozen entries cost a fraction of a torch call's
        overhead (the same integers and float64 comparisons, so the same tokens): tokens 2..T+1 as (T, B)."""
        rows, offsets = row_of.numpy(), seq_offset.numpy()
        threshold, alias = self._step_threshold.numpy(), self._step_alias.numpy()
        uniforms, cols = v.numpy(), col.numpy()
        out = np.empty(cols.shape, dtype=np.int64)
        previous = first.numpy()
        for t in range(cols.shape[0]):
            idx = rows[offsets + previous] + cols[t]
            previous = out[t] = np.where(uniforms[t] < threshold[idx], cols[t], alias[idx])
        return torch.from_numpy(out)

    def _chain(self, tokens: torch.Tensor, row_of: torch.Tensor, seq_offset: torch.Tensor, v: torch.Tensor,
               col: torch.Tensor) -> None:
        """The bigram chain after ``z_1`` (``tokens[:, 0]``), written into ``tokens[:, 1:]`` in place: at step ``t``
        the alias row of the previous token (its trigger's output row where it is a trigger), column ``col[t]``,
        kept where ``v[t]`` is below the row's threshold, else its alias."""
        b, dev = tokens.shape[0], tokens.device
        key = torch.empty(b, dtype=torch.int64, device=dev)
        idx = torch.empty_like(key)
        alias = torch.empty_like(key)
        threshold = torch.empty(b, dtype=torch.float64, device=dev)
        take_col = torch.empty(b, dtype=torch.bool, device=dev)
        for t in range(v.shape[0]):
            torch.add(seq_offset, tokens[:, t], out=key)
            torch.index_select(row_of, 0, key, out=idx)
            idx.add_(col[t])
            torch.index_select(self._step_threshold, 0, idx, out=threshold)
            torch.index_select(self._step_alias, 0, idx, out=alias)
            torch.lt(v[t], threshold, out=take_col)
            torch.where(take_col, col[t], alias, out=tokens[:, t + 1])

    def _alias_draw(
        self,
        row_offset: torch.Tensor,
        threshold: torch.Tensor,
        alias: torch.Tensor,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """One draw per entry of ``row_offset`` (any shape, ``row * N``) from flat alias tables."""
        n = self.n_tokens
        v = torch.rand(row_offset.shape, generator=generator, device=self.device, dtype=torch.float64).mul_(n)
        col = v.to(torch.int64).clamp_max_(n - 1)
        idx = row_offset + col
        return torch.where(v < threshold[idx], col, alias[idx])


def degenerate_rate(
    sampler: BigramTriggerSampler, n: int, generator: torch.Generator, batch_size: int = 4096
) -> float:
    """Fraction of ``n`` raw sequences (before any exclusion) that are degenerate (docs/science.md §2, step 5)."""
    _check_int("n", n, 1)
    flagged = 0
    for start in range(0, n, batch_size):
        flagged += int(sampler._draw(min(batch_size, n - start), generator).degenerate.sum())
    return flagged / n


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer ≥ {minimum}, got {value!r}")


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"unknown {name} {value!r}; allowed: {', '.join(allowed)}")
