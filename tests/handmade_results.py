"""Hand-made results directories for the report tests: records and artifacts written exactly as
the runner writes them (mmbench.store.RunStore), with values chosen by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmbench.records import (
    Coordinates,
    DataChoice,
    DownstreamSettings,
    FitSummary,
    ModalityInfo,
    ModelChoice,
    Record,
    Run,
    RunConfig,
    Timings,
)
from mmbench.store import RunStore


def write_run(
    results: Path,
    *,
    label: str,
    model: str,
    seed: int,
    metrics: dict[str, float],
    dataset: str = "xrmb",
    options: dict[str, Any] | None = None,
    data_grid: dict[str, Any] | None = None,
    grid: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    arrays: dict[str, dict] | None = None,
    modalities: dict[str, dict] | None = None,
    status: str = "ok",
    role: str = "model",
    train: dict[str, Any] | None = None,
    stopped_by: str | None = None,
    **extra,
) -> str:
    """Write one run's record (and ``arrays`` as <name>.npz artifacts); returns its run id.
    ``role``: "model", "trial" or "reference"; ``train``: training settings (default: 1 epoch);
    ``stopped_by``: why its fit stopped (a fit summary is recorded only when given).
    ``extra`` fields (e.g. metrics_by_group, data_info) are set on the record."""
    data_grid, grid = data_grid or {}, grid or {}
    config = RunConfig(
        data=DataChoice(dataset, {**(options or {}), **data_grid}),
        model=ModelChoice(model, {**(params or {}), **grid}),
        train={"epochs": 1, **(train or {}), "seed": seed},
        downstream=DownstreamSettings(),
        seed=seed,
    )
    run = Run(config, label, Coordinates(data_grid, model, grid, seed), role=role)
    if stopped_by is not None:
        epochs = config.epochs
        extra["fit"] = FitSummary(epochs, epochs, 0.0, stopped_by)
    if status == "ok":
        results_of_run = dict(
            metrics=metrics,
            timings=Timings(1.0, 0.5),
            modalities={m: ModalityInfo.from_json(info) for m, info in (modalities or {}).items()},
        )
    else:
        results_of_run = dict(error="RuntimeError: boom")
    record = Record.of(run, status=status, started=0.0, finished=1.0, **results_of_run, **extra)
    RunStore(results).write(record, arrays or {})
    return run.run_id


def write_suite_json(results: Path, **fields: Any) -> None:
    """``<results>/suite.json`` as ``mmbench run`` writes it, with the suite ``fields`` given
    (name, seeds, display_names, ...)."""
    import json

    results.mkdir(parents=True, exist_ok=True)
    suite = {"suite_file": "suite.yaml", "written": "2025-01-01T00:00:00", **fields}
    (results / "suite.json").write_text(json.dumps(suite))
