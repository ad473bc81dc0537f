"""Data sets by name.

``load_dataset(name, **options)`` returns a :class:`~mmbench.views.DataSplits`. A loader is a
function registered with :func:`register_dataset`; its keyword parameters are the options a
suite's ``data.options`` may set (``seed`` among them), each declared once with its type, range
and one-line doc (see :mod:`mmbench.data.options`). ``data_dir`` and ``base_dir`` are no options:
mmbench passes them to the loaders that accept them (the data directory, and the folder that a
relative path of a user's file is taken from).
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmbench.data import options as _options
from mmbench.data.errors import DataError
from mmbench.data.options import OptionSpec, Rule
from mmbench.paths import UnsafePath, safe_name
from mmbench.views import DataSplits

Loader = Callable[..., DataSplits]
DEFAULT_DATA_DIR = Path("~/.cache/mmbench/data")
_BUILTIN_MODULES = ("embedded", "flickr", "mnist", "user", "xrmb")


@dataclass(frozen=True)
class _Registered:
    load: Loader
    rules: tuple[Rule, ...]


_LOADERS: dict[str, _Registered] = {}


def register_dataset(name: str, rules: tuple[Rule, ...] = ()) -> Callable[[Loader], Loader]:
    """Register a loader under ``name``; ``rules`` check combinations of its options (each takes
    every option, defaults filled in, and returns a problem or None)."""

    def add(loader: Loader) -> Loader:
        _LOADERS[name] = _Registered(loader, tuple(rules))
        return loader

    return add


def available_datasets() -> list[str]:
    _import_builtin_loaders()
    return sorted(_LOADERS)


def _registered(name: str) -> _Registered:
    _import_builtin_loaders()
    if name not in _LOADERS:
        raise KeyError(f"unknown data set {name!r}; available: {', '.join(sorted(_LOADERS))}")
    return _LOADERS[name]


def dataset_options(name: str) -> dict[str, object]:
    """The options a suite may set for data set ``name`` and their defaults (``...`` for a
    required one such as npz's ``path``)."""
    return {
        spec.name: ... if spec.required else spec.default for spec in describe_dataset_options(name)
    }


def dataset_doc(name: str) -> str:
    """What data set ``name`` is: the first paragraph of its loader's docstring, on one line."""
    return " ".join((inspect.getdoc(_registered(name).load) or "").split("\n\n", 1)[0].split())


def describe_dataset_options(name: str) -> list[OptionSpec]:
    """Each option of data set ``name``: default, allowed values in words, one-line doc."""
    return _options.describe(_registered(name).load)


def check_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Check the ``options`` of data set ``name`` without reading any file: names, types (strict:
    no bool for a number, no string for an int), ranges, choices and the loader's rules.

    Returns the options with lists as tuples; raises an
    :class:`~mmbench.data.options.OptionError` (a :class:`DataError` and a TypeError) naming each
    wrong option, its value and what is allowed.
    """
    registered = _registered(name)
    return _options.check(name, registered.load, registered.rules, options)


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The data directory: ``explicit`` (``--data-dir``), else ``$MMBENCH_DATA``, else
    ``~/.cache/mmbench/data``."""
    chosen = explicit or os.environ.get("MMBENCH_DATA") or DEFAULT_DATA_DIR
    return Path(chosen).expanduser()


def load_dataset(
    name: str,
    *,
    data_dir_: str | os.PathLike | None = None,
    base_dir: str | os.PathLike | None = None,
    **options: Any,
) -> DataSplits:
    """Load data set ``name`` with its ``options`` (checked first, see :func:`check_options`).

    data_dir_: the data directory (default :func:`data_dir`). base_dir: the folder a relative
    path of a user's file is looked for first (a suite's folder; default: the working directory).
    The modality names of the result are checked to be safe file names (figures are written per
    modality).
    """
    registered = _registered(name)
    options = check_options(name, options)
    parameters = inspect.signature(registered.load).parameters
    if "data_dir" in parameters:
        options["data_dir"] = data_dir(data_dir_)
    if "base_dir" in parameters and base_dir is not None:
        options["base_dir"] = Path(base_dir)
    splits = registered.load(**options)
    for modality in splits.train.data:
        try:
            safe_name("modality name", modality)
        except UnsafePath as error:
            raise DataError(f"data set {name!r}: {error}") from None
    return splits


def user_data_digest(
    name: str,
    options: dict[str, Any],
    *,
    base_dir: str | os.PathLike | None = None,
    data_dir_: str | os.PathLike | None = None,
) -> str | None:
    """``"sha256:<hex>"`` of the user's file that data set ``name`` with ``options`` reads (npz,
    parquet), None for the other data sets. Cached by the file's size and modification time, so
    a large file is hashed once; put it into run ids so that editing the file in place reruns."""
    if name not in ("npz", "parquet"):
        return None
    from mmbench.data.digests import content_digest
    from mmbench.data.user import locate_user_file

    return content_digest(
        locate_user_file(options.get("path"), name, base_dir, data_dir(data_dir_))
    )


def _import_builtin_loaders() -> None:
    for module in _BUILTIN_MODULES:  # importing a module registers the loaders it defines
        importlib.import_module(f"mmbench.data.{module}")
