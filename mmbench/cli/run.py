"""``mmbench run`` (a suite's runs, resumably) and ``mmbench models`` (what can be run).

``run`` is a thin layer over :mod:`mmbench.api` (the functions ``mmbench.run_suite`` calls): it
adds the plan (``--dry-run``), one run by its index (``--cell``), the summary table, the report of
failed and lost runs and the exit status. The training stack (torch, the executors, pandas) is
imported when a command runs, not when the command line starts.
"""

from __future__ import annotations

import inspect
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import typer
from rich.markup import escape
from rich.table import Table

from mmbench.cli.console import console, csv_list, fail, interruptible

if TYPE_CHECKING:
    import pandas as pd

    from mmbench.api import SuiteOutcome, TunedSelection
    from mmbench.progress import SuiteProgress
    from mmbench.records import Run
    from mmbench.store import RunStore
    from mmbench.suite import Suite
    from mmbench.tracking import Tracker
    from mmbench.tuning import PlanRow

# The exit statuses of ``mmbench run`` (also in its --help and the README)
EXIT_OK, EXIT_RUNS_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
# At most this many runs are named under each distinct failure reason
NAMED_RUNS = 10


class _ExecutionOptions(TypedDict):
    """The options of ``mmbench run`` passed on unchanged to :func:`mmbench.api.execute_runs`
    (or ``execute_tuned_suite``)."""

    device: str | None
    data_dir: str | None
    executor: str
    jobs: int | None
    address: str | None
    threads: int | None
    runs_per_device: int | None
    retry_failed: bool


class ExecutorKind(str, Enum):
    local = "local"
    process = "process"
    ray = "ray"


@interruptible
def run(
    suite_file: Path = typer.Argument(..., help="Suite YAML, e.g. suites/quickstart.yaml"),
    overrides: list[str] | None = typer.Argument(
        None,
        metavar="KEY=VALUE",
        help="Changes to the suite, as if the file said so (checked alike, part of run ids): "
        "a dotted path and a YAML value, e.g. train.epochs=5 seeds=[0,1] "
        "models.0.params.latent_dim=8 models.CMMD.params.omega=0.3 (a block by label)",
    ),
    results: Path | None = typer.Option(
        None, help="Results directory \\[default: results/<suite name>]"
    ),
    models: str | None = typer.Option(None, help="Comma-separated model names or labels to run"),
    seeds: str | None = typer.Option(None, help="Comma-separated replicate seeds to run"),
    device: str | None = typer.Option(None, help="cpu, cuda or cuda:N \\[default: the suite's]"),
    smoke: bool = typer.Option(
        False, help="Tiny budget (2 epochs, a few hundred points) to check plumbing"
    ),
    compile_: bool = typer.Option(
        False,
        "--compile",
        help="torch.compile the training steps (as train.compile=true: same results within "
        "float tolerance, same run ids; a run that cannot be compiled fails naming its model)",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the runs and whether each is done"),
    cell: int | None = typer.Option(None, help="Run only the run with this --dry-run index"),
    retry_failed: bool = typer.Option(
        False, help="Run again the runs recorded as failed or diverged"
    ),
    data_dir: str | None = typer.Option(None, help="Data directory \\[default: $MMBENCH_DATA]"),
    executor: ExecutorKind = typer.Option(
        ExecutorKind.local,
        help="local: one run after another in this process; process: "
        "--jobs (or --runs-per-device) runs at once, a worker process each; ray: Ray tasks",
    ),
    jobs: int | None = typer.Option(
        None,
        min=1,
        help="Runs at once (process), CPUs of the local Ray cluster (ray) "
        "\\[default: the number of CPU cores]",
    ),
    threads: int | None = typer.Option(
        None,
        min=1,
        help="Torch threads per run, over the suite's resources.cpus \\[default: "
        "resources.cpus, else torch's default (local), cores // jobs "
        "(process), 1 (ray)]; on a shared machine 1 is often fastest",
    ),
    runs_per_device: int | None = typer.Option(
        None,
        min=1,
        help="Process executor: at most N runs at once on each device, instead of --jobs "
        "(--device cuda: N on every visible GPU, e.g. small runs sharing a GPU; cpu: N runs, "
        "best with --threads 1)",
    ),
    address: str | None = typer.Option(
        None,
        help="Ray cluster to run on, e.g. auto or ray://head:10001 \\[default: start a "
        "local one]; the results directory must be on a file system all nodes share",
    ),
    allow_large: bool = typer.Option(
        False,
        "--allow-large",
        help="Accept a suite of more runs (or grid points) than mmbench.suite.MAX_RUNS",
    ),
    track: str | None = typer.Option(
        None,
        help="Log every run (params, losses per epoch, metrics) to a tracker: mlflow "
        "(pip install 'mmbench[mlflow]')",
    ),
    track_uri: str | None = typer.Option(
        None,
        help="Where --track logs \\[default: the MLflow file store ./mlruns], e.g. "
        "http://localhost:5000",
    ),
) -> None:
    """Run a suite; finished runs are skipped, so an interrupted suite resumes.

    Before any run starts, the device and each distinct data configuration
    of the pending runs are checked: a problem is one error; nothing is recorded.
    Progress: live bars on a terminal, timestamped lines in logs (SLURM, nohup).

    Exit status:
    0 every selected run is done;
    1 some runs failed (each distinct reason is printed once) or were lost;
    2 bad input: suite, override, option, missing data or device, tracker that cannot start;
    130 interrupted (Ctrl-C).
    """
    from mmbench import api
    from mmbench.data.errors import DataError
    from mmbench.executors import ExecutorError
    from mmbench.store import RecordError, RunStore
    from mmbench.suite import SuiteError

    try:
        if device is not None:
            device = _device(device)
        if compile_:
            overrides = [*(overrides or ()), "train.compile=true"]
        suite = api.load_suite(suite_file, overrides or (), allow_large=allow_large)
        api.check_executor_options(executor.value, jobs, address, threads, runs_per_device)
        runs = api.select_runs(suite, csv_list(models), _seeds(seeds), smoke, data_dir)
        results = results or api.default_results_dir(suite, smoke)
        options = _ExecutionOptions(
            device=device,
            data_dir=data_dir,
            executor=executor.value,
            jobs=jobs,
            address=address,
            threads=threads,
            runs_per_device=runs_per_device,
            retry_failed=retry_failed,
        )
        if suite.tune is not None:
            selection = api.TunedSelection(smoke, csv_list(models), _seeds(seeds))
            tracker = None if dry_run else _tracker(track, track_uri, suite.name)
            outcome = _run_tuned_suite(
                suite, runs, results, selection, dry_run, cell, options, tracker
            )
            if outcome is None:  # --dry-run
                return
        else:
            if dry_run:
                _print_plan(runs, RunStore(results))
                return
            if cell is not None:
                if not 0 <= cell < len(runs):
                    fail(f"--cell {cell}: the suite has runs 0..{len(runs) - 1} (see --dry-run)")
                runs = [runs[cell]]
            outcome = api.execute_runs(
                suite,
                runs,
                results,
                **options,
                tracker=_tracker(track, track_uri, suite.name),
                progress=_progress(executor, jobs, threads, runs_per_device),
            )
    except (SuiteError, api.RunError, DataError, RecordError, ExecutorError) as error:
        fail(str(error))
    import pandas as pd

    _print_summary(pd.read_csv(outcome.tidy), [r.run_id for r in outcome.runs])
    console.print(f"tidy results: {outcome.tidy}", highlight=False, soft_wrap=True)
    if _report_problems(outcome):
        raise typer.Exit(EXIT_RUNS_FAILED)


def _progress(
    executor: ExecutorKind, jobs: int | None, threads: int | None, runs_per_device: int | None
) -> SuiteProgress:
    from mmbench import api
    from mmbench.progress import suite_progress

    at_once = api.concurrency(executor.value, jobs, threads, runs_per_device)
    return suite_progress(console, executor.value, at_once)


def _device(device: str) -> str:
    from mmbench.suite import check_device

    try:
        return check_device(device)
    except ValueError as error:
        fail(f"--device: {error}")


def _seeds(seeds: str | None) -> list[int] | None:
    try:
        return csv_list(seeds, int)
    except ValueError:
        fail(f"--seeds {seeds!r}: expected comma-separated integers, e.g. --seeds 0,1")


def _tracker(kind: str | None, uri: str | None, experiment: str) -> Tracker | None:
    """The tracker asked for with --track (None without it); a missing package or an unreachable
    store fails here, before any run starts."""
    if kind is None:
        if uri is not None:
            fail("--track-uri needs --track mlflow")
        return None
    from mmbench.tracking import TrackingError, open_tracker

    try:
        return open_tracker(kind, uri, experiment)
    except TrackingError as error:
        fail(str(error))


def describe_run(run: Run) -> str:
    """A run for people: "CMMD seed 0 (fold=1, omega=0.3)"."""
    c = run.coordinates
    point = ", ".join(f"{k}={v}" for k, v in {**c.data, **c.grid}.items())
    return f"{run.name} ({point})" if point else run.name


def _report_problems(outcome: SuiteOutcome) -> bool:
    """Print each distinct failure reason once, in full, with its status (failed, diverged) and
    the runs it hit, and the runs lost; returns whether any run is not done."""
    records = {r.run_id: r for r in outcome.records}
    failed: dict[tuple[str, str], list[Run]] = {}
    for run in outcome.runs:
        record = records.get(run.run_id)
        if record is not None and not record.ok:
            failed.setdefault((record.status, record.error or record.status), []).append(run)
    for (status, reason), hit in failed.items():
        named = ", ".join(describe_run(r) for r in hit[:NAMED_RUNS])
        more = f" and {len(hit) - NAMED_RUNS} more" if len(hit) > NAMED_RUNS else ""
        console.print(
            f"[bold red]{len(hit)} run(s) {status}:[/] {escape(reason)}\n"
            f"  runs: {escape(named)}{more}",
            highlight=False,
            soft_wrap=True,
        )
    n_failed = sum(len(hit) for hit in failed.values())
    if n_failed:
        console.print(
            f"[bold red]{n_failed} of {len(outcome.runs)} run(s) failed or "
            "diverged[/]: fix the cause, then run the same command with "
            "--retry-failed to redo them",
            highlight=False,
            soft_wrap=True,
        )
    if outcome.failed_studies:
        console.print(
            f"[bold red]no trial succeeded[/] in the studies of "
            f"{outcome.failed_studies}: see their errors (mmbench run --dry-run lists "
            "them), fix the cause and run the suite again with --retry-failed",
            highlight=False,
            soft_wrap=True,
        )
    if outcome.lost:
        console.print(
            f"[bold red]{len(outcome.lost)} run(s) lost[/] (their worker died): run "
            "the suite again to redo them",
            highlight=False,
            soft_wrap=True,
        )
    return bool(n_failed or outcome.lost or outcome.failed_studies)


def _print_plan(runs: list[Run], store: RunStore) -> None:
    table = Table("index", "run id", "model", "data", "grid", "seed", "status")
    counts: dict[str, int] = {}
    for index, run in enumerate(runs):
        record = store.record(run.run_id)
        status = "pending" if record is None else record.status
        c = run.coordinates
        table.add_row(
            str(index),
            run.run_id,
            run.label,
            ", ".join(f"{k}={v}" for k, v in c.data.items()),
            ", ".join(f"{k}={v}" for k, v in c.grid.items()),
            str(c.seed),
            status,
        )
        counts[status] = counts.get(status, 0) + 1
    console.print(table)
    console.print(
        f"{len(runs)} runs: "
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        + (f"; run one with --cell N (0..{len(runs) - 1})" if runs else ""),
        highlight=False,
    )


# ---------------------------------------------------------------------------------------------
# Tuned suites (mmbench.tuning): trials in rounds, then final runs


def _run_tuned_suite(
    suite: Suite,
    fixed: list[Run],
    results: Path,
    selection: TunedSelection,
    dry_run: bool,
    cell: int | None,
    options: _ExecutionOptions,
    tracker: Tracker | None,
) -> SuiteOutcome | None:
    """Print the plan of a tuned suite (``dry_run``: returns None) or run it, all of it or the
    plan's line ``cell``, in rounds (see :func:`mmbench.api.execute_tuned_suite`)."""
    from mmbench import api, tuning
    from mmbench.records import TRIAL_ROLE
    from mmbench.store import RunStore

    assert suite.tune is not None
    store = RunStore(results)
    states = api.tuning_states(suite, results, selection, options["data_dir"])
    rows = tuning.plan_rows(
        [(r, _status(store, r)) for r in fixed], states, list(selection.seeds or suite.seeds)
    )
    if dry_run:
        _print_tuning_plan(rows, suite.tune.objective)
        return None
    only = None
    if cell is not None:
        row = _tuned_cell(rows, cell)
        assert row.run is not None
        only = [row.run]
    executor = ExecutorKind(options["executor"])

    def announce(todo: list[Run]) -> None:
        trials = sum(run.role == TRIAL_ROLE for run in todo)
        console.print(
            f"[bold]{escape(suite.name)}[/]: {trials} trial(s) and {len(todo) - trials} "
            f"other run(s) to run now",
            highlight=False,
        )

    outcome = api.execute_tuned_suite(
        suite,
        fixed,
        results,
        selection,
        only=only,
        **options,
        tracker=tracker,
        progress=_progress(
            executor, options["jobs"], options["threads"], options["runs_per_device"]
        ),
        on_round=announce,
    )
    unfinished = [s.study.name for s in outcome.studies if not s.finished]
    if unfinished and cell is None and not outcome.lost:
        console.print(f"studies not finished: {unfinished}", highlight=False)
    console.print(
        f"studies: {Path(results) / tuning.SUMMARY_FILE}", highlight=False, soft_wrap=True
    )
    return outcome


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
        fail(
            f"--cell {cell}: every trial of {row.study.name} failed, so it has no final runs; "
            "see the trials' errors with --dry-run"
        )
    first = [
        index
        for index, other in enumerate(rows)
        if other.study == row.study and other.step in {f"trial {n}" for n in row.needs}
    ]
    what = "its study's trials" if row.kind == "final" else "the trials before it"
    fail(
        f"--cell {cell}: {row.study.name} {row.step} is asked from the results of {what}; "
        f"trial(s) {list(row.needs)} have no record yet: run cell(s) {first} first"
    )


def _print_tuning_plan(rows: list[PlanRow], objective: str) -> None:
    """The plan of a tuned suite: every line with its searched values, and each trial's
    objective on the validation split ("best" marks the chosen trial of a finished study)."""
    table = Table(
        "index", "run id", "model", "data", "step", "values", f"valid {objective}", "status"
    )
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
        table.add_row(
            str(index),
            "" if run is None else run.run_id,
            escape(label),
            ", ".join(f"{k}={v}" for k, v in point.items()),
            f"final {row.step}" if row.kind == "final" else row.step,
            escape(values),
            score,
            escape(status),
        )
        counts[row.kind][row.status] = counts[row.kind].get(row.status, 0) + 1
    console.print(table)
    names = {"run": "other runs", "trial": "trials", "final": "final runs"}
    console.print(
        "; ".join(
            f"{sum(found.values())} {names[kind]}: "
            + ", ".join(f"{n} {status}" for status, n in sorted(found.items()))
            for kind, found in counts.items()
            if found
        )
        + (f"; run one with --cell N (0..{len(rows) - 1})" if rows else ""),
        highlight=False,
    )


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

    if "run_id" not in frame:  # no record yet
        return
    frame = frame[frame["run_id"].isin(run_ids)]
    # a tuned suite's trials are left out, and with them the hyper-parameter columns only they fill
    unfilled = [c for c in frame if c.startswith("param.") and frame[c].isna().all()]
    frame = frame.drop(columns=unfilled)
    if frame.empty:
        return
    summary = summarize(frame, run_ids)
    table = Table(*summary.columns, title="mean ± std over seeds")
    for row in summary.itertuples(index=False):
        table.add_row(*map(str, row))
    console.print(table)


def models(
    name: str | None = typer.Argument(
        None, help="A model: show its description and hyper-parameters"
    ),
) -> None:
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
        table.add_row(
            model, ", ".join(sorted(cls.capabilities)), (cls.__doc__ or "").strip().splitlines()[0]
        )
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
        table.add_row(
            field.name, escape(field.allowed), escape(repr(field.default)), escape(field.doc)
        )
    console.print(table)
