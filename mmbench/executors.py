"""Executors: how a suite's pending runs are run.

Every executor has one contract, ``execute(runs, results_dir, device, data_dir, on_done,
on_skipped)``: it runs each run (as :meth:`mmbench.suite.Suite.runs` gives them) once and, from
the calling thread, calls ``on_done(run, record, lost)`` as each one finishes. ``record`` is the
record the run wrote to ``results_dir`` (ok, failed or diverged), or None when the run was lost:
its worker died before writing a record, ``lost`` says how, and a resumed suite runs it again. A
lost run costs only itself.

Right before a run starts, the executor claims it (:mod:`mmbench.claims`): a run that another
process is running, or that another process finished since this one began, is not run but
passed to ``on_skipped(run, why)``. So several ``mmbench run`` on one results folder (or SLURM
array tasks on a shared file system) share its runs and never train one twice. Before the first
run, temporary files that killed writers left in the folder are removed.

- :class:`LocalExecutor`: one run after another in this process.
- :class:`ProcessExecutor`: one spawned process per run, at most ``jobs`` alive at once, or at
  most ``runs_per_device`` on each device (several small runs sharing each GPU).
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

Ctrl-C stops every executor with KeyboardInterrupt in the calling thread: spawned workers ignore
SIGINT (their parent ends them) and exit when their parent dies, even by SIGKILL.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing import resource_tracker
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Protocol, cast

from mmbench.claims import Claims
from mmbench.records import Record, Run
from mmbench.runner import execute_run
from mmbench.store import RunStore
from mmbench.trainer import EpochCallback

Done = Callable[[Run, Record | None, str | None], None]
Start = Callable[[Run], EpochCallback | None]
Skipped = Callable[[Run, str], None]


class ExecutorError(RuntimeError):
    """An executor that cannot start (e.g. ray missing, or its cluster unreachable)."""


class Executor(Protocol):
    """The contract every executor keeps (see the module's docstring)."""

    def execute(
        self,
        runs: list[Run],
        results_dir: str | os.PathLike,
        device: str,
        data_dir: str | None,
        on_done: Done,
        on_skipped: Skipped | None = None,
    ) -> None: ...


class Claimer:
    """Claims the runs of one ``execute`` call in ``results_dir`` (a context manager: claims
    still held are released when it closes). On entering, temporary files that killed writers
    left in the folder are removed."""

    def __init__(self, results_dir: str | os.PathLike, on_skipped: Skipped | None):
        self.store = RunStore(results_dir)
        self.claims = Claims(results_dir)
        self.on_skipped = on_skipped
        self.since = 0.0

    def __enter__(self) -> Claimer:
        self.store.remove_litter()
        self.since = time.time()
        self.claims.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.claims.__exit__(*exc)

    def claim(self, run: Run) -> bool:
        """Whether this process may run ``run`` now: it holds its claim, and no other process
        finished the run meanwhile (its record is ok, or was written after this executor
        began: a run asked for again, e.g. with --retry-failed, is not ok and older). Otherwise
        the run is reported to ``on_skipped``."""
        owner = self.claims.take(run.run_id)
        if owner is None and not self.store.done_since(run.run_id, self.since):
            return True
        if owner is None:
            self.claims.release(run.run_id)
            why = "another process finished it meanwhile"
        else:
            why = f"{owner} is running it"
        if self.on_skipped is not None:
            self.on_skipped(run, why)
        return False

    def release(self, run: Run) -> None:
        self.claims.release(run.run_id)


def run_in_worker(
    run: Run,
    results_dir: str,
    device: str,
    data_dir: str | None,
    threads: int,
    on_epoch: EpochCallback | None = None,
) -> Record:
    """A worker's entry point (a spawned process or a Ray task): run ``run`` with ``threads``
    torch threads, write its record and return it."""
    return execute_run(run, results_dir, device, data_dir, on_epoch, threads)


def run_threads(run: Run, threads: int | None, default: int | None) -> int | None:
    """The torch threads of ``run``: ``threads`` (--threads), else its ``resources.cpus``, else
    the executor's ``default``."""
    return threads or run.resources.cpus or default


def run_in_process(
    run: Run,
    results_dir: str,
    device: str,
    data_dir: str | None,
    threads: int,
    on_epoch: EpochCallback | None = None,
) -> Record:
    """A spawned worker process's entry point: :func:`run_in_worker` in a process that ignores
    Ctrl-C (its parent ends it) and exits when its parent dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # POSIX
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by the parent
    _exit_with_parent()
    return run_in_worker(run, results_dir, device, data_dir, threads, on_epoch)


def _exit_with_parent() -> None:
    """Exit this spawned process as soon as its parent process has ended (killed or not): a
    thread waits on multiprocessing's pipe from the parent, which closes when the parent dies."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    sentinel = parent.sentinel

    def watch() -> None:
        wait([sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="mmbench-exit-with-parent", daemon=True).start()


class LocalExecutor:
    """One run after another in this process, with ``threads`` torch threads (see the module's
    docstring). ``on_start(run)`` may return a callback that is told each epoch of the run."""

    def __init__(self, on_start: Start | None = None, threads: int | None = None):
        self.on_start, self.threads = on_start, threads

    def execute(
        self,
        runs: list[Run],
        results_dir: str | os.PathLike,
        device: str,
        data_dir: str | None,
        on_done: Done,
        on_skipped: Skipped | None = None,
    ) -> None:
        with Claimer(results_dir, on_skipped) as claimer:
            for run in runs:
                if not claimer.claim(run):
                    continue
                try:
                    on_epoch = self.on_start(run) if self.on_start else None
                    record = execute_run(
                        run,
                        results_dir,
                        device,
                        data_dir,
                        on_epoch,
                        run_threads(run, self.threads, None),
                    )
                finally:
                    claimer.release(run)
                on_done(run, record, None)


def spread_devices(device: str, cuda_count: int) -> list[str]:
    """The devices that ``runs_per_device`` fills: for ``cuda`` without an index every visible
    GPU (``cuda_count`` of them: cuda:0, cuda:1, ...), otherwise ``device`` alone."""
    if device != "cuda":
        return [device]
    if cuda_count < 1:
        raise ExecutorError("device cuda: torch sees no CUDA device; run with --device cpu")
    return [f"cuda:{index}" for index in range(cuda_count)]


def free_device(busy: list[str], devices: list[str], runs_per_device: int) -> str | None:
    """The device for the next run: of ``devices`` with fewer than ``runs_per_device`` runs
    alive (``busy``: the device of each alive run), the one with the fewest, the first listed on
    a tie; None when every device is full."""
    free = [d for d in devices if busy.count(d) < runs_per_device]
    return min(free, key=busy.count) if free else None


def _cuda_count(device: str) -> int:
    if device != "cuda":
        return 0
    import torch

    return torch.cuda.device_count()


class ProcessExecutor:
    """One spawned process per run, at most ``jobs`` alive at once, on this machine. A process
    that exits without a record (killed, out of memory) loses its run only; the others go on.
    With ``runs_per_device`` N instead, ``jobs`` is unused: at most N runs are alive on each
    device (for ``cuda``, each visible GPU: see :func:`spread_devices`), and each run's worker
    trains on its device (its record's ``environment.device``). A run gets ``threads`` torch
    threads, else its ``resources.cpus``, else ``cpu_count //`` the runs alive at most (at least
    1); ``on_start`` as for :class:`LocalExecutor`, its callback called in the worker.
    """

    def __init__(
        self,
        jobs: int,
        threads: int | None = None,
        on_start: Start | None = None,
        runs_per_device: int | None = None,
    ):
        self.jobs, self.threads, self.on_start = jobs, threads, on_start
        self.runs_per_device = runs_per_device

    def execute(
        self,
        runs: list[Run],
        results_dir: str | os.PathLike,
        device: str,
        data_dir: str | None,
        on_done: Done,
        on_skipped: Skipped | None = None,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        store = RunStore(results_dir)
        if self.runs_per_device is None:
            devices, per_device = [device], self.jobs
        else:
            devices = spread_devices(device, _cuda_count(device))
            per_device = self.runs_per_device
        default_threads = max(1, (os.cpu_count() or 1) // (per_device * len(devices)))
        waiting = list(runs)
        alive: dict[int, tuple[BaseProcess, Run]] = {}
        placed: dict[int, str] = {}  # the device of each alive worker
        with Claimer(results_dir, on_skipped) as claimer:
            try:
                while waiting or alive:
                    while waiting:
                        slot = free_device(list(placed.values()), devices, per_device)
                        if slot is None:
                            break
                        run = waiting.pop(0)
                        if not claimer.claim(run):
                            continue
                        threads = run_threads(run, self.threads, default_threads)
                        on_epoch = self.on_start(run) if self.on_start else None
                        process = context.Process(
                            target=run_in_process,
                            name=f"mmbench-{run.run_id}",
                            args=(
                                run,
                                _absolute(results_dir),
                                slot,
                                _absolute(data_dir),
                                threads,
                                on_epoch,
                            ),
                        )
                        with sigint_deferred():
                            process.start()
                            alive[process.sentinel] = (process, run)
                        placed[process.sentinel] = slot
                    for sentinel in wait(list(alive)):
                        worker, run = alive.pop(cast(int, sentinel))
                        del placed[cast(int, sentinel)]
                        worker.join()
                        claimer.release(run)
                        exitcode = cast(int, worker.exitcode)  # set once joined
                        record = store.record(run.run_id) if exitcode == 0 else None
                        on_done(run, record, None if record else _how_it_died(exitcode))
            finally:
                for worker, _ in alive.values():
                    worker.terminate()
                    worker.join()


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C back while worker processes are started in the block: a process spawned
    meanwhile starts with SIGINT blocked, so that it cannot be interrupted while it starts up
    (:func:`run_in_process` then ignores SIGINT), and this process raises the KeyboardInterrupt
    only once the block is over (not in the middle of a start, which would leave a worker
    without its instructions). Outside the main thread, or without POSIX signal masks, the block
    just runs."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "pthread_sigmask"
    ):
        yield
        return
    # Starting multiprocessing's resource tracker unblocks SIGINT in this thread (CPython's
    # bpo-33613 handling), and the first process.start() would start it: start it first.
    resource_tracker.ensure_running()
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # runs a pending handler
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


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

    def __init__(
        self,
        jobs: int | None = None,
        address: str | None = None,
        threads: int | None = None,
        on_start: Start | None = None,
    ):
        try:
            import ray
        except ImportError:
            raise ExecutorError("the ray executor needs ray: pip install 'mmbench[ray]'") from None
        self.ray, self.jobs, self.address = ray, jobs, address
        self.threads, self.on_start = threads, on_start

    def execute(
        self,
        runs: list[Run],
        results_dir: str | os.PathLike,
        device: str,
        data_dir: str | None,
        on_done: Done,
        on_skipped: Skipped | None = None,
    ) -> None:
        with Claimer(results_dir, on_skipped) as claimer:
            self._execute(runs, results_dir, device, data_dir, on_done, claimer)

    def _execute(
        self,
        runs: list[Run],
        results_dir: str | os.PathLike,
        device: str,
        data_dir: str | None,
        on_done: Done,
        claimer: Claimer,
    ) -> None:
        """Every run is claimed when its task is submitted (Ray then starts it when resources
        free up); its claim is released when the task ends."""
        ray = self.ray
        owned = not ray.is_initialized()
        if owned:
            self._start()
        task = ray.remote(max_retries=0)(run_in_worker)
        tasks = {}
        try:
            for run in runs:
                if not claimer.claim(run):
                    continue
                cpus = run_threads(run, self.threads, 1)
                gpus = run.resources.gpus
                if gpus is None:
                    gpus = 1 if device.startswith("cuda") else 0
                on_epoch = self.on_start(run) if self.on_start else None
                ref = task.options(num_cpus=cpus, num_gpus=gpus).remote(
                    run, _absolute(results_dir), device, _absolute(data_dir), cpus, on_epoch
                )
                tasks[ref] = run
            while tasks:
                (ref,), _ = ray.wait(list(tasks), num_returns=1)
                run = tasks.pop(ref)
                try:
                    record, lost = ray.get(ref), None
                except ray.exceptions.RayError as error:
                    record, lost = None, f"{type(error).__name__}: {str(error).splitlines()[0]}"
                claimer.release(run)
                on_done(run, record, lost)
        finally:
            for ref in tasks:
                ray.cancel(ref, force=True)
            if owned:
                ray.shutdown()

    def _start(self) -> None:
        if self.address is None:
            self.ray.init(
                num_cpus=self.jobs, include_dashboard=False, logging_level=logging.WARNING
            )
            return
        try:
            self.ray.init(address=self.address, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise ExecutorError(
                f"cannot connect to the Ray cluster at {self.address!r}: {error}"
            ) from None


def _absolute(path: str | os.PathLike | None) -> str | None:
    """Workers may not share this process's working directory."""
    return None if path is None else str(Path(path).resolve())
