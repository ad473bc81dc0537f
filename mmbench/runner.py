"""Runs: a run is a pure function of its resolved config, identified by a hash of it.

Each run writes one directory ``<results>/runs/<run_id>/`` holding ``record.json`` (config,
metrics, timings, environment, status) and its artifacts: ``posteriors.npz`` (test-split
statistics for the collapse analysis), ``generated.npz`` (a few generations beside the truth),
``representation.npz`` (test representations and labels, for t-SNE) and ``checkpoint.pt``.
The directory is assembled under a temporary name and renamed into place, so a run is either
complete or absent; a suite re-run skips runs whose record exists.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
import traceback
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmbench.data import load_dataset
from mmbench.evaluate import evaluate
from mmbench.registry import make_model
from mmbench.suite import train_config
from mmbench.trainer import EpochCallback
from mmbench.views import DataSplits

RECORD = "record.json"
SMOKE_SIZES = {"train": 512, "valid": 256, "test": 256}


class RunStore:
    """The records and artifacts of one results directory."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.runs = self.root / "runs"

    def path(self, run_id: str) -> Path:
        return self.runs / run_id

    def record(self, run_id: str) -> dict[str, Any] | None:
        path = self.path(run_id) / RECORD
        return json.loads(path.read_text()) if path.is_file() else None

    def records(self) -> list[dict[str, Any]]:
        # staging directories (".<run_id>.<pid>.tmp", left behind by a killed process) are not runs
        return [json.loads(p.read_text()) for p in sorted(self.runs.glob(f"*/{RECORD}"))
                if not p.parent.name.startswith(".")]

    def write(self, run_id: str, record: dict[str, Any], arrays: dict[str, dict[str, np.ndarray]],
              model=None) -> None:
        """Write the run's artifacts and record into a temporary directory, then rename it into
        place (atomic on one file system); an existing directory for the run is replaced."""
        self.runs.mkdir(parents=True, exist_ok=True)
        staging = self.runs / f".{run_id}.{os.getpid()}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for name, content in arrays.items():
            if content:
                np.savez_compressed(staging / f"{name}.npz", **content)
        if model is not None:
            try:
                model.save(staging / "checkpoint.pt")
            except NotImplementedError:
                pass
        record["artifacts"] = sorted(p.name for p in staging.iterdir())
        (staging / RECORD).write_text(json.dumps(record, indent=1, default=_json_default))
        final = self.path(run_id)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def environment(device: str) -> dict[str, Any]:
    """Provenance kept with every record."""
    import sklearn

    from mmbench import __version__
    env = {"mmbench": __version__, "python": platform.python_version(), "torch": torch.__version__,
           "numpy": np.__version__, "scikit-learn": sklearn.__version__,
           "platform": platform.platform(), "device": device, "threads": torch.get_num_threads(),
           "flush_denormal": True, "git_commit": _git_commit()}
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


@lru_cache(maxsize=1)
def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


@lru_cache(maxsize=2)
def _cached_dataset(name: str, options_json: str, data_dir: str | None) -> DataSplits:
    return load_dataset(name, data_dir_=data_dir, **json.loads(options_json))


def load_run_data(config: dict[str, Any], data_dir: str | None = None) -> DataSplits:
    """The run's data set (cached per process: grids over models reuse one load), cut down to
    the smoke sizes when the config asks for a smoke run."""
    data = config["data"]
    splits = _cached_dataset(data["name"], json.dumps(data["options"], sort_keys=True), data_dir)
    if config.get("smoke"):
        rng = np.random.default_rng(0)
        cut = {}
        for split, size in SMOKE_SIZES.items():
            views = getattr(splits, split)
            cut[split] = views.subset(np.sort(rng.permutation(views.n)[:size]))
        splits = DataSplits(splits.name, cut["train"], cut["valid"], cut["test"],
                            splits.n_classes, splits.info)
    return splits


def execute_run(run: dict[str, Any], results_dir: str | os.PathLike, device: str = "cpu",
                data_dir: str | None = None, on_epoch: EpochCallback | None = None) -> dict[str, Any]:
    """Train and evaluate one run and write its record; failures are recorded, not raised
    (except KeyboardInterrupt, which leaves no record so the run is redone on resume)."""
    config = run["config"]
    record: dict[str, Any] = {"run_id": run["run_id"], "label": run["label"],
                              "coordinates": run["coordinates"], "config": config,
                              "environment": environment(device), "started": time.time()}
    arrays: dict[str, dict[str, np.ndarray]] = {}
    model = None
    try:
        splits = load_run_data(config, data_dir)
        model = make_model(config["model"]["name"], config["model"]["params"])
        fit_start = time.perf_counter()
        report = model.fit(splits.train, splits.valid, trainer=train_config(config, device),
                           n_classes=splits.n_classes, on_epoch=on_epoch)
        train_seconds = time.perf_counter() - fit_start
        eval_start = time.perf_counter()
        result = evaluate(model, splits, config["downstream"], seed=config["train"]["seed"])
        record.update(
            status="ok",
            metrics=result.metrics,
            timings={"train_seconds": train_seconds,
                     "eval_seconds": time.perf_counter() - eval_start},
            fit={"epochs": report.epochs, "best_epoch": report.best_epoch,
                 "best_valid_loss": report.best_valid_loss, "stopped_by": report.stopped_by,
                 "history": report.history},
            diagnostics=model.diagnostics(),
            downstream_params=result.downstream_params,
            metrics_by_group=result.metrics_by_group,
            data_info={k: v for k, v in splits.info.items() if _is_plain(v)},
            modalities={m: {"likelihood": splits.test.modality(m).likelihood,
                            "image_shape": splits.test.modality(m).image_shape}
                        for m in splits.test.data},
        )
        if result.posteriors is not None:
            arrays["posteriors"] = result.posteriors.to_arrays()
        if result.generated:
            kept = result.generated_index
            test = splits.test
            arrays["generated"] = {
                "index": kept,
                **{f"generated.{m}": g for m, g in result.generated.items()},
                **{f"truth.{m}": test.data[m][kept] for m in test.missing},
                **{f"observed.{m}": test.data[m][kept] for m in test.observed},
                **{f"vocabulary.{m}": np.array(test.modality(m).vocabulary) for m in test.data
                   if test.modality(m).vocabulary}}
        arrays["representation"] = {"z": result.representation, "labels": splits.test.labels}
        arrays["data_info"] = _arrays_in(splits.info)
    except Exception as error:  # noqa: BLE001 — any failure of a run is recorded, the suite goes on
        record.update(status="failed", error=f"{type(error).__name__}: {error}",
                      traceback=traceback.format_exc(limit=8))
        model = None
    record["finished"] = time.time()
    RunStore(results_dir).write(run["run_id"], record, arrays, model)
    return record


def _arrays_in(info, prefix: str = "") -> dict[str, np.ndarray]:
    """The numpy arrays of a data set's info, e.g. MNIST-SVHN's pairing indices, flattened to
    "pairs.train.mnist"-style keys for ``np.savez`` (JSON records keep only the plain values)."""
    found = {}
    for key, value in info.items():
        if isinstance(value, np.ndarray):
            found[prefix + str(key)] = value
        elif isinstance(value, dict):
            found.update(_arrays_in(value, f"{prefix}{key}."))
    return found


def _is_plain(value) -> bool:
    try:
        json.dumps(value)
        return True
    except TypeError:
        return False


def smoke_version(run: dict[str, Any]) -> dict[str, Any]:
    """The same run on a tiny budget (2 epochs, a few hundred points): a different run id."""
    from mmbench.suite import run_id
    config = json.loads(json.dumps(run["config"]))
    config["train"].update(epochs=2, patience=None, max_seconds=None)
    config["smoke"] = True
    return {**run, "config": config, "run_id": run_id(config)}


def pending(runs: list[dict[str, Any]], store: RunStore, retry_failed: bool = False) -> list[dict]:
    """The runs that have no record yet (or a failed one, with ``retry_failed``)."""
    todo = []
    for run in runs:
        record = store.record(run["run_id"])
        if record is None or (retry_failed and record.get("status") == "failed"):
            todo.append(run)
    return todo
