"""The training loop: sample, forward, backward, update; evaluate and checkpoint on a schedule.

The task (``data.task``) is read only through its :class:`~inductionlab.tasks.base.Task`: it samples the
batches, says which targets the loss reads (``loss_mask``), evaluates, and names the metrics the progress bar
and the milestones follow. Three seeds keep the randomness apart: ``seeds.init`` builds the model,
``seeds.data`` drives the training batches, ``seeds.eval`` draws the fixed evaluation batch. A run
resumes from its latest checkpoint with the model, optimiser and data-RNG state restored, so an
interrupted run ends with exactly the weights and metrics of an uninterrupted one.

A non-finite training loss or weight stops the run at that step (:class:`DivergenceError`): no
checkpoint is written from then on, so the last one holds finite weights, and ``summary.json``
records the run as diverged with the step and the cause. ``keep_going=True`` trains on through it
(to study the instability); its checkpoints then say whether their weights are finite, and the newest
finite one is never pruned.

Runs that differ only in how long they train and how they are evaluated and checkpointed (``train.steps``,
``eval_every``, ``eval_dense_until``, ``eval_batch_size``, ``probe_every``, ``checkpoint_every``,
``keep_checkpoints``, ``seeds.eval``) follow the same trajectory: the shorter one is its first steps. Such
*followers* (:func:`shared_trajectory`) ride along a leader's training (``train(..., followers=...)``): they
share its model, optimiser, data generator and counts, and log, checkpoint and finish on their own schedule,
into their own run directories, exactly as if trained alone.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from inductionlab.config import RunConfig
from inductionlab.curves import first_crossing
from inductionlab.errors import CheckpointError, ConfigError, DivergenceError, RunDirError, RunInUseError
from inductionlab.evaluation import training_loss
from inductionlab.footprint import check_memory
from inductionlab.heartbeat import Heartbeat
from inductionlab.interventions import Interventions
from inductionlab.models.build import build_model
from inductionlab.models.names import ABSOLUTE_ENCODINGS, RELATIVE_ENCODINGS
from inductionlab.runs import METRICS_VERSION, RunDir, hold_run
from inductionlab.tasks.base import EVALUATION_KEY, Batch, Milestones, Task
from inductionlab.tasks.build import make_task


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' requested but no CUDA device is available; use auto or cpu")
    return torch.device(name)


# hyper-parameters only this optimiser's param groups hold (not those a newer torch may add to every optimiser)
OPTIMIZER_KEYS = {"SGD": ("momentum", "dampening", "nesterov"), "AdamW": ("betas", "eps", "amsgrad")}


def check_optimizer_state(optimizer: torch.optim.Optimizer, groups: list[dict[str, Any]],
                          state: dict[int, dict[str, torch.Tensor]], where: str) -> None:
    """CheckpointError, one line, when a checkpoint's optimiser state (``groups``: its hyper-parameters; ``state``:
    its tensors per parameter) is not one ``optimizer`` can resume from: another optimiser's (AdamW's moments in
    an SGD run), or tensors of other shapes than the parameters they belong to."""
    name = type(optimizer).__name__
    params = [p for group in optimizer.param_groups for p in group["params"]]
    expected = set(OPTIMIZER_KEYS.get(name, ()))
    for group in groups:
        kept = set(group) - {"params"}
        if not expected <= kept:
            missing = ", ".join(sorted(expected - kept))
            raise CheckpointError(f"{where}: its optimiser state is not {name}'s (no {missing}); train.optimizer "
                                  "differs from the run's: train it into a new folder")
    if sum(len(group["params"]) for group in groups) != len(params) or any(i >= len(params) for i in state):
        raise CheckpointError(f"{where}: its optimiser state covers other parameters than this model's trained "
                              f"ones ({len(params)}); model.trained differs from the run's: train it into a new folder")
    for i, tensors in state.items():
        for key, value in tensors.items():
            if value.dim() and value.shape != params[i].shape:
                raise CheckpointError(f"{where}: optimiser tensor {key} of parameter {i} has shape "
                                      f"{tuple(value.shape)}, the parameter {tuple(params[i].shape)}")


def make_optimizer(cfg: RunConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    t = cfg.train
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("model.trained: no matrix is trained; name at least one (e.g. [wk1, wk2, wo2])")
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    # fused: one kernel for every parameter's update instead of a dozen small operations each
    return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay, betas=(t.momentum, 0.999), fused=True)


@dataclass
class Trainer:
    """Everything a run needs in memory; built by :func:`prepare`."""

    cfg: RunConfig
    run: RunDir
    device: torch.device
    task: Task
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    data_rng: torch.Generator
    eval_batch: Batch
    interventions: Interventions
    # the task's counts (Task.count) summed over all training batches so far (checkpointed, so a resumed run
    # reports the same shares); empty when the task counts nothing
    train_counts: torch.Tensor
    step: int = 0
    pulse: Heartbeat | None = None  # the sweep's view of this run's progress (heartbeat.py), in a sweep worker

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        for idx, state in self.optimizer.state_dict()["state"].items():
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optim.{idx}.{key}"] = value
        tensors["rng.data"] = self.data_rng.get_state()
        if self.task.n_counts:
            tensors["stats.train_counts"] = self.train_counts
        return tensors

    # the first step whose loss or weights were not finite, and why (kept going with keep_going=True)
    diverged: tuple[int, str] | None = None

    def save(self) -> None:
        groups = self.optimizer.state_dict()["param_groups"]
        state = {"param_groups": groups, "finite": self.nonfinite_weights() == [],
                 "diverged": list(self.diverged) if self.diverged else None}
        self.run.save_checkpoint(self.step, self.checkpoint_tensors(), state, keep=self.cfg.train.keep_checkpoints)

    def nonfinite_weights(self) -> list[str]:
        """Names of the trained weights holding a NaN or an infinity (one synchronisation when none does)."""
        named = [(name, p) for name, p in self.model.named_parameters() if p.requires_grad]
        if bool(torch.stack([torch.isfinite(p).all() for _, p in named]).all()):
            return []
        return [name for name, p in named if not bool(torch.isfinite(p).all())]

    def divergence(self, loss: float) -> str | None:
        """Why the step just taken diverged (its loss, then the weights it produced), or None."""
        if not math.isfinite(loss):
            return f"training loss {loss}"
        bad = self.nonfinite_weights()
        return f"non-finite weights in {', '.join(bad)}" if bad else None

    def restore(self) -> None:
        """Load the latest checkpoint and drop metrics logged after it."""
        tensors, state = self.run.load_checkpoint()
        try:
            model_state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
            self.model.load_state_dict(model_state)
            optim_state: dict[int, dict[str, torch.Tensor]] = {}
            for key, value in tensors.items():
                if key.startswith("optim."):
                    _, idx, name = key.split(".", 2)
                    optim_state.setdefault(int(idx), {})[name] = value
            check_optimizer_state(self.optimizer, state["param_groups"], optim_state, str(self.run.checkpoint_dir))
            # how the update is computed (fused, foreach) is this code's choice, not the checkpoint's
            implementation = [{k: g[k] for k in ("fused", "foreach") if k in g} for g in self.optimizer.param_groups]
            self.optimizer.load_state_dict({"state": optim_state, "param_groups": state["param_groups"]})
            for group, keep in zip(self.optimizer.param_groups, implementation, strict=True):
                group.update(keep)
            self.data_rng.set_state(tensors["rng.data"])
            if self.task.n_counts:
                self.train_counts = tensors["stats.train_counts"].clone()
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            raise CheckpointError(f"{self.run.checkpoint_dir}: checkpoint does not fit this run ({err})") from None
        self.step = int(state["step"])
        diverged = state.get("diverged")
        try:
            self.diverged = (int(diverged[0]), str(diverged[1])) if diverged else None
        except (TypeError, IndexError, ValueError):
            raise CheckpointError(f"{self.run.checkpoint_dir}: corrupt checkpoint state (diverged: "
                                  f"{diverged!r})") from None
        self.run.truncate_metrics(self.step)  # also rewrites a last line cut short by a kill

    def train_step(self) -> float:
        batch = self.task.sample(self.cfg.train.batch_size, self.data_rng)
        if self.task.n_counts:
            self.train_counts += self.task.count(batch)
        self.interventions.hold(self.model, self.step)
        loss = training_loss(self.interventions.forward(self.model, self.step, "train"), batch, self.cfg.train.loss_on)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.interventions.drop_gradients(self.model, self.step, self.optimizer)
        self.optimizer.step()
        self.step += 1
        return loss.item()

    def log_probes(self, train_loss: float, elapsed: float) -> None:
        """A metrics row with the task's weight-space probes only (``train.probe_every``): no data needed; no row
        when the task and the model have none."""
        probes = self.task.weight_probes(self.model, self.cfg.data.seq_len, eval_len=self.eval_batch.inputs.shape[1])
        probes |= self.model.kv_shift_scalars()  # KV-shifting attention's scalars (docs/science.md §3.3)
        if probes:
            self.run.append_metrics({"step": self.step, "train_loss": train_loss, "elapsed_s": round(elapsed, 3),
                                     **probes})

    def log_eval(self, train_loss: float | None, elapsed: float) -> dict[str, Any]:
        self.model.eval()
        forward = self.interventions.forward(self.model, self.step, "eval")
        metrics = self.task.evaluate(self.model, self.eval_batch, self.cfg.data.seq_len, forward=forward)
        self.model.train()
        if EVALUATION_KEY not in metrics:
            raise ConfigError(f"data.task: {type(self.task).__name__}.evaluate logs no {EVALUATION_KEY!r} (the loss on "
                              "the in-context targets), by which every evaluation row is known; add it")
        row = {"step": self.step, "train_loss": train_loss, "elapsed_s": round(elapsed, 3), **metrics,
               **self.task.count_metrics(self.train_counts.tolist()), **self.model.kv_shift_scalars()}
        self.run.append_metrics(row)
        return row


def open_run(cfg: RunConfig, out: str | Path, device: str | None = None, max_memory: int | None = None,
             held: ExitStack | None = None) -> tuple[RunDir, torch.device]:
    """The run directory ``out`` for ``cfg`` (new, or an existing run of the same config) and the device; a run
    whose estimated memory exceeds the device's (or ``max_memory`` bytes) is refused before the directory is
    made or anything is allocated. With ``held``, the folder is this process's until ``held`` closes
    (:func:`~inductionlab.runs.hold_run`: a run another process trains is refused before anything is written)."""
    dev = resolve_device(device or cfg.train.device)
    check_memory(cfg, dev, max_memory)
    if held is not None:
        held.enter_context(hold_run(out))
    return RunDir.create(out, cfg), dev


def prepare(cfg: RunConfig, out: str | Path, device: str | None = None, max_memory: int | None = None) -> Trainer:
    """Open (or resume) the run directory ``out`` for ``cfg`` (:func:`open_run`) and build the trainer."""
    return build_trainer(cfg, *open_run(cfg, out, device, max_memory))


def build_trainer(cfg: RunConfig, run: RunDir, dev: torch.device) -> Trainer:
    """The task, model, optimiser and data of ``cfg`` on ``dev``, resumed from ``run``'s latest checkpoint."""
    task = make_task(cfg, dev)
    model = build_model(cfg.model, task.n_tokens, cfg.seeds.init).to(dev)
    interventions = Interventions(cfg.interventions, model)  # before a checkpoint loads: `init` is the init
    optimizer = make_optimizer(cfg, model)
    data_rng = torch.Generator(device=dev).manual_seed(cfg.seeds.data)
    eval_batch = task.evaluation_batch(cfg.train.eval_batch_size, cfg.seeds.eval)
    trainer = Trainer(cfg, run, dev, task, model, optimizer, data_rng, eval_batch, interventions,
                      torch.zeros(task.n_counts, dtype=torch.int64))
    if run.latest_step() is not None:
        trainer.restore()
    elif run.metrics():  # stopped before its first checkpoint: start over
        run.truncate_metrics(-1)
    interventions.hold(model, trainer.step)  # a matrix frozen from this step holds its value from now on
    return trainer


def diverged_message(run: RunDir, step: int, cause: str) -> str:
    """The one line a diverged run ends with."""
    last = run.latest_step()
    kept = f"its last checkpoint (step {last}) holds finite weights" if last is not None else "no checkpoint was kept"
    return (f"{run.path}: diverged at step {step} ({cause}); {kept}; lower train.lr, or train with --keep-going to "
            "study the instability")


def train(
    cfg: RunConfig,
    out: str | Path,
    *,
    device: str | None = None,
    stop_after: int | None = None,
    progress: bool = True,
    keep_going: bool = False,
    max_memory: int | None = None,
    followers: tuple[tuple[RunConfig, str | Path], ...] = (),
    heartbeat: bool = False,
) -> dict[str, Any]:
    """Train ``cfg`` into run directory ``out``; resume if it holds a checkpoint.

    ``stop_after`` ends the run early at that step (with a checkpoint), as an interruption would.
    Returns the summary (final metrics); a finished run returns its summary without training. A
    non-finite loss or weight raises :class:`DivergenceError` (see the module docstring), also when
    the run is started again, unless ``keep_going``. ``max_memory`` (bytes) caps the estimated memory
    (:mod:`~inductionlab.footprint`; the device's available memory caps it anyway). ``followers``: runs
    ``(config, directory)`` on this run's trajectory (:func:`shared_trajectory`) that log, checkpoint and
    finish along the way; one that cannot join (finished, checkpointed at another step, or trained by another
    process) is left alone. One process trains a run folder at a time: another process training ``out`` (or a
    follower's folder) meanwhile is refused in one line (:func:`~inductionlab.runs.hold_run`). ``heartbeat``:
    write ``out/heartbeat.json`` for the sweep waiting on this run (heartbeat.py).
    """
    with ExitStack() as held:
        return _train(cfg, out, held, device=device, stop_after=stop_after, progress=progress, keep_going=keep_going,
                      max_memory=max_memory, followers=followers, heartbeat=heartbeat)


def _train(cfg: RunConfig, out: str | Path, held: ExitStack, *, device: str | None, stop_after: int | None,
           progress: bool, keep_going: bool, max_memory: int | None,
           followers: tuple[tuple[RunConfig, str | Path], ...], heartbeat: bool) -> dict[str, Any]:
    """:func:`train`, holding its folders in ``held``."""
    run, dev = open_run(cfg, out, device, max_memory, held)
    finished = run.summary()
    if finished is not None and finished.get("finished"):
        return finished
    if finished is not None and finished.get("diverged"):
        step, cause = finished.get("diverged_step"), finished.get("divergence", "cause not recorded")
        if not keep_going:
            raise DivergenceError(diverged_message(run, step, cause), step if isinstance(step, int) else -1)
        run.summary_path.unlink()  # trained on from the last finite checkpoint, through the divergence
    trainer = build_trainer(cfg, run, dev)
    if heartbeat:
        trainer.pulse = Heartbeat(run.path)
        held.callback(trainer.pulse.stop)
        trainer.pulse.write(trainer.step)
    if trainer.diverged is not None and not keep_going:  # resumed after an interrupted --keep-going run
        raise DivergenceError(diverged_message(trainer.run, *trainer.diverged), trainer.diverged[0])
    run, t = trainer.run, cfg.train
    riders = [] if keep_going else _riders(trainer, followers, max_memory, held)
    start = time.perf_counter()
    elapsed_before = run.metrics()[-1].get("elapsed_s") or 0.0 if run.metrics() else 0.0
    for tr in (trainer, *riders):
        if tr.step == 0 and not tr.run.metrics():
            tr.log_eval(None, 0.0)
            tr.save()  # the initialisation: a run that diverges early still keeps finite weights
    last = t.steps if stop_after is None else min(stop_after, t.steps)
    bar = tqdm(total=t.steps, initial=trainer.step, desc=cfg.name, disable=not progress, unit="step",
               dynamic_ncols=True, leave=False)
    try:
        while trainer.step < last:
            try:
                loss, cause = trainer.train_step(), None
            except RuntimeError as err:  # an update too large for float32 (lr × gradient)
                if "overflow" not in str(err):
                    raise
                trainer.step += 1
                loss, cause = math.inf, f"the update overflowed float32 ({str(err).splitlines()[0]})"
            bar.update(1)
            cause = cause or (trainer.divergence(loss) if trainer.diverged is None else None)
            if cause is not None:
                trainer.diverged = (trainer.step, cause)
                if not keep_going:
                    _stop_diverged(trainer, loss, cause, elapsed_before + time.perf_counter() - start)
            elapsed = elapsed_before + time.perf_counter() - start
            _beat(trainer)
            row = _log_step(trainer, loss, elapsed, last)
            if row is not None:
                shown = {label: row.get(key) for label, key in trainer.task.progress_keys.items()}
                bar.set_postfix(loss=f"{loss:.3f}", **{k: f"{v:.3f}" for k, v in shown.items() if v is not None})
            for rider in list(riders):
                rider.step = trainer.step
                _log_step(rider, loss, elapsed, rider.cfg.train.steps)
                if rider.step == rider.cfg.train.steps:
                    _finish(rider, trained_along=cfg.name)
                    riders.remove(rider)
    except KeyboardInterrupt:
        for tr in (trainer, *riders):
            tr.save()
        raise
    finally:
        bar.close()
    if trainer.step < t.steps:
        for rider in riders:  # stopped early: the riders checkpoint here too, to go on in step with it
            rider.save()
        return {"step": trainer.step, "finished": False}
    return _finish(trainer)


def _log_step(trainer: Trainer, loss: float, elapsed: float, last: int) -> dict[str, Any] | None:
    """The evaluation or probe row and the checkpoint the schedule asks for at ``trainer.step``; the evaluation
    row, if one was logged."""
    t, step, row = trainer.cfg.train, trainer.step, None
    if step % t.eval_every == 0 or step <= t.eval_dense_until or step == t.steps:
        row = trainer.log_eval(loss, elapsed)
        _beat(trainer)
    elif t.probe_every and step % t.probe_every == 0:
        trainer.log_probes(loss, elapsed)
        _beat(trainer)
    if step % t.checkpoint_every == 0 or step == last:
        trainer.save()
        _beat(trainer)
    return row


def _beat(trainer: Trainer) -> None:
    if trainer.pulse is not None:
        trainer.pulse.beat(trainer.step)


def _finish(trainer: Trainer, trained_along: str | None = None) -> dict[str, Any]:
    """Write and return the summary of a run that reached its last step."""
    run = trainer.run
    summary = {"name": trainer.cfg.name, "finished": True, "device": str(trainer.device), **run.metrics()[-1]}
    summary["milestones"] = milestones(run.metrics(), trainer.task.milestones)
    if trained_along is not None:
        summary["trained_along"] = trained_along  # the run whose training it shared (its first steps)
    if trainer.diverged is not None:
        summary.update(diverged=True, diverged_step=trainer.diverged[0], divergence=trainer.diverged[1])
    run.write_summary(summary)
    return summary


TRAJECTORY_FREE = ("steps", "eval_every", "eval_dense_until", "eval_batch_size", "probe_every", "checkpoint_every",
                   "keep_checkpoints")  # train fields that change how a run is watched, not the weights it reaches


def shared_trajectory(cfg: RunConfig) -> str | None:
    """A key equal for runs that follow the same trajectory step by step (they differ only in
    :data:`TRAJECTORY_FREE`, ``seeds.eval``, name and description, ``model.max_len`` where no absolute encoding
    and ``model.max_rel_dist`` where no relative one reads it), or None for a run with interventions (they act
    on the run's own model)."""
    if cfg.interventions:
        return None
    raw = cfg.model_dump(mode="json")
    for key in ("name", "description"):
        raw.pop(key)
    if cfg.model.pos_enc not in ABSOLUTE_ENCODINGS:
        raw["model"].pop("max_len")
    if cfg.model.pos_enc not in RELATIVE_ENCODINGS:
        raw["model"].pop("max_rel_dist")
    for key in TRAJECTORY_FREE:
        raw["train"].pop(key)
    raw["seeds"].pop("eval")
    return json.dumps(raw, sort_keys=True)


def _riders(leader: Trainer, followers, max_memory: int | None, held: ExitStack) -> list[Trainer]:
    """The trainers of ``followers`` that join ``leader`` now: unfinished, at the leader's step, no longer than
    it, not trained by another process (a follower that cannot join is left for a run of its own); each shares
    the leader's model, optimiser, data generator and counts. Their folders are held in ``held``."""
    riders, key = [], shared_trajectory(leader.cfg)
    for cfg, out in followers:
        if key is None or shared_trajectory(cfg) != key:
            raise ConfigError(f"{cfg.name}: does not follow the trajectory of {leader.cfg.name}")
        try:
            run, _ = open_run(cfg, out, str(leader.device), max_memory, held)
        except RunInUseError:
            continue
        done = run.summary()
        if done is not None and (done.get("finished") or done.get("diverged")):
            continue
        rider = build_trainer(cfg, run, leader.device)
        if rider.step != leader.step or cfg.train.steps > leader.cfg.train.steps or rider.diverged is not None:
            continue  # trained on its own afterwards (the sweep sees it unfinished)
        rider.model, rider.optimizer, rider.data_rng = leader.model, leader.optimizer, leader.data_rng
        rider.train_counts = leader.train_counts
        riders.append(rider)
    return riders


def _stop_diverged(trainer: Trainer, loss: float, cause: str, elapsed: float) -> None:
    """Log the diverged step, record the run as diverged (no checkpoint: the last one stays finite), raise."""
    run, step = trainer.run, trainer.step
    run.append_metrics({"step": step, "train_loss": loss, "elapsed_s": round(elapsed, 3), "diverged": cause})
    run.write_summary({"name": trainer.cfg.name, "finished": False, "diverged": True, "diverged_step": step,
                       "divergence": cause, "last_checkpoint": run.latest_step(),
                       "metrics_version": METRICS_VERSION})
    raise DivergenceError(diverged_message(run, step, cause), step)


def milestones(rows: list[dict[str, Any]], keys: Milestones, level: float = 0.9) -> dict[str, int | None]:
    """When things happen in a run, from its logged metrics (docs/science.md §6 "birth"); the task names the keys.

    ``keys.reached`` (for the bigram task ``wo``, ``wk2``, ``wk1``, ``acc_in_context``): the first logged step at
    which each reaches ``level``. ``<key>_fell`` for each of ``keys.fell`` (``loss_global``): the first step at
    which it has made 90% of its total fall; ``<key>_rose`` for each of ``keys.rose`` (``acc_in_context``): the
    first step at which it has made half of its total rise (over the rows that log it: evaluation rows).
    """
    out: dict[str, int | None] = {}
    for key in keys.reached:
        out[key] = first_crossing(rows, key, level)
    for key, share, name in [(k, 0.1, f"{k}_fell") for k in keys.fell] + [(k, 0.5, f"{k}_rose") for k in keys.rose]:
        logged = [r for r in rows if key in r]  # probe-only rows hold weight probes alone
        if not logged or logged[0].get(key) is None or logged[-1].get(key) is None:
            continue
        first, last = logged[0][key], logged[-1][key]
        fell = name.endswith("_fell")
        target = last + share * (first - last) if fell else first + share * (last - first)
        out[name] = first_crossing(logged, key, target, below=fell)
    return out


def open_trained(run_dir: str | Path, device: str = "cpu") -> tuple[RunConfig, torch.nn.Module, int]:
    """The config and model of a run directory at its latest checkpoint (no optimiser)."""
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise RunDirError(f"{run.path}: no such run directory")
    cfg = run.config()
    n_tokens = cfg.data.n_tokens
    model = build_model(cfg.model, n_tokens, cfg.seeds.init)
    tensors, state = run.load_checkpoint()
    try:
        model.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
    except RuntimeError as err:
        raise CheckpointError(f"{run.checkpoint_dir}: checkpoint does not fit the run's config ({err})") from None
    return cfg, model.to(device), int(state["step"])
