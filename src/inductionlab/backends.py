"""Where the runs of a sweep execute: a local process pool or a Ray cluster.

Both backends call :func:`execute_run` in a worker process, which sets that run's number of torch
threads itself, so the same run gives the same numbers on either backend.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from inductionlab.errors import SweepError
from inductionlab.runs import RunSpec

BACKENDS = ("local", "ray")


def execute_run(spec: RunSpec, run_dir: str, threads: int) -> dict[str, Any]:
    """Train one run of a sweep in this process with ``threads`` torch threads; its summary."""
    import threading

    import torch
    from tqdm import tqdm as tqdm_class

    from inductionlab.train import train

    # A thread lock instead of tqdm's default process lock: a worker stopped by Ctrl-C leaves no
    # interprocess semaphore behind.
    tqdm_class.set_lock(threading.RLock())
    torch.set_num_threads(threads)
    return train(spec.config(), run_dir, progress=False)


def quiet_pool(processes: int):
    """A spawned process pool whose workers (and multiprocessing's helper process) ignore Ctrl-C, so that
    only this process sees it and stops them."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return multiprocessing.get_context("spawn").Pool(processes)
    finally:
        signal.signal(signal.SIGINT, previous)


class LocalBackend:
    """A pool of ``workers`` processes on this machine (spawned, so torch starts clean)."""

    def __init__(self, workers: int):
        # stopped by Ctrl-C, the runs resume from their last checkpoint
        self.pool = quiet_pool(workers)

    def submit(self, spec: RunSpec, run_dir: Path, threads: int):
        return self.pool.apply_async(execute_run, (spec, str(run_dir), threads))

    @staticmethod
    def ready(handle) -> bool:
        return handle.ready()

    @staticmethod
    def result(handle) -> dict[str, Any]:
        return handle.get()

    def close(self, interrupted: bool = False) -> None:
        pool, self.pool = self.pool, None  # the last reference, so its locks are released now
        if interrupted:
            pool.terminate()
        else:
            pool.close()
        pool.join()


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


class RayBackend:
    """Tasks on a Ray cluster at ``address``, or on a local Ray instance with ``workers`` CPUs."""

    def __init__(self, workers: int, threads: int, address: str | None = None):
        try:
            import ray
        except ImportError:
            raise SweepError("--backend ray: Ray is not installed; pip install 'inductionlab[ray]'") from None
        if address:
            check_ray_address(address)
        self.ray = ray
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
        self.task = ray.remote(num_cpus=threads, max_retries=0)(execute_run)

    def submit(self, spec: RunSpec, run_dir: Path, threads: int):
        return self.task.remote(spec, str(run_dir.resolve()), threads)

    def ready(self, handle) -> bool:
        done, _ = self.ray.wait([handle], timeout=0)
        return bool(done)

    def result(self, handle) -> dict[str, Any]:
        try:
            return self.ray.get(handle)
        except self.ray.exceptions.RayTaskError as err:
            raise err.as_instanceof_cause() from None

    def close(self, interrupted: bool = False, handles: Iterable = ()) -> None:
        if interrupted:
            for handle in handles:
                self.ray.cancel(handle, force=True)
        if self.started:
            self.ray.shutdown()


def default_workers() -> int:
    """One worker per CPU core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
