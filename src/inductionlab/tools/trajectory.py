"""A run's progress measures on one time axis, and its attention patterns as an animation (docs/science.md §9).

- :func:`draw_trajectory` — every progress measure in ``metrics.jsonl`` against the training step,
  one panel per family (losses, accuracies, memory probes of docs/science.md §4.1, attention probes
  and head scores of §4.2, the in-context learning score of §9, attention entropy, trained-matrix
  norms), several runs overlaid (one colour per run, one line style per measure), with the
  milestones (the first step a measure reaches :data:`MILESTONES`' threshold) as dashed lines.
- :func:`animate_attention` — the attention pattern of every layer and head on one fixed probe
  sequence, at initialisation and at every checkpoint of the run, as a GIF.
- :func:`trajectory` — both, for ``inductionlab trajectory RUN_DIR [RUN_DIR ...] --out DIR``.

Rows may lack keys (probe-only rows hold the memory probes alone) and values may be None; a
measure is drawn from the rows that hold a number for it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.animation import PillowWriter  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from inductionlab.config import RunConfig  # noqa: E402
from inductionlab.curves import first_crossing  # noqa: E402
from inductionlab.errors import CheckpointError, ConfigError, RunDirError  # noqa: E402
from inductionlab.interventions import Interventions  # noqa: E402
from inductionlab.models.build import build_model  # noqa: E402
from inductionlab.models.names import hook_layers, hook_name  # noqa: E402
from inductionlab.report.figures import save_figure  # noqa: E402
from inductionlab.runs import RunDir  # noqa: E402
from inductionlab.tasks.build import make_task  # noqa: E402

Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class Family:
    """One panel: the exact ``keys`` in this order, then any key matching ``pattern`` (natural order)."""

    title: str
    ylabel: str
    keys: tuple[str, ...] = ()
    pattern: str | None = None
    ylim: tuple[float | None, float | None] = (None, None)
    zero_line: bool = False
    level: str | None = None  # a key drawn as a dashed horizontal level per run (its last value)
    level_name: str = ""

    def select(self, present: set[str]) -> list[str]:
        """The keys of this family among ``present``, in drawing order."""
        matched = [k for k in present if self.pattern and re.fullmatch(self.pattern, k) and k not in self.keys]
        return [k for k in self.keys if k in present] + sorted(matched, key=_natural)


UNIT = (0.0, 1.02)
FAMILIES: tuple[Family, ...] = (
    Family("losses (eval batch, non-degenerate sequences)", "loss",
           ("loss_global", "loss_first", "loss_in_context"), level="loss_global_bigram_optimum",
           level_name="global bigram optimum"),
    Family("accuracies (non-degenerate sequences)", "accuracy", ("acc_global", "acc_first", "acc_in_context"),
           ylim=UNIT),
    Family("memory probes (docs/science.md §4.1)", "recall", ("wo", "wo_ff", "wk2", "wk2_triggers", "wk1"),
           ylim=UNIT),
    Family("attention probes and head scores (§4.2)", "score",
           ("attn1_prev_token", "attn2_induction", "attn2_copy_agreement"),
           pattern=r"head_(prev_token|induction)_L\d+H\d+", ylim=UNIT),
    Family("in-context learning score (§9): loss late minus early", "loss difference",
           ("icl_score", "icl_score_in_context"), zero_line=True),
    Family("attention entropy per head (L: 0-based layer, H: head)", "entropy (nats)",
           pattern=r"attn_entropy_L\d+H\d+", ylim=(0.0, None)),
    Family("trained-matrix norms", "norm", pattern=r"norm_.+", ylim=(0.0, None)),
    Family("KV-shift scalars (§3.3; block.head.scalar)", "value", pattern=r"kv_shift\.\d+\.\d+\.(alpha|beta)[12]",
           zero_line=True),
)
MILESTONES: dict[str, float] = {"acc_in_context": 0.9, "wo": 0.9, "wk2": 0.9, "wk1": 0.9}
MILESTONE_NAMES = {"acc_in_context": "in-context acc"}
LINESTYLES = ("-", "-.", ":", (0, (5, 1, 1, 1, 1, 1)))  # "--" marks levels and milestones
GIF_DPI = 100
MARKERS = (None, "o", "s", "^", "x", "D", "v", "+")


def _natural(key: str) -> list[Any]:
    """Sort key that orders ``L2H10`` after ``L2H9``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def series(rows: Rows, key: str) -> tuple[list[int], list[float]]:
    """Steps and values of ``key`` over the rows holding a number for it, in step order."""
    points = sorted((int(r["step"]), float(r[key])) for r in rows if _number(r.get(key)))
    return [s for s, _ in points], [v for _, v in points]


def milestones(rows: Rows) -> dict[str, int | None]:
    """Milestone step of every :data:`MILESTONES` key the rows log (None: never reached;
    :func:`inductionlab.curves.first_crossing`)."""
    present = {k for r in rows for k, v in r.items() if _number(v)}
    return {key: first_crossing(rows, key, level) for key, level in MILESTONES.items() if key in present}


def _style(index: int) -> dict[str, Any]:
    """Line style of a family's ``index``-th key: four dash patterns, then the same with markers."""
    marker = MARKERS[(index // len(LINESTYLES)) % len(MARKERS)]
    return {"ls": LINESTYLES[index % len(LINESTYLES)], "marker": marker, "markevery": 0.1, "markersize": 3.5}


def run_labels(run_dirs: Sequence[Path], labels: Sequence[str] | None) -> list[str]:
    """The given labels, else the folder names (the paths as given when two folders share a name)."""
    if labels is not None:
        if len(labels) != len(run_dirs):
            raise ConfigError(f"labels: {len(labels)} labels for {len(run_dirs)} run directories; give one per run")
        return list(labels)
    names = [Path(p).name for p in run_dirs]
    return names if len(set(names)) == len(names) else [str(p) for p in run_dirs]


def load_runs(run_dirs: Sequence[Path]) -> list[Rows]:
    """The metric rows of every run; a missing directory or one without metrics is a RunDirError."""
    if not run_dirs:
        raise ConfigError("run directories: none given; name at least one RUN_DIR")
    loaded = []
    for path in run_dirs:
        run = RunDir(path)
        if not run.path.is_dir():
            raise RunDirError(f"{run.path}: no such run directory")
        rows = [r for r in run.metrics() if "step" in r]
        if not rows:
            raise RunDirError(f"{run.path}: no metrics logged (metrics.jsonl missing or empty); train the run first")
        loaded.append(rows)
    return loaded


# ---------------------------------------------------------------------------- the trajectory figure


def trajectory_figure(runs: Sequence[Rows], labels: Sequence[str]) -> Figure:
    """One panel per family any run logs, all against the training step; ``runs[i]`` drawn as ``labels[i]``."""
    present = [{k for r in rows for k, v in r.items() if _number(v)} for rows in runs]
    panels = [(fam, keys) for fam in FAMILIES if (keys := fam.select(set().union(*present)))]
    if not panels:
        raise RunDirError(f"{', '.join(labels)}: no progress measure in the metrics (losses, probes, scores)")
    colors = [plt.get_cmap("tab10")(i % 10) for i in range(len(runs))]
    height = sum(2.3 + 0.12 * max(0, len(keys) - 8) for _, keys in panels)
    fig, axes = plt.subplots(len(panels), 1, sharex=True, figsize=(11, 0.6 + height), squeeze=False,
                             layout="constrained")
    axes = axes[:, 0]
    marks = {i: milestones(rows) for i, rows in enumerate(runs)}
    for ax, (fam, keys) in zip(axes, panels, strict=True):
        for i, rows in enumerate(runs):
            for j, key in enumerate(keys):
                steps, values = series(rows, key)
                if steps:
                    ax.plot(steps, values, color=colors[i], lw=1.2, **_style(j))
        handles = [Line2D([], [], color="black", lw=1.2, **_style(j)) for j in range(len(keys))]
        names = list(keys)
        if fam.level and any(fam.level in p for p in present):
            for i, rows in enumerate(runs):
                _, levels = series(rows, fam.level)
                if levels:
                    ax.axhline(levels[-1], color=colors[i], lw=0.9, ls="--", alpha=0.8)
            handles.append(Line2D([], [], color="black", lw=0.9, ls="--"))
            names.append(fam.level_name)
        if fam.zero_line:
            ax.axhline(0.0, color="grey", lw=0.6)
        ax.set(title=fam.title, ylabel=fam.ylabel)
        ax.set_ylim(*fam.ylim)
        ax.title.set_fontsize(10)
        ax.grid(alpha=0.25, lw=0.5)
        ax.legend(handles, names, fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False,
                  ncol=1 + (len(names) - 1) // 10)
        _mark_milestones(ax, marks, set(keys), colors)
    axes[-1].set_xlabel("training step")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    run_handles = [Line2D([], [], color=c, lw=2) for c in colors]
    fig.legend(run_handles, list(labels), loc="outside upper center", ncol=min(len(labels), 4), fontsize=8,
               frameon=False)
    return fig


def _mark_milestones(ax, marks: dict[int, dict[str, int | None]], keys: set[str], colors) -> None:
    """Dashed line per run at each milestone step; named in the panel that draws the measure."""
    for i, by_key in marks.items():
        at: dict[int, list[str]] = {}
        for key, step in by_key.items():
            if step is not None:
                ax.axvline(step, color=colors[i], ls="--", lw=0.8, alpha=0.6)
                if key in keys:
                    at.setdefault(step, []).append(f"{MILESTONE_NAMES.get(key, key)} ≥ {MILESTONES[key]:g}")
        for step, names in at.items():
            ax.annotate(", ".join(names), (step, 0.03), xycoords=("data", "axes fraction"),
                        xytext=(2 + 9 * i, 0), textcoords="offset points", rotation=90, fontsize=6.5,
                        color=colors[i], va="bottom", ha="left")


def draw_trajectory(run_dirs: list[Path], out: Path, *, labels: list[str] | None = None) -> list[Path]:
    """Draw the progress measures of ``run_dirs`` overlaid; write ``out/trajectory.{png,svg}``, return their paths."""
    runs = load_runs(run_dirs)
    fig = trajectory_figure(runs, run_labels(run_dirs, labels))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        save_figure(fig, out, "trajectory")
    finally:
        plt.close(fig)
    return [out / "trajectory.png", out / "trajectory.svg"]


# ---------------------------------------------------------------------------- the attention animation


def probe_inputs(cfg: RunConfig, n_sequences: int = 1, max_len: int = 32, seed: int = 0) -> Tensor:
    """(n_sequences, min(T, max_len)) int64: the first non-degenerate rows the run's sampler draws from ``seed``."""
    if n_sequences < 1 or max_len < 2:
        raise ConfigError(f"n_sequences={n_sequences}, max_len={max_len}: need at least 1 sequence of 2 positions")
    n_draw = max(64, 4 * n_sequences)
    batch = make_task(cfg, torch.device("cpu")).sample(n_draw, torch.Generator().manual_seed(seed))
    keep = batch.rows_measured().nonzero().squeeze(1)[:n_sequences]
    if keep.numel() < n_sequences:
        raise ConfigError(f"n_sequences={n_sequences}: only {keep.numel()} of {n_draw} sequences drawn are "
                          "non-degenerate; ask for fewer")
    return batch.inputs[keep, :max_len]


@torch.no_grad()
def attention_patterns(model: nn.Module, inputs: Tensor, forward=None) -> Tensor:
    """(n_layers, B, H, T, T) attention weights of ``model`` on ``inputs`` (B, T), layers in order.

    ``forward``: the model with the interventions it ran with at evaluation (docs/science.md §8), if any."""
    cache: dict[str, Tensor] = {}
    model.eval()
    (forward or model)(inputs, cache=cache)
    layers = hook_layers(cache, "pattern")
    return torch.stack([cache[hook_name("pattern", layer)].detach().float().cpu() for layer in layers])


def _no_checkpoint(path: Path) -> RunDirError:
    return RunDirError(f"{path}: no checkpoint to animate (one is written every train.checkpoint_every steps; "
                       "train.keep_checkpoints=0 keeps them all)")


def checkpoint_patterns(run: RunDir, inputs: Tensor) -> list[tuple[int, Tensor]]:
    """(step, patterns) at initialisation (step 0, rebuilt from the init seed) and at every checkpoint."""
    steps = run.checkpoint_steps()
    if not steps:
        raise _no_checkpoint(run.path)
    cfg = run.config()
    model = build_model(cfg.model, cfg.data.n_tokens, cfg.seeds.init)
    interventions = Interventions(cfg.interventions, model)
    frames = [(0, attention_patterns(model, inputs, interventions.forward(model, 0, "eval")))]
    for step in (s for s in steps if s > 0):  # the checkpoint at step 0 is the initialisation
        tensors, _ = run.load_checkpoint(step)
        try:
            model.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
        except RuntimeError as err:
            raise CheckpointError(f"{run.checkpoint_dir}: checkpoint {step} does not fit the run's config "
                                  f"({str(err).splitlines()[0]})") from None
        frames.append((step, attention_patterns(model, inputs, interventions.forward(model, step, "eval"))))
    return frames


def animate_attention(run_dir: Path, out: Path, *, n_sequences: int = 1, max_len: int = 32, seed: int = 0,
                      name: str = "attention.gif") -> Path:
    """Animate every layer's and head's attention on a fixed probe batch over the run's checkpoints.

    Frame 0 is the model at initialisation, then one frame per checkpoint in step order; one
    subplot per (sequence, layer, head), colour scale fixed to [0, 1]. Writes ``out/name``.
    """
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise RunDirError(f"{run.path}: no such run directory")
    inputs = probe_inputs(run.config(), n_sequences, max_len, seed)
    frames = checkpoint_patterns(run, inputs)
    n_layers, n_seq, n_heads, t, _ = frames[0][1].shape
    # one row per (sequence, layer) and a column per head; single-head layers side by side
    n_rows, n_cols = (n_seq, n_layers) if n_heads == 1 else (n_seq * n_layers, n_heads)
    fig, axes = plt.subplots(n_rows, n_cols, squeeze=False, figsize=(1.0 + 3.0 * n_cols, 0.6 + 2.9 * n_rows),
                             layout="constrained", dpi=GIF_DPI)
    images = []
    for b in range(n_seq):
        for layer in range(n_layers):
            for head in range(n_heads):
                ax = axes[b, layer] if n_heads == 1 else axes[b * n_layers + layer, head]
                images.append((ax.imshow(frames[0][1][layer, b, head].numpy(), vmin=0.0, vmax=1.0, cmap="viridis",
                                         interpolation="nearest"), layer, b, head))
                title = f"layer {layer + 1} head {head}" + (f", sequence {b + 1}" if n_seq > 1 else "")
                ax.set(title=title, xlabel="key position s", ylabel="query position t")
                ax.title.set_fontsize(9)
    fig.colorbar(images[0][0], ax=axes, shrink=0.8, label="attention weight")
    heading = fig.suptitle("")

    def draw(i: int) -> None:
        step, patterns = frames[i]
        for image, layer, b, head in images:
            image.set_data(patterns[layer, b, head].numpy())
        heading.set_text(f"{run.path.name}: step {step}" + (" (initialisation)" if i == 0 else "")
                         + f", {t} positions")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    try:
        draw(0)
        fig.canvas.draw()
        fig.set_layout_engine("none")  # every frame has the same layout: compute it once
        writer = PillowWriter(fps=2)
        with writer.saving(fig, path, dpi=GIF_DPI):
            for i in range(len(frames)):
                draw(i)
                writer.grab_frame()
    finally:
        plt.close(fig)
    return path


# ---------------------------------------------------------------------------- both


def trajectory(run_dirs: Sequence[Path], out: Path, labels: Sequence[str] | None = None) -> dict[str, list[str]]:
    """The trajectory figure of all runs and each run's attention GIF in ``out``; the paths written.

    One run: ``attention.gif``; several: ``attention-<run folder name>.gif`` (numbered when names repeat).
    """
    run_dirs = [Path(p) for p in run_dirs]
    load_runs(run_dirs)  # every run exists, has metrics and a checkpoint before anything is drawn
    labels = run_labels(run_dirs, labels)
    for path in run_dirs:
        if not RunDir(path).checkpoint_steps():
            raise _no_checkpoint(path)
    written = {"trajectory": [str(p) for p in draw_trajectory(run_dirs, out, labels=labels)]}
    written["attention"] = [str(animate_attention(path, out, name=name))
                            for path, name in zip(run_dirs, gif_names(run_dirs), strict=True)]
    return written


def gif_names(run_dirs: Sequence[Path]) -> list[str]:
    """``attention.gif`` for one run; ``attention-<folder>.gif`` for several (``-2``, ``-3`` when folders repeat)."""
    if len(run_dirs) == 1:
        return ["attention.gif"]
    names: list[str] = []
    for path in run_dirs:
        stem, n = f"attention-{Path(path).name}", 1
        while (name := stem + (f"-{n}" if n > 1 else "") + ".gif") in names:
            n += 1
        names.append(name)
    return names
