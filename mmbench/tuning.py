"""Tuning studies: the trials a tuned suite asks for, and the final runs that follow them.

A suite with a ``tune`` block has one study per data point and model block (see
:meth:`mmbench.suite.Suite.studies`). A study runs ``tune.trials`` trials, each an ordinary run
(role "trial": hashed id, atomic record, run by any executor), scored on the validation split
only: its objective is the metric ``valid_<objective>`` of its record. A trial that failed or
diverged counts as a trial with the worst objective (+inf, or -inf for a metric to maximise),
and the study goes on. Once every trial has a record, the best one (ties: the earliest) is rerun
over the suite's replicate seeds: those final runs (role "model") are what tables report.

Trials are asked with Optuna, and the configuration of trial k is a pure function of the suite,
the study, k and the results of the trials before it: for trial k a fresh sampler is seeded from
(suite seed, study, k) and asks once, in an in-memory study into which the earlier trials'
(values, objective) are added from their records. So a resumed or repeated study asks exactly
the same trials, and a trial killed mid-way is redone alone.

Which earlier trials trial k waits for (:func:`asked_after`) decides what can run at once:

- ``sampler: random``: none; every trial is independent.
- ``sampler: tpe``: the first ``startup`` trials are drawn at random and wait for none; then
  trials go in rounds of ``parallel``, each round asked from the results of every trial before
  it (``parallel: 1``, the default: one trial at a time, each asked from all earlier results).

Trials of different studies never wait for each other, so the process and Ray executors have
work as long as several studies (models, data points) are open.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mmbench.records import OK, Record, Run
from mmbench.store import RunStore
from mmbench.suite import Dimension, Study, Suite, TuneBlock
from mmbench.tuning_results import SUMMARY_FILE
from mmbench.views import DataSplits

SMOKE_TRIALS = 2  # trials per study of a --smoke run


def asked_after(tune: TuneBlock, trial: int) -> int:
    """How many trials (0, 1, ... in order) must have a record before trial ``trial`` is asked;
    see the module's docstring."""
    if tune.sampler == "random" or trial < tune.startup:
        return 0
    return tune.startup + (trial - tune.startup) // tune.parallel * tune.parallel


def objective_value(record: Record, tune: TuneBlock) -> float:
    """A trial's objective: its validation metric, or the worst value when the trial failed,
    diverged or has no finite value."""
    value = record.metrics.get(f"valid_{tune.objective}") if record.status == OK else None
    if value is None or not math.isfinite(value):
        return math.inf if tune.direction == "minimize" else -math.inf
    return float(value)


@dataclass(frozen=True)
class Trial:
    """Trial ``number`` of a study: its run (None while it waits for trials 0..after-1), its
    record (None while it has none) and its objective (None without a record)."""

    number: int
    after: int
    run: Run | None = None
    record: Record | None = None
    value: float | None = None

    @property
    def status(self) -> str:
        """ "waiting", "pending", or the record's status ("ok", "failed", ...)."""
        if self.run is None:
            return "waiting"
        return "pending" if self.record is None else self.record.status


@dataclass(frozen=True)
class FinalRun:
    """A final run of a study and its record (None: none yet, or one written by another study
    whose tuning provenance differs: the run is done again so its record says how it was
    chosen)."""

    run: Run
    record: Record | None

    @property
    def status(self) -> str:
        return "pending" if self.record is None else self.record.status


@dataclass(frozen=True)
class StudyState:
    """Where a study stands: its trials and, once every trial has a record, its best trial and
    final runs (none when every trial failed)."""

    study: Study
    trials: list[Trial]
    best: Trial | None = None
    finals: list[FinalRun] | None = None

    @property
    def finished(self) -> bool:
        """Every trial has a record."""
        return all(trial.record is not None for trial in self.trials)

    @property
    def failed(self) -> bool:
        """Every trial has a record and none has a finite objective: no final runs."""
        return self.finished and self.best is None

    def waiting_for(self) -> list[int]:
        """The trials without a record, in order."""
        return [trial.number for trial in self.trials if trial.record is None]


def study_trials(suite: Suite, smoke: bool) -> int:
    """Trials per study (fewer on the --smoke budget)."""
    assert suite.tune is not None
    return min(suite.tune.trials, SMOKE_TRIALS) if smoke else suite.tune.trials


def plan(
    suite: Suite,
    store: RunStore,
    smoke: bool = False,
    seeds: list[int] | None = None,
    models: list[str] | None = None,
    ignore: Callable[[Record], bool] | None = None,
    data_dir: str | None = None,
) -> list[StudyState]:
    """Where every study of a tuned suite stands, from the records in ``store``.

    smoke: every trial and final run on the smoke budget, and SMOKE_TRIALS trials per study.
    seeds: the replicate seeds of the final runs (None: the suite's). models: the studies of
    these model names or labels only (None: all). ignore: records to treat as absent (e.g.
    failed ones to run again). data_dir: where a user's data file is looked for last.
    """
    return [
        plan_study(suite, study, store, smoke, seeds, ignore)
        for study in suite.studies(data_dir)
        if models is None or study.model in models or study.label in models
    ]


def plan_study(
    suite: Suite,
    study: Study,
    store: RunStore,
    smoke: bool = False,
    seeds: list[int] | None = None,
    ignore: Callable[[Record], bool] | None = None,
) -> StudyState:
    """Where ``study`` stands (see :func:`plan`): each trial asked in order, from the records of
    the trials it waits for, as long as they all have one."""
    from mmbench.runner import smoke_version

    tune = suite.tune
    assert tune is not None
    n_trials = study_trials(suite, smoke)
    space = suite.search_space(study)
    distributions = optuna_distributions(space)

    def as_run(run: Run) -> Run:
        if not smoke:
            return run
        assert run.tuning is not None
        return replace(smoke_version(run), tuning=replace(run.tuning, trials=n_trials))

    def stored(run: Run) -> Record | None:
        record = store.record(run.run_id)
        return None if record is None or (ignore is not None and ignore(record)) else record

    history: list[tuple[dict[str, Any], float] | None] = []  # Optuna's params, objective
    trials = []
    for number in range(n_trials):
        after = asked_after(tune, number)
        earlier = history[:after]
        if any(result is None for result in earlier):
            trials.append(Trial(number, after))
            history.append(None)
            continue
        seed = sampler_seed(suite.seed, study, number)
        params = ask(tune, distributions, seed, [r for r in earlier if r is not None])
        run = as_run(suite.trial_run(study, number, decode(space, params)))
        record = stored(run)
        value = None if record is None else objective_value(record, tune)
        trials.append(Trial(number, after, run, record, value))
        history.append(None if value is None else (params, value))
    state = StudyState(study, trials)
    if not state.finished:
        return state
    sign = 1.0 if tune.direction == "minimize" else -1.0
    scored = [
        (sign * t.value, t.number, t)
        for t in trials
        if t.value is not None and math.isfinite(t.value)
    ]
    if not scored:
        return state
    _, _, best = min(scored, key=lambda item: item[:2])  # ties: the earliest trial
    assert best.run is not None and best.run.tuning is not None and best.value is not None
    finals = []
    for run in suite.final_runs(study, best.run.tuning.params, best.run.run_id, best.value):
        if seeds is not None and run.coordinates.seed not in seeds:
            continue
        run = as_run(run)
        record = stored(run)
        if record is not None and record.tuning != run.tuning:
            record = None  # chosen by another study (e.g. another budget): run it again
        finals.append(FinalRun(run, record))
    return replace(state, best=best, finals=finals)


def runnable(states: list[StudyState]) -> list[Run]:
    """The runs that can start now: trials asked and without a record, then final runs of
    finished studies without a record."""
    trials = [
        t.run for state in states for t in state.trials if t.run is not None and t.record is None
    ]
    finals = [f.run for state in states for f in state.finals or () if f.record is None]
    return trials + finals


@dataclass(frozen=True)
class PlanRow:
    """One line of a tuned suite's plan (``mmbench run --dry-run``; ``--cell`` takes its index).

    kind: "trial", "final" (a final run) or "run" (a run of the suite that is not tuned, e.g. a
    reference row; its ``study`` is None). step: "trial 3", or "seed 0" (final and other runs).
    run: None while it is not known (a trial waiting for earlier ones, a final run waiting for
    its study). status: "ok", "failed", "pending", or "waiting".
    needs: the trials that must have a record first (waiting rows). value: a trial's objective
    (the worst for a failed one). best: the trial chosen for the final runs.
    """

    kind: str
    study: Study | None
    step: str
    run: Run | None
    status: str
    needs: tuple[int, ...] = ()
    value: float | None = None
    best: bool = False


def plan_rows(
    fixed: list[tuple[Run, str]], states: list[StudyState], seeds: list[int]
) -> list[PlanRow]:
    """The plan's lines, in a stable order: the ``fixed`` runs (each with its status), then per
    study its trials and one final run per replicate seed in ``seeds``. A line's index depends
    on the suite and the selection only, never on what has run."""
    rows = [
        PlanRow("run", None, f"seed {run.coordinates.seed}", run, status) for run, status in fixed
    ]
    for state in states:
        for trial in state.trials:
            needs = tuple(t.number for t in state.trials[: trial.after] if t.record is None)
            rows.append(
                PlanRow(
                    "trial",
                    state.study,
                    f"trial {trial.number}",
                    trial.run,
                    trial.status,
                    needs,
                    trial.value,
                    trial is state.best,
                )
            )
        finals = {final.run.coordinates.seed: final for final in state.finals or ()}
        for seed in seeds:
            final = finals.get(seed)
            if final is None:
                rows.append(
                    PlanRow(
                        "final",
                        state.study,
                        f"seed {seed}",
                        None,
                        "no trial succeeded" if state.failed else "waiting",
                        tuple(state.waiting_for()),
                    )
                )
            else:
                rows.append(PlanRow("final", state.study, f"seed {seed}", final.run, final.status))
    return rows


# ---------------------------------------------------------------------------------------------
# Asking Optuna


def sampler_seed(suite_seed: int, study: Study, trial: int) -> int:
    """The seed of the sampler that asks trial ``trial`` of ``study`` (31 bits, stable)."""
    text = json.dumps(
        [suite_seed, "sampler", study.data_point, study.model, study.label, trial], sort_keys=True
    )
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


def optuna_distributions(space: dict[str, Dimension]) -> dict[str, Any]:
    """Optuna's distribution for each dimension; a choice is a categorical over the indices of
    its values (Optuna's categoricals hold only scalars; layer sizes are lists)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    distributions: dict[str, Any] = {}
    for name, dimension in space.items():
        if dimension.kind == "choice":
            distributions[name] = CategoricalDistribution(tuple(range(len(dimension.values))))
        elif dimension.kind == "int":
            distributions[name] = IntDistribution(int(dimension.low), int(dimension.high))
        else:
            distributions[name] = FloatDistribution(
                dimension.low, dimension.high, log=dimension.kind == "loguniform"
            )
    return distributions


def decode(space: dict[str, Dimension], params: dict[str, Any]) -> dict[str, Any]:
    """The values of the searched names from Optuna's params (a choice's index -> its value)."""
    return {
        name: dimension.values[params[name]] if dimension.kind == "choice" else params[name]
        for name, dimension in space.items()
    }


def ask(
    tune: TuneBlock,
    distributions: dict[str, Any],
    seed: int,
    history: list[tuple[dict[str, Any], float]],
) -> dict[str, Any]:
    """Optuna's params for the next trial: a fresh sampler seeded with ``seed`` asks once in an
    in-memory study holding ``history`` (each earlier trial's params and objective)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler: optuna.samplers.BaseSampler
    if tune.sampler == "tpe":
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=tune.startup)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(direction=tune.direction, sampler=sampler)
    for params, value in history:
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=distributions, value=value)
        )
    return study.ask(distributions).params


# ---------------------------------------------------------------------------------------------
# Checks against the data, and the summary written beside the records


def objective_problem(objective: str, splits: DataSplits) -> str | None:
    """Why data ``splits`` cannot give ``objective``, or None when they can."""
    multilabel = splits.valid.multilabel
    if objective == "error_pct" and multilabel:
        return "the labels are multi-label: tune on map_macro_pct or map_micro_pct"
    if objective.startswith("map_") and not multilabel:
        return "the labels are single-label (one class per point): tune on error_pct"
    if objective == "rmse" and not splits.valid.missing:
        return "the data have no missing modality to generate: tune on a classification metric"
    return None


def summary(suite: Suite, states: list[StudyState]) -> dict[str, Any]:
    """What ``<results>/tuning.json`` holds: the budget, and per study its trials (run id,
    values, status, objective), its best trial and its final runs' ids."""
    tune = suite.tune
    assert tune is not None

    def trial_json(trial: Trial) -> dict[str, Any]:
        tuning = None if trial.run is None else trial.run.tuning
        return {
            "trial": trial.number,
            "status": trial.status,
            "run_id": None if trial.run is None else trial.run.run_id,
            "params": None if tuning is None else tuning.params,
            "value": None if trial.value is None or not math.isfinite(trial.value) else trial.value,
        }

    return {
        "objective": tune.objective,
        "direction": tune.direction,
        "trials": tune.trials,
        "epochs": tune.epochs,
        "sampler": tune.sampler,
        "studies": [
            {
                "label": state.study.label,
                "model": state.study.model,
                "data": state.study.data_point,
                "space": suite.models[state.study.block].search,
                "trials": [trial_json(trial) for trial in state.trials],
                "best": None if state.best is None else trial_json(state.best),
                "final_run_ids": [final.run.run_id for final in state.finals or ()],
            }
            for state in states
        ],
    }


def write_summary(results_dir: str | os.PathLike, suite: Suite, states: list[StudyState]) -> Path:
    """Write :func:`summary` to ``<results_dir>/tuning.json`` (atomically); returns its path."""
    path = Path(results_dir) / SUMMARY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{SUMMARY_FILE}.{os.getpid()}.tmp")
    staging.write_text(json.dumps(summary(suite, states), indent=1))
    os.replace(staging, path)
    return path
