"""Each training step against this machine's own peak (``inductionlab bench``, ``steps_vs_peak``).

For the paper-scale step (``bench.PAPER_SCALE``) and for each ``*-quick`` preset, with ``threads`` torch threads
(one by default, as a sweep worker on a 2-core machine trains; the count before is restored afterwards):

- the FLOPs of one training step (sample + forward + backward + optimiser step, interventions included: the
  trainer's step, :func:`step_runner`) counted by ``torch.utils.flop_counter.FlopCounterMode``;
- the median milliseconds of a step, after a warm-up step and the counted step;
- the achieved GFLOP/s (counted FLOPs over the median time) and its fraction of :func:`gemm_gflops`, a float32
  4096×256 @ 256×256 matmul timed in the same process with the same threads. The fraction is a diagnostic, not
  an efficiency: the counter counts matrix products only (``mm``, ``bmm``, …), never gathers, table lookups,
  element-wise work or the sampler, so turning a product into a lookup lowers the counted FLOPs and can lower
  the fraction while the step gets faster; the time per step is the figure to compare;
- the share of a run's estimated time spent in evaluations and probe rows: ``estimate.py``'s cost model
  (:func:`inductionlab.estimate.measure`, :func:`inductionlab.estimate.run_seconds`) on the preset's own
  schedule. The paper-scale step is no preset and has no schedule: its share is ``None``.

Each quick preset file is one run config (``config.load_config(NAME)``), so the measured config is the
preset itself: the base that the experiments' quick runs override (seeds, positional encodings, arms).
``quick_median_step_total_ms``, the sum over the measured quick presets of the median ms/step, is one figure to
compare two commits by (measured with the same presets and threads).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from inductionlab.config import RunConfig, load_config, preset_names
from inductionlab.errors import ConfigError
from inductionlab.estimate import RunCost, measure, run_seconds
from inductionlab.evaluation import training_loss
from inductionlab.interventions import Interventions
from inductionlab.models.build import build_model
from inductionlab.tasks.build import make_task
from inductionlab.train import make_optimizer

QUICK_SUFFIX = "-quick"
GEMM_SHAPE = (4096, 256, 256)  # (m, k, n): a (m, k) @ (k, n) product, the size of a quick step's projections
PRESET_MIN_STEPS = 20  # a quick step takes milliseconds: time at least this many for a steady median
PAPER_ROW = "paper-scale"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_runner(cfg: RunConfig, device: torch.device) -> Callable[[int], None]:
    """One training step of ``cfg`` on ``device`` as the trainer takes it (train.py), interventions included: call
    it with the step index. The model, optimiser and data generator are built once and kept between calls."""
    task = make_task(cfg, device)
    model = build_model(cfg.model, task.n_tokens, cfg.seeds.init).to(device)
    interventions = Interventions(cfg.interventions, model)
    optimizer = make_optimizer(cfg, model)
    gen = torch.Generator(device=device).manual_seed(cfg.seeds.data)

    def step(i: int) -> None:
        batch = task.sample(cfg.train.batch_size, gen)
        interventions.hold(model, i)
        loss = training_loss(interventions.forward(model, i, "train"), batch, cfg.train.loss_on)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        interventions.drop_gradients(model, i, optimizer)
        optimizer.step()

    return step


def count_flops(fn: Callable[[], Any]) -> int:
    """The FLOPs ``torch.utils.flop_counter`` counts while ``fn()`` runs (matrix products; 2 per multiply-add)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def gemm_gflops(device: torch.device, shape: tuple[int, int, int] = GEMM_SHAPE, repeats: int = 15) -> float:
    """Measured float32 GFLOP/s of an ``(m, k) @ (k, n)`` matmul: the median of ``repeats`` after one warm-up."""
    m, k, n = shape
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(m, k, device=device, generator=gen)
    b = torch.randn(k, n, device=device, generator=gen)
    a @ b
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - start)
    return 2 * m * k * n / statistics.median(times) / 1e9


def fraction(achieved_gflops: float, peak_gflops: float) -> float:
    """``achieved / peak``: the step's counted rate as a fraction of the measured GEMM rate."""
    if peak_gflops <= 0:
        raise ValueError(f"peak GFLOP/s must be positive, got {peak_gflops}")
    return achieved_gflops / peak_gflops


def eval_share(cfg: RunConfig, cost: RunCost) -> float:
    """The fraction of ``cfg``'s estimated run time spent in evaluations and probe rows (``estimate.py``'s model:
    its schedule and the measured ``cost``)."""
    train_s, eval_s = run_seconds(cfg, cost)
    total = train_s + eval_s
    return eval_s / total if total > 0 else 0.0


def measure_step(cfg: RunConfig, device: torch.device, steps: int, peak_gflops: float) -> dict[str, float]:
    """Counted GFLOP of one step, the median ms/step of ``steps`` timed steps (after a warm-up step and the
    counted step), the achieved GFLOP/s and its fraction of ``peak_gflops``."""
    step = step_runner(cfg, device)
    step(0)  # warm-up
    flops = count_flops(lambda: step(1))
    times = []
    for i in range(2, steps + 2):
        sync(device)
        start = time.perf_counter()
        step(i)
        sync(device)
        times.append(time.perf_counter() - start)
    median_s = statistics.median(times)
    achieved = flops / median_s / 1e9
    return {"gflop_per_step": flops / 1e9, "median_ms": median_s * 1e3, "steps": steps, "gflops": achieved,
            "fraction_of_gemm": fraction(achieved, peak_gflops)}


def quick_presets() -> list[str]:
    """Every ``*-quick`` preset, sorted."""
    return [name for name in preset_names() if name.endswith(QUICK_SUFFIX)]


def check_presets(names: Iterable[str]) -> list[str]:
    """``names`` without repeats, each a quick preset; an unknown name (or none at all) is a ConfigError."""
    known = quick_presets()
    names = list(dict.fromkeys(names))
    if not names:
        raise ConfigError(f"--presets: name at least one quick preset ({', '.join(known)})")
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(f"--presets: unknown quick preset {unknown[0]!r}; quick presets: {', '.join(known)}")
    return names


def parse_presets(text: str | None) -> list[str]:
    """``--presets NAME,...`` → the quick presets named (``None``: every quick preset)."""
    if text is None:
        return quick_presets()
    return check_presets(name.strip() for name in text.split(",") if name.strip())


def steps_vs_peak(device: torch.device, steps: int, presets: Iterable[str], paper: RunConfig | None,
                  threads: int = 1) -> dict[str, Any]:
    """The table of the module docstring: one row for ``paper`` (when given) and one per preset."""
    names = list(presets)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        peak = gemm_gflops(device)
        rows = []
        if paper is not None:
            rows.append({"preset": PAPER_ROW, **measure_step(paper, device, steps, peak), "eval_probe_share": None})
        for name in names:
            cfg = load_config(name, (f"train.device={device.type}",))
            row = measure_step(cfg, device, max(steps, PRESET_MIN_STEPS), peak)
            rows.append({"preset": name, **row, "eval_probe_share": eval_share(cfg, measure(cfg, threads))})
    finally:
        torch.set_num_threads(before)
    quick = [row["median_ms"] for row in rows if row["preset"] != PAPER_ROW]
    return {"threads": threads, "gemm_shape": list(GEMM_SHAPE), "gemm_gflops": peak, "rows": rows,
            "quick_presets": names, "quick_median_step_total_ms": sum(quick) if quick else None}


def format_table(result: dict[str, Any]) -> str:
    """``steps_vs_peak``'s result as a text table, one line per row, then the GEMM rate and the total."""
    header = (f"{'preset':22s} {'GFLOP/step':>10s} {'ms/step':>9s} {'GFLOP/s':>8s} {'of GEMM':>8s} "
              f"{'eval+probes':>11s}")
    lines = [header]
    for r in result["rows"]:
        share = "–" if r["eval_probe_share"] is None else f"{r['eval_probe_share']:.1%}"
        lines.append(f"{r['preset']:22s} {r['gflop_per_step']:10.3f} {r['median_ms']:9.1f} {r['gflops']:8.1f} "
                     f"{r['fraction_of_gemm']:8.1%} {share:>11s}")
    m, k, n = result["gemm_shape"]
    lines.append(f"float32 GEMM {m}×{k} @ {k}×{n}: {result['gemm_gflops']:.1f} GFLOP/s; {result['threads']} "
                 f"thread(s)")
    if result["quick_median_step_total_ms"] is not None:
        lines.append(f"quick presets, sum of median ms/step: {result['quick_median_step_total_ms']:.1f}")
    return "\n".join(lines)
