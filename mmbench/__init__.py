"""mmbench: a benchmark suite for multimodal generative models with missing modalities.

The Python API, each name imported on first use (``import mmbench`` loads no torch, pandas or
scikit-learn):

- ``run_suite(suite, results=None, *, overrides=(), models=None, seeds=None, smoke=False,
  device=None, executor="local", jobs=None, threads=None, ...)``: run a suite (a path, a dict or
  a ``Suite``) as ``mmbench run`` does; returns the records of its runs.
- ``load_suite(path, overrides=())``: a validated :class:`~mmbench.suite.Suite`; ``.runs()``
  lists its runs.
- ``load_results(path)``: a results directory's ``records`` and tidy ``frame`` (one row per run
  and metric), and ``summary()`` (mean ± std over seeds).
- ``make_model(name, **params)``: an unfitted model; ``fit(train, valid, trainer=TrainConfig())``,
  then ``predict_proba(xO)``, ``generate(xO)``, ``represent(xO)``, ``posteriors(views)``.
- ``load_dataset(name, **options)``: :class:`~mmbench.views.DataSplits` (train, valid, test
  :class:`~mmbench.views.Views`).
- ``Views``, ``DataSplits``, ``TrainConfig``, ``available_models()``, ``available_datasets()``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> the module that defines it
_LAZY = {
    "run_suite": "mmbench.api",
    "load_results": "mmbench.api",
    "Results": "mmbench.api",
    "load_suite": "mmbench.suite",
    "Suite": "mmbench.suite",
    "load_dataset": "mmbench.data",
    "available_datasets": "mmbench.data",
    "available_models": "mmbench.registry",
    "Views": "mmbench.views",
    "DataSplits": "mmbench.views",
    "TrainConfig": "mmbench.config",
    "Record": "mmbench.records",
}

__all__ = [
    "DataSplits",
    "Record",
    "Results",
    "Suite",
    "TrainConfig",
    "Views",
    "__version__",
    "available_datasets",
    "available_models",
    "load_dataset",
    "load_results",
    "load_suite",
    "make_model",
    "run_suite",
]

if TYPE_CHECKING:
    from mmbench.api import Results, load_results, run_suite
    from mmbench.config import TrainConfig
    from mmbench.data import available_datasets, load_dataset
    from mmbench.model import MultimodalModel
    from mmbench.records import Record
    from mmbench.registry import available_models
    from mmbench.suite import Suite, load_suite
    from mmbench.views import DataSplits, Views


def make_model(name: str, **params: Any) -> MultimodalModel:
    """An unfitted model ``name`` (see ``mmbench models``) with hyper-parameters ``params``,
    validated by its config (a bad name or value is an error that lists what is allowed)."""
    from mmbench.registry import make_model as make

    return make(name, params)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'mmbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
