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
Every name is checked against what it names (loader options, the fields of the model's config,
the trainer's settings) and every model point is validated by the model's config, so a suite that
validates runs; an error names the file, the field path, the bad value and what is allowed.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import typing
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from mmbench import records
from mmbench.config import TrainSettings, problems
from mmbench.records import (
    REFERENCE_ROLE,
    Coordinates,
    DataChoice,
    DownstreamSettings,
    ModelChoice,
    Run,
    RunConfig,
)

if TYPE_CHECKING:
    from mmbench.references import Reference

DEFAULT_REFERENCES = ("raw_xo", "mean_xm", "ridge_xo_xm")
"""The reference rows of a suite that does not name its own (mmbench.references)."""


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
        if self.grid_mode == "zip":
            rows = zip(*self.grid.values())
        else:
            rows = itertools.product(*self.grid.values())
        return [dict(zip(names, row)) for row in rows]


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
    its results are reported under (default: its name)."""

    name: str
    label: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)

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
            raise ValueError(f"{name!r} is a reference row, not a model: name it in the suite's "
                             f"references (default: {list(DEFAULT_REFERENCES)})")
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
    references: list[str] = Field(default_factory=lambda: list(DEFAULT_REFERENCES))
    device: str = "cpu"
    resources: Resources = Field(default_factory=Resources)

    @field_validator("references")
    @classmethod
    def _known_references(cls, names: list[str]) -> list[str]:
        from mmbench.registry import available_models
        known = [m for m in available_models() if reference_class(m) is not None]
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise ValueError(f"unknown reference row(s) {unknown}; allowed: {known} "
                             "([] for none)")
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
            raise field_error("models", f"label(s) {repeated} used by several model blocks; "
                                        "give each block its own label")
        taken = sorted(set(labels) & {reference_label(name) for name in self.references})
        if taken:
            raise field_error("models", f"label(s) {taken} are the names of reference rows; "
                                        "give the model block another label")
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
        return runs + self.reference_runs()

    def reference_runs(self) -> list[Run]:
        """The reference rows of every data point and replicate seed, as runs of role
        "reference" labelled as the reference names itself ("raw xO", ...). They are closed
        form: their train settings are the defaults with one epoch, whatever the suite's train
        block says, so a new training budget does not recompute them."""
        from mmbench.registry import config_class
        downstream = DownstreamSettings(**self.downstream.model_dump())
        train = TrainSettings(epochs=1).model_dump()
        resources = records.Resources(cpus=self.resources.cpus)
        runs = []
        for data_point in self.data.points():
            data = DataChoice(self.data.name, {**self.data.options, **data_point})
            for name in self.references:
                model = ModelChoice(name, config_class(name)().model_dump(mode="json"))
                for replicate in self.seeds:
                    coordinates = Coordinates(data_point, name, {}, replicate)
                    config = RunConfig(
                        data=data, model=model,
                        train={**train, "seed": derive_seed(self.seed, coordinates)},
                        downstream=downstream, seed=replicate)
                    runs.append(Run(config, reference_label(name), coordinates, resources,
                                    role=REFERENCE_ROLE))
        return runs


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
