"""``mmbench run`` (a suite's runs, resumably) and ``mmbench models`` (what can be run).

The training stack (torch, the executors, pandas) is imported when a command runs, not when the
command line starts."""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from mmbench.cli.console import console, csv_list, fail

if TYPE_CHECKING:
    import pandas as pd

    from mmbench.executors import Executor
    from mmbench.records import Record, Run
    from mmbench.store import RunStore
    from mmbench.suite import Suite
    from mmbench.tuning import PlanRow, StudyState


class ExecutorKind(str, Enum):
    local = "local"
    process = "process"
    ray = "ray"


def run(
    suite_file: Path = typer.Argument(..., help="Suite YAML, e.g. suites/quickstart.yaml"),
    results: Path | None = typer.Option(
        None, help="Results directory \\[default: results/<suite name>]"),
    models: str | None = typer.Option(
        None, help="Comma-separated model names or labels to run"),
    seeds: str | None = typer.Option(None, help="Comma-separated replicate seeds to run"),
    device: str | None = typer.Option(
        None, help="cpu, cuda or cuda:N \\[default: the suite's]"),
    smoke: bool = typer.Option(
        False, help="Tiny budget (2 epochs, a few hundred points) to check plumbing"),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the runs and whether each is done"),
    cell: int | None = typer.Option(None, help="Run only the run with this --dry-run index"),
    retry_failed: bool = typer.Option(False, help="Run again the runs recorded as failed"),
    data_dir: str | None = typer.Option(
        None, help="Data directory \\[default: $MMBENCH_DATA]"),
    executor: ExecutorKind = typer.Option(
        ExecutorKind.local, help="local: one run after another in this process; process: "
                                 "--jobs runs at once, a worker process each; ray: Ray tasks"),
    jobs: int | None = typer.Option(
        None, min=1, help="Runs at once (process), CPUs of the local Ray cluster (ray) "
                          "\\[default: the number of CPU cores]"),
    address: str | None = typer.Option(
        None, help="Ray cluster to run on, e.g. auto or ray://head:10001 \\[default: start a "
                   "local one]; the results directory must be on a file system all nodes share"),
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
    results = results or Path("results") / (suite.name + ("-smoke" if smoke else ""))
    device = device or suite.device
    runs = select_runs(suite, models, seeds, smoke)
    store = RunStore(results)
    if suite.tune is not None:
        _run_tuned_suite(suite, runs, store, results, device, data_dir, executor, jobs, address,
                         TunedSelection(smoke, csv_list(models), csv_list(seeds, int)),
                         dry_run, cell, retry_failed)
        return
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
        lost = _execute(todo, results, device, data_dir, executor, jobs, address) if todo else 0
        tidy_path = write_tidy(results)
    except RecordError as error:
        fail(str(error))
    _print_summary(pd.read_csv(tidy_path), [r.run_id for r in runs])
    console.print(f"tidy results: {tidy_path}")
    if lost:
        console.print(f"[bold red]{lost} run(s) lost[/] (their worker died): run the suite again "
                      "to redo them", highlight=False)
        raise typer.Exit(1)


def select_runs(suite: Suite, models: str | None, seeds: str | None,
                smoke: bool) -> list[Run]:
    """The suite's runs of the ``models`` (names or labels) and replicate ``seeds`` asked for
    (comma-separated; None: all), on the smoke budget with ``smoke``."""
    from mmbench.runner import smoke_version
    runs = suite.runs()
    wanted_models, wanted_seeds = csv_list(models), csv_list(seeds, int)
    if wanted_models:
        names = {r.coordinates.model for r in runs} | {b.name for b in suite.models}
        labels = {r.label for r in runs} | {b.display_label for b in suite.models}
        unknown = sorted(set(wanted_models) - names - labels)
        if unknown:
            fail(f"--models: {unknown} not in suite {suite.name!r} (has {sorted(names)})")
        runs = [r for r in runs if r.coordinates.model in wanted_models
                or r.label in wanted_models]
    if wanted_seeds:
        runs = [r for r in runs if r.coordinates.seed in wanted_seeds]
    if smoke:
        runs = [smoke_version(r) for r in runs]
    return runs


def check_executor_options(executor: ExecutorKind, jobs: int | None,
                           address: str | None) -> None:
    if jobs is not None and executor == ExecutorKind.local:
        fail("--jobs needs --executor process or ray")
    if address is not None and executor != ExecutorKind.ray:
        fail("--address needs --executor ray")
    if address is not None and jobs is not None:
        fail("--jobs sizes a local Ray cluster; with --address the cluster's resources decide")


def _execute(todo: list[Run], results: Path, device: str, data_dir: str | None,
             kind: ExecutorKind, jobs: int | None, address: str | None) -> int:
    """Run ``todo`` with the chosen executor under a progress display (the local executor shows
    one bar per run, the others one line per finished run); returns the number of runs lost."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from mmbench.executors import ExecutorError
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

        try:
            _executor(kind, jobs, address, on_start).execute(todo, results, device, data_dir,
                                                             on_done)
        except ExecutorError as error:
            fail(str(error))
    return len(lost)


def _executor(kind: ExecutorKind, jobs: int | None, address: str | None,
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


# ---------------------------------------------------------------------------------------------
# Tuned suites (mmbench.tuning): trials in rounds, then final runs


@dataclass(frozen=True)
class TunedSelection:
    """What of a tuned suite a command asks for: the smoke budget, the studies of some models
    (names or labels; None: all) and the final runs of some replicate seeds (None: all)."""

    smoke: bool
    models: list[str] | None
    seeds: list[int] | None


def _run_tuned_suite(suite: Suite, fixed: list[Run], store: RunStore, results: Path, device: str,
                     data_dir: str | None, kind: ExecutorKind, jobs: int | None,
                     address: str | None, selection: TunedSelection, dry_run: bool,
                     cell: int | None, retry_failed: bool) -> None:
    """Run a tuned suite in rounds: each round runs every trial that can be asked and every
    final run of a finished study (with the suite's runs that are not tuned in the first), until
    none is left. Runs done in this command are not done again in a later round, so a failed
    run is retried (--retry-failed) once. Exits with 1 when a run was lost or a study had no
    successful trial."""
    import pandas as pd

    from mmbench import tuning
    from mmbench.records import OK, TRIAL_ROLE
    from mmbench.results import write_tidy
    from mmbench.store import RecordError
    assert suite.tune is not None
    objective = suite.tune.objective
    seeds = selection.seeds or suite.seeds
    done: set[str] = set()  # run ids run by this command

    def current(retry: bool = False) -> list[StudyState]:
        def redo(record: Record) -> bool:  # a failed run this command has not run again yet
            return retry and record.status != OK and record.run_id not in done
        return tuning.plan(suite, store, selection.smoke, selection.seeds, selection.models,
                           redo)

    try:
        states = current()
        rows = tuning.plan_rows([(r, _status(store, r)) for r in fixed], states, seeds)
        if dry_run:
            _print_tuning_plan(rows, objective)
            return
        row = None if cell is None else _tuned_cell(rows, cell)

        def next_runs() -> list[Run]:
            if row is None:
                wanted = store.pending(fixed, retry_failed) + tuning.runnable(
                    current(retry_failed))
            else:
                redo = row.status == "pending" or (retry_failed and row.status != OK)
                wanted = [row.run] if redo and row.run is not None else []
            return [r for r in wanted if r.run_id not in done]

        if next_runs():
            _check_objective(suite, states, data_dir, unload=kind != ExecutorKind.local)
        lost = 0
        while todo := next_runs():
            trials = sum(r.role == TRIAL_ROLE for r in todo)
            console.print(f"[bold]{suite.name}[/]: {trials} trial(s) and {len(todo) - trials} "
                          f"other run(s) to run now, results in {results}", highlight=False)
            lost += _execute(todo, results, device, data_dir, kind, jobs, address)
            done.update(r.run_id for r in todo)
            tuning.write_summary(results, suite, tuning.plan(suite, store, selection.smoke))
            if lost:
                break
        states = current()
        tidy_path = write_tidy(results)
    except RecordError as error:
        fail(str(error))
    reported = fixed + [f.run for state in states for f in state.finals or ()]
    frame = pd.read_csv(tidy_path)
    frame = frame[frame["run_id"].isin({r.run_id for r in reported})]
    _print_summary(frame.dropna(axis=1, how="all"), [r.run_id for r in reported])
    console.print(f"tidy results: {tidy_path}; studies: {results / tuning.SUMMARY_FILE}")
    unfinished = [s.study.name for s in states if not s.finished]
    failed = [s.study.name for s in states if s.failed]
    if failed:
        console.print(f"[bold red]no trial succeeded[/] in the studies of {failed}: see their "
                      "errors (mmbench run --dry-run lists them), fix the cause and run the suite "
                      "again with --retry-failed", highlight=False)
    if lost:
        console.print(f"[bold red]{lost} run(s) lost[/] (their worker died): run the suite again "
                      "to redo them", highlight=False)
    elif unfinished and cell is None:
        console.print(f"studies not finished: {unfinished}", highlight=False)
    if lost or failed:
        raise typer.Exit(1)


def _status(store: RunStore, run: Run) -> str:
    record = store.record(run.run_id)
    return "pending" if record is None else record.status


def _tuned_cell(rows: list[PlanRow], cell: int) -> PlanRow:
    """Line ``cell`` of a tuned suite's plan; an error says which lines to run first when its
    run cannot be known yet."""
    if not 0 <= cell < len(rows):
        fail(f"--cell {cell}: the suite has runs 0..{len(rows) - 1} (see --dry-run)")
    row = rows[cell]
    if row.run is not None:
        return row
    assert row.study is not None  # the suite's runs that are not tuned are always known
    if row.status == "no trial succeeded":
        fail(f"--cell {cell}: every trial of {row.study.name} failed, so it has no final runs; "
             "see the trials' errors with --dry-run")
    first = [index for index, other in enumerate(rows)
             if other.study == row.study and other.step in {f"trial {n}" for n in row.needs}]
    what = "its study's trials" if row.kind == "final" else "the trials before it"
    fail(f"--cell {cell}: {row.study.name} {row.step} is asked from the results of {what}; "
         f"trial(s) {list(row.needs)} have no record yet: run cell(s) {first} first")


def _check_objective(suite: Suite, states: list[StudyState], data_dir: str | None,
                     unload: bool) -> None:
    """Exit with 2 before any run when a data point cannot give the suite's tune objective
    (e.g. mAP on single-label data). Data that do not load are left to the runs, which record
    why."""
    from mmbench import tuning
    from mmbench.runner import forget_loaded_data, load_run_data
    assert suite.tune is not None
    checked: set[str] = set()
    for state in states:
        run = state.trials[0].run if state.trials else None
        point = repr(state.study.data_point)
        if run is None or point in checked:
            continue
        checked.add(point)
        try:
            splits = load_run_data(run.config, data_dir)
        except Exception:  # the runs record why the data do not load
            continue
        problem = tuning.objective_problem(suite.tune.objective, splits)
        if problem is not None:
            where = f" at data point {state.study.data_point}" if state.study.data_point else ""
            fail(f"{suite.name}: tune.objective {suite.tune.objective}: {problem}{where}")
    if unload:  # the workers load the data themselves
        forget_loaded_data()


def _print_tuning_plan(rows: list[PlanRow], objective: str) -> None:
    """The plan of a tuned suite: every line with its searched values, and each trial's
    objective on the validation split ("best" marks the chosen trial of a finished study)."""
    table = Table("index", "run id", "model", "data", "step", "values", f"valid {objective}",
                  "status")
    counts: dict[str, dict[str, int]] = {"run": {}, "trial": {}, "final": {}}
    for index, row in enumerate(rows):
        run, study = row.run, row.study
        if run is not None:
            label, point = run.label, run.coordinates.data
        else:
            assert study is not None  # the suite's runs that are not tuned are always known
            label, point = study.label, study.data_point
        values = ""
        if run is not None and run.tuning is not None:
            values = ", ".join(f"{k}={_short(v)}" for k, v in run.tuning.params.items())
        status = row.status
        if row.needs:
            status += f" for trials {_ranges(row.needs)}"
        score = "" if row.value is None else f"{row.value:.4g}" + (" best" if row.best else "")
        table.add_row(str(index), "" if run is None else run.run_id, escape(label),
                      ", ".join(f"{k}={v}" for k, v in point.items()),
                      f"final {row.step}" if row.kind == "final" else row.step, escape(values),
                      score, escape(status))
        counts[row.kind][row.status] = counts[row.kind].get(row.status, 0) + 1
    console.print(table)
    names = {"run": "other runs", "trial": "trials", "final": "final runs"}
    console.print("; ".join(
        f"{sum(found.values())} {names[kind]}: "
        + ", ".join(f"{n} {status}" for status, n in sorted(found.items()))
        for kind, found in counts.items() if found)
        + (f"; run one with --cell N (0..{len(rows) - 1})" if rows else ""), highlight=False)


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _ranges(numbers: tuple[int, ...]) -> str:
    """(0, 1, 2, 5) -> "0-2, 5"."""
    parts: list[list[int]] = []
    for n in numbers:
        if parts and n == parts[-1][-1] + 1:
            parts[-1].append(n)
        else:
            parts.append([n])
    return ", ".join(f"{p[0]}-{p[-1]}" if len(p) > 1 else str(p[0]) for p in parts)


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


def models(name: str | None = typer.Argument(
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
