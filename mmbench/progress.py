"""What a running suite shows: live bars on a terminal, plain log lines anywhere else.

A :class:`SuiteProgress` is told when the suite begins, when each run starts (it may return the
callback the trainer calls after every epoch), when each run is done, and when the suite ends.
:func:`suite_progress` picks the display: :class:`LiveBars` (rich bars, one per run in flight)
when the console is a terminal, :class:`LogLines` when it is not (SLURM, nohup, ``| tee``):
one timestamped line per run start and end (status, duration, epochs run), an epoch line at most
every 30 s per run, and a suite line after each run with done / pending and an ETA from the
durations of the runs finished so far.

Under the process and Ray executors the epoch callback runs in the worker: :class:`EpochLines`
is picklable and prints its lines to the worker's stdout (a spawned process shares the suite's;
Ray forwards it, prefixed with the task's name). Live bars show no epochs for runs in workers.
An epoch callback costs one clock read per epoch, never anything per training step.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from mmbench.records import Record, Run

if TYPE_CHECKING:  # the trainer imports torch; showing progress does not need it
    from mmbench.trainer import EpochCallback

EPOCH_LINE_SECONDS = 30.0


def duration(seconds: float) -> str:
    """Seconds for people: "0.4 s", "12 s", "3m05s", "1h02m"."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def how_it_ended(run: Run, record: Record) -> str:
    """The end of a finished run in words: "ok in 1m06s, 23/40 epochs (early stopping)"."""
    took = duration(record.finished - record.started)
    if not record.ok:
        return f"{record.status} in {took}: {record.error}"
    fit = record.fit
    if fit is None:
        return f"ok in {took}"
    if fit.stopped_by == "closed_form":
        return f"ok in {took} (closed form)"
    why = "" if fit.stopped_by == "epochs" else f" ({fit.stopped_by.replace('_', ' ')})"
    return f"ok in {took}, {fit.epochs}/{run.config.epochs} epochs{why}"


def _loss_text(row: dict[str, float]) -> str:
    if "valid_loss" in row:
        return f"loss {row['loss']:.4g}, valid loss {row['valid_loss']:.4g}"
    return f"loss {row['loss']:.4g}"


def _stamp() -> str:
    return time.strftime("%H:%M:%S")


class SuiteProgress(Protocol):
    """What executing a suite tells its display (see the module's docstring)."""

    def begin(self, suite: str, n_runs: int, n_todo: int, results: Path) -> None: ...

    def start(self, run: Run) -> EpochCallback | None: ...

    def done(self, run: Run, record: Record | None, lost: str | None) -> None: ...

    def skipped(self, run: Run, why: str) -> None: ...

    def end(self) -> None: ...


class SuiteClock:
    """Done / pending counts and an ETA: the mean duration of the runs finished so far times the
    runs pending, divided by the runs that go at once."""

    def __init__(self, n_todo: int, concurrency: int):
        self.pending, self.concurrency = n_todo, max(1, concurrency)
        self.done = self.failed = self.lost = 0
        self.durations: list[float] = []

    def count(self, record: Record | None) -> None:
        self.pending -= 1
        self.done += 1
        if record is None:
            self.lost += 1
            return
        self.failed += not record.ok
        self.durations.append(record.finished - record.started)

    def skip(self) -> None:
        """A run another ``mmbench run`` is running (or has finished) leaves the pending ones."""
        self.pending -= 1

    def eta(self) -> str:
        if not self.durations:
            return "ETA after the first run"
        if not self.pending:
            return "finished"
        mean = sum(self.durations) / len(self.durations)
        at_once = min(self.concurrency, self.pending)
        return f"{duration(mean)} per run, ETA {duration(mean * self.pending / at_once)}"

    def line(self) -> str:
        problems = ", ".join(
            f"{n} {what}" for n, what in ((self.failed, "failed"), (self.lost, "lost")) if n
        )
        return (
            f"{self.done} done{f' ({problems})' if problems else ''}, {self.pending} "
            f"pending; {self.eta()}"
        )


class EpochLines:
    """An epoch callback that prints "HH:MM:SS epoch NAME: 12/40, loss ..." at most every
    ``every`` seconds (picklable, so a worker process can print for its run)."""

    def __init__(self, name: str, every: float = EPOCH_LINE_SECONDS):
        self.name, self.every = name, every
        self.last = time.time()

    def __call__(self, epoch: int, total: int, row: dict[str, float]) -> None:
        now = time.time()
        if now - self.last >= self.every:
            self.last = now
            print(f"{_stamp()} epoch  {self.name}: {epoch}/{total}, {_loss_text(row)}", flush=True)


class LogLines:
    """Plain lines for logs (stdout not a terminal). ``queued``: runs are submitted, not started,
    when :meth:`start` is called (Ray). A failure's reason is printed in full the first time it
    occurs; runs that fail for the same reason then refer to the first."""

    def __init__(
        self, concurrency: int = 1, queued: bool = False, every: float = EPOCH_LINE_SECONDS
    ):
        self.concurrency, self.queued, self.every = concurrency, queued, every
        self.clock = SuiteClock(0, concurrency)
        self.suite = ""
        self.first_with: dict[str, str] = {}  # failure reason -> the first run it failed

    def _print(self, kind: str, text: str) -> None:
        print(f"{_stamp()} {kind:<6} {text}", file=sys.stdout, flush=True)

    def begin(self, suite: str, n_runs: int, n_todo: int, results: Path) -> None:
        self.suite, self.clock = suite, SuiteClock(n_todo, self.concurrency)
        self._print(
            "suite",
            f"{suite}: {n_runs} runs, {n_runs - n_todo} already done, "
            f"{n_todo} to run, results in {results}",
        )

    def start(self, run: Run) -> EpochCallback | None:
        self._print("queued" if self.queued else "start", f"{run.name} ({_where(run)})")
        return EpochLines(run.name, self.every)

    def done(self, run: Run, record: Record | None, lost: str | None) -> None:
        self.clock.count(record)
        ended = f"lost: {lost}" if record is None else how_it_ended(run, record)
        if record is not None and not record.ok:
            reason = record.error or record.status
            if reason in self.first_with:
                took = duration(record.finished - record.started)
                ended = f"{record.status} in {took}, as {self.first_with[reason]}"
            self.first_with.setdefault(reason, run.name)
        self._print("end", f"{run.name}: {ended}")
        self._print("suite", f"{self.suite}: {self.clock.line()}")

    def skipped(self, run: Run, why: str) -> None:
        self.clock.skip()
        self._print("end", f"{run.name}: skipped: {why}")

    def end(self) -> None:
        pass


def _where(run: Run) -> str:
    """The run's id and its data and grid points: "3fa2c1d0e9ab, fold=1, omega=0.3"."""
    c = run.coordinates
    return ", ".join([run.run_id, *(f"{k}={v}" for k, v in {**c.data, **c.grid}.items())])


class LiveBars:
    """Rich bars on a terminal: the suite's, with done / pending and the ETA, and one per run in
    flight (its epochs when it runs in this process; ``in_process`` False: in workers). A run
    that ends leaves a line above the bars with its real end (epochs run, why it stopped)."""

    def __init__(self, console: Console, concurrency: int = 1, in_process: bool = True):
        self.console, self.in_process = console, in_process
        self.concurrency = concurrency
        self.clock = SuiteClock(0, concurrency)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.bars: dict[str, TaskID] = {}
        self.overall: TaskID | None = None

    def begin(self, suite: str, n_runs: int, n_todo: int, results: Path) -> None:
        self.clock = SuiteClock(n_todo, self.concurrency)
        self.console.print(
            f"[bold]{escape(suite)}[/]: {n_runs} runs, {n_runs - n_todo} already "
            f"done, results in {escape(str(results))}",
            highlight=False,
        )
        self.progress.start()
        self.overall = self.progress.add_task("suite", total=n_todo, status="")

    def start(self, run: Run) -> EpochCallback | None:
        bar = self.progress.add_task(
            f"  {escape(run.name)}", status="", total=run.config.epochs if self.in_process else None
        )
        self.bars[run.run_id] = bar
        if not self.in_process:
            return None

        def on_epoch(epoch: int, total: int, row: dict[str, float]) -> None:
            self.progress.update(bar, completed=epoch, total=total, status=_loss_text(row))

        return on_epoch

    def done(self, run: Run, record: Record | None, lost: str | None) -> None:
        self.clock.count(record)
        if record is None:
            status = f"[red]lost[/]: {escape(lost or '')}"
        elif record.ok:
            status = f"[green]{escape(how_it_ended(run, record))}[/]"
        else:
            kind = (record.error or "").split(":", 1)[0]
            status = f"[red]{record.status}[/]: {escape(kind)} (the reason follows the suite)"
        bar = self.bars.pop(run.run_id, None)
        if bar is not None:
            self.progress.remove_task(bar)
        self.progress.console.print(f"  {escape(run.name)}: {status}", highlight=False)
        if self.overall is not None:
            self.progress.update(self.overall, advance=1, status=escape(self.clock.line()))

    def skipped(self, run: Run, why: str) -> None:
        self.clock.skip()
        self.progress.console.print(
            f"  {escape(run.name)}: skipped: {escape(why)}", highlight=False
        )
        if self.overall is not None:
            self.progress.update(self.overall, advance=1, status=escape(self.clock.line()))

    def end(self) -> None:
        self.progress.stop()


class Silent:
    """No display (``run_suite(..., progress=False)``)."""

    def begin(self, suite: str, n_runs: int, n_todo: int, results: Path) -> None:
        pass

    def start(self, run: Run) -> EpochCallback | None:
        return None

    def done(self, run: Run, record: Record | None, lost: str | None) -> None:
        pass

    def skipped(self, run: Run, why: str) -> None:
        pass

    def end(self) -> None:
        pass


def suite_progress(console: Console, executor: str, concurrency: int) -> SuiteProgress:
    """Live bars when ``console`` is a terminal, else plain lines; ``executor`` (local, process
    or ray) says where runs train and ``concurrency`` how many go at once (for the ETA)."""
    if console.is_terminal:
        return LiveBars(console, concurrency, in_process=executor == "local")
    return LogLines(concurrency, queued=executor == "ray")
