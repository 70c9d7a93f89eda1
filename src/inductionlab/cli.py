"""Command line: ``inductionlab train | presets | probe | export | trajectory | patch | experiment | sweep | reproduce |
bench``.

The CLI only parses and calls. Library errors become one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from inductionlab import jsonio
from inductionlab.allocator import keep_freed_memory
from inductionlab.errors import InductionLabError

EXIT_USAGE = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="inductionlab")
def cli() -> None:
    """Induction heads as associative memories: train, probe and benchmark small transformers."""


@cli.command()
@click.argument("preset_or_config")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config field, e.g. --set model.n_layers=1 (repeatable).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run directory (default: runs/NAME). An existing run of the same config resumes.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None, help="Override train.device.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--keep-going", is_flag=True, help="Train on through a non-finite loss or weight (default: stop at "
              "that step, keeping the last finite checkpoint); the summary records the step either way.")
@click.option("--max-memory", default=None, metavar="SIZE", help="Refuse a run whose estimated memory exceeds "
              "SIZE (e.g. 8GiB, 512MB; default: what the device has available).")
def train(preset_or_config: str, overrides: tuple[str, ...], out: str | None, device: str | None,
          quiet: bool, keep_going: bool, max_memory: str | None) -> None:
    """Train PRESET_OR_CONFIG (a preset name or a YAML file) into a run directory."""
    from inductionlab.config import load_config
    from inductionlab.footprint import parse_size
    from inductionlab.tasks.registry import task_class
    from inductionlab.train import train as run_training

    cfg = load_config(preset_or_config, overrides)
    limit = parse_size(max_memory) if max_memory is not None else None
    out_dir = Path(out) if out else Path("runs") / cfg.name
    try:
        summary = run_training(cfg, out_dir, device=device, progress=not quiet, keep_going=keep_going,
                               max_memory=limit)
    except KeyboardInterrupt:
        click.echo(f"interrupted; checkpoint saved in {out_dir}; run the same command to resume", err=True)
        sys.exit(130)
    click.echo(format_summary(summary, out_dir, task_class(cfg.data.task).summary_keys))


def format_summary(summary: dict, out_dir: Path, task_keys: tuple[str, ...]) -> str:
    """The lines ``train`` prints: the step, the task's summary keys (``Task.summary_keys``), the time, the
    milestones the task records (if any) and a divergence."""
    keys = ("step", *task_keys, "elapsed_s")
    lines = [f"run directory: {out_dir}"]
    lines += [f"  {k:28s} {summary[k]:.4f}" if isinstance(summary.get(k), float) else f"  {k:28s} {summary.get(k)}"
              for k in keys if k in summary]
    if summary.get("milestones"):
        lines.append(f"  milestones (first step; docs/science.md §6): {json.dumps(summary['milestones'])}")
    if summary.get("diverged"):
        lines.append(f"  diverged at step {summary['diverged_step']} ({summary['divergence']}); trained on through it")
    return "\n".join(lines)


@cli.command()
def presets() -> None:
    """List the presets with a one-line description."""
    from inductionlab.config import preset_descriptions

    descriptions = preset_descriptions()
    width = max(map(len, descriptions), default=0)
    for name, description in descriptions.items():
        click.echo(f"{name:{width}s}  {description}")


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
def probe(run_dir: str, device: str) -> None:
    """Recompute the memory and attention probes of RUN_DIR's latest checkpoint (JSON)."""
    from inductionlab.interventions import Interventions
    from inductionlab.tasks.build import make_task
    from inductionlab.train import open_trained, resolve_device

    resolve_device(device)  # cuda without a GPU: one line
    cfg, model, step = open_trained(run_dir, device)
    task = make_task(cfg, device)
    batch = task.evaluation_batch(cfg.train.eval_batch_size, cfg.seeds.eval)
    forward = Interventions(cfg.interventions, model).forward(model, step, "eval")  # as the run evaluated
    metrics = task.evaluate(model, batch, cfg.data.seq_len, forward=forward)
    click.echo(jsonio.dumps({"run": run_dir, "step": step, **metrics, **model.kv_shift_scalars()}, indent=2))


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--to", "to", type=click.Choice(["hf", "transformer-lens"]), required=True,
              help="hf: a HuggingFace GPT-2 directory (general transformer, ape or ape-sincos); transformer-lens: the "
              "TL-native model (general transformer, ape, ape-sincos, rope in every layer or none), opened with "
              "inductionlab.interop.tl.load_transformer_lens.")
@click.argument("out", type=click.Path(file_okay=False))
def export(run_dir: str, to: str, out: str) -> None:
    """Write RUN_DIR's trained model into the new folder OUT in another library's format (docs/interop.md)."""
    from inductionlab.interop import hf, tl
    from inductionlab.runs import RunDir
    from inductionlab.tasks.build import make_task
    from inductionlab.train import open_trained

    cfg = RunDir(run_dir).config()
    refusal = (hf.hf_refusal if to == "hf" else tl.tl_refusal)(cfg.model)
    if refusal:
        hint = f"; {tl.ADAPTER}" if to == "transformer-lens" else ""
        raise InductionLabError(f"export --to {to}: {refusal}{hint}")
    target = Path(out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InductionLabError(f"{target}: exists and is not an empty folder; export writes a new one")
    cfg, model, step = open_trained(run_dir)
    if to == "hf":
        hf.export_hf(model, target, getattr(getattr(make_task(cfg, "cpu"), "source", None), "vocab", None))
        opened = "transformers.AutoModelForCausalLM.from_pretrained loads it, and inductionlab.interop.hf.from_hf"
    else:
        tl.export_transformer_lens(model, target)
        opened = "inductionlab.interop.tl.load_transformer_lens opens it as a TransformerBridge"
    click.echo(f"{target}: {run_dir} at step {step}; {opened}")


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for the figures (default: the run directory, or trajectory/ for several runs).")
@click.option("--label", "labels", multiple=True, help="A legend label per run, in order (default: folder names).")
def trajectory(run_dirs: tuple[str, ...], out: str | None, labels: tuple[str, ...]) -> None:
    """Draw RUN_DIRS' progress measures on one time axis (PNG, SVG) and animate their attention (GIF)."""
    from inductionlab.tools.trajectory import trajectory as draw

    out_dir = Path(out) if out else Path(run_dirs[0]) if len(run_dirs) == 1 else Path("trajectory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InductionLabError(f"--out {out_dir}: cannot write there ({err.strerror})") from None
    written = draw([Path(p) for p in run_dirs], out_dir, labels=list(labels) or None)
    for paths in written.values():
        for path in paths:
            click.echo(path)


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for patching.json and the heatmaps (default: RUN_DIR/patching).")
@click.option("--seq-len", type=int, default=None, help="Prompt length T (default: the run's training length).")
@click.option("--pairs", type=int, default=4, show_default=True, help="In-context pairs (a, b) per prompt.")
@click.option("--prompts", type=int, default=64, show_default=True, help="Clean/corrupted prompt pairs.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
              help="Seed of the prompts and the corruption.")
@click.option("--threshold", type=float, default=0.5, show_default=True,
              help="Keep prompts whose clean − corrupted logit gap exceeds this.")
def patch(run_dir: str, out: str | None, seq_len: int | None, pairs: int, prompts: int, seed: int,
          threshold: float) -> None:
    """Activation patching on RUN_DIR's trained model: which layer carries the in-context pairs (docs/science.md §8)."""
    from inductionlab.tools.patching import patch_run

    out_dir = Path(out) if out else Path(run_dir) / "patching"
    result = patch_run(Path(run_dir), out_dir, seq_len=seq_len, n_pairs_in_context=pairs, n_prompts=prompts,
                       seed=seed, threshold=threshold)
    kept = result["prompts"]
    carrier = result.get("carrier")
    click.echo(f"prompts kept: {kept['kept']} of {kept['total']} (clean − corrupted gap > {threshold})")
    if carrier:
        click.echo(f"carrier: {carrier['hook']} restores {carrier['fraction_restored']:.3f} at the last position")
    click.echo(f"written: {out_dir / 'patching.json'}")


def backend_options(func):
    """--backend, --workers, --address: where the runs of a sweep go; --stall-limit: when a silent one is hung."""
    func = click.option("--stall-limit", type=float, default=None, metavar="SECONDS",
                        help="End and resume a run whose worker is silent for longer than this, or than 20 times "
                        "its longest step, evaluation or checkpoint write (default: 300; at least 3).")(func)
    func = click.option("--address", default=None, metavar="HOST:PORT",
                        help="Ray cluster to join (default with --backend ray: start a local Ray instance).")(func)
    func = click.option("--workers", type=int, default=None,
                        help="Runs at once (default: one per CPU core; each gets cores // workers threads).")(func)
    return click.option("--backend", default="local", show_default=True, metavar="local|ray",
                        help="local: a process pool on this machine; ray: a Ray cluster.")(func)


@cli.command()
@click.argument("name")
@click.option("--preset", default="quick", show_default=True, help="quick, paper or smoke.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Results folder (default: results/NAME).")
@backend_options
@click.option("--quiet", is_flag=True, help="No progress bars.")
def experiment(name: str, preset: str, out: str | None, backend: str, workers: int | None, address: str | None,
               stall_limit: float | None, quiet: bool) -> None:
    """Run experiment NAME (birth, hijack, length, nope3, interventions, icl-mc, width, or an import path
    package.module:NAME): train or reuse its runs, write results and figures."""
    from inductionlab.experiments import get_experiment, run_experiment

    out_dir = Path(out) if out else Path("results") / get_experiment(name).name
    run_experiment(name, out_dir, preset, backend=backend, workers=workers, address=address, progress=not quiet,
                   stall_limit=stall_limit)
    click.echo(f"results: {out_dir / 'results.json'}")
    click.echo((out_dir / "README.md").read_text())


@cli.command()
@click.argument("grid", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Sweep folder (runs/ and tables).")
@backend_options
@click.option("--quiet", is_flag=True, help="No progress bar.")
def sweep(grid: str, out: str, backend: str, workers: int | None, address: str | None, stall_limit: float | None,
          quiet: bool) -> None:
    """Run every config × seed of GRID.yaml; write OUT/runs.parquet and OUT/summary.parquet."""
    from inductionlab.sweep import load_grid, run_sweep

    table = run_sweep(load_grid(grid), out, backend=backend, workers=workers, address=address, progress=not quiet,
                      stall_limit=stall_limit)
    diverged = int((table["status"] == "diverged").sum())
    click.echo(f"{len(table)} runs" + (f" ({diverged} diverged, left out of summary.parquet)" if diverged else "")
               + f"; tables: {Path(out) / 'runs.parquet'}, {Path(out) / 'summary.parquet'}")


@cli.command()
@click.argument("experiments", nargs=-1)
@click.option("--preset", default="quick", show_default=True,
              help="quick (about 11 minutes on a fast 2-core CPU; --dry-run estimates it for this machine), paper "
                   "(the papers' sizes, for a GPU), or smoke (a one-minute plumbing check).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder (default: results/PRESET).")
@backend_options
@click.option("--name", default=None, help="Title of the report.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--dry-run", is_flag=True, help="Print the planned runs and their estimated time on this machine "
              "(from a short measurement of each kind of run); train nothing, write nothing.")
@click.option("--reanalyse", is_flag=True, help="Analyse every named experiment again, even one whose results.json "
              "was computed from its runs and the code as they are now (one that was not is analysed again anyway).")
def reproduce(experiments: tuple[str, ...], preset: str, out: str | None, backend: str, workers: int | None,
              address: str | None, stall_limit: float | None, name: str | None, quiet: bool, dry_run: bool,
              reanalyse: bool) -> None:
    """Reproduce EXPERIMENTS (default: all of them) and write report.html and results.json."""
    from inductionlab.experiments import EXPERIMENTS
    from inductionlab.experiments.kit.checks import failed_checks
    from inductionlab.experiments.kit.claims import VERDICTS
    from inductionlab.reproduce import reproduce as run_reproduce

    if dry_run:
        from inductionlab.estimate import format_estimate
        from inductionlab.reproduce import dry_run as plan_only
        from inductionlab.train import resolve_device

        click.echo(format_estimate(plan_only(preset, experiments or EXPERIMENTS, workers=workers),
                                   str(resolve_device("auto"))))
        return

    out_dir = Path(out) if out else Path("results") / preset
    try:
        results = run_reproduce(out_dir, preset, experiments or EXPERIMENTS, backend=backend, workers=workers,
                                address=address, name=name, progress=not quiet, reanalyse=reanalyse,
                                stall_limit=stall_limit)
    except KeyboardInterrupt:
        click.echo(f"interrupted; finished runs are kept in {out_dir}; run the same command to finish", err=True)
        sys.exit(130)
    for exp, res in results["experiments"].items():
        verdicts, checks = [c["verdict"] for c in res.get("claims", [])], res.get("checks", [])
        click.echo(f"{exp:13s} " + ", ".join(f"{verdicts.count(v)} {v}" for v in VERDICTS)
                   + (f"; checks {sum(c['passed'] for c in checks)}/{len(checks)} passed" if checks else "")
                   + (" (analysis stopped)" if "error" in res else ""))
    click.echo(f"report: {out_dir / 'report.html'}")
    stopped = [f"{exp}: {res['error']}" for exp, res in results["experiments"].items() if "error" in res]
    if stopped:
        raise InductionLabError(f"{len(stopped)} analysis stopped ({'; '.join(stopped)}); the report has the others")
    failed = failed_checks(results["experiments"])
    if failed:
        raise InductionLabError(f"{len(failed)} check{'s' if len(failed) > 1 else ''} that hold by construction "
                                f"failed, so the code or the setting is wrong: {'; '.join(failed)}")


@cli.command()
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also write the JSON here.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--steps", default=5, show_default=True, type=click.IntRange(min=1),
              help="Timed training steps (after one warm-up; at least 20 for a quick preset's step).")
@click.option("--presets", default=None, metavar="NAME,...",
              help="Quick presets whose step is measured against the GEMM peak (default: every *-quick preset).")
@click.option("--no-paper", is_flag=True, help="Skip the paper-scale training steps (a fast comparison on a CPU).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1),
              help="Torch threads for the steps measured against the GEMM peak (restored afterwards).")
def bench(out: str | None, device: str, steps: int, presets: str | None, no_paper: bool, threads: int) -> None:
    """Sampler throughput, paper-scale training-step time, peak memory, matmul GFLOP/s, and each step's counted
    FLOPs, time and GFLOP/s against a GEMM measured here (JSON on stdout; that table on stderr)."""
    from inductionlab.bench import run_benchmarks
    from inductionlab.bench_steps import format_table, parse_presets

    names = parse_presets(presets)  # a bad name: one line, before anything is measured
    result = run_benchmarks(device=device, steps=steps, presets=names, paper=not no_paper, threads=threads)
    click.echo(format_table(result["steps_vs_peak"]), err=True)
    text = jsonio.dumps(result, indent=2)
    if out:
        try:
            Path(out).write_text(text + "\n")
        except OSError as err:
            raise InductionLabError(f"{out}: cannot write ({err.strerror})") from None
    click.echo(text)


def main(argv: list[str] | None = None) -> None:
    """Entry point: one line per error, exit code 2, never a traceback for bad input."""
    keep_freed_memory()  # the training and analyses of this process reuse freed tensor memory (allocator.py)
    try:
        cli.main(args=argv, prog_name="inductionlab", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        click.echo(f"error: {one_line(err.format_message())}", err=True)
        sys.exit(EXIT_USAGE)
    except InductionLabError as err:
        click.echo(f"error: {one_line(str(err))}", err=True)
        sys.exit(EXIT_USAGE)
    except OSError as err:  # a full disk, a read-only folder: the file and the reason, nothing else
        where = f"{err.filename}: " if err.filename else ""
        click.echo(f"error: {one_line(where + (err.strerror or str(err)))}", err=True)
        sys.exit(EXIT_USAGE)
    except ValueError as err:
        if "null byte" not in str(err):  # a path with a NUL character (from a config value): no file has one
            raise
        click.echo("error: a file name contains a NUL character", err=True)
        sys.exit(EXIT_USAGE)


def one_line(message: str) -> str:
    """``message`` on one line: line breaks and other unprintable characters (from user input) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


if __name__ == "__main__":
    main()
