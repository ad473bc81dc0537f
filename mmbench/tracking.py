"""Experiment tracking: each run of a suite logged to MLflow when its record is written.

The process that runs the suite logs a run once its record exists (``mmbench run --track
mlflow``), whatever executor trained it, so tracking never touches a training step. A run is
logged as one MLflow run in the experiment named after the suite, with:

- params: the run's resolved config, flattened (``model.latent_dim``, ``train.lr``, ...);
- tags: ``mmbench.run_id``, ``mmbench.label``, ``mmbench.model``, ``mmbench.status``, ...;
- metrics: the fit history per epoch as steps (``history/loss``, ``history/valid_loss`` and each
  named part of the loss), the test metrics (``test/error_pct``, ``test/rmse``; per test group
  ``test/group_<id>/<metric>``), the timings (``time/train_seconds``) and the fit summary
  (``fit/epochs``, ``fit/best_epoch``);
- artifacts: the run's ``record.json``.

MLflow is an optional extra (``pip install 'mmbench[mlflow]'``, the light mlflow-skinny client).
The default store is the folder ``./mlruns`` (MLflow's file store; recent MLflow versions ask for
``MLFLOW_ALLOW_FILE_STORE=true``, which this module sets for a local folder); any other tracking
URI (``http://host:5000``, ``sqlite:///mlflow.db`` with the full ``mlflow`` package) is passed
on. Nothing here imports torch.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Protocol

from mmbench.records import Record
from mmbench.store import RECORD

TRACKERS = ("mlflow",)
DEFAULT_MLFLOW_URI = "mlruns"
# MLflow's per-request limits of log_batch, and the longest param value every version accepts
BATCH_METRICS, BATCH_PARAMS, BATCH_TAGS = 1000, 100, 100
MAX_PARAM_LENGTH = 500


class TrackingError(RuntimeError):
    """A tracker that cannot start (its package missing, its store unreachable) or could not log
    a run; the message says which and how to fix it."""


class Tracker(Protocol):
    """Logs finished runs somewhere a person can browse them."""

    def log(self, record: Record, folder: Path | None = None) -> None:
        """Log ``record`` (and the files of its run ``folder``); raises :class:`TrackingError`."""


def open_tracker(kind: str, uri: str | None, experiment: str) -> Tracker:
    """The tracker ``kind`` ("mlflow") logging to ``uri`` (None: its default) under
    ``experiment`` (the suite's name)."""
    if kind != "mlflow":
        raise TrackingError(f"--track {kind!r}; allowed: {', '.join(TRACKERS)}")
    return MlflowTracker(experiment, uri)


class MlflowTracker:
    """Logs each record as one MLflow run of ``experiment`` in the store at ``uri`` (None: the
    folder ./mlruns)."""

    def __init__(self, experiment: str, uri: str | None = None):
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise TrackingError(
                "--track mlflow needs MLflow: pip install 'mmbench[mlflow]' "
                "(the light mlflow-skinny client)"
            ) from None
        self.uri = tracking_uri(uri)
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            found = self.client.get_experiment_by_name(experiment)
            self.experiment_id = (
                found.experiment_id
                if found is not None
                else self.client.create_experiment(experiment)
            )
        except Exception as error:  # MLflow raises many types (store, network, permission)
            raise TrackingError(
                f"cannot open the MLflow store at {self.uri}: {type(error).__name__}: {error}"
            ) from None

    def log(self, record: Record, folder: Path | None = None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        try:
            run = self.client.create_run(
                self.experiment_id, run_name=run_name(record), start_time=int(record.started * 1000)
            )
            run_id = run.info.run_id
            stamp = int(record.finished * 1000)
            metrics = [Metric(key, value, stamp, step) for key, value, step in metric_steps(record)]
            params = [Param(key, value) for key, value in run_params(record).items()]
            tags = [RunTag(key, value) for key, value in run_tags(record).items()]
            for batch in chunks(params, BATCH_PARAMS):
                self.client.log_batch(run_id, params=batch)
            for batch in chunks(tags, BATCH_TAGS):
                self.client.log_batch(run_id, tags=batch)
            for batch in chunks(metrics, BATCH_METRICS):
                self.client.log_batch(run_id, metrics=batch)
            if folder is not None and (folder / RECORD).is_file():
                self.client.log_artifact(run_id, str(folder / RECORD))
            self.client.set_terminated(
                run_id, status="FINISHED" if record.ok else "FAILED", end_time=stamp
            )
        except Exception as error:  # a tracking failure must never stop a suite
            raise TrackingError(
                f"could not log {run_name(record)} ({record.run_id}) to MLflow "
                f"at {self.uri}: {type(error).__name__}: {error}"
            ) from None


def chunks(items: list, size: int) -> list[list]:
    """``items`` in consecutive lists of at most ``size``."""
    return [items[start : start + size] for start in range(0, len(items), size)]


def tracking_uri(uri: str | None) -> str:
    """``uri``, or ./mlruns; a local folder becomes an absolute path (MLflow's file store, which
    recent MLflow versions use only with MLFLOW_ALLOW_FILE_STORE=true: set here unless the user
    set it)."""
    uri = uri or DEFAULT_MLFLOW_URI
    if "://" in uri and not uri.startswith("file:"):
        return uri
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri if uri.startswith("file:") else str(Path(uri).expanduser().resolve())


def run_name(record: Record) -> str:
    """ "CMMD seed 0", with the data coordinates when there are any ("CMMD seed 0 fold=1")."""
    data = " ".join(f"{k}={v}" for k, v in record.coordinates.data.items())
    return f"{record.label} seed {record.coordinates.seed}" + (f" {data}" if data else "")


def run_params(record: Record) -> dict[str, str]:
    """The run's config flattened to "data.<option>", "model.<param>", "train.<setting>",
    "downstream.<setting>", "seed" (values as text, cut to MAX_PARAM_LENGTH characters)."""
    config = record.config.to_json()
    flat: dict[str, Any] = {
        "data.name": config["data"]["name"],
        "model.name": config["model"]["name"],
        "seed": config["seed"],
    }
    flat.update({f"data.{k}": v for k, v in config["data"]["options"].items()})
    flat.update({f"model.{k}": v for k, v in config["model"]["params"].items()})
    flat.update({f"train.{k}": v for k, v in config["train"].items()})
    flat.update({f"downstream.{k}": v for k, v in config["downstream"].items()})
    if config.get("smoke"):
        flat["smoke"] = True
    return {key: str(value)[:MAX_PARAM_LENGTH] for key, value in flat.items()}


def run_tags(record: Record) -> dict[str, str]:
    tags = {
        "mmbench.run_id": record.run_id,
        "mmbench.label": record.label,
        "mmbench.model": record.coordinates.model,
        "mmbench.status": record.status,
        "mmbench.role": record.role,
    }
    if record.fit is not None:
        tags["mmbench.stopped_by"] = record.fit.stopped_by
    if record.error:
        tags["mmbench.error"] = record.error[:MAX_PARAM_LENGTH]
    return tags


def metric_steps(record: Record) -> list[tuple[str, float, int]]:
    """(key, value, step) of every finite metric: the history per epoch (step = epoch), then the
    final values (step 0)."""
    steps: list[tuple[str, float, int]] = []
    fit = record.fit
    if fit is not None:
        for row in fit.history:
            epoch = int(row.get("epoch", 0))
            steps.extend(
                (f"history/{key}", float(value), epoch)
                for key, value in row.items()
                if key != "epoch"
            )
        steps += [
            ("fit/epochs", float(fit.epochs), 0),
            ("fit/best_epoch", float(fit.best_epoch), 0),
            ("fit/best_valid_loss", float(fit.best_valid_loss), 0),
        ]
    steps.extend((f"test/{key}", float(value), 0) for key, value in record.metrics.items())
    for group, metrics in record.metrics_by_group.items():
        steps.extend(
            (f"test/group_{group}/{key}", float(value), 0) for key, value in metrics.items()
        )
    if record.timings is not None:
        steps += [
            ("time/train_seconds", record.timings.train_seconds, 0),
            ("time/eval_seconds", record.timings.eval_seconds, 0),
        ]
    return [(key, value, step) for key, value, step in steps if math.isfinite(value)]
