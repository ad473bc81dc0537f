"""Running a suite and reading its results from Python; ``mmbench run`` is a thin layer on top.

:func:`run_suite` does what ``mmbench run`` does (the command calls the same functions): select
the runs, check before any run starts that the device exists and that every distinct data
configuration of the pending runs loads (:func:`preflight`: a problem raises
:class:`PreflightError` and nothing is recorded), write ``<results>/suite.json``, execute the
pending runs with an executor under a progress display, and rebuild ``results.csv``.
:func:`load_results` reads a results directory back as records and one tidy table.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmbench.records import Record, Run
from mmbench.suite import Suite, load_suite, validate_suite

if TYPE_CHECKING:
    import pandas as pd

    from mmbench.executors import Executor, Start
    from mmbench.progress import SuiteProgress
    from mmbench.tracking import Tracker
    from mmbench.tuning import StudyState

EXECUTORS = ("local", "process", "ray")
SUITE_JSON = "suite.json"

log = logging.getLogger(__name__)


class RunError(ValueError):
    """Arguments that select no valid run or executor (an unknown model or seed, ``jobs`` for
    the local executor, ...); the message names the argument and what is allowed."""


class PreflightError(RunError):
    """The device or a data configuration that every run of it would fail on; raised before any
    run starts, so nothing is recorded. The message says what is missing, where it was looked
    for and how to fix it."""


@dataclass(frozen=True)
class SuiteOutcome:
    """What executing a suite left: the ``records`` of its selected runs (in suite order, those
    finished earlier included), the runs ``lost`` (run id -> how its worker died; they have no
    record and a new run redoes them) and the path of the rebuilt tidy table. For a tuned suite
    ``runs`` are the reported ones (its untuned runs and the final runs of its studies) and
    ``studies`` says where each tuning study stands."""

    runs: list[Run]
    records: list[Record]
    lost: dict[str, str]
    tidy: Path
    studies: list[StudyState] = field(default_factory=list)

    @property
    def failed_studies(self) -> list[str]:
        """The studies in which no trial succeeded (they have no final runs)."""
        return [state.study.name for state in self.studies if state.failed]


@dataclass(frozen=True)
class Results:
    """A results directory read back: its ``records`` (by run id; tuning trials included, with
    role "trial") and ``frame``, the tidy table of :func:`mmbench.results.tidy` (one row per run
    and metric)."""

    records: list[Record]
    frame: pd.DataFrame

    def summary(self) -> pd.DataFrame:
        """Mean ± std over seeds of the main metrics of the reported runs (tuning trials left
        out), one row per model label and grid point."""
        from mmbench.records import TRIAL_ROLE
        from mmbench.results import summarize

        return summarize(self.frame[self.frame["role"] != TRIAL_ROLE])


def load_results(results: str | os.PathLike) -> Results:
    """The records and tidy table of the results directory ``results`` (needs no torch)."""
    from mmbench.results import tidy
    from mmbench.store import RunStore

    if not (Path(results) / "runs").is_dir():
        raise FileNotFoundError(
            f"{results}: not a results directory (it has no runs/ folder); "
            "`mmbench run SUITE --results DIR` writes one"
        )
    records = RunStore(results).records()
    return Results(records, tidy(records))


def as_suite(suite: Suite | dict | str | os.PathLike, overrides: Sequence[str] = ()) -> Suite:
    """A validated suite from a suite file's path, its content as a dict, or a :class:`Suite`,
    with ``overrides`` (``"KEY=VALUE"``) applied."""
    if isinstance(suite, Suite):
        if not overrides:
            return suite
        return validate_suite(
            suite.model_dump(),
            suite.file or "suite",
            [*suite.overrides, *overrides],
            suite.base_dir,
            suite.file,
        )
    if isinstance(suite, dict):
        return validate_suite(suite, "suite", overrides)
    return load_suite(suite, overrides)


def default_results_dir(suite: Suite, smoke: bool = False) -> Path:
    """``results/<suite name>``, or ``results/<suite name>-smoke`` for smoke runs."""
    from mmbench.paths import inside

    name = suite.name + ("-smoke" if smoke else "")
    inside("results", name)  # the suite's name is a safe name: this never fails
    return Path("results") / name


def select_runs(
    suite: Suite,
    models: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    smoke: bool = False,
    data_dir: str | os.PathLike | None = None,
) -> list[Run]:
    """The suite's runs of the ``models`` (names or labels) and replicate ``seeds`` asked for
    (None: all), on the smoke budget with ``smoke``. ``data_dir`` is the last place a relative
    path of a user's data file is looked for (its content digest is part of the run ids)."""
    from mmbench.runner import smoke_version

    runs = suite.runs(data_dir)
    if models:
        # a tuned suite's model blocks have no runs before their studies are planned
        names = {r.coordinates.model for r in runs} | {block.name for block in suite.models}
        labels = {r.label for r in runs} | {block.display_label for block in suite.models}
        unknown = sorted(set(models) - names - labels)
        if unknown:
            raise RunError(
                f"models {unknown} not in suite {suite.name!r} (it has {sorted(names | labels)})"
            )
        runs = [r for r in runs if r.coordinates.model in models or r.label in models]
    if seeds:
        unknown_seeds = sorted(set(seeds) - set(suite.seeds))
        if unknown_seeds:
            raise RunError(
                f"seeds {unknown_seeds} not in suite {suite.name!r} (it has {suite.seeds})"
            )
        runs = [r for r in runs if r.coordinates.seed in seeds]
    return [smoke_version(r) for r in runs] if smoke else runs


def check_executor_options(
    executor: str,
    jobs: int | None,
    address: str | None,
    threads: int | None,
    runs_per_device: int | None = None,
) -> None:
    """Raise a :class:`RunError` for options that do not apply to ``executor``."""
    if executor not in EXECUTORS:
        raise RunError(f"executor {executor!r}; allowed: {', '.join(EXECUTORS)}")
    if jobs is not None and executor == "local":
        raise RunError("--jobs needs --executor process or ray")
    if jobs is not None and jobs < 1:
        raise RunError(f"--jobs {jobs}: must be at least 1")
    if threads is not None and threads < 1:
        raise RunError(f"--threads {threads}: must be at least 1")
    if address is not None and executor != "ray":
        raise RunError("--address needs --executor ray")
    if address is not None and jobs is not None:
        raise RunError(
            "--jobs sizes a local Ray cluster; with --address the cluster's resources decide"
        )
    if runs_per_device is not None:
        if executor != "process":
            raise RunError(
                "--runs-per-device needs --executor process (with ray, give a run a fraction "
                "of a GPU: resources: {gpus: 0.5})"
            )
        if runs_per_device < 1:
            raise RunError(f"--runs-per-device {runs_per_device}: must be at least 1")
        if jobs is not None:
            raise RunError(
                "--jobs and --runs-per-device both say how many runs go at once; give one "
                "(--runs-per-device N runs N per device: N x the GPUs with --device cuda)"
            )


def make_executor(
    executor: str,
    jobs: int | None = None,
    address: str | None = None,
    threads: int | None = None,
    on_start: Start | None = None,
    runs_per_device: int | None = None,
) -> Executor:
    """The executor named ``executor`` (see :mod:`mmbench.executors`)."""
    from mmbench.executors import LocalExecutor, ProcessExecutor, RayExecutor

    if executor == "local":
        return LocalExecutor(on_start, threads)
    if executor == "process":
        return ProcessExecutor(jobs or os.cpu_count() or 1, threads, on_start, runs_per_device)
    return RayExecutor(jobs, address, threads, on_start)


def concurrency(
    executor: str, jobs: int | None, threads: int | None, runs_per_device: int | None = None
) -> int:
    """About how many runs go at once (for the ETA; with ``runs_per_device``, those of one
    device)."""
    if executor == "local":
        return 1
    if runs_per_device is not None:
        return runs_per_device
    slots = jobs or os.cpu_count() or 1
    return slots if executor == "process" else max(1, slots // (threads or 1))


def check_device(device: str, where: str = "--device") -> None:
    """Raise a :class:`PreflightError` unless torch can use ``device`` (``where``: the flag or
    field that set it)."""
    import torch

    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise PreflightError(
            f"{where} {device!r} is not a device; use cpu, cuda or cuda:N, or mps"
        ) from None
    fix = (
        "run with --device cpu"
        if where == "--device"
        else "set device: cpu in the suite, or run with --device cpu"
    )
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            why = (
                "this torch is built without CUDA"
                if torch.version.cuda is None
                else "no GPU is visible (check the driver and CUDA_VISIBLE_DEVICES)"
            )
            raise PreflightError(
                f"{where} {device}: torch {torch.__version__} sees no CUDA device ({why}); {fix}"
            )
        count = torch.cuda.device_count()
        if chosen.index is not None and chosen.index >= count:
            raise PreflightError(
                f"{where} {device}: torch sees {count} CUDA device(s), "
                f"cuda:0..cuda:{count - 1}; {fix}"
            )
    elif chosen.type == "mps" and not torch.backends.mps.is_available():
        raise PreflightError(f"{where} {device}: torch sees no Apple MPS device; {fix}")
    elif chosen.type not in ("cpu", "cuda", "mps"):
        raise PreflightError(f"{where} {device}: mmbench runs on cpu, cuda or mps; {fix}")


def check_data(
    runs: Sequence[Run], data_dir: str | os.PathLike | None = None, keep: bool = True
) -> None:
    """Load every distinct data configuration of ``runs`` once; the first problem raises a
    :class:`PreflightError` that names the data configuration and the runs it would fail.

    ``keep``: leave the data loaded last in this process's cache for the runs (the local
    executor: with one or two data configurations nothing is loaded twice); otherwise the cache
    is emptied (workers load their own).
    """
    from mmbench.runner import forget_loaded_data, load_run_data

    distinct: dict[str, list[Run]] = {}
    for run in runs:
        key = json.dumps([run.config.data.to_json(), run.base_dir], sort_keys=True)
        distinct.setdefault(key, []).append(run)
    for group in distinct.values():
        data = group[0].config.data
        try:
            load_run_data(
                group[0].config, None if data_dir is None else str(data_dir), group[0].base_dir
            )
        except Exception as error:  # whatever stops the load would fail each of these runs
            from mmbench.data.errors import DataError

            reason = (
                str(error) if isinstance(error, DataError) else f"{type(error).__name__}: {error}"
            )
            options = ", ".join(f"{k}={v}" for k, v in data.options.items())
            raise PreflightError(
                f"data set {data.name}{f' ({options})' if options else ''}, "
                f"needed by {len(group)} of the {len(runs)} pending run(s), "
                f"cannot be loaded: {reason}"
            ) from None
    if not keep:
        forget_loaded_data()


def preflight(
    runs: Sequence[Run],
    device: str,
    data_dir: str | os.PathLike | None = None,
    *,
    device_from: str = "--device",
    keep_data: bool = True,
) -> None:
    """Check the ``device`` and the data of ``runs`` before any of them starts (see
    :func:`check_device` and :func:`check_data`)."""
    if runs:
        check_device(device, device_from)
        check_data(runs, data_dir, keep_data)


def write_suite_json(suite: Suite, results: str | os.PathLike) -> Path:
    """``<results>/suite.json``: the validated suite (``Suite.model_dump(mode="json")``) with
    ``suite_file``, ``overrides`` and ``written`` (ISO 8601); written atomically."""
    path = Path(results) / SUITE_JSON
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {
        **suite.model_dump(mode="json"),
        "suite_file": suite.file,
        "overrides": list(suite.overrides),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    staging = path.with_name(f".{SUITE_JSON}.{os.getpid()}.tmp")
    staging.write_text(json.dumps(content, indent=1))
    os.replace(staging, path)
    return path


def execute_runs(
    suite: Suite,
    runs: Sequence[Run],
    results: str | os.PathLike,
    *,
    device: str | None = None,
    data_dir: str | os.PathLike | None = None,
    executor: str = "local",
    jobs: int | None = None,
    address: str | None = None,
    threads: int | None = None,
    runs_per_device: int | None = None,
    retry_failed: bool = False,
    progress: SuiteProgress | None = None,
    tracker: Tracker | None = None,
) -> SuiteOutcome:
    """Run the pending ``runs`` of ``suite`` into ``results`` (runs with a record are skipped;
    failed ones too unless ``retry_failed``).

    Before any run starts the device and the data are checked (:func:`preflight`, raising
    :class:`PreflightError`; skipped with a Ray ``address``, whose nodes have their own), then
    ``suite.json`` is written. ``device`` defaults to the suite's; ``threads`` are the torch
    threads of every run (None: its ``resources.cpus``, else the executor's default).
    ``tracker`` logs each run once its record is written, in this process whatever the
    executor; a tracking failure is a logged warning, never a stopped suite.
    """
    from mmbench.progress import Silent
    from mmbench.results import write_tidy
    from mmbench.store import RunStore

    check_executor_options(executor, jobs, address, threads, runs_per_device)
    shown = progress or Silent()
    chosen = make_executor(  # e.g. ray missing
        executor, jobs, address, threads, shown.start, runs_per_device
    )
    device_from = "--device" if device else "the suite's device"
    device = device or suite.device
    store = RunStore(results)
    todo = store.pending(runs, retry_failed)
    if address is None:
        preflight(todo, device, data_dir, device_from=device_from, keep_data=executor == "local")
    write_suite_json(suite, results)
    lost: dict[str, str] = {}

    def on_done(run: Run, record: Record | None, how: str | None) -> None:
        if record is None:
            lost[run.run_id] = how or "lost"
        shown.done(run, record, how)
        if tracker is not None and record is not None:
            _track(tracker, record, store.path(run.run_id))

    if not todo:  # with runs to do, the executor's claims clean up as they start
        store.remove_litter()
    shown.begin(suite.name, len(runs), len(todo), Path(results))
    try:
        if todo:
            chosen.execute(
                todo,
                results,
                device,
                None if data_dir is None else str(data_dir),
                on_done,
                shown.skipped,
            )
    finally:
        shown.end()
    tidy_path = write_tidy(Path(results))
    found = [store.record(run.run_id) for run in runs]
    return SuiteOutcome(list(runs), [r for r in found if r is not None], lost, tidy_path)


@dataclass(frozen=True)
class TunedSelection:
    """What of a tuned suite is asked for: the smoke budget, the studies of some models (names or
    labels; None: all) and the final runs of some replicate seeds (None: all)."""

    smoke: bool = False
    models: Sequence[str] | None = None
    seeds: Sequence[int] | None = None


def tuning_states(
    suite: Suite,
    results: str | os.PathLike,
    selection: TunedSelection,
    data_dir: str | os.PathLike | None = None,
    redo: Callable[[Record], bool] | None = None,
) -> list[StudyState]:
    """Where each selected tuning study of ``suite`` stands, from the records in ``results``
    (``redo``: records to treat as absent). See :func:`mmbench.tuning.plan`."""
    from mmbench import tuning
    from mmbench.store import RunStore

    return tuning.plan(
        suite,
        RunStore(results),
        selection.smoke,
        None if selection.seeds is None else list(selection.seeds),
        None if selection.models is None else list(selection.models),
        redo,
        None if data_dir is None else str(data_dir),
    )


def check_objective(
    suite: Suite,
    states: Sequence[StudyState],
    data_dir: str | os.PathLike | None = None,
    keep: bool = True,
) -> None:
    """Raise a :class:`PreflightError` when a data point cannot give the suite's tune objective
    (e.g. mAP on single-label data). Data that do not load are left to :func:`check_data`."""
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
            splits = load_run_data(
                run.config, None if data_dir is None else str(data_dir), run.base_dir
            )
        except Exception:  # check_data reports it in full
            continue
        problem = tuning.objective_problem(suite.tune.objective, splits)
        if problem is not None:
            where = f" at data point {state.study.data_point}" if state.study.data_point else ""
            raise PreflightError(
                f"{suite.name}: tune.objective {suite.tune.objective}: {problem}{where}"
            )
    if not keep:
        forget_loaded_data()


def execute_tuned_suite(
    suite: Suite,
    fixed: Sequence[Run],
    results: str | os.PathLike,
    selection: TunedSelection = TunedSelection(),
    *,
    only: Sequence[Run] | None = None,
    device: str | None = None,
    data_dir: str | os.PathLike | None = None,
    executor: str = "local",
    jobs: int | None = None,
    address: str | None = None,
    threads: int | None = None,
    runs_per_device: int | None = None,
    retry_failed: bool = False,
    progress: SuiteProgress | None = None,
    tracker: Tracker | None = None,
    on_round: Callable[[list[Run]], None] | None = None,
) -> SuiteOutcome:
    """Run a tuned suite in rounds: each round (one :func:`execute_runs`) runs every trial that
    can be asked and every final run of a finished study, with the suite's ``fixed`` runs (those
    not tuned, e.g. reference rows) in the first, until none is left. A run done in this call is
    not done again in a later round, so a failed run is retried (``retry_failed``) once.
    ``only``: run these runs of the plan and nothing else (``--cell``). ``on_round`` is called
    with the runs of each round before it starts; the device, the data and the tune objective
    are checked before the first (:func:`preflight`, :func:`check_objective`)."""
    from mmbench import tuning
    from mmbench.results import write_tidy
    from mmbench.store import RunStore

    store = RunStore(results)
    done: set[str] = set()  # run ids run by this call

    def current(retry: bool = False) -> list[StudyState]:
        def redo(record: Record) -> bool:  # a failed run this call has not run again yet
            return retry and not record.ok and record.run_id not in done

        return tuning_states(suite, results, selection, data_dir, redo)

    def next_runs() -> list[Run]:
        wanted = (
            store.pending(only, retry_failed)
            if only is not None
            else store.pending(fixed, retry_failed) + tuning.runnable(current(retry_failed))
        )
        return [r for r in wanted if r.run_id not in done]

    lost: dict[str, str] = {}
    tidy_path: Path | None = None  # rebuilt by each round
    todo = next_runs()
    if todo:  # the first round's checks come before ``on_round`` announces any run
        if address is None:
            preflight(
                todo,
                device or suite.device,
                data_dir,
                device_from="--device" if device else "the suite's device",
            )
        check_objective(suite, current(), data_dir, keep=executor == "local")
    while todo:
        if on_round is not None:
            on_round(todo)
        outcome = execute_runs(
            suite,
            todo,
            results,
            device=device,
            data_dir=data_dir,
            executor=executor,
            jobs=jobs,
            address=address,
            threads=threads,
            runs_per_device=runs_per_device,
            retry_failed=retry_failed,
            progress=progress,
            tracker=tracker,
        )
        done.update(r.run_id for r in todo)
        lost.update(outcome.lost)
        tidy_path = outcome.tidy
        tuning.write_summary(
            results,
            suite,
            tuning.plan(
                suite, store, selection.smoke, data_dir=None if data_dir is None else str(data_dir)
            ),
        )
        todo = [] if lost else next_runs()
    states = current()
    if tidy_path is None:  # nothing ran: the table still reflects the records found
        tidy_path = write_tidy(Path(results))
    reported = [*fixed, *(f.run for state in states for f in state.finals or ())]
    found = [store.record(run.run_id) for run in reported]
    return SuiteOutcome(reported, [r for r in found if r is not None], lost, tidy_path, states)


def _track(tracker: Tracker, record: Record, folder: Path) -> None:
    from mmbench.tracking import TrackingError

    try:
        tracker.log(record, folder)
    except TrackingError as error:
        log.warning("tracking: %s", error)


def run_suite(
    suite: Suite | dict | str | os.PathLike,
    results: str | os.PathLike | None = None,
    *,
    overrides: Sequence[str] = (),
    models: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    smoke: bool = False,
    device: str | None = None,
    data_dir: str | os.PathLike | None = None,
    executor: str = "local",
    jobs: int | None = None,
    address: str | None = None,
    threads: int | None = None,
    runs_per_device: int | None = None,
    retry_failed: bool = False,
    progress: bool | SuiteProgress = True,
    track: str | None = None,
    track_uri: str | None = None,
) -> list[Record]:
    """Run a suite as ``mmbench run`` does and return the records of its selected runs, in the
    suite's order (runs finished earlier are skipped and their records returned too); a tuned
    suite runs its trials, then the final runs, whose records are returned.

    suite: a suite file's path, its content as a dict, or a :class:`~mmbench.suite.Suite`.
    results: the results directory (default ``results/<suite name>``, ``-smoke`` appended with
        ``smoke``). overrides: ``"KEY=VALUE"`` changes to the suite (``"train.epochs=5"``).
    models, seeds: only these models (names or labels) and replicate seeds. smoke: a tiny budget.
    executor: "local", "process" (``jobs`` at once, or ``runs_per_device`` on each device) or
        "ray" (``address``: an existing cluster).
    threads: torch threads per run. progress: show it (live bars on a terminal, else lines).
    track: log each run to this tracker ("mlflow", an optional extra) at ``track_uri`` (default
        ./mlruns), in the experiment named after the suite.

    Raises :class:`~mmbench.suite.SuiteError` for a bad suite or override, :class:`RunError` for
    bad arguments, :class:`PreflightError` when the device or data would fail every run and
    :class:`~mmbench.tracking.TrackingError` for a tracker that cannot start. A
    run that fails is recorded as failed (its record says why); a run whose worker died has no
    record (call again to redo it).
    """
    from mmbench.progress import Silent, suite_progress

    chosen = as_suite(suite, overrides)
    runs = select_runs(chosen, models, seeds, smoke, data_dir)
    results = results or default_results_dir(chosen, smoke)
    tracker = None
    if track is not None:
        from mmbench.tracking import open_tracker

        tracker = open_tracker(track, track_uri, chosen.name)
    shown: Any = progress
    if progress is True:
        from rich.console import Console

        shown = suite_progress(
            Console(), executor, concurrency(executor, jobs, threads, runs_per_device)
        )
    elif progress is False:
        shown = Silent()
    options: dict[str, Any] = dict(
        device=device,
        data_dir=data_dir,
        executor=executor,
        jobs=jobs,
        address=address,
        threads=threads,
        runs_per_device=runs_per_device,
        retry_failed=retry_failed,
        progress=shown,
        tracker=tracker,
    )
    if chosen.tune is not None:
        outcome = execute_tuned_suite(
            chosen, runs, results, TunedSelection(smoke, models, seeds), **options
        )
    else:
        outcome = execute_runs(chosen, runs, results, **options)
    return outcome.records
