"""Runs and their records as typed objects, each with one JSON form.

A :class:`Run` is one point of a suite: a fully resolved :class:`RunConfig`, the ``label`` its
results are reported under, its :class:`Coordinates` in the suite, the :class:`Resources` it asks
an executor for, and its ``role``. Its ``run_id`` is 12 hex digits of the sha256 of the config's
canonical JSON (``json.dumps(config, sort_keys=True)``), so a run is a pure function of its id.

A :class:`Record` is what executing a run left behind: the run's identity, its status, metrics,
timings, fit summary, diagnostics and provenance. ``record.json`` holds ``Record.to_json()``.

The JSON forms are those mmbench has always written: run ids do not change and results
directories written by earlier versions load (and resume); fields added later are optional when
read. Nothing here imports torch, so reports read records without the training stack.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

JSON = dict[str, Any]

# What a run is for: "model" runs train and evaluate a suite's model (their ids hash the config
# alone, as they always have); other roles (trials of a tuning study, reference runs computed
# from the data alone) add the role to what the id hashes.
MODEL_ROLE = "model"
TRIAL_ROLE = "trial"
REFERENCE_ROLE = "reference"  # a no-model reference row (mmbench.references)

Status = Literal["ok", "failed", "diverged"]
OK: Status = "ok"
FAILED: Status = "failed"
DIVERGED: Status = "diverged"
"""Training ran, but its loss became non-finite or exploded (see mmbench.trainer)."""
STATUSES: tuple[Status, ...] = (OK, FAILED, DIVERGED)


@dataclass(frozen=True)
class DataChoice:
    """A data set by its registered ``name`` and the ``options`` its loader is called with;
    ``digest`` is the ``"sha256:<hex>"`` of the content of a user's data file (npz, parquet), so
    that editing the file in place makes new runs (None for the other data sets)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    digest: str | None = None

    def to_json(self) -> JSON:
        """``digest`` appears only when set, so data sets without one keep their run ids."""
        out: JSON = {"name": self.name, "options": self.options}
        if self.digest is not None:
            out["digest"] = self.digest
        return out


@dataclass(frozen=True)
class ModelChoice:
    """A model by its registered ``name`` and every hyper-parameter it is built with."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DownstreamSettings:
    """The classifier trained on ``represent(xO)`` for models without one of their own:
    ``classifier`` (linear_svm, logistic or mlp), its hyper-parameter ``grid`` searched on the
    validation split (None: the default grid) and ``max_train`` training points (None: all)."""

    classifier: str = "linear_svm"
    grid: dict[str, list] | None = None
    max_train: int | None = None


# Training settings added after the first records: left out of a run's config (and so of its
# id) at these defaults, so that every earlier run keeps its id.
TRAIN_DEFAULTS_OMITTED: dict[str, Any] = {"precision": "float32"}
# Training settings that change how a run executes but not its results (beyond float tolerance):
# never in its config or id; the record's environment says how it ran.
EXECUTION_SETTINGS = ("compile",)


@dataclass(frozen=True)
class RunConfig:
    """Everything a run's result depends on (the device aside).

    train: the keyword arguments of :class:`mmbench.trainer.TrainConfig` except ``device``;
        its ``seed`` seeds the fit, derived from the suite seed and the run's coordinates.
    seed: the replicate seed (the run's ``seed`` coordinate).
    smoke: a run cut down to a tiny budget to check the plumbing.
    """

    data: DataChoice
    model: ModelChoice
    train: dict[str, Any]
    downstream: DownstreamSettings
    seed: int
    smoke: bool = False

    @property
    def epochs(self) -> int:
        """The most epochs the fit may run."""
        return int(self.train["epochs"])

    @property
    def train_seed(self) -> int:
        """The seed of the fit (and of the downstream classifier's sub-sampling)."""
        return int(self.train["seed"])

    def to_json(self) -> JSON:
        """The config as hashed into the run id; ``smoke`` appears only when true, a training
        setting of :data:`TRAIN_DEFAULTS_OMITTED` only when not its default, and one of
        :data:`EXECUTION_SETTINGS` never."""
        train = {
            k: v
            for k, v in self.train.items()
            if k not in EXECUTION_SETTINGS
            and not (k in TRAIN_DEFAULTS_OMITTED and v == TRAIN_DEFAULTS_OMITTED[k])
        }
        out = {
            "data": self.data.to_json(),
            "model": asdict(self.model),
            "train": train,
            "downstream": asdict(self.downstream),
            "seed": self.seed,
        }
        if self.smoke:
            out["smoke"] = True
        return out

    @classmethod
    def from_json(cls, data: JSON) -> RunConfig:
        return cls(
            data=DataChoice(**data["data"]),
            model=ModelChoice(**data["model"]),
            train=dict(data["train"]),
            downstream=DownstreamSettings(**data["downstream"]),
            seed=data["seed"],
            smoke=bool(data.get("smoke", False)),
        )


def run_id(config: RunConfig, role: str = MODEL_ROLE) -> str:
    """12 hex digits of the sha256 of the config's canonical JSON (plus the role, for runs that
    are not model runs)."""
    hashed = config.to_json()
    if role != MODEL_ROLE:
        hashed["role"] = role
    return hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Coordinates:
    """Where a run sits in its suite: the data grid point, the model (its registered name), the
    model's grid point and the replicate seed."""

    data: dict[str, Any]
    model: str
    grid: dict[str, Any]
    seed: int


@dataclass(frozen=True)
class Resources:
    """What one run asks an executor for: ``cpus`` (also its number of torch threads) and
    ``gpus`` (a Ray reservation; fractions share a GPU). None: left to the executor."""

    cpus: int | None = None
    gpus: float | None = None


@dataclass(frozen=True)
class Tuning:
    """How the searched hyper-parameters of a tuned run were chosen (see :mod:`mmbench.tuning`).

    objective: the suite's metric (error_pct, map_micro_pct, map_macro_pct or rmse), measured on
        the validation split only (the metric "valid_<objective>" of a trial's record).
    trials, epochs, sampler: the budget of every study of the suite (trials per study, the epoch
        cap of every trial and final run) and how trials are asked ("tpe" or "random").
    space: the search space as the suite writes it, e.g. {"omega": {"choice": "0:1:0.1"}}.
    params: this run's value of every searched name.
    trial: a trial's number in its study (from 0); None for a final run.
    best_trial, best_value: a final run's chosen trial (its run id) and that trial's objective.
    """

    objective: str
    trials: int
    epochs: int
    sampler: str
    space: dict[str, Any]
    params: dict[str, Any]
    trial: int | None = None
    best_trial: str | None = None
    best_value: float | None = None

    @property
    def budget(self) -> str:
        """The budget in words: "8 trials x 30 epochs"."""
        return f"{self.trials} trials x {self.epochs} epochs"


@dataclass(frozen=True)
class Run:
    """One run of a suite; ``run_id`` is computed from ``config`` and ``role``. Resources and
    ``base_dir`` (the folder a relative path of a user's data file is looked for first: the
    suite file's folder) and the tuning provenance are not part of the config, so they never
    change a run id."""

    run_id: str = field(init=False)
    config: RunConfig
    label: str
    coordinates: Coordinates
    resources: Resources = Resources()
    role: str = MODEL_ROLE
    base_dir: str | None = None
    tuning: Tuning | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_id", run_id(self.config, self.role))

    @property
    def name(self) -> str:
        """How progress displays name the run: "CMMD seed 0", or "CMMD trial 3"."""
        if self.tuning is not None and self.tuning.trial is not None:
            return f"{self.label} trial {self.tuning.trial}"
        return f"{self.label} seed {self.coordinates.seed}"


@dataclass(frozen=True)
class ModalityInfo:
    """How a modality is modelled and drawn: its ``likelihood`` (gaussian, bernoulli, ...) and
    the ``image_shape`` of its flattened features (None: not an image)."""

    likelihood: str
    image_shape: tuple[int, ...] | None = None

    @classmethod
    def from_json(cls, data: JSON) -> ModalityInfo:
        shape = data.get("image_shape")
        return cls(data["likelihood"], None if shape is None else tuple(shape))


@dataclass(frozen=True)
class Timings:
    """Seconds spent fitting and evaluating (wall clock)."""

    train_seconds: float
    eval_seconds: float


@dataclass(frozen=True)
class FitSummary:
    """What training did: epochs run, the best validation epoch and its loss, why it stopped and
    one row of losses per epoch.

    stopped_by: "early_stopping" (patience ran out, before or at the last epoch allowed),
    "epochs" (it ran every epoch allowed: the epoch cap), "time_budget" (the wall-clock budget
    ran out before the cap) or "closed_form" (no iterations, e.g. CCA).
    """

    epochs: int
    best_epoch: int
    best_valid_loss: float
    stopped_by: str
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def hit_cap(self) -> bool:
        """Training ran every epoch allowed without converging by patience: its best epoch may
        lie beyond the cap (tables flag such cells)."""
        return self.stopped_by == "epochs"


@dataclass(frozen=True)
class Record:
    """What executing a run left: its identity, status and results.

    status: "ok"; or "failed" or "diverged" with ``error`` ("Type: message") and a short
        ``traceback``.
    metrics: name -> value on the test split (error_pct or map_*_pct, rmse, rmse.<modality>),
        and the same on the validation split prefixed "valid_" (valid_error_pct, valid_rmse,
        ...). Trials of a tuning study have the validation metrics only.
    metrics_by_group: test group (e.g. XRMB speaker) -> its metrics.
    diagnostics: facts the fitted model reports (JSON-able), e.g. canonical correlations.
    downstream_params: the downstream classifier's chosen hyper-parameters (None: the model
        classifies itself).
    data_info: the data set's plain facts (sizes, sources, seeds); its arrays are an artifact.
    environment: provenance (versions, platform, device, threads, git commit).
    tuning: how a tuned run's searched hyper-parameters were chosen (None: not tuned).
    artifacts: the files beside record.json (e.g. posteriors.npz, checkpoint.pt).
    started, finished: Unix times.
    """

    run_id: str
    label: str
    coordinates: Coordinates
    config: RunConfig
    status: Status
    started: float
    finished: float
    environment: dict[str, Any] = field(default_factory=dict)
    role: str = MODEL_ROLE
    error: str | None = None
    traceback: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    timings: Timings | None = None
    fit: FitSummary | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    downstream_params: dict[str, Any] | None = None
    metrics_by_group: dict[str, dict[str, float]] = field(default_factory=dict)
    data_info: dict[str, Any] = field(default_factory=dict)
    modalities: dict[str, ModalityInfo] = field(default_factory=dict)
    tuning: Tuning | None = None
    artifacts: tuple[str, ...] = ()

    @classmethod
    def of(cls, run: Run, **results: Any) -> Record:
        """The record of ``run`` with ``results`` (status, started, finished, metrics, ...)."""
        return cls(
            run_id=run.run_id,
            label=run.label,
            coordinates=run.coordinates,
            config=run.config,
            role=run.role,
            tuning=run.tuning,
            **results,
        )

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_json(self) -> JSON:
        """record.json's content. A finished run lists every result (null where it has none);
        a run that did not finish lists only the results it has, and its error."""
        out: JSON = {
            "run_id": self.run_id,
            "label": self.label,
            "coordinates": asdict(self.coordinates),
            "config": self.config.to_json(),
            "role": self.role,
            "environment": self.environment,
            "started": self.started,
            "status": self.status,
        }
        if self.error is not None:
            out.update(error=self.error, traceback=self.traceback)
        results = {
            "metrics": self.metrics,
            "timings": None if self.timings is None else asdict(self.timings),
            "fit": None if self.fit is None else asdict(self.fit),
            "diagnostics": self.diagnostics,
            "downstream_params": self.downstream_params,
            "metrics_by_group": self.metrics_by_group,
            "data_info": self.data_info,
            "modalities": {m: asdict(info) for m, info in self.modalities.items()},
        }
        out.update({k: v for k, v in results.items() if self.ok or v})
        if self.tuning is not None:
            out["tuning"] = asdict(self.tuning)
        out.update(finished=self.finished, artifacts=list(self.artifacts))
        return out

    @classmethod
    def from_json(cls, data: JSON) -> Record:
        """A record from record.json's content (any version); unknown keys are ignored."""
        timings, fit, tuning = data.get("timings"), data.get("fit"), data.get("tuning")
        return cls(
            run_id=data["run_id"],
            label=data["label"],
            coordinates=Coordinates(**data["coordinates"]),
            config=RunConfig.from_json(data["config"]),
            status=data["status"],
            started=data["started"],
            finished=data["finished"],
            environment=data.get("environment") or {},
            role=data.get("role", MODEL_ROLE),
            error=data.get("error"),
            traceback=data.get("traceback"),
            metrics=data.get("metrics") or {},
            timings=None if timings is None else Timings(**timings),
            fit=None if fit is None else FitSummary(**fit),
            diagnostics=data.get("diagnostics") or {},
            downstream_params=data.get("downstream_params"),
            metrics_by_group=data.get("metrics_by_group") or {},
            data_info=data.get("data_info") or {},
            modalities={
                m: ModalityInfo.from_json(info)
                for m, info in (data.get("modalities") or {}).items()
            },
            tuning=None if tuning is None else Tuning(**tuning),
            artifacts=tuple(data.get("artifacts") or ()),
        )
