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
    references: [raw_xo, mean_xm, ridge_xo_xm]   # the default; [] for none
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
The runs are: data grid point x model block x model grid point x replicate seed, in that order;
then the reference rows (:mod:`mmbench.references`: raw xO, mean xM, ridge xO→xM), data grid
point x reference x replicate seed, as runs of role "reference".

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
split) and then its final runs, the best trial's configuration over the replicate seeds. The
reference rows of a tuned suite are not tuned: they are run as they are.
Every name is checked against what it names (loader options, the fields of the model's config,
the trainer's settings) and every model point is validated by the model's config, so a suite that
validates runs; an error names the file, the field path, the bad value and what is allowed.

Overrides ``KEY=VALUE`` change the suite as editing the file would, before validation (so they
are checked by the same schema and change run ids the same way): KEY is a dotted path into the
YAML (``train.epochs``, ``models.0.params.latent_dim``, or a model block by its label or name,
``models.cmmd.params.omega``), VALUE is read as YAML (``seeds=[0,1]``, ``train.patience=null``).

A relative ``path`` of a user's data file (npz, parquet) is looked for in the suite file's folder
first, and the runs of such a suite hash the file's content (``DataChoice.digest``), so editing it
in place makes new runs.

The suite's ``name`` names its results folder, so it must be a safe file name
(:func:`mmbench.paths.safe_name`); ``device`` is one of :data:`DEVICES`. Sizes are counted
before anything is expanded: a grid of more than :data:`MAX_RUNS` points, or a suite of more
runs, is refused unless it is loaded with ``allow_large`` (``mmbench run --allow-large``).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import itertools
import json
import math
import os
import re
import typing
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from mmbench import records
from mmbench.config import NonNegativeReal, PositiveInt, Real, TrainSettings, problems
from mmbench.config import describe as describe_fields
from mmbench.paths import safe_name
from mmbench.records import (
    REFERENCE_ROLE,
    TRIAL_ROLE,
    Coordinates,
    DataChoice,
    DownstreamSettings,
    ModelChoice,
    Run,
    RunConfig,
    Tuning,
)

if TYPE_CHECKING:
    from mmbench.references import Reference

DEFAULT_REFERENCES = ("raw_xo", "mean_xm", "ridge_xo_xm")
"""The reference rows of a suite that does not name its own (mmbench.references)."""

MAX_RUNS = 10_000
"""The most runs a suite, and points a grid, may have unless ``allow_large`` is given: more is
almost always a typo (a step of 0.000000001 instead of 0.1), and expanding it would exhaust
memory before anything runs."""

DEVICES = "cpu, cuda, cuda:N (N a GPU index) or mps"
_DEVICE = re.compile(r"cpu|cuda|cuda:[0-9]+|mps")


class SuiteError(ValueError):
    """A suite file that cannot be used; the message names the file and the field."""


def check_device(device: str) -> str:
    """``device`` when torch can name it: one of :data:`DEVICES` (whether this machine has it
    is checked when a run starts)."""
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise ValueError(f"device {device!r} is none of {DEVICES}")
    return device


def _max_runs(info: ValidationInfo) -> float:
    """The size limit of the suite being validated: :data:`MAX_RUNS`, or none when it is loaded
    with ``allow_large`` (``context={"allow_large": True}``)."""
    return math.inf if (info.context or {}).get("allow_large") else MAX_RUNS


def _too_large(count: int, what: str, detail: str) -> str:
    return (
        f"{count:,} {what} ({detail}), more than the limit of {MAX_RUNS:,}; check the grids "
        "(e.g. a 'start:stop:step' axis with a tiny step), or pass --allow-large to run "
        "them all"
    )


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def field_error(field: str, message: str) -> PydanticCustomError:
    """An error about ``field`` (a dotted path below the object being validated): the suite's
    error message puts it at the end of the path pydantic reports."""
    return PydanticCustomError("suite_field", "{message}", {"field": field, "message": message})


def axis_length(value: Any) -> int:
    """The number of values of a grid axis (see :func:`grid_values`), counted without making
    them; a ValueError says what is wrong with an axis that is neither form."""
    if isinstance(value, str):
        start, stop, step = _range(value)
        steps = (stop - start) / step
        nearest = round(steps)  # stop is included when it is on the grid, up to rounding
        on_grid = abs(steps - nearest) <= 1e-9 * max(1.0, steps)
        return (nearest if on_grid else math.floor(steps)) + 1
    if isinstance(value, list) and value:
        return len(value)
    raise ValueError(f"grid axis {value!r} must be a non-empty list or 'start:stop:step'")


def _range(value: str) -> tuple[float, float, float]:
    try:
        start, stop, step = (float(part) for part in value.split(":"))
    except ValueError:
        raise ValueError(f"grid axis {value!r} is not a list nor 'start:stop:step'") from None
    if not all(map(math.isfinite, (start, stop, step))):
        raise ValueError(f"grid axis {value!r}: start, stop and step must be finite numbers")
    if step <= 0 or stop < start:
        raise ValueError(f"grid axis {value!r}: need step > 0 and stop >= start")
    return start, stop, step


def grid_values(value: Any) -> list:
    """A grid axis: a non-empty list, or "start:stop:step" with stop included ("0:1:0.1" gives
    the 11 values 0.0, 0.1, ..., 1.0; "10:50:10" gives the integers 10, 20, ..., 50)."""
    count = axis_length(value)
    if isinstance(value, list):
        return value
    start, _, step = _range(value)
    values = [round(start + k * step, 10) for k in range(count)]
    if all(part.strip().lstrip("+-").isdigit() for part in value.split(":")):
        values = [int(v) for v in values]
    return values


class Grid(Strict):
    """Axes to expand: each a list or "start:stop:step"; their product, or zipped
    (``grid_mode: zip``: the axes have one length and their k-th values form the k-th point)."""

    grid: dict[str, list] = Field(default_factory=dict)
    grid_mode: Literal["product", "zip"] = "product"

    @model_validator(mode="before")
    @classmethod
    def _expand(cls, data: Any, info: ValidationInfo) -> Any:
        """Count the grid's points, refuse too many (see :data:`MAX_RUNS`), then expand each
        "start:stop:step" axis into its list of values."""
        grid = data.get("grid") if isinstance(data, dict) else None
        if not isinstance(grid, dict):
            return data  # pydantic reports what is wrong
        lengths = {}
        for name, values in grid.items():
            try:
                lengths[name] = axis_length(values)
            except ValueError as error:
                raise field_error(f"grid.{name}", str(error)) from None
        if data.get("grid_mode") == "zip":
            if len(set(lengths.values())) > 1:
                raise field_error("grid", f"grid_mode zip needs axes of one length, got {lengths}")
            points = max(lengths.values(), default=1)
        else:
            points = math.prod(lengths.values())
        if points > _max_runs(info):
            axes = ", ".join(f"{name}: {length:,} values" for name, length in lengths.items())
            raise field_error("grid", _too_large(points, "grid points", axes))
        return {**data, "grid": {name: grid_values(values) for name, values in grid.items()}}

    @property
    def size(self) -> int:
        """The number of points (1 when there is no grid)."""
        lengths = [len(values) for values in self.grid.values()]
        return max(lengths, default=1) if self.grid_mode == "zip" else math.prod(lengths)

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
OBJECTIVES: dict[str, Direction] = {
    "error_pct": "minimize",
    "map_micro_pct": "maximize",
    "map_macro_pct": "maximize",
    "rmse": "minimize",
}
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
            raise ValueError(
                f"choice takes a non-empty list or 'start:stop:step', got {value!r}"
            ) from None
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
        """ "minimize" or "maximize"."""
        return OBJECTIVES[self.objective]


def _check_names(kind: str, what: str, owner: str, fixed: dict, grid: dict, allowed: dict) -> None:
    """The names in ``fixed`` (the block's ``kind`` field) and ``grid`` must be in ``allowed``,
    and not in both."""
    for where, names in ((kind, fixed), ("grid", grid)):
        unknown = sorted(set(names) - set(allowed))
        if unknown:
            raise field_error(
                where, f"{owner} has no {what}(s) {unknown}; allowed: {sorted(allowed)}"
            )
    both = sorted(set(fixed) & set(grid))
    if both:
        raise field_error("grid", f"{both} set both in {kind} and in grid; keep one")


class Resources(Strict):
    """What one run needs: ``cpus`` is also its number of torch threads (whichever executor runs
    it, so that records do not depend on the executor); ``gpus`` is what a Ray task reserves
    (fractions share a GPU). An unset field is left to the executor."""

    cpus: PositiveInt | None = None
    gpus: NonNegativeReal | None = None


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

        _check_names(
            "options",
            "option",
            f"data set {self.name!r}",
            self.options,
            self.grid,
            dataset_options(self.name),
        )
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
    max_train: PositiveInt | None = None


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
        if reference_class(name) is not None:
            raise ValueError(
                f"{name!r} is a reference row, not a model: name it in the suite's "
                f"references (default: {list(DEFAULT_REFERENCES)})"
            )
        return name

    @model_validator(mode="after")
    def _known_settings(self):
        """Names and values against the model's config and the trainer's settings; the first
        problem is reported (at its field: params.NAME, grid.NAME or train.NAME)."""
        from mmbench.registry import config_class

        config = config_class(self.name)
        _check_names(
            "params",
            "hyper-parameter",
            f"model {self.name!r}",
            self.params,
            self.grid,
            config.model_fields,
        )
        unknown = sorted(set(self.train) - set(TrainSettings.model_fields))
        if unknown:
            raise field_error(
                "train",
                f"unknown field(s) {unknown}; allowed: {sorted(TrainSettings.model_fields)}",
            )
        try:
            TrainSettings(**self.train)
        except ValidationError as error:
            raise field_error(*first_problem(error, TrainSettings, "train")) from None
        for point in self.points():
            try:
                config(**self.params, **point)
            except ValidationError as error:
                in_grid = error.errors()[0]["loc"][:1] in [(name,) for name in point]
                field, message = first_problem(error, config, "grid" if in_grid else "params")
                where = f" (at grid point {point})" if point else ""
                raise field_error(field, message + where) from None
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
            raise field_error(
                where,
                f"model {self.name!r} has no hyper-parameter or training "
                f"setting {name!r}; hyper-parameters: "
                f"{sorted(config.model_fields)}; training settings: "
                f"{sorted(TrainSettings.model_fields)}",
            )
        if name in fixed:
            raise field_error(where, f"{name} is set in {block_field} too; keep one")
        if name in self.grid:
            raise field_error(where, f"{name} is in grid too; a tuned model has no grid")
        kind = next(doc.kind for doc in describe_fields(schema) if doc.name == name)
        if kind == "int" and dimension.kind in ("uniform", "loguniform"):
            raise field_error(
                where,
                f"{name} is an integer, {dimension} gives real numbers: "
                f"use int: [low, high] or a choice",
            )
        for value in dimension.edges:
            try:
                schema(**{**fixed, name: value})
            except ValidationError as error:
                problem = problems(error, schema)[0]
                raise field_error(
                    where, f"{dimension} includes {value!r}, which {owner} refuses: {problem}"
                ) from None
        return dimension

    def space(self) -> dict[str, Dimension]:
        """The search space, name -> dimension, in the suite's order."""
        return {name: self.dimension(name) for name in self.search}

    @property
    def display_label(self) -> str:
        return self.label or self.name


def first_problem(error: ValidationError, schema: type[BaseModel], block: str) -> tuple[str, str]:
    """The field path (below ``block``, e.g. "params") and message of the first problem of a
    failed validation of ``schema``. pydantic's own type and range messages are followed by what
    the field allows (e.g. "int >= 1"); the messages of the schema's validators say it already."""
    problem, detail = problems(error, schema)[0], error.errors()[0]
    field = ".".join(filter(None, [block, problem.field]))
    allowed = {doc.name: doc.allowed for doc in describe_fields(schema)}
    text = allowed.get(problem.field.split(".")[0])
    says_it = detail["type"] in ("literal_error", "extra_forbidden") or (
        detail["type"] == "value_error" and "should be a number" not in detail["msg"]
    )
    if text is None or says_it:
        return field, problem.message
    return field, f"{problem.message}; allowed: {text}"


class Suite(Strict):
    """A whole experiment; :meth:`runs` expands it into fully resolved runs."""

    name: str
    description: str = ""
    seed: StrictInt = 0
    seeds: list[StrictInt] = Field(default_factory=lambda: [0], min_length=1)
    data: DataBlock
    models: list[ModelBlock] = Field(min_length=1)
    train: TrainSettings = Field(default_factory=TrainSettings)
    downstream: DownstreamBlock = Field(default_factory=DownstreamBlock)
    references: list[str] = Field(default_factory=lambda: list(DEFAULT_REFERENCES))
    tune: TuneBlock | None = None
    device: str = "cpu"
    resources: Resources = Field(default_factory=Resources)
    # What tables and figures call a data set, metric, data axis or model label (e.g.
    # {mnist_embedded: "noisy MNIST", fold: "speaker pair"}); see mmbench.report.names.
    display_names: dict[str, str] = Field(default_factory=dict)
    # where the suite came from, set by validate_suite: its file, the overrides applied, and the
    # folder relative data paths are looked for first (the file's; None: the working directory)
    _file: str | None = PrivateAttr(None)
    _overrides: tuple[str, ...] = PrivateAttr(())
    _base_dir: str | None = PrivateAttr(None)

    @property
    def file(self) -> str | None:
        """The suite file it was read from (None: not read from a file)."""
        return self._file

    @property
    def overrides(self) -> tuple[str, ...]:
        """The ``KEY=VALUE`` overrides applied to the file's content."""
        return self._overrides

    @property
    def base_dir(self) -> str | None:
        """The folder a relative path of a user's data file is looked for first (the suite
        file's folder, absolute), or None for a suite not read from a file."""
        return self._base_dir

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        return safe_name("suite name", name)  # it names the results folder

    @field_validator("device", mode="before")
    @classmethod
    def _known_device(cls, device: str) -> str:
        return check_device(device)

    @field_validator("references")
    @classmethod
    def _known_references(cls, names: list[str]) -> list[str]:
        from mmbench.registry import available_models

        known = [m for m in available_models() if reference_class(m) is not None]
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise ValueError(f"unknown reference row(s) {unknown}; allowed: {known} ([] for none)")
        if len(set(names)) != len(names):
            raise ValueError(f"reference rows {names} repeat a name; give each once")
        return names

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
            raise field_error(
                "models",
                f"label(s) {repeated} used by several model blocks; give each block its own label",
            )
        taken = sorted(set(labels) & {reference_label(name) for name in self.references})
        if taken:
            raise field_error(
                "models",
                f"label(s) {taken} are the names of reference rows; "
                "give the model block another label",
            )
        return self

    @model_validator(mode="after")
    def _not_too_large(self, info: ValidationInfo) -> Suite:
        if self.run_count > _max_runs(info):
            rows = " + ".join(
                [f"{block.size:,}" for block in self.models] + [f"{len(self.references)}"]
            )
            raise ValueError(
                _too_large(
                    self.run_count,
                    "runs",
                    f"data points x (model points + reference rows) x seeds "
                    f"= {self.data.size:,} x ({rows}) x {len(self.seeds)}",
                )
            )
        return self

    @property
    def run_count(self) -> int:
        """The number of runs (reference rows included), counted without expanding them."""
        rows = sum(block.size for block in self.models) + len(self.references)
        return self.data.size * rows * len(self.seeds)

    @model_validator(mode="after")
    def _tuned_models(self):
        """A tuned suite tunes every model with one budget: each model has a search space and no
        grid, nothing trains beyond the epoch cap, and each model can give the objective."""
        from mmbench.registry import model_class

        tune = self.tune
        if tune is None:
            for index, block in enumerate(self.models):
                if block.search:
                    raise field_error(
                        f"models.{index}.search",
                        "a search space needs the "
                        "suite's tune block, e.g. tune: {objective: error_pct, "
                        "trials: 20, epochs: 100}",
                    )
            return self
        cap = tune.epochs
        if "epochs" in self.train.model_fields_set and self.train.epochs > cap:
            raise field_error(
                "train.epochs",
                f"{self.train.epochs} is above tune.epochs = {cap}, "
                "the cap of every trial and final run",
            )
        for index, block in enumerate(self.models):
            where = f"models.{index}"
            owner = f"model {block.display_label!r}"
            if not block.search:
                raise field_error(
                    where,
                    f"{owner} has no search space: a tuned suite gives every "
                    "model the same budget, so give it one, e.g. search: {lr: "
                    "{loguniform: [1.0e-4, 1.0e-2]}}",
                )
            if block.grid:
                raise field_error(
                    f"{where}.grid",
                    f'{owner} is tuned: search its axes instead, e.g. omega: {{choice: "0:1:0.1"}}',
                )
            if block.train.get("epochs", 0) > cap:
                raise field_error(
                    f"{where}.train.epochs",
                    f"{block.train['epochs']} is above "
                    f"tune.epochs = {cap}, the cap of every trial and final run",
                )
            if "epochs" in block.search:
                most = max(block.dimension("epochs").edges)
                if most > cap:
                    raise field_error(
                        f"{where}.search.epochs",
                        f"reaches {most}, above "
                        f"tune.epochs = {cap}, the cap of every trial and final run",
                    )
            if tune.objective == "rmse" and "generate" not in model_class(block.name).capabilities:
                raise field_error(
                    where,
                    f"{owner} cannot generate the missing modalities, so it "
                    "has no rmse to be tuned on: tune this suite on a classification "
                    "objective, or drop the model from it",
                )
        return self

    def runs(self, data_dir: str | os.PathLike | None = None) -> list[Run]:
        """Every run, fully resolved, in a stable order: data point, model, model grid point,
        replicate; then the reference rows (:meth:`reference_runs`). A run's ``resources`` are
        the fields set by the suite or its model block (not part of the config, so they never
        change a run id).

        A user's data file (npz, parquet) is located (suite folder, working directory, then
        ``data_dir``) and its content digest put into each run's config; a missing file raises
        a :class:`~mmbench.data.errors.DataError` that says where it was looked for.
        """
        from mmbench.data import user_data_digest
        from mmbench.registry import config_class

        data = self.data
        downstream = DownstreamSettings(**self.downstream.model_dump())
        runs = []
        for data_point in data.points():
            options = {**data.options, **data_point}
            digest = user_data_digest(
                data.name, options, base_dir=self._base_dir, data_dir_=data_dir
            )
            for block in self.models:
                if self.tune is not None:  # tuned: trials, then final runs (see studies())
                    continue
                for model_point in block.points():
                    # validated values, so that "1e-4" and 0.0001 are one run
                    params = config_class(block.name)(**block.params, **model_point)
                    model = ModelChoice(block.name, params.model_dump(mode="json"))
                    train = TrainSettings(**{**self.train.model_dump(), **block.train}).model_dump()
                    resources = records.Resources(
                        **{
                            **self.resources.model_dump(exclude_none=True),
                            **block.resources.model_dump(exclude_none=True),
                        }
                    )
                    for replicate in self.seeds:
                        coordinates = Coordinates(data_point, block.name, model_point, replicate)
                        config = RunConfig(
                            data=DataChoice(data.name, options, digest),
                            model=model,
                            train={**train, "seed": derive_seed(self.seed, coordinates)},
                            downstream=downstream,
                            seed=replicate,
                        )
                        runs.append(
                            Run(
                                config,
                                block.display_label,
                                coordinates,
                                resources,
                                base_dir=self._base_dir,
                            )
                        )
        return runs + self.reference_runs(data_dir)

    def reference_runs(self, data_dir: str | os.PathLike | None = None) -> list[Run]:
        """The reference rows of every data point and replicate seed, as runs of role
        "reference" labelled as the reference names itself ("raw xO", ...). They are closed
        form: their train settings are the defaults with one epoch, whatever the suite's train
        block says, so a new training budget does not recompute them. A user's data file is
        located as for :meth:`runs`."""
        from mmbench.data import user_data_digest
        from mmbench.registry import config_class

        downstream = DownstreamSettings(**self.downstream.model_dump())
        train = TrainSettings(epochs=1).model_dump()
        resources = records.Resources(cpus=self.resources.cpus)
        runs = []
        for data_point in self.data.points():
            options = {**self.data.options, **data_point}
            digest = user_data_digest(
                self.data.name, options, base_dir=self._base_dir, data_dir_=data_dir
            )
            data = DataChoice(self.data.name, options, digest)
            for name in self.references:
                model = ModelChoice(name, config_class(name)().model_dump(mode="json"))
                for replicate in self.seeds:
                    coordinates = Coordinates(data_point, name, {}, replicate)
                    config = RunConfig(
                        data=data,
                        model=model,
                        train={**train, "seed": derive_seed(self.seed, coordinates)},
                        downstream=downstream,
                        seed=replicate,
                    )
                    runs.append(
                        Run(
                            config,
                            reference_label(name),
                            coordinates,
                            resources,
                            role=REFERENCE_ROLE,
                            base_dir=self._base_dir,
                        )
                    )
        return runs

    # -----------------------------------------------------------------------------------------
    # Tuned suites: studies, their trials and their final runs

    def studies(self, data_dir: str | os.PathLike | None = None) -> list[Study]:
        """The tuning studies, one per data point and model block, in the order of the data
        points then the model blocks (none when the suite is not tuned). A user's data file is
        located and digested as by :meth:`runs`."""
        from mmbench.data import user_data_digest

        if self.tune is None:
            return []
        studies = []
        for point in self.data.points():
            digest = user_data_digest(
                self.data.name,
                {**self.data.options, **point},
                base_dir=self._base_dir,
                data_dir_=data_dir,
            )
            studies += [
                Study(point, index, block.display_label, block.name, digest)
                for index, block in enumerate(self.models)
            ]
        return studies

    def search_space(self, study: Study) -> dict[str, Dimension]:
        """The search space of ``study``'s model block, name -> dimension."""
        return self.models[study.block].space()

    def trial_run(self, study: Study, trial: int, values: dict[str, Any]) -> Run:
        """Trial ``trial`` (from 0) of ``study``, with ``values`` for the searched names: trained
        once, on the first replicate seed, from a seed of its own."""
        replicate = self.seeds[0]
        seed_at = Coordinates(study.data_point, study.model, {"trial": trial}, replicate)
        coordinates = Coordinates(study.data_point, study.model, dict(values), replicate)
        return self._tuned_run(
            study,
            values,
            coordinates,
            derive_seed(self.seed, seed_at),
            TRIAL_ROLE,
            self._tuning(study, values, trial=trial),
        )

    def final_runs(
        self, study: Study, values: dict[str, Any], best_trial: str, best_value: float
    ) -> list[Run]:
        """The final runs of ``study``: the chosen trial's ``values`` over the replicate seeds,
        seeded as the runs of an untuned model block are. They are the model runs that tables
        report (no grid coordinates: one series per label)."""
        tuning = self._tuning(study, values, best_trial=best_trial, best_value=best_value)
        runs = []
        for replicate in self.seeds:
            coordinates = Coordinates(study.data_point, study.model, {}, replicate)
            runs.append(
                self._tuned_run(
                    study,
                    values,
                    coordinates,
                    derive_seed(self.seed, coordinates),
                    records.MODEL_ROLE,
                    tuning,
                )
            )
        return runs

    def _tuning(self, study: Study, values: dict[str, Any], **chosen: Any) -> Tuning:
        tune = self.tune
        assert tune is not None
        return Tuning(
            tune.objective,
            tune.trials,
            tune.epochs,
            tune.sampler,
            dict(self.models[study.block].search),
            dict(values),
            **chosen,
        )

    def _tuned_run(
        self,
        study: Study,
        values: dict[str, Any],
        coordinates: Coordinates,
        train_seed: int,
        role: str,
        tuning: Tuning,
    ) -> Run:
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
        default_epochs = (
            self.train.epochs if "epochs" in self.train.model_fields_set else tune.epochs
        )
        train = {
            **self.train.model_dump(),
            "epochs": default_epochs,
            **block.train,
            **{k: v for k, v in values.items() if k not in config.model_fields},
        }
        with contextlib.suppress(ValidationError):  # a run of refused settings fails
            train = TrainSettings(**train).model_dump()
        resources = records.Resources(
            **{
                **self.resources.model_dump(exclude_none=True),
                **block.resources.model_dump(exclude_none=True),
            }
        )
        data = self.data
        config_ = RunConfig(
            data=DataChoice(data.name, {**data.options, **study.data_point}, study.data_digest),
            model=ModelChoice(block.name, params),
            train={**train, "seed": train_seed},
            downstream=DownstreamSettings(**self.downstream.model_dump()),
            seed=coordinates.seed,
        )
        return Run(
            config_,
            study.label,
            coordinates,
            resources,
            role=role,
            base_dir=self._base_dir,
            tuning=tuning,
        )


@dataclass(frozen=True)
class Study:
    """A tuning study: the model block at index ``block`` of a suite (its ``label`` and
    registered ``model`` name), tuned on the data grid point ``data_point`` (``data_digest``: the
    content digest of a user's data file, None for a built-in data set)."""

    data_point: dict[str, Any]
    block: int
    label: str
    model: str
    data_digest: str | None = None

    @property
    def name(self) -> str:
        """ "CMMD", or "CMMD (fold=1)" on a data grid."""
        point = ", ".join(f"{k}={v}" for k, v in self.data_point.items())
        return f"{self.label} ({point})" if point else self.label


def reference_class(name: str) -> type[Reference] | None:
    """The class of the registered model ``name`` when it is a reference row, else None."""
    from mmbench.references import Reference
    from mmbench.registry import model_class

    cls = model_class(name)
    return cls if issubclass(cls, Reference) else None


def reference_label(name: str) -> str:
    """The label of the reference row ``name`` in tables ("raw xO", ...)."""
    cls = reference_class(name)
    if cls is None:
        raise KeyError(f"{name!r} is not a reference row")
    return cls.label


def derive_seed(suite_seed: int, coordinates: Coordinates) -> int:
    """A 31-bit seed from the suite seed and a run's coordinates (stable across machines)."""
    text = json.dumps([suite_seed, asdict(coordinates)], sort_keys=True)
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


def load_suite(
    path: str | os.PathLike, overrides: Sequence[str] = (), allow_large: bool = False
) -> Suite:
    """Read a suite file, apply ``overrides`` (``"KEY=VALUE"`` strings, see the module's
    docstring) and validate it; errors name the file and the field path. A suite of more than
    :data:`MAX_RUNS` runs (or a grid of more points) is an error unless ``allow_large``."""
    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"{path}: no such suite file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise SuiteError(f"{path}: not valid YAML: {error}") from None
    return validate_suite(
        raw, str(path), overrides, base_dir=path.parent, file=str(path), allow_large=allow_large
    )


def validate_suite(
    raw: Any,
    source: str = "suite",
    overrides: Sequence[str] = (),
    base_dir: str | os.PathLike | None = None,
    file: str | None = None,
    allow_large: bool = False,
) -> Suite:
    """The suite of the mapping ``raw`` (the content of the suite ``file``, if any) with
    ``overrides`` applied; ``source`` names it in errors, ``base_dir`` is where relative data
    paths are looked for first (None: the working directory); ``allow_large``: see
    :func:`load_suite`."""
    if not isinstance(raw, dict):
        raise SuiteError(
            f"{source}: a suite is a YAML mapping with keys {sorted(Suite.model_fields)}"
        )
    raw, overridden = apply_overrides(raw, overrides, source)
    try:
        suite = Suite.model_validate(raw, context={"allow_large": allow_large})
    except ValidationError as error:
        raise SuiteError(
            "\n".join(f"{source}: {line}{_set_by(line, overridden)}" for line in describe(error))
        ) from None
    suite._file, suite._overrides = file, tuple(overrides)
    if base_dir is not None:
        suite._base_dir = str(Path(base_dir).resolve())
    return suite


def apply_overrides(
    raw: dict, overrides: Sequence[str], source: str = "suite"
) -> tuple[dict, dict[str, str]]:
    """A copy of the suite mapping ``raw`` with each ``"KEY=VALUE"`` of ``overrides`` set, and
    the overrides by the canonical path they set (list items by index: "models.0.params.omega").

    KEY is a dotted path; missing mappings on the way are created; a part that meets a list is
    an index, or the label or name of one item (``models.cmmd``). VALUE is read as YAML.
    """
    raw = copy.deepcopy(raw)
    overridden = {}
    for override in overrides:
        key, equals, text = override.partition("=")
        key = key.strip()
        if not equals or not key:
            raise SuiteError(
                f"{source}: override {override!r} is not KEY=VALUE (e.g. "
                "train.epochs=5, models.0.params.latent_dim=8, seeds=[0,1])"
            )
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as error:
            problem = getattr(error, "problem", None) or error
            raise SuiteError(
                f"{source}: override {key}: the value {text!r} is not valid YAML ({problem})"
            ) from None
        path = _set_path(raw, key.split("."), value, f"{source}: override {key}")
        overridden[path] = override
    return raw, overridden


def _set_path(node: Any, parts: list[str], value: Any, where: str) -> str:
    """Set ``value`` at the dotted ``parts`` below ``node``; returns the canonical path."""
    done: list[str] = []
    for position, part in enumerate(parts):
        last = position == len(parts) - 1
        at = ".".join(done) or "the suite"
        if isinstance(node, dict):
            if not part:
                raise SuiteError(f"{where}: an empty name below {at}")
            if last:
                node[part] = value
            elif node.get(part) is None:  # absent, or an empty block in the YAML ("train:")
                node[part] = {}
            done.append(part)
        elif isinstance(node, list):
            part = str(_list_index(node, part, f"{where}: {at}"))
            if last:
                node[int(part)] = value
            done.append(part)
        else:
            raise SuiteError(
                f"{where}: {at} is {node!r}, not a mapping or a list, so it has no {part!r}"
            )
        if not last:
            node = node[int(part)] if isinstance(node, list) else node[part]
    return ".".join(done)


def _list_index(items: list, part: str, where: str) -> int:
    """The index ``part`` names in ``items``: a number, or the label or name of one item."""
    if part.lstrip("-").isdigit():
        index = int(part)
        if not 0 <= index < len(items):
            raise SuiteError(f"{where} has items 0..{len(items) - 1}, not {index}")
        return index
    matches = [
        i
        for i, item in enumerate(items)
        if isinstance(item, dict) and part in (item.get("label"), item.get("name"))
    ]
    if len(matches) == 1:
        return matches[0]
    names = [
        f"{i}: {item.get('label') or item.get('name')}" if isinstance(item, dict) else str(i)
        for i, item in enumerate(items)
    ]
    if matches:
        raise SuiteError(
            f"{where}: {part!r} names items {matches}; use the index or the label "
            f"({', '.join(names)})"
        )
    raise SuiteError(f"{where} has no item labelled or named {part!r} ({', '.join(names)})")


def _set_by(line: str, overridden: dict[str, str]) -> str:
    """ " (set by the override KEY=VALUE)" when the error ``line`` is about an overridden field."""
    field = line.split(":", 1)[0]
    for path, override in overridden.items():
        if field == path or field.startswith(path + ".") or path.startswith(field + "."):
            return f" (set by the override {override})"
    return ""


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
        elif problem["type"] == "literal_error":  # pydantic's message lists the choices
            message += f", got {problem['input']!r}"
        elif problem["type"] != "value_error":  # our own validators' messages say it all
            message += _value_and_allowed(loc, problem["input"])
        lines.append(f"{'.'.join(map(str, loc)) or '(top level)'}: {message}")
    return lines


def _value_and_allowed(loc: list, value: Any) -> str:
    """ ", got VALUE; allowed: ..." for a field of the suite's own schemas (e.g. train.epochs),
    else ", got VALUE"."""
    *owner, name = loc or [None]
    try:
        fields = {field.name: field.allowed for field in describe_fields(_schema_at(owner))}
    except (KeyError, StopIteration):
        fields = {}
    allowed = fields.get(name) if isinstance(name, str) else None
    if allowed is None or allowed == "other":
        return f", got {value!r}"
    return f", got {value!r}; allowed: {allowed.replace(' any', '')}"


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
