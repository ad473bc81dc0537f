"""Executing one run: load its data, fit its model, evaluate it and store its record.

A run is a pure function of its resolved config, identified by a hash of it (see
:mod:`mmbench.records`); its record and artifacts are written atomically by
:class:`mmbench.store.RunStore`, so a suite re-run skips runs whose record exists.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmbench.data import load_dataset, user_data_digest
from mmbench.data.errors import DataError
from mmbench.evaluate import evaluate
from mmbench.model import MultimodalModel
from mmbench.records import (
    DIVERGED,
    FAILED,
    OK,
    TRIAL_ROLE,
    FitSummary,
    ModalityInfo,
    Record,
    Run,
    RunConfig,
    Timings,
)
from mmbench.registry import make_model
from mmbench.store import CHECKPOINT, DATA_INFO, GENERATED, POSTERIORS, REPRESENTATION, RunStore
from mmbench.trainer import DivergedError, EpochCallback, TrainConfig
from mmbench.views import DataSplits

SMOKE_SIZES = {"train": 512, "valid": 256, "test": 256}


def environment(device: str) -> dict[str, Any]:
    """Provenance kept with every record."""
    import sklearn

    from mmbench import __version__

    env = {
        "mmbench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "platform": platform.platform(),
        "device": device,
        "threads": torch.get_num_threads(),
        "flush_denormal": True,
        "git_commit": _git_commit(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


@lru_cache(maxsize=1)
def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch threads (None: as they are), then restore them."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@lru_cache(maxsize=2)
def _cached_dataset(
    name: str, options_json: str, data_dir: str | None, base_dir: str | None, digest: str | None
) -> DataSplits:
    # the digest is in the key so that a user's file edited in place is read again
    return load_dataset(name, data_dir_=data_dir, base_dir=base_dir, **json.loads(options_json))


def forget_loaded_data() -> None:
    """Empty this process's cache of loaded data sets."""
    _cached_dataset.cache_clear()


def load_run_data(
    config: RunConfig, data_dir: str | None = None, base_dir: str | None = None
) -> DataSplits:
    """The run's data set (cached per process: grids over models reuse one load), cut down to
    the smoke sizes when the config asks for a smoke run. ``base_dir``: where a relative path of
    a user's file is looked for first. A user's file must still have the content the run's
    config was made for (``config.data.digest``): a file edited since is a :class:`DataError`."""
    data = config.data
    if data.digest is not None:
        now = user_data_digest(data.name, data.options, base_dir=base_dir, data_dir_=data_dir)
        if now != data.digest:
            raise DataError(
                f"{data.name} file {data.options.get('path')}: its content changed "
                f"since the runs were listed ({now}, the run is for {data.digest}); "
                "run the suite again to run on the new content"
            )
    splits = _cached_dataset(
        data.name, json.dumps(data.options, sort_keys=True), data_dir, base_dir, data.digest
    )
    if config.smoke:
        rng = np.random.default_rng(0)
        cut = {}
        for split, size in SMOKE_SIZES.items():
            views = getattr(splits, split)
            cut[split] = views.subset(np.sort(rng.permutation(views.n)[:size]))
        splits = DataSplits(
            splits.name, cut["train"], cut["valid"], cut["test"], splits.n_classes, splits.info
        )
    return splits


def train_config(config: RunConfig, device: str) -> TrainConfig:
    return TrainConfig(**config.train, device=device)


def execute_run(
    run: Run,
    results_dir: str | os.PathLike,
    device: str = "cpu",
    data_dir: str | None = None,
    on_epoch: EpochCallback | None = None,
    threads: int | None = None,
) -> Record:
    """Train and evaluate one run with ``threads`` torch threads (None: as they are; the record's
    ``environment.threads`` says how many it had), write its record and return it; failures are
    recorded, not raised (except KeyboardInterrupt, which leaves no record so the run is redone
    on resume). A run whose training diverged (:class:`mmbench.trainer.DivergedError`) is
    recorded with the status "diverged", any other failure with "failed"."""
    with torch_threads(threads):
        return _execute_run(run, results_dir, device, data_dir, on_epoch)


def _execute_run(
    run: Run,
    results_dir: str | os.PathLike,
    device: str,
    data_dir: str | None,
    on_epoch: EpochCallback | None,
) -> Record:
    config = run.config
    env, started = environment(device), time.time()
    # not in the run's config (it does not change results): how the training steps ran
    env["compile"] = bool(config.train.get("compile", False))
    arrays: dict[str, dict[str, np.ndarray]] = {}
    model = None
    try:
        splits = load_run_data(config, data_dir, run.base_dir)
        model = make_model(config.model.name, config.model.params)
        fit_start = time.perf_counter()
        report = model.fit(
            splits.train,
            splits.valid,
            trainer=train_config(config, device),
            n_classes=splits.n_classes,
            on_epoch=on_epoch,
        )
        train_seconds = time.perf_counter() - fit_start
        eval_start = time.perf_counter()
        # a tuning trial is scored on the validation split only; it never looks at the test split
        result = evaluate(
            model, splits, config.downstream, seed=config.train_seed, test=run.role != TRIAL_ROLE
        )
        test = splits.test
        results: dict[str, object] = dict(
            status=OK,
            metrics=result.metrics,
            timings=Timings(train_seconds, time.perf_counter() - eval_start),
            fit=FitSummary(
                report.epochs,
                report.best_epoch,
                report.best_valid_loss,
                report.stopped_by,
                report.history,
            ),
            diagnostics=model.diagnostics(),
            downstream_params=result.downstream_params,
            metrics_by_group=result.metrics_by_group,
            data_info={k: v for k, v in splits.info.items() if _is_plain(v)},
            modalities={
                m: ModalityInfo(test.modality(m).likelihood, test.modality(m).image_shape)
                for m in test.data
            },
        )
        if result.posteriors is not None:
            arrays[POSTERIORS] = result.posteriors.to_arrays()
        if result.generations is not None:
            arrays[GENERATED] = result.generations.to_arrays()
        if result.representation is not None:
            arrays[REPRESENTATION] = {"z": result.representation, "labels": test.labels}
        arrays[DATA_INFO] = _arrays_in(splits.info)
    except Exception as error:  # any failure of a run is recorded and the suite goes on
        status = DIVERGED if isinstance(error, DivergedError) else FAILED
        results = dict(
            status=status,
            error=f"{type(error).__name__}: {error}",
            traceback=traceback.format_exc(limit=8),
        )
        model = None
    record = Record.of(run, environment=env, started=started, finished=time.time(), **results)
    # a trial's model is never used again: only its validation metrics matter
    checkpoint = None if run.role == TRIAL_ROLE else _checkpoint_writer(model)
    return RunStore(results_dir).write(record, arrays, checkpoint)


def _checkpoint_writer(model: MultimodalModel | None) -> Callable[[Path], None] | None:
    """A function that saves ``model`` into a run's folder (models that cannot be saved, e.g.
    closed-form ones, leave no checkpoint), or None without a model."""
    if model is None:
        return None

    def write(folder: Path) -> None:
        with suppress(NotImplementedError):
            model.save(folder / CHECKPOINT)

    return write


def _arrays_in(info: Mapping[str, object], prefix: str = "") -> dict[str, np.ndarray]:
    """The numpy arrays of a data set's info, e.g. MNIST-SVHN's pairing indices, flattened to
    "pairs.train.mnist"-style keys for ``np.savez`` (JSON records keep only the plain values)."""
    found = {}
    for key, value in info.items():
        if isinstance(value, np.ndarray):
            found[prefix + str(key)] = value
        elif isinstance(value, dict):
            found.update(_arrays_in(value, f"{prefix}{key}."))
    return found


def _is_plain(value: object) -> bool:
    try:
        json.dumps(value)
        return True
    except TypeError:
        return False


def smoke_version(run: Run) -> Run:
    """The same run on a tiny budget (2 epochs, a few hundred points): a different run id."""
    train = {**run.config.train, "epochs": 2, "patience": None, "max_seconds": None}
    return replace(run, config=replace(run.config, train=train, smoke=True))
