"""Suites: a YAML file that declares data, models, grids, seeds, training budget and downstream
protocol, validated with pydantic and expanded into runs.

    name: xrmb_folds
    seed: 0                       # suite seed: every run's training seed is derived from it
    seeds: [0, 1, 2]              # replicates
    data:
      name: xrmb
      options: {protocol: folds}  # fixed options of the loader
      grid: {fold: [1, 2, 3, 4]}  # one data point per fold
    train: {epochs: 100, batch_size: 100, lr: 1.0e-4, patience: 20, max_seconds: 3600}
    downstream: {classifier: linear_svm}
    device: cpu
    resources: {cpus: 2}          # what one run needs, for the process and ray executors
    models:
      - name: cmmd
        label: CMMD                # the name results are reported under
        params: {latent_dim: 70}
        grid: {omega: "0:1:0.1"}   # a list, or "start:stop:step" (stop included: 11 values)
        train: {lr: 1.0e-4}        # overrides of the suite's train block
        resources: {gpus: 0.5}     # overrides of the suite's resources, field by field

A grid (of the data or of a model) is the product of its axes, or zipped (``grid_mode: zip``).
The runs are: data grid point x model block x model grid point x replicate seed, in that order.

A tuned suite has a ``tune`` block and gives every model a ``search`` space instead of a grid
(see :mod:`mmbench.tuning` for how trials are asked)::

    tune: {objective: error_pct, trials: 20, epochs: 100}   # every model: 20 trials, <= 100 epochs
    models:
      - name: cmmd
        params: {latent_dim: 70}
        search:
          omega: {choice: "0:1:0.1"}          # a list, or the grid syntax
          lr: {loguniform: [1.0e-4, 1.0e-2]}  # also uniform: [low, high] and int: [low, high]

Each data point x model block is one study: its trials (role "trial", scored on the validation
split) and then its final runs, the best trial's configuration over the replicate seeds.
Every name is checked against what it names (loader options, the fields of the model's config,
the trainer's settings) and every model point is validated by the model's config, so a suite that
validates runs; an error names the file, the field path, the bad value and what is allowed.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import typing
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from mmbench import records
from mmbench.config import Real, TrainSettings, problems
from mmbench.config import describe as describe_fields
from mmbench.records import (
    TRIAL_ROLE,
    Coordinates,
    DataChoice,
    DownstreamSettings,
    ModelChoice,
    Run,
    RunConfig,
    Tuning,
)


class SuiteError(ValueError):
    """A suite file that cannot be used; the message names the file and the field."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def field_error(field: str, message: str) -> PydanticCustomError:
    """An error about ``field`` (a dotted path below the object being validated): the suite's
    error message puts it at the end of the path pydantic reports."""
    return PydanticCustomError("suite_field", "{message}", {"field": field, "message": message})


def grid_values(value: Any) -> list:
    """A grid axis: a non-empty list, or "start:stop:step" with stop included ("0:1:0.1" gives
    the 11 values 0.0, 0.1, ..., 1.0; "10:50:10" gives the integers 10, 20, ..., 50)."""
    if isinstance(value, str):
        parts = value.split(":")
        try:
            start, stop, step = (float(part) for part in parts)
        except ValueError:
            raise ValueError(f"grid axis {value!r} is not a list nor 'start:stop:step'") from None
        if step <= 0 or stop < start:
            raise ValueError(f"grid axis {value!r}: need step > 0 and stop >= start")
        count = int(np.floor((stop - start) / step + 1e-9)) + 1
        values = [round(start + k * step, 10) for k in range(count)]
        if all(part.strip().lstrip("+-").isdigit() for part in parts):
            values = [int(v) for v in values]
        return values
    if isinstance(value, list) and value:
        return value
    raise ValueError(f"grid axis {value!r} must be a non-empty list or 'start:stop:step'")


class Grid(Strict):
    """Axes to expand: each a list or "start:stop:step"; their product, or zipped
    (``grid_mode: zip``: the axes have one length and their k-th values form the k-th point)."""

    grid: dict[str, Any] = Field(default_factory=dict)
    grid_mode: Literal["product", "zip"] = "product"

    @field_validator("grid")
    @classmethod
    def _axes(cls, grid: dict[str, Any]) -> dict[str, list]:
        return {name: grid_values(values) for name, values in grid.items()}

    @model_validator(mode="after")
    def _zip_lengths(self):
        lengths = {len(v) for v in self.grid.values()}
        if self.grid_mode == "zip" and len(lengths) > 1:
            raise field_error("grid", "grid_mode zip needs axes of one length, got "
                                      f"{ {k: len(v) for k, v in self.grid.items()} }")
        return self

    def points(self) -> list[dict[str, Any]]:
        """The grid's points, in a stable order (a single empty point when there is no grid)."""
        names = list(self.grid)
        rows: Iterable[tuple[Any, ...]]
        if self.grid_mode == "zip":
            rows = zip(*self.grid.values())
        else:
            rows = itertools.product(*self.grid.values())
        return [dict(zip(names, row)) for row in rows]


# ---------------------------------------------------------------------------------------------
# Tuning: search spaces and the tune block

# The metrics a study may optimise, with their direction (measured on the validation split).
Direction = Literal["minimize", "maximize"]
OBJECTIVES: dict[str, Direction] = {"error_pct": "minimize", "map_micro_pct": "maximize",
                                    "map_macro_pct": "maximize", "rmse": "minimize"}
Objective = Literal["error_pct", "map_micro_pct", "map_macro_pct", "rmse"]
DIMENSION_KINDS = ("choice", "uniform", "loguniform", "int")
_NUMBER = TypeAdapter(Real)


@dataclass(frozen=True)
class Dimension:
    """One searched name: ``kind`` "choice" (one of ``values``), "uniform" (a real in
    [low, high]), "loguniform" (a real in [low, high], uniform in its logarithm) or "int" (an
    integer in [low, high])."""

    kind: str
    values: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0

    @property
    def edges(self) -> tuple[Any, ...]:
        """The values that bound what the dimension gives: a choice's values, a range's ends."""
        return self.values if self.kind == "choice" else (self.low, self.high)

    def __str__(self) -> str:
        if self.kind == "choice":
            return f"choice {list(self.values)}"
        return f"{self.kind} [{self.low:g}, {self.high:g}]"


def parse_dimension(raw: Any) -> Dimension:
    """A search-space entry as a suite writes it: ``{choice: [10, 20, 40]}`` (or the grid syntax
    ``{choice: "0:1:0.1"}``), ``{uniform: [0, 1]}``, ``{loguniform: [1.0e-4, 1.0e-2]}`` or
    ``{int: [10, 50]}``. A ValueError says what is wrong."""
    example = "e.g. {loguniform: [1.0e-4, 1.0e-2]}"
    if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in DIMENSION_KINDS:
        raise ValueError(f"give one of {', '.join(DIMENSION_KINDS)} ({example}), got {raw!r}")
    kind, value = next(iter(raw.items()))
    if kind == "choice":
        if value == [] or value == "":
            raise ValueError("empty choice: give at least one value")
        try:
            return Dimension(kind, tuple(grid_values(value)))
        except ValueError:
            raise ValueError("choice takes a non-empty list or 'start:stop:step', "
                             f"got {value!r}") from None
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError(f"{kind} takes [low, high], got {value!r}")
    if kind == "int":
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ValueError(f"int takes two integers [low, high], got {value!r}")
        low, high = value
    else:
        try:
            low, high = (_NUMBER.validate_python(v) for v in value)
        except ValidationError:
            raise ValueError(f"{kind} takes two numbers [low, high], got {value!r}") from None
    if low >= high:
        raise ValueError(f"{kind} [{low:g}, {high:g}]: need low < high")
    if kind == "loguniform" and low <= 0:
        raise ValueError(f"loguniform [{low:g}, {high:g}]: a log range needs low > 0")
    return Dimension(kind, (), low, high)


class TuneBlock(Strict):
    """How every model of a tuned suite is tuned: the same budget for each.

    objective: the metric to optimise on the validation split (its direction is the metric's).
    trials: trials per study (one study per data point and model block).
    epochs: the epoch cap of every trial and final run (a model may train fewer).
    sampler: "tpe" (Optuna's TPE, seeded) or "random" (random search, seeded).
    startup: TPE's first trials drawn at random, all independent of each other.
    parallel: after the startup trials, TPE asks this many trials at once from the results of
        the earlier ones (1: one at a time, the best use of each result; more: work for several
        workers within a study).
    """

    objective: Objective
    trials: int = Field(ge=1)
    epochs: int = Field(ge=1)
    sampler: Literal["tpe", "random"] = "tpe"
    startup: int = Field(10, ge=1)
    parallel: int = Field(1, ge=1)

    @property
    def direction(self) -> Direction:
        """"minimize" or "maximize"."""
        return OBJECTIVES[self.objective]


def _check_names(kind: str, what: str, owner: str, fixed: dict, grid: dict, allowed: dict) -> None:
    """The names in ``fixed`` (the block's ``kind`` field) and ``grid`` must be in ``allowed``,
    and not in both."""
    for where, names in ((kind, fixed), ("grid", grid)):
        unknown = sorted(set(names) - set(allowed))
        if unknown:
            raise field_error(where, f"{owner} has no {what}(s) {unknown}; "
                                     f"allowed: {sorted(allowed)}")
    both = sorted(set(fixed) & set(grid))
    if both:
        raise field_error("grid", f"{both} set both in {kind} and in grid; keep one")


class Resources(Strict):
    """What one run needs: ``cpus`` is also its number of torch threads (whichever executor runs
    it, so that records do not depend on the executor); ``gpus`` is what a Ray task reserves
    (fractions share a GPU). An unset field is left to the executor."""

    cpus: int | None = Field(None, ge=1)
    gpus: float | None = Field(None, ge=0)


class DataBlock(Grid):
    """The data set, its fixed ``options`` and a ``grid`` over options (e.g. folds, speakers)."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known_name(cls, name: str) -> str:
        from mmbench.data import available_datasets
        if name not in available_datasets():
            raise ValueError(f"unknown data set {name!r}; available: {available_datasets()}")
        return name

    @model_validator(mode="after")
    def _known_options(self):
        from mmbench.data import check_options, dataset_options
        from mmbench.data.errors import DataError
        _check_names("options", "option", f"data set {self.name!r}", self.options, self.grid,
                     dataset_options(self.name))
        for point in self.points():  # types, ranges and rules, before any file is read
            try:
                check_options(self.name, {**self.options, **point})
            except DataError as error:
                where = f" (at grid point {point})" if point else ""
                raise field_error("grid" if point else "options", f"{error}{where}") from None
        return self


class DownstreamBlock(Strict):
    """The classifier trained on ``represent(xO)`` for models without one of their own."""

    classifier: Literal["linear_svm", "logistic", "mlp"] = "linear_svm"
    grid: dict[str, list] | None = None
    max_train: int | None = Field(None, gt=0)


class ModelBlock(Grid):
    """One model: fixed ``params``, a ``grid`` over hyper-parameters, ``train`` overrides of the
    suite's train block, ``resources`` overriding the suite's field by field, and the ``label``
    its results are reported under (default: its name). In a tuned suite, ``search`` instead of
    ``grid``: the search space over hyper-parameters and training settings (name -> dimension,
    see :func:`parse_dimension`)."""

    name: str
    label: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    search: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known_name(cls, name: str) -> str:
        from mmbench.registry import available_models, model_class
        if name not in available_models():
            raise ValueError(f"unknown model {name!r}; available: {available_models()}")
        try:
            model_class(name)
        except ImportError as error:
            raise ValueError(f"model {name!r} cannot be imported: {error}") from None
        return name

    @model_validator(mode="after")
    def _known_settings(self):
        """Names and values against the model's config and the trainer's settings; the first
        problem is reported (at its field: params.NAME, grid.NAME or train.NAME)."""
        from mmbench.registry import config_class
        config = config_class(self.name)
        _check_names("params", "hyper-parameter", f"model {self.name!r}", self.params, self.grid,
                     config.model_fields)
        unknown = sorted(set(self.train) - set(TrainSettings.model_fields))
        if unknown:
            raise field_error("train", f"unknown field(s) {unknown}; allowed: "
                                       f"{sorted(TrainSettings.model_fields)}")
        try:
            TrainSettings(**self.train)
        except ValidationError as error:
            problem = problems(error, TrainSettings)[0]
            raise field_error(f"train.{problem.field}", problem.message) from None
        for point in self.points():
            try:
                config(**self.params, **point)
            except ValidationError as error:
                problem = problems(error, config)[0]
                in_grid = problem.field.split(".")[0] in point
                field = ".".join(filter(None, ["grid" if in_grid else "params", problem.field]))
                where = f" (at grid point {point})" if point else ""
                raise field_error(field, problem.message + where) from None
        return self

    @model_validator(mode="after")
    def _known_search(self):
        """Every searched name is a hyper-parameter or a training setting, set nowhere else,
        and every value its dimension can give is one the field allows (a range's ends, each of
        a choice's values), the model's fixed params around it."""
        for name in self.search:
            self.dimension(name)
        return self

    def dimension(self, name: str) -> Dimension:
        """The search space's dimension ``name``, checked (see :meth:`_known_search`)."""
        from mmbench.registry import config_class
        where = f"search.{name}"
        try:
            dimension = parse_dimension(self.search[name])
        except ValueError as error:
            raise field_error(where, str(error)) from None
        config = config_class(self.name)
        if name in config.model_fields:
            schema: type[BaseModel] = config
            fixed, block_field, owner = self.params, "params", f"model {self.name!r}"
        elif name in TrainSettings.model_fields:
            schema, fixed, block_field, owner = TrainSettings, self.train, "train", "the trainer"
        else:
            raise field_error(where, f"model {self.name!r} has no hyper-parameter or training "
                                     f"setting {name!r}; hyper-parameters: "
                                     f"{sorted(config.model_fields)}; training settings: "
                                     f"{sorted(TrainSettings.model_fields)}")
        if name in fixed:
            raise field_error(where, f"{name} is set in {block_field} too; keep one")
        if name in self.grid:
            raise field_error(where, f"{name} is in grid too; a tuned model has no grid")
        kind = next(doc.kind for doc in describe_fields(schema) if doc.name == name)
        if kind == "int" and dimension.kind in ("uniform", "loguniform"):
            raise field_error(where, f"{name} is an integer, {dimension} gives real numbers: "
                                     f"use int: [low, high] or a choice")
        for value in dimension.edges:
            try:
                schema(**{**fixed, name: value})
            except ValidationError as error:
                problem = problems(error, schema)[0]
                raise field_error(where, f"{dimension} includes {value!r}, which {owner} "
                                         f"refuses: {problem}") from None
        return dimension

    def space(self) -> dict[str, Dimension]:
        """The search space, name -> dimension, in the suite's order."""
        return {name: self.dimension(name) for name in self.search}

    @property
    def display_label(self) -> str:
        return self.label or self.name


class Suite(Strict):
    """A whole experiment; :meth:`runs` expands it into fully resolved runs."""

    name: str
    description: str = ""
    seed: int = 0
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    data: DataBlock
    models: list[ModelBlock] = Field(min_length=1)
    train: TrainSettings = Field(default_factory=TrainSettings)
    downstream: DownstreamBlock = Field(default_factory=DownstreamBlock)
    device: str = "cpu"
    resources: Resources = Field(default_factory=Resources)
    tune: TuneBlock | None = None

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"replicate seeds {seeds} repeat a seed; each must be distinct")
        return seeds

    @model_validator(mode="after")
    def _distinct_models(self):
        labels = [block.display_label for block in self.models]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise field_error("models", f"label(s) {repeated} used by several model blocks; "
                                        "give each block its own label")
        return self

    @model_validator(mode="after")
    def _tuned_models(self):
        """A tuned suite tunes every model with one budget: each model has a search space and no
        grid, nothing trains beyond the epoch cap, and each model can give the objective."""
        from mmbench.registry import model_class
        tune = self.tune
        if tune is None:
            for index, block in enumerate(self.models):
                if block.search:
                    raise field_error(f"models.{index}.search", "a search space needs the "
                                      "suite's tune block, e.g. tune: {objective: error_pct, "
                                      "trials: 20, epochs: 100}")
            return self
        cap = tune.epochs
        if "epochs" in self.train.model_fields_set and self.train.epochs > cap:
            raise field_error("train.epochs", f"{self.train.epochs} is above tune.epochs = {cap}, "
                                              "the cap of every trial and final run")
        for index, block in enumerate(self.models):
            where = f"models.{index}"
            owner = f"model {block.display_label!r}"
            if not block.search:
                raise field_error(where, f"{owner} has no search space: a tuned suite gives every "
                                  "model the same budget, so give it one, e.g. search: {lr: "
                                  "{loguniform: [1.0e-4, 1.0e-2]}}")
            if block.grid:
                raise field_error(f"{where}.grid", f"{owner} is tuned: search its axes instead, "
                                  "e.g. omega: {choice: \"0:1:0.1\"}")
            if block.train.get("epochs", 0) > cap:
                raise field_error(f"{where}.train.epochs", f"{block.train['epochs']} is above "
                                  f"tune.epochs = {cap}, the cap of every trial and final run")
            if "epochs" in block.search:
                most = max(block.dimension("epochs").edges)
                if most > cap:
                    raise field_error(f"{where}.search.epochs", f"reaches {most}, above "
                                      f"tune.epochs = {cap}, the cap of every trial and final run")
            if tune.objective == "rmse" and "generate" not in model_class(block.name).capabilities:
                raise field_error(where, f"{owner} cannot generate the missing modalities, so it "
                                  "has no rmse to be tuned on: tune this suite on a classification "
                                  "objective, or drop the model from it")
        return self

    def runs(self) -> list[Run]:
        """Every run, fully resolved, in a stable order: data point, model, model grid point,
        replicate. A run's ``resources`` are the fields set by the suite or its model block (not
        part of the config, so they never change a run id)."""
        from mmbench.registry import config_class
        data = self.data
        downstream = DownstreamSettings(**self.downstream.model_dump())
        runs = []
        for data_point in data.points():
            for block in self.models:
                if self.tune is not None:  # tuned: trials, then final runs (see studies())
                    continue
                for model_point in block.points():
                    # validated values, so that "1e-4" and 0.0001 are one run
                    params = config_class(block.name)(**block.params, **model_point)
                    model = ModelChoice(block.name, params.model_dump(mode="json"))
                    train = TrainSettings(**{**self.train.model_dump(), **block.train}).model_dump()
                    resources = records.Resources(**{
                        **self.resources.model_dump(exclude_none=True),
                        **block.resources.model_dump(exclude_none=True)})
                    for replicate in self.seeds:
                        coordinates = Coordinates(data_point, block.name, model_point, replicate)
                        config = RunConfig(
                            data=DataChoice(data.name, {**data.options, **data_point}),
                            model=model,
                            train={**train, "seed": derive_seed(self.seed, coordinates)},
                            downstream=downstream, seed=replicate)
                        runs.append(Run(config, block.display_label, coordinates, resources))
        return runs


    # -----------------------------------------------------------------------------------------
    # Tuned suites: studies, their trials and their final runs

    def studies(self) -> list[Study]:
        """The tuning studies, one per data point and model block, in the order of the data
        points then the model blocks (none when the suite is not tuned)."""
        if self.tune is None:
            return []
        return [Study(point, index, block.display_label, block.name)
                for point in self.data.points() for index, block in enumerate(self.models)]

    def search_space(self, study: Study) -> dict[str, Dimension]:
        """The search space of ``study``'s model block, name -> dimension."""
        return self.models[study.block].space()

    def trial_run(self, study: Study, trial: int, values: dict[str, Any]) -> Run:
        """Trial ``trial`` (from 0) of ``study``, with ``values`` for the searched names: trained
        once, on the first replicate seed, from a seed of its own."""
        replicate = self.seeds[0]
        seed_at = Coordinates(study.data_point, study.model, {"trial": trial}, replicate)
        coordinates = Coordinates(study.data_point, study.model, dict(values), replicate)
        return self._tuned_run(study, values, coordinates, derive_seed(self.seed, seed_at),
                               TRIAL_ROLE, self._tuning(study, values, trial=trial))

    def final_runs(self, study: Study, values: dict[str, Any], best_trial: str,
                   best_value: float) -> list[Run]:
        """The final runs of ``study``: the chosen trial's ``values`` over the replicate seeds,
        seeded as the runs of an untuned model block are. They are the model runs that tables
        report (no grid coordinates: one series per label)."""
        tuning = self._tuning(study, values, best_trial=best_trial, best_value=best_value)
        runs = []
        for replicate in self.seeds:
            coordinates = Coordinates(study.data_point, study.model, {}, replicate)
            runs.append(self._tuned_run(study, values, coordinates,
                                        derive_seed(self.seed, coordinates),
                                        records.MODEL_ROLE, tuning))
        return runs

    def _tuning(self, study: Study, values: dict[str, Any], **chosen: Any) -> Tuning:
        tune = self.tune
        assert tune is not None
        return Tuning(tune.objective, tune.trials, tune.epochs, tune.sampler,
                      dict(self.models[study.block].search), dict(values), **chosen)

    def _tuned_run(self, study: Study, values: dict[str, Any], coordinates: Coordinates,
                   train_seed: int, role: str, tuning: Tuning) -> Run:
        """A run of ``study``'s model block with ``values`` for its searched names. Values that
        the model's config refuses together with its fixed params (rules between fields) are
        kept as given: the run then fails, and counts as a trial with the worst objective."""
        from mmbench.registry import config_class
        tune = self.tune
        assert tune is not None
        block = self.models[study.block]
        config = config_class(block.name)
        model_values = {k: v for k, v in values.items() if k in config.model_fields}
        try:
            params = config(**block.params, **model_values).model_dump(mode="json")
        except ValidationError:
            params = {**config(**block.params).model_dump(mode="json"), **model_values}
        # the epoch cap stands in for the suite's epochs unless the suite sets fewer
        default_epochs = (self.train.epochs if "epochs" in self.train.model_fields_set
                          else tune.epochs)
        train = {**self.train.model_dump(), "epochs": default_epochs, **block.train,
                 **{k: v for k, v in values.items() if k not in config.model_fields}}
        with contextlib.suppress(ValidationError):  # a run of refused settings fails
            train = TrainSettings(**train).model_dump()
        resources = records.Resources(**{**self.resources.model_dump(exclude_none=True),
                                         **block.resources.model_dump(exclude_none=True)})
        data = self.data
        config_ = RunConfig(data=DataChoice(data.name, {**data.options, **study.data_point}),
                            model=ModelChoice(block.name, params),
                            train={**train, "seed": train_seed},
                            downstream=DownstreamSettings(**self.downstream.model_dump()),
                            seed=coordinates.seed)
        return Run(config_, study.label, coordinates, resources, role, tuning)


@dataclass(frozen=True)
class Study:
    """A tuning study: the model block at index ``block`` of a suite (its ``label`` and
    registered ``model`` name), tuned on the data grid point ``data_point``."""

    data_point: dict[str, Any]
    block: int
    label: str
    model: str

    @property
    def name(self) -> str:
        """"CMMD", or "CMMD (fold=1)" on a data grid."""
        point = ", ".join(f"{k}={v}" for k, v in self.data_point.items())
        return f"{self.label} ({point})" if point else self.label


def derive_seed(suite_seed: int, coordinates: Coordinates) -> int:
    """A 31-bit seed from the suite seed and a run's coordinates (stable across machines)."""
    text = json.dumps([suite_seed, asdict(coordinates)], sort_keys=True)
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file; errors name the file and the field path."""
    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"{path}: no such suite file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise SuiteError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise SuiteError(f"{path}: a suite is a YAML mapping with keys "
                         f"{sorted(Suite.model_fields)}")
    try:
        return Suite.model_validate(raw)
    except ValidationError as error:
        raise SuiteError("\n".join(f"{path}: {line}" for line in describe(error))) from None


def describe(error: ValidationError) -> list[str]:
    """One line per problem: the field path, then what is wrong and what is allowed."""
    lines = []
    for problem in error.errors():
        loc = list(problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "suite_field":
            loc += problem["ctx"]["field"].split(".")
        elif problem["type"] == "extra_forbidden":
            message = f"unknown field; allowed: {sorted(_schema_at(loc[:-1]).model_fields)}"
        elif problem["type"] == "missing":
            message = "required field missing"
        lines.append(f"{'.'.join(map(str, loc)) or '(top level)'}: {message}")
    return lines


def _schema_at(loc: list) -> type[BaseModel]:
    """The schema class that validates the object at ``loc`` (e.g. ["models", 0] -> ModelBlock)."""
    schema: type[BaseModel] = Suite
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = schema.model_fields[part].annotation
        candidates = [annotation, *typing.get_args(annotation)]
        schema = next(c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel))
    return schema
