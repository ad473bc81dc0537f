"""The records and artifacts of one results directory.

Each run has one directory ``<results>/runs/<run_id>/`` holding ``record.json`` (its
:class:`~mmbench.records.Record`) and its artifacts: ``posteriors.npz`` (test-split statistics
for the collapse analysis), ``generated.npz`` (a few generations beside the truth),
``representation.npz`` (test representations ``z`` and ``labels``, for t-SNE), ``data_info.npz``
(the data set's index arrays, e.g. MNIST-SVHN's pairing) and ``checkpoint.pt``. The directory is
assembled under a temporary name and renamed into place, so a run is either complete or absent.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from mmbench.records import FAILED, Record, Run

RECORD = "record.json"
# Artifacts holding arrays, by the name of their .npz file
POSTERIORS = "posteriors"
GENERATED = "generated"
REPRESENTATION = "representation"
DATA_INFO = "data_info"
CHECKPOINT = "checkpoint.pt"


class RecordError(ValueError):
    """A record.json that cannot be read; the message names the file."""


class RunStore:
    """The records and artifacts of the results directory ``root``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.runs = self.root / "runs"

    def path(self, run_id: str) -> Path:
        return self.runs / run_id

    def record(self, run_id: str) -> Record | None:
        """The run's record, or None when it has none."""
        path = self.path(run_id) / RECORD
        return read_record(path) if path.is_file() else None

    def records(self) -> list[Record]:
        """Every record, by run id."""
        # staging directories (".<run_id>.<pid>.tmp", left behind by a killed process) are not runs
        return [read_record(p) for p in sorted(self.runs.glob(f"*/{RECORD}"))
                if not p.parent.name.startswith(".")]

    def pending(self, runs: Iterable[Run], retry_failed: bool = False) -> list[Run]:
        """The runs that have no record yet (or a failed one, with ``retry_failed``)."""
        todo = []
        for run in runs:
            record = self.record(run.run_id)
            if record is None or (retry_failed and record.status == FAILED):
                todo.append(run)
        return todo

    def has(self, run_id: str, artifact: str) -> bool:
        """Whether the run kept the arrays ``artifact`` (e.g. POSTERIORS)."""
        return (self.path(run_id) / f"{artifact}.npz").is_file()

    def arrays(self, run_id: str, artifact: str) -> dict[str, np.ndarray]:
        """The arrays the run kept as ``artifact`` (e.g. POSTERIORS), by name."""
        with np.load(self.path(run_id) / f"{artifact}.npz") as stored:
            return dict(stored)

    def write(self, record: Record, arrays: dict[str, dict[str, np.ndarray]],
              write_files: Callable[[Path], None] | None = None) -> Record:
        """Write the run's ``arrays`` ({artifact: {name: array}}; empty ones are skipped), the
        files ``write_files(folder)`` adds (e.g. a checkpoint) and the record into a temporary
        directory, then rename it into place (atomic on one file system); an existing directory
        for the run is replaced. Returns the record as written (with its artifacts listed)."""
        self.runs.mkdir(parents=True, exist_ok=True)
        staging = self.runs / f".{record.run_id}.{os.getpid()}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for name, content in arrays.items():
            if content:
                np.savez_compressed(staging / f"{name}.npz", **content)
        if write_files is not None:
            write_files(staging)
        record = replace(record, artifacts=tuple(sorted(p.name for p in staging.iterdir())))
        text = json.dumps(record.to_json(), indent=1, default=_json_default)
        (staging / RECORD).write_text(text)
        final = self.path(record.run_id)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        return record


def read_record(path: Path) -> Record:
    try:
        return Record.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as error:
        raise RecordError(f"{path}: not a readable run record ({type(error).__name__}: "
                          f"{error}); delete its folder to run that run again") from None


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays as JSON numbers and lists; anything else as its text."""
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
