"""``inductionlab bench``: the numbers that say whether the hot paths are fast.

- sampler throughput: sequences/s, one process, T=256, K=5 (docs/science.md §2), and of the
  in-context Markov-chain sampler at k=3, T=100, batch 1024 (§10);
- the median time of one paper-scale training step (sample + forward + backward + update) at
  d=256, T=256, batch 512, K=5 fixed triggers, SGD, 2 layers, ``ape``;
- the same step with interventions (docs/science.md §8): none, one whose window has not opened (the
  fast path, which must cost what no intervention costs), and a layer-1 pattern clamped (the
  hooked path);
- the peak memory of those steps, and the machine's fp32 matmul GFLOP/s for context;
- ``steps_vs_peak`` (``bench_steps.py``): the counted FLOPs, median time and GFLOP/s of the paper-scale step and of
  each quick preset's step, against a GEMM rate measured in the same process, and each preset's evaluation share.

``paper=False`` leaves out the paper-scale training steps (seconds each on a CPU), for a fast comparison.
"""

from __future__ import annotations

import platform
import resource
import statistics
import time

import torch
import yaml

from inductionlab.bench_steps import check_presets, quick_presets, step_runner, steps_vs_peak, sync
from inductionlab.config import RunConfig, validate
from inductionlab.models.names import hook_name
from inductionlab.tasks.build import make_task
from inductionlab.tasks.markov import ICLMarkovSampler
from inductionlab.train import resolve_device

PAPER_SCALE = {
    "name": "bench-paper-scale",
    "data": {"seq_len": 256, "n_triggers": 5, "trigger_mode": "fixed"},
    "model": {"d_model": 256, "n_layers": 2, "pos_enc": "ape"},
    "train": {"optimizer": "sgd", "batch_size": 512, "loss_on": "in-context"},
}


def matmul_gflops(device: torch.device, size: int = 2048, repeats: int = 5) -> float:
    """Measured fp32 GFLOP/s of a square matmul (median of ``repeats``)."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    a @ b
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def _sequences_per_s(sampler, batch: int, device: torch.device, repeats: int) -> float:
    """``batch`` over the median seconds of ``repeats`` draws (after one warm-up draw)."""
    gen = torch.Generator(device=device).manual_seed(0)
    sampler.sample(batch, gen)
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        sampler.sample(batch, gen)
        sync(device)
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def sampler_throughput(device: torch.device, batch: int = 8192, repeats: int = 5) -> dict[str, float]:
    """Sequences per second of the docs/science.md §2 sampler at T=256, K=5 (median of ``repeats``)."""
    task = make_task(validate(PAPER_SCALE), device)
    return {"sequences_per_s": _sequences_per_s(task, batch, device, repeats), "batch": batch, "seq_len": 256,
            "n_triggers": 5}


def icl_mc_sampler_throughput(device: torch.device, batch: int = 1024, repeats: int = 7) -> float:
    """Sequences/s of the in-context Markov-chain sampler at k = 3, T = 100, order 2 (docs/science.md §10)."""
    return _sequences_per_s(ICLMarkovSampler(3, seq_len=100, device=device), batch, device, repeats)


def training_step_time(cfg: RunConfig, device: torch.device, steps: int) -> dict[str, float]:
    """Median seconds of one full training step (after one warm-up step), and peak memory."""
    step = step_runner(cfg, device)  # the trainer's step (train.py), interventions included
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(steps + 1):
        sync(device)
        start = time.perf_counter()
        step(i)
        sync(device)
        if i:
            times.append(time.perf_counter() - start)
    out = {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "steps": steps}
    if device.type == "cuda":
        out["peak_gpu_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def run_benchmarks(device: str = "auto", steps: int = 5, presets: list[str] | None = None, paper: bool = True,
                   threads: int = 1) -> dict:
    """Every figure of the module docstring. ``presets``: the quick presets of ``steps_vs_peak`` (default all);
    ``threads``: torch threads for ``steps_vs_peak`` (restored afterwards; the rest runs with the default)."""
    names = quick_presets() if presets is None else check_presets(presets)
    dev = resolve_device(device)
    result = {
        "machine": {
            "device": str(dev),
            "cpu": platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
            "torch": torch.__version__,
        },
        "matmul_fp32_gflops": matmul_gflops(dev),
        "sampler": sampler_throughput(dev),
        "icl_mc_sampler_seq_per_s": icl_mc_sampler_throughput(dev),
    }
    if paper:
        cfg = validate(PAPER_SCALE)
        step = training_step_time(cfg, dev, steps)
        clamp = f"{{target: {hook_name('pattern', 0)}, op: clamp, pattern: previous-token"
        variants = {"none": step["median_s"]}
        for name, spec in (("window_not_open", clamp + ", start: 1000000}"), ("clamp_layer1", clamp + "}")):
            raw = {**PAPER_SCALE, "interventions": [yaml.safe_load(spec)]}
            variants[name] = training_step_time(validate(raw), dev, steps)["median_s"]
        result["train_step_paper_scale"] = {
            "d_model": 256, "seq_len": 256, "batch_size": 512, "n_triggers": 5, "optimizer": "sgd",
            "n_layers": 2, "pos_enc": "ape", **step,
        }
        result["train_step_interventions_median_s"] = {
            **variants, "ratio_window_not_open_to_none": variants["window_not_open"] / variants["none"],
            "ratio_clamp_layer1_to_none": variants["clamp_layer1"] / variants["none"]}
    peak = steps_vs_peak(dev, steps, names, validate(PAPER_SCALE) if paper else None, threads)
    result["steps_vs_peak"] = peak
    result["quick_median_step_total_ms"] = peak["quick_median_step_total_ms"]
    # ru_maxrss is KiB on Linux: the peak resident memory of this process so far
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result
