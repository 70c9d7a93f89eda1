"""Where the runs of a sweep execute: a local process pool or a Ray cluster.

Both backends call :func:`execute_run` in a worker process, which sets that run's number of torch
threads itself, so the same run gives the same numbers on either backend. Both end a run whose worker has
gone silent past its stall limit (heartbeat.py: stopped, deadlocked, on a hung file system) and resubmit it
like one whose worker died: it resumes from its last checkpoint, within the same retry limit, the cause named.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm as tqdm_class

from inductionlab.allocator import keep_freed_memory
from inductionlab.errors import DivergenceError, SweepError
from inductionlab.heartbeat import StallLimit, stalled
from inductionlab.runs import RunDir, RunSpec, first_line
from inductionlab.train import train

BACKENDS = ("local", "ray")


RETRIES = 2  # a run whose worker dies is resubmitted this many times (it resumes from its checkpoint)


def execute_run(spec: RunSpec, run_dir: str, threads: int, followers: tuple[tuple[RunSpec, str], ...] = ()
                ) -> dict[str, Any]:
    """Train one run of a sweep in this process with ``threads`` torch threads; its summary.

    A run that diverges returns its diverged summary (``"diverged": true``): an outcome, not a failure.
    ``followers`` (run, directory) ride along its training (train.py, :func:`~inductionlab.train.shared_trajectory`).
    """
    # A thread lock instead of tqdm's default process lock: a worker stopped by Ctrl-C leaves no
    # interprocess semaphore behind.
    tqdm_class.set_lock(threading.RLock())
    torch.set_num_threads(threads)
    keep_freed_memory()
    try:
        return train(spec.config(), run_dir, progress=False, heartbeat=True,
                     followers=tuple((follower.config(), path) for follower, path in followers))
    except DivergenceError:
        return RunDir(run_dir).summary() or {}


def execute_run_on_path(spec: RunSpec, run_dir: str, threads: int, sys_path: list[str],
                        followers: tuple[tuple[RunSpec, str], ...] = ()) -> dict[str, Any]:
    """:func:`execute_run` with the driver's import path added to this worker's: a task or an experiment named
    by an import path (``"module:Name"``) resolves on a Ray worker as it does in the process that submitted it
    (spawned local workers inherit the path by themselves)."""
    sys.path.extend(p for p in sys_path if p not in sys.path)
    return execute_run(spec, run_dir, threads, followers)


@contextmanager
def sigint_ignored():
    """Processes started inside ignore Ctrl-C (they inherit the setting), so that only this process sees it
    and stops them."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def quiet_pool(processes: int):
    """A spawned process pool whose workers (and multiprocessing's helper process) ignore Ctrl-C."""
    with sigint_ignored():
        return multiprocessing.get_context("spawn").Pool(processes)


def death_cause(exitcode: int | None) -> str:
    """Why a worker process ended, in words (a negative exit code is the signal that killed it)."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = ": out of memory?" if -exitcode == signal.SIGKILL else ""
        return f"worker killed by signal {-exitcode} ({name}){hint}"
    return f"worker exited with status {exitcode}"


def _exit_with_parent(parent: int) -> None:
    """End this worker as soon as the process that started it is gone (killed sweeps leave no orphans that
    would go on writing into run directories a rerun resumes)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _serve(conn, parent: int) -> None:
    """A worker's loop: run each job sent down ``conn``, send back ("ok", summary) or ("error", one line)."""
    _exit_with_parent(parent)
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            conn.send(("ok", execute_run(*job)))
        except Exception as err:  # reported to the sweep, which goes on with the other runs
            conn.send(("error", first_line(err)))


@dataclass
class LocalJob:
    """One run submitted to the local backend: its arguments, the deaths of its workers so far, its outcome."""

    args: tuple[RunSpec, str, int, tuple[tuple[RunSpec, str], ...]]
    outcome: tuple[str, Any] | None = None  # ("ok", summary) or ("error", message)
    deaths: list[str] = field(default_factory=list)
    since: float = 0.0  # wall time it was last handed to a worker (heartbeat.stalled counts from it)


def retry_event(name: str, deaths: list[str], retries: int) -> tuple[str, bool]:
    """What the sweep says about a run whose worker just died or stalled (the causes so far in ``deaths``), and
    whether it is resubmitted (within ``retries``)."""
    if len(deaths) > retries:
        return f"{name}: {deaths[-1]}; the run failed after {len(deaths)} attempts", False
    return (f"{name}: {deaths[-1]}; the run resumes from its last checkpoint (attempt {len(deaths) + 1} of "
            f"{retries + 1})"), True


def failed_after(deaths: list[str]) -> str:
    tries = "once" if len(deaths) == 1 else f"{len(deaths)} times"
    return f"{deaths[-1]} (the run was started {tries})"


@dataclass
class _Worker:
    process: Any
    conn: Any
    job: LocalJob | None = None


class LocalBackend:
    """``workers`` processes on this machine (spawned, so torch starts clean), each running one run at a time.

    A worker that dies (any signal, any exit), or stays silent past ``stall`` (heartbeat.py; it is then
    killed), is noticed at the next poll and replaced; its run is resubmitted, resuming from its last
    checkpoint, up to ``retries`` times, and then fails with the cause. Ctrl-C reaches only this process (the
    workers ignore it), which then stops them.
    """

    def __init__(self, workers: int, retries: int = RETRIES, stall: StallLimit | None = None):
        self.context = multiprocessing.get_context("spawn")
        self.retries, self.stall = retries, stall or StallLimit()
        self.queue: deque[LocalJob] = deque()
        self.workers = [self._start() for _ in range(workers)]

    def _start(self) -> _Worker:
        parent, child = self.context.Pipe()
        with sigint_ignored():
            process = self.context.Process(target=_serve, args=(child, os.getpid()), daemon=True)
            process.start()
        child.close()
        return _Worker(process, parent)

    def submit(self, spec: RunSpec, run_dir: Path, threads: int, followers: tuple[tuple[RunSpec, Path], ...] = ()
               ) -> LocalJob:
        job = LocalJob((spec, str(run_dir), threads, tuple((f, str(path)) for f, path in followers)))
        self.queue.append(job)
        self.poll()
        return job

    def poll(self) -> list[str]:
        """Collect finished runs, replace dead workers (resubmitting their runs), start queued runs; what
        happened to workers, one line each."""
        events = []
        for i, worker in enumerate(self.workers):
            job = worker.job
            if job is None:
                if not worker.process.is_alive():  # died idle: nothing lost
                    worker.process.join()
                    worker.conn.close()
                    self.workers[i] = self._start()
                continue
            try:
                message = worker.conn.recv() if worker.conn.poll() else None
            except (EOFError, OSError):  # the worker died while (or before) answering
                message = None
            if message is not None:
                job.outcome, worker.job = message, None
                continue
            silent = stalled(job.args[1], job.since, self.stall) if worker.process.is_alive() else None
            if silent is not None:
                worker.process.kill()  # SIGKILL ends a stopped process too; its run folder's lock goes with it
            if silent is not None or not worker.process.is_alive():
                worker.process.join()
                job.deaths.append(f"{silent}: ended" if silent else death_cause(worker.process.exitcode))
                worker.conn.close()
                self.workers[i] = self._start()
                event, again = retry_event(job.args[0].name, job.deaths, self.retries)
                events.append(event)
                if again:
                    self.queue.appendleft(job)  # first in line: it resumes from its last checkpoint
                else:
                    job.outcome = ("error", failed_after(job.deaths))
        for worker in self.workers:
            if worker.job is None and self.queue:
                worker.job = self.queue.popleft()
                worker.job.since = time.time()
                worker.conn.send(worker.job.args)
        return events

    def ready(self, job: LocalJob) -> bool:
        return job.outcome is not None

    @staticmethod
    def result(job: LocalJob) -> dict[str, Any]:
        status, value = job.outcome
        if status != "ok":
            raise SweepError(value)
        return value

    def pids(self) -> list[int]:
        """The worker processes' ids (to inspect or signal them)."""
        return [w.process.pid for w in self.workers]

    def close(self, interrupted: bool = False) -> None:
        for worker in self.workers:
            if interrupted or not worker.process.is_alive():
                worker.process.terminate()
            else:
                try:
                    worker.conn.send(None)
                except OSError:
                    worker.process.terminate()
        for worker in self.workers:
            worker.process.join()
            worker.conn.close()
        self.workers = []


def check_ray_address(address: str, timeout: float = 5.0) -> None:
    """Fail fast (SweepError) when nothing listens at a ``host:port`` Ray address."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise SweepError(f"--address {address!r}: expected host:port, ray://host:port or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise SweepError(f"--address {address}: no Ray cluster reachable ({reason})") from None


@dataclass
class RayJob:
    """One run submitted to Ray: its arguments, the task now running it, the stalls so far, a final error."""

    args: tuple
    handle: Any
    since: float
    deaths: list[str] = field(default_factory=list)
    error: str | None = None


class RayBackend:
    """Tasks on a Ray cluster at ``address``, or on a local Ray instance with ``workers`` CPUs.

    Ray replaces a worker that dies and retries its task itself (``retries`` times). Ray has no time limit for a
    running task, so a run silent past ``stall`` (heartbeat.py) is cancelled here (``ray.cancel(force=True)``
    ends its worker) and submitted again, resuming from its checkpoint, within the same retry limit."""

    def __init__(self, workers: int, threads: int, address: str | None = None, retries: int = RETRIES,
                 stall: StallLimit | None = None):
        try:
            import ray
        except ImportError:
            raise SweepError("--backend ray: Ray is not installed; pip install 'inductionlab[ray]'") from None
        if address:
            check_ray_address(address)
        self.ray, self.retries, self.stall = ray, retries, stall or StallLimit()
        self.jobs: list[RayJob] = []
        self.started = not ray.is_initialized()
        if self.started:
            kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False,
                                      "logging_level": logging.WARNING}
            try:
                if address:
                    ray.init(address=address, **kwargs)
                else:
                    ray.init(num_cpus=workers * threads, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise SweepError(f"--backend ray: cannot start or join Ray ({str(err).splitlines()[0]})") from None
        # a worker that dies is replaced and its task retried (the run resumes from its checkpoint)
        self.task = ray.remote(num_cpus=threads, max_retries=retries)(execute_run_on_path)
        self.sys_path = [os.path.abspath(p) for p in sys.path]  # "" is this process's working directory

    def submit(self, spec: RunSpec, run_dir: Path, threads: int, followers: tuple[tuple[RunSpec, Path], ...] = ()
               ) -> RayJob:
        args = (spec, str(run_dir.resolve()), threads, self.sys_path,
                tuple((f, str(path.resolve())) for f, path in followers))
        job = RayJob(args, self.task.remote(*args), time.time())
        self.jobs.append(job)
        return job

    def poll(self) -> list[str]:
        """Cancel and resubmit the runs silent past their stall limit (Ray itself retries those whose worker died)."""
        events = []
        for job in [job for job in self.jobs if job.error is None and not self._done(job)]:
            silent = stalled(job.args[1], job.since, self.stall)
            if silent is None:
                continue
            self.ray.cancel(job.handle, force=True)
            job.deaths.append(f"{silent}: ended")
            event, again = retry_event(job.args[0].name, job.deaths, self.retries)
            events.append(event)
            if again:
                job.handle, job.since = self.task.remote(*job.args), time.time()
            else:
                job.error = failed_after(job.deaths)
        return events

    def _done(self, job: RayJob) -> bool:
        done, _ = self.ray.wait([job.handle], timeout=0)
        return bool(done)

    def ready(self, job: RayJob) -> bool:
        return job.error is not None or self._done(job)

    def result(self, job: RayJob) -> dict[str, Any]:
        self.jobs.remove(job)
        if job.error is not None:
            raise SweepError(job.error)
        try:
            return self.ray.get(job.handle)
        except self.ray.exceptions.RayTaskError as err:
            raise err.as_instanceof_cause() from None
        except self.ray.exceptions.WorkerCrashedError:
            raise SweepError(f"worker died (the run was started {self.retries + 1} times): out of memory?") from None

    def close(self, interrupted: bool = False) -> None:
        if interrupted:
            for job in self.jobs:
                self.ray.cancel(job.handle, force=True)
        if self.started:
            self.ray.shutdown()


def default_workers() -> int:
    """One worker per CPU core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
