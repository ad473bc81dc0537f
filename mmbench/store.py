"""The records and artifacts of one results directory.

Each run has one directory ``<results>/runs/<run_id>/`` holding ``record.json`` (its
:class:`~mmbench.records.Record`) and its artifacts: ``posteriors.npz`` (test-split statistics
for the collapse analysis), ``generated.npz`` (a few generations beside the truth),
``representation.npz`` (test representations ``z`` and ``labels``, for t-SNE), ``data_info.npz``
(the data set's index arrays, e.g. MNIST-SVHN's pairing) and ``checkpoint.pt``. The directory is
assembled under a temporary name and renamed into place, so a run is either complete or absent.

Results folders survive damage: a ``record.json`` that cannot be read (not JSON, truncated, a
field missing or of the wrong type) is reported by a warning of the ``mmbench.store`` logger that
names the file and the reason, and its run counts as not done: reports leave it out and
``mmbench run`` runs it again. Temporary names carry their writer
(``.<name>@<host>.<pid>.tmp``), so that :meth:`RunStore.remove_litter` can remove what a killed
writer left behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mmbench.claims import Owner
from mmbench.paths import inside, safe_name
from mmbench.records import OK, STATUSES, Record, Run

log = logging.getLogger(__name__)

RECORD = "record.json"
# Artifacts holding arrays, by the name of their .npz file
POSTERIORS = "posteriors"
GENERATED = "generated"
REPRESENTATION = "representation"
DATA_INFO = "data_info"
CHECKPOINT = "checkpoint.pt"

LITTER_SECONDS = 3600.0
"""Writing a run's folder takes seconds: a temporary one this old has lost its writer."""
READ_ATTEMPTS = 5
"""How often a record that vanished is looked for again (its writer may be replacing it)."""


class RecordError(ValueError):
    """A record or artifact file that cannot be read; the message names the file, ``reason``
    says what is wrong with it."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason or message


class RunStore:
    """The records and artifacts of the results directory ``root``.

    A record file that cannot be read is reported once per store (a warning of the
    ``mmbench.store`` logger) and kept in :attr:`unreadable` (path -> reason)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.runs = self.root / "runs"
        self.unreadable: dict[Path, str] = {}

    def path(self, run_id: str) -> Path:
        return inside(self.runs, safe_name("run id", run_id))

    def record(self, run_id: str) -> Record | None:
        """The run's record, or None when it has none or it cannot be read."""
        folder = self.path(run_id)
        return self._read(folder / RECORD) if folder.is_dir() else None

    def records(self) -> list[Record]:
        """Every readable record, by run id."""
        # temporary folders (".<run_id>@<host>.<pid>.tmp") are not runs
        found = (
            self._read(p)
            for p in sorted(self.runs.glob(f"*/{RECORD}"))
            if not p.parent.name.startswith(".")
        )
        return [record for record in found if record is not None]

    def pending(self, runs: Iterable[Run], retry_failed: bool = False) -> list[Run]:
        """The runs without a readable record (and, with ``retry_failed``, those whose record
        is not ok: failed or diverged)."""
        todo = []
        for run in runs:
            record = self.record(run.run_id)
            if record is None or (retry_failed and record.status != OK):
                todo.append(run)
        return todo

    def done_since(self, run_id: str, since: float) -> bool:
        """Whether the run's record (read afresh; not reported when unreadable) is ok, or
        finished at or after the Unix time ``since`` (by its writer's clock): whether a process
        that planned the run before ``since`` finds it done by another."""
        try:
            record = read_record(self.path(run_id) / RECORD)
        except (FileNotFoundError, NotADirectoryError, RecordError):
            return False
        return record.ok or record.finished >= since

    def has(self, run_id: str, artifact: str) -> bool:
        """Whether the run kept the arrays ``artifact`` (e.g. POSTERIORS)."""
        return (self.path(run_id) / f"{artifact}.npz").is_file()

    def arrays(self, run_id: str, artifact: str) -> dict[str, np.ndarray]:
        """The arrays the run kept as ``artifact`` (e.g. POSTERIORS), by name; a
        :class:`RecordError` naming the file when it cannot be read."""
        path = self.path(run_id) / f"{artifact}.npz"
        try:
            with np.load(path, allow_pickle=False) as stored:
                return dict(stored)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            reason = f"{type(error).__name__}: {error}"
            raise RecordError(
                f"{path} cannot be read ({reason}); delete {path.parent} to run that run again",
                reason,
            ) from None

    def write(
        self,
        record: Record,
        arrays: dict[str, dict[str, np.ndarray]],
        write_files: Callable[[Path], None] | None = None,
    ) -> Record:
        """Write the run's ``arrays`` ({artifact: {name: array}}; empty ones are skipped), the
        files ``write_files(folder)`` adds (e.g. a checkpoint) and the record into a temporary
        directory, then rename it into place (atomic on one file system). An existing directory
        of the run is first renamed aside, then removed: a reader finds the old record or the
        new one (or, for an instant between two renames, none). Returns the record as written
        (with its artifacts listed)."""
        self.runs.mkdir(parents=True, exist_ok=True)
        staging = self.runs / temporary_name(record.run_id)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for name, content in arrays.items():
            if content:
                # allow_pickle, named at its default, tells mypy that no array name fills it
                np.savez_compressed(staging / f"{name}.npz", allow_pickle=True, **content)
        if write_files is not None:
            write_files(staging)
        record = replace(record, artifacts=tuple(sorted(p.name for p in staging.iterdir())))
        text = json.dumps(record.to_json(), indent=1, default=_json_default)
        (staging / RECORD).write_text(text)
        final = self.path(record.run_id)
        if final.exists():
            old = self.runs / temporary_name(record.run_id, "old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(staging, final)
            shutil.rmtree(old)
        else:
            os.replace(staging, final)
        return record

    def remove_litter(self) -> list[Path]:
        """Remove the temporary files and folders that killed writers left (see
        :func:`temporary_name`; earlier versions named them ``.<name>.<pid>.tmp``): those of a
        process of this host that no longer runs, and any older than :data:`LITTER_SECONDS`.
        Returns what was removed."""
        removed = []
        for folder in (self.root, self.runs, self.root / "claims"):
            for path in sorted(folder.glob(".*")) if folder.is_dir() else ():
                if _is_litter(path):
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)
                    removed.append(path)
        return removed

    def _read(self, path: Path) -> Record | None:
        """The record in ``path``; None when the file is absent (looked for again a few times:
        its writer may be replacing it) or cannot be read (then reported)."""
        for attempt in range(READ_ATTEMPTS):
            try:
                return read_record(path)
            except (FileNotFoundError, NotADirectoryError):
                time.sleep(0.01 * 2**attempt)
            except RecordError as error:
                if path not in self.unreadable:
                    self.unreadable[path] = error.reason
                    log.warning("%s", error)
                return None
        return None


def read_record(path: Path) -> Record:
    """The record in the file ``path``; a :class:`RecordError` naming the file and what is
    wrong with it when it cannot be read (FileNotFoundError when there is no such file)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        raise
    except json.JSONDecodeError as error:
        raise _unreadable(
            path,
            f"not valid JSON: damaged or truncated (line {error.lineno}, "
            f"column {error.colno}: {error.msg})",
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise _unreadable(path, f"{type(error).__name__}: {error}") from None
    problem = _content_problem(data, expected_id=path.parent.name)
    if problem is None:
        try:
            return Record.from_json(data)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            problem = f"malformed ({type(error).__name__}: {error})"
    raise _unreadable(path, problem)


def _unreadable(path: Path, reason: str) -> RecordError:
    return RecordError(
        f"{path} cannot be read: {reason}; its run counts as not done (reports "
        "leave it out, `mmbench run` runs it again)",
        reason,
    )


# The fields every record has, with the JSON types they must have; other fields are optional
_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "run_id": str,
    "label": str,
    "coordinates": dict,
    "config": dict,
    "status": str,
    "started": (int, float),
    "finished": (int, float),
}
_COORDINATES: dict[str, type | tuple[type, ...]] = {
    "data": dict,
    "model": str,
    "grid": dict,
    "seed": int,
}


def _content_problem(data: Any, expected_id: str) -> str | None:
    """What is wrong with the JSON content of a record: not an object, a field missing or of
    the wrong type, an unknown status, a metric that is not a number, a run id that is not its
    folder's; None when nothing is."""
    if not isinstance(data, dict):
        return f"a record is a JSON object, not {type(data).__name__}"
    problem = _field_problem(data, _REQUIRED) or _field_problem(
        data["coordinates"], _COORDINATES, "coordinates."
    )
    if problem is not None:
        return problem
    if data["status"] not in STATUSES:
        return f"its status {data['status']!r} is none of {', '.join(STATUSES)}"
    if data["run_id"] != expected_id:
        return f"its run_id {data['run_id']!r} is not its folder's name {expected_id!r}"
    metrics = data.get("metrics") or {}
    if not isinstance(metrics, dict):
        return f"the field 'metrics' is {metrics!r}, not an object"
    for name, value in metrics.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"the metric {name!r} is {value!r}, not a number"
    return None


def _field_problem(
    content: dict, fields: dict[str, type | tuple[type, ...]], prefix: str = ""
) -> str | None:
    """The first of ``fields`` (name -> JSON type) that ``content`` lacks or holds with another
    type, in words; None when there is none."""
    for name, kind in fields.items():
        if name not in content:
            return f"the field '{prefix}{name}' is missing"
        value = content[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"the field '{prefix}{name}' is {value!r}, not {_json_type(kind)}"
    return None


def _json_type(kind: type | tuple[type, ...]) -> str:
    if isinstance(kind, tuple):
        return "a number"
    return {str: "a string", dict: "an object", int: "an integer"}[kind]


def temporary_name(stem: str, kind: str = "tmp") -> str:
    """The name of a temporary file or folder of this process, ``.<stem>@<host>.<pid>.<kind>``
    (kind: "tmp" or "old"), which :meth:`RunStore.remove_litter` removes once its writer is
    gone."""
    return f".{stem}@{socket.gethostname()}.{os.getpid()}.{kind}"


def _writer(name: str) -> Owner | None:
    """The process that wrote the temporary ``name`` (host "" for the ``.<stem>.<pid>.tmp`` of
    earlier versions), or None when ``name`` is not a temporary's."""
    stem, _, kind = name.rpartition(".")
    rest, _, pid = stem.rpartition(".")
    if not name.startswith(".") or kind not in ("tmp", "old") or not pid.isdigit():
        return None
    return Owner(rest.rpartition("@")[2] if "@" in rest else "", int(pid))


def _is_litter(path: Path) -> bool:
    """Whether ``path`` is a temporary whose writer is gone (see :meth:`RunStore.remove_litter`)."""
    writer = _writer(path.name)
    if writer is None:
        return False
    try:
        age = time.time() - path.lstat().st_mtime
    except FileNotFoundError:
        return False
    return age > LITTER_SECONDS or (writer.host != "" and writer.gone())


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays as JSON numbers and lists; anything else as its text."""
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
