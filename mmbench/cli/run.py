"""``mmbench run`` (a suite's runs, resumably) and ``mmbench models`` (what can be run).

The training stack (torch, the executors, pandas) is imported when a command runs, not when the
command line starts."""
from __future__ import annotations

import inspect
import os
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.markup import escape
from rich.table import Table

from mmbench.cli.console import console, csv_list, fail

if TYPE_CHECKING:
    import pandas as pd

    from mmbench.executors import Executor
    from mmbench.records import Run
    from mmbench.store import RunStore
    from mmbench.suite import Suite
    from mmbench.tracking import Tracker


class ExecutorKind(str, Enum):
    local = "local"
    process = "process"
    ray = "ray"


def run(
    suite_file: Path = typer.Argument(..., help="Suite YAML, e.g. suites/quickstart.yaml"),
    results: Optional[Path] = typer.Option(
        None, help="Results directory \\[default: results/<suite name>]"),
    models: Optional[str] = typer.Option(
        None, help="Comma-separated model names or labels to run"),
    seeds: Optional[str] = typer.Option(None, help="Comma-separated replicate seeds to run"),
    device: Optional[str] = typer.Option(
        None, help="cpu, cuda or cuda:N \\[default: the suite's]"),
    smoke: bool = typer.Option(
        False, help="Tiny budget (2 epochs, a few hundred points) to check plumbing"),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the runs and whether each is done"),
    cell: Optional[int] = typer.Option(None, help="Run only the run with this --dry-run index"),
    retry_failed: bool = typer.Option(False, help="Run again the runs recorded as failed"),
    data_dir: Optional[str] = typer.Option(
        None, help="Data directory \\[default: $MMBENCH_DATA]"),
    executor: ExecutorKind = typer.Option(
        ExecutorKind.local, help="local: one run after another in this process; process: "
                                 "--jobs runs at once, a worker process each; ray: Ray tasks"),
    jobs: Optional[int] = typer.Option(
        None, min=1, help="Runs at once (process), CPUs of the local Ray cluster (ray) "
                          "\\[default: the number of CPU cores]"),
    address: Optional[str] = typer.Option(
        None, help="Ray cluster to run on, e.g. auto or ray://head:10001 \\[default: start a "
                   "local one]; the results directory must be on a file system all nodes share"),
    track: str | None = typer.Option(
        None, help="Log every run (params, losses per epoch, metrics) to a tracker: mlflow "
                   "(pip install 'mmbench[mlflow]')"),
    track_uri: str | None = typer.Option(
        None, help="Where --track logs \\[default: the MLflow file store ./mlruns], e.g. "
                   "http://localhost:5000"),
) -> None:
    """Run a suite; finished runs are skipped, so an interrupted suite resumes. Exits with 1 when
    a run was lost (its worker died): run the suite again to redo it."""
    import pandas as pd

    from mmbench.results import write_tidy
    from mmbench.store import RecordError, RunStore
    from mmbench.suite import SuiteError, load_suite
    try:
        suite = load_suite(suite_file)
    except SuiteError as error:
        fail(str(error))
    check_executor_options(executor, jobs, address)
    tracker = None if dry_run else _tracker(track, track_uri, suite.name)
    results = results or Path("results") / (suite.name + ("-smoke" if smoke else ""))
    device = device or suite.device
    runs = select_runs(suite, models, seeds, smoke)
    store = RunStore(results)
    try:
        if dry_run:
            _print_plan(runs, store)
            return
        if cell is not None:
            if not 0 <= cell < len(runs):
                fail(f"--cell {cell}: the suite has runs 0..{len(runs) - 1} (see --dry-run)")
            runs = [runs[cell]]
        todo = store.pending(runs, retry_failed)
        console.print(f"[bold]{suite.name}[/]: {len(runs)} runs, {len(runs) - len(todo)} already "
                      f"done, results in {results}")
        lost = _execute(todo, results, device, data_dir, executor, jobs, address,
                        tracker) if todo else 0
        tidy_path = write_tidy(results)
    except RecordError as error:
        fail(str(error))
    _print_summary(pd.read_csv(tidy_path), [r.run_id for r in runs])
    console.print(f"tidy results: {tidy_path}")
    if lost:
        console.print(f"[bold red]{lost} run(s) lost[/] (their worker died): run the suite again "
                      "to redo them", highlight=False)
        raise typer.Exit(1)


def select_runs(suite: Suite, models: Optional[str], seeds: Optional[str],
                smoke: bool) -> list[Run]:
    """The suite's runs of the ``models`` (names or labels) and replicate ``seeds`` asked for
    (comma-separated; None: all), on the smoke budget with ``smoke``."""
    from mmbench.runner import smoke_version
    runs = suite.runs()
    wanted_models, wanted_seeds = csv_list(models), csv_list(seeds, int)
    if wanted_models:
        names = {r.coordinates.model for r in runs}
        unknown = sorted(set(wanted_models) - names - {r.label for r in runs})
        if unknown:
            fail(f"--models: {unknown} not in suite {suite.name!r} (has {sorted(names)})")
        runs = [r for r in runs if r.coordinates.model in wanted_models
                or r.label in wanted_models]
    if wanted_seeds:
        runs = [r for r in runs if r.coordinates.seed in wanted_seeds]
    if smoke:
        runs = [smoke_version(r) for r in runs]
    return runs


def check_executor_options(executor: ExecutorKind, jobs: Optional[int],
                           address: Optional[str]) -> None:
    if jobs is not None and executor == ExecutorKind.local:
        fail("--jobs needs --executor process or ray")
    if address is not None and executor != ExecutorKind.ray:
        fail("--address needs --executor ray")
    if address is not None and jobs is not None:
        fail("--jobs sizes a local Ray cluster; with --address the cluster's resources decide")


def _tracker(kind: str | None, uri: str | None, experiment: str) -> Tracker | None:
    """The tracker asked for with --track (None without it); a missing package or an unreachable
    store fails here, before any run starts."""
    from mmbench.tracking import TrackingError, open_tracker
    if kind is None:
        if uri is not None:
            fail("--track-uri needs --track mlflow")
        return None
    try:
        return open_tracker(kind, uri, experiment)
    except TrackingError as error:
        fail(str(error))


def _execute(todo: list[Run], results: Path, device: str, data_dir: Optional[str],
             kind: ExecutorKind, jobs: Optional[int], address: Optional[str],
             tracker: Tracker | None = None) -> int:
    """Run ``todo`` with the chosen executor under a progress display (the local executor shows
    one bar per run, the others one line per finished run), logging each record to ``tracker``
    as it is written; returns the number of runs lost."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn)

    from mmbench.executors import ExecutorError
    from mmbench.tracking import TrackingError
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn())
    bars: dict[str, int] = {}
    lost: list[Run] = []
    with Progress(*columns, console=console) as progress:
        overall = progress.add_task("suite", total=len(todo), status="")

        def on_start(run):
            bar = progress.add_task(f"  {run.name}", total=run.config.epochs, status="")
            bars[run.run_id] = bar

            def on_epoch(epoch, total, row):
                loss = row.get("valid_loss", row["loss"])
                progress.update(bar, completed=epoch, status=f"loss {loss:.4g}")
            return on_epoch

        def on_done(run, record, why):
            if record is None:
                lost.append(run)
                status = f"[red]lost[/]: {why}"
            elif record.ok:
                status = "[green]ok[/]"
            else:
                status = f"[red]failed[/]: {record.error[:80]}"
            if run.run_id in bars:
                progress.update(bars[run.run_id], completed=run.config.epochs, status=status)
            else:
                progress.console.print(f"  {run.name}: {status}", highlight=False)
            progress.advance(overall)
            if tracker is not None and record is not None:
                try:
                    tracker.log(record, results / "runs" / run.run_id)
                except TrackingError as error:  # tracking never stops a suite
                    progress.console.print(f"  [yellow]tracking:[/] {escape(str(error))}",
                                           highlight=False)

        try:
            _executor(kind, jobs, address, on_start).execute(todo, results, device, data_dir,
                                                             on_done)
        except ExecutorError as error:
            fail(str(error))
    return len(lost)


def _executor(kind: ExecutorKind, jobs: Optional[int], address: Optional[str],
              on_start) -> Executor:
    from mmbench.executors import LocalExecutor, ProcessExecutor, RayExecutor
    if kind == ExecutorKind.local:
        return LocalExecutor(on_start)
    if kind == ExecutorKind.process:
        return ProcessExecutor(jobs or os.cpu_count() or 1)
    return RayExecutor(jobs, address)


def _print_plan(runs: list[Run], store: RunStore) -> None:
    table = Table("index", "run id", "model", "data", "grid", "seed", "status")
    counts: dict[str, int] = {}
    for index, run in enumerate(runs):
        record = store.record(run.run_id)
        status = "pending" if record is None else record.status
        c = run.coordinates
        table.add_row(str(index), run.run_id, run.label,
                      ", ".join(f"{k}={v}" for k, v in c.data.items()),
                      ", ".join(f"{k}={v}" for k, v in c.grid.items()), str(c.seed), status)
        counts[status] = counts.get(status, 0) + 1
    console.print(table)
    console.print(f"{len(runs)} runs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                  + (f"; run one with --cell N (0..{len(runs) - 1})" if runs else ""),
                  highlight=False)


def _print_summary(frame: pd.DataFrame, run_ids: list[str]) -> None:
    from mmbench.results import summarize
    frame = frame[frame["run_id"].isin(run_ids)]
    if frame.empty:
        return
    summary = summarize(frame, run_ids)
    table = Table(*summary.columns, title="mean ± std over seeds")
    for row in summary.itertuples(index=False):
        table.add_row(*map(str, row))
    console.print(table)


def models(name: Optional[str] = typer.Argument(
        None, help="A model: show its description and hyper-parameters")) -> None:
    """List the registered models and their capabilities, or describe one model."""
    from mmbench.registry import available_models, model_class
    if name is not None:
        if name not in available_models():
            fail(f"unknown model {name!r}; available: {', '.join(available_models())}")
        describe_model(name)
        return
    table = Table("model", "capabilities", "description")
    for model in available_models():
        cls = model_class(model)
        table.add_row(model, ", ".join(sorted(cls.capabilities)),
                      (cls.__doc__ or "").strip().splitlines()[0])
    console.print(table)


def describe_model(name: str) -> None:
    """Print model ``name``'s description (its docstring) and its hyper-parameters as its config
    declares them: type and allowed values, default, one-line doc."""
    from mmbench.config import describe
    from mmbench.registry import config_class, model_class
    console.print(f"[bold]{name}[/]", highlight=False)
    console.print(escape(inspect.getdoc(model_class(name)) or ""), highlight=False)
    table = Table("hyper-parameter", "allowed", "default", "description")
    for field in describe(config_class(name)):
        table.add_row(field.name, escape(field.allowed), escape(repr(field.default)),
                      escape(field.doc))
    console.print(table)
