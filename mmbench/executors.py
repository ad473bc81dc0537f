"""Executors: how a suite's pending runs are run.

Every executor has one contract, ``execute(runs, results_dir, device, data_dir, on_done)``: it
runs each run (as :meth:`mmbench.suite.Suite.runs` gives them) once and, from the calling thread,
calls ``on_done(run, record, lost)`` as each one finishes. ``record`` is the record the run wrote
to ``results_dir`` (ok or failed), or None when the run was lost: its worker died before writing a
record, ``lost`` says how, and a resumed suite runs it again. A lost run costs only itself.

- :class:`LocalExecutor`: one run after another in this process.
- :class:`ProcessExecutor`: one spawned process per run, at most ``jobs`` alive at once.
- :class:`RayExecutor`: one Ray task per run, on a local Ray cluster or an existing one.

Whoever runs a run writes its record with the atomic :meth:`mmbench.store.RunStore.write`; on a
multi-node Ray cluster the results directory must therefore be on a shared file system.

Every executor takes ``threads`` (``--threads``) and ``on_start``. A run trains with ``threads``
torch threads when given, else its suite's ``resources.cpus``, else the executor's default
(local: torch's, i.e. the machine's cores or $OMP_NUM_THREADS; process: cores // jobs; ray: 1);
its record's ``environment.threads`` says how many it had. ``on_start(run)`` is called as a run
starts (local, process) or is submitted (ray); the epoch callback it may return is called after
each epoch of the run, in the worker for the process and Ray executors (so it must be picklable
there).
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections.abc import Callable
from multiprocessing.connection import wait
from pathlib import Path
from typing import Protocol

from mmbench.records import Record, Run
from mmbench.runner import execute_run
from mmbench.store import RunStore
from mmbench.trainer import EpochCallback

Done = Callable[[Run, Record | None, str | None], None]
Start = Callable[[Run], EpochCallback | None]


class ExecutorError(RuntimeError):
    """An executor that cannot start (e.g. ray missing, or its cluster unreachable)."""


class Executor(Protocol):
    """The contract every executor keeps (see the module's docstring)."""

    def execute(self, runs: list[Run], results_dir: str | os.PathLike, device: str,
                data_dir: str | None, on_done: Done) -> None: ...


def run_in_worker(run: Run, results_dir: str, device: str, data_dir: str | None,
                  threads: int, on_epoch: EpochCallback | None = None) -> Record:
    """A worker's entry point (a spawned process or a Ray task): run ``run`` with ``threads``
    torch threads, write its record and return it."""
    return execute_run(run, results_dir, device, data_dir, on_epoch, threads)


def run_threads(run: Run, threads: int | None, default: int | None) -> int | None:
    """The torch threads of ``run``: ``threads`` (--threads), else its ``resources.cpus``, else
    the executor's ``default``."""
    return threads or run.resources.cpus or default


class LocalExecutor:
    """One run after another in this process, with ``threads`` torch threads (see the module's
    docstring). ``on_start(run)`` may return a callback that is told each epoch of the run."""

    def __init__(self, on_start: Start | None = None, threads: int | None = None):
        self.on_start, self.threads = on_start, threads

    def execute(self, runs, results_dir, device, data_dir, on_done) -> None:
        for run in runs:
            on_epoch = self.on_start(run) if self.on_start else None
            record = execute_run(run, results_dir, device, data_dir, on_epoch,
                                 run_threads(run, self.threads, None))
            on_done(run, record, None)


class ProcessExecutor:
    """One spawned process per run, at most ``jobs`` alive at once, on this machine. A process
    that exits without a record (killed, out of memory) loses its run only; the others go on.
    A run gets ``threads`` torch threads, else its ``resources.cpus``, else ``cpu_count // jobs``
    (at least 1); ``on_start`` as for :class:`LocalExecutor`, its callback called in the worker.
    """

    def __init__(self, jobs: int, threads: int | None = None, on_start: Start | None = None):
        self.jobs, self.threads, self.on_start = jobs, threads, on_start

    def execute(self, runs, results_dir, device, data_dir, on_done) -> None:
        context = multiprocessing.get_context("spawn")
        store = RunStore(results_dir)
        default_threads = max(1, (os.cpu_count() or 1) // self.jobs)
        waiting = list(runs)
        alive: dict[int, tuple[multiprocessing.Process, Run]] = {}
        try:
            while waiting or alive:
                while waiting and len(alive) < self.jobs:
                    run = waiting.pop(0)
                    threads = run_threads(run, self.threads, default_threads)
                    on_epoch = self.on_start(run) if self.on_start else None
                    process = context.Process(
                        target=run_in_worker, name=f"mmbench-{run.run_id}",
                        args=(run, _absolute(results_dir), device, _absolute(data_dir), threads,
                              on_epoch))
                    process.start()
                    alive[process.sentinel] = (process, run)
                for sentinel in wait(list(alive)):
                    process, run = alive.pop(sentinel)
                    process.join()
                    record = store.record(run.run_id) if process.exitcode == 0 else None
                    on_done(run, record, None if record else _how_it_died(process.exitcode))
        finally:
            for process, _ in alive.values():
                process.terminate()
                process.join()


def _how_it_died(exitcode: int) -> str:
    if exitcode < 0:
        return f"worker killed by {signal.Signals(-exitcode).name}"
    return f"worker exited with code {exitcode} without writing a record"


class RayExecutor:
    """One Ray task per run (never retried). With ``address`` it connects to that cluster (its
    resources bound how many runs go at once); otherwise it starts a local cluster of ``jobs``
    CPUs (None: all) and stops it at the end. A task reserves as many CPUs as its run's torch
    threads (``threads``, else ``resources.cpus``, else 1) and ``resources.gpus`` (default 1 on a
    cuda device, else 0). Workers import mmbench, so every node needs it installed."""

    def __init__(self, jobs: int | None = None, address: str | None = None,
                 threads: int | None = None, on_start: Start | None = None):
        try:
            import ray
        except ImportError:
            raise ExecutorError("the ray executor needs ray: pip install 'mmbench[ray]'") from None
        self.ray, self.jobs, self.address = ray, jobs, address
        self.threads, self.on_start = threads, on_start

    def execute(self, runs, results_dir, device, data_dir, on_done) -> None:
        ray = self.ray
        owned = not ray.is_initialized()
        if owned:
            self._start()
        task = ray.remote(max_retries=0)(run_in_worker)
        tasks = {}
        for run in runs:
            cpus = run_threads(run, self.threads, 1)
            gpus = run.resources.gpus
            if gpus is None:
                gpus = 1 if device.startswith("cuda") else 0
            on_epoch = self.on_start(run) if self.on_start else None
            ref = task.options(num_cpus=cpus, num_gpus=gpus).remote(
                run, _absolute(results_dir), device, _absolute(data_dir), cpus, on_epoch)
            tasks[ref] = run
        try:
            while tasks:
                (ref,), _ = ray.wait(list(tasks), num_returns=1)
                run = tasks.pop(ref)
                try:
                    record, lost = ray.get(ref), None
                except ray.exceptions.RayError as error:
                    record, lost = None, f"{type(error).__name__}: {str(error).splitlines()[0]}"
                on_done(run, record, lost)
        finally:
            for ref in tasks:
                ray.cancel(ref, force=True)
            if owned:
                ray.shutdown()

    def _start(self) -> None:
        if self.address is None:
            self.ray.init(num_cpus=self.jobs, include_dashboard=False,
                          logging_level=logging.WARNING)
            return
        try:
            self.ray.init(address=self.address, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise ExecutorError(f"cannot connect to the Ray cluster at {self.address!r}: "
                                f"{error}") from None


def _absolute(path: str | os.PathLike | None) -> str | None:
    """Workers may not share this process's working directory."""
    return None if path is None else str(Path(path).resolve())
