"""Records as one tidy table: one row per run and metric, with the run's coordinates."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from mmbench.records import Record
from mmbench.store import RunStore, temporary_name

TIDY_FILE = "results.csv"
TIDY_COLUMNS = ["run_id", "status", "model", "label", "dataset", "seed", "metric", "value"]
"""The columns every tidy table has (a table of no run has just these)."""


def tidy(records: Iterable[Record]) -> pd.DataFrame:
    """Columns: run_id, role, status, model, label, dataset, seed, data.<option>,
    param.<grid axis> (a trial's: its searched values), metric, value. Timings are metrics too
    (train_seconds, eval_seconds); a run that did not finish has one row with metric "error"
    and its message in ``error``. The runs a suite reports have role "model"."""
    rows = []
    for record in records:
        coordinates = record.coordinates
        base = {
            "run_id": record.run_id,
            "role": record.role,
            "status": record.status,
            "model": coordinates.model,
            "label": record.label,
            "dataset": record.config.data.name,
            "seed": coordinates.seed,
            **{f"data.{k}": v for k, v in coordinates.data.items()},
            **{f"param.{k}": v for k, v in coordinates.grid.items()},
        }
        if not record.ok:
            rows.append({**base, "metric": "error", "value": float("nan"), "error": record.error})
            continue
        timings = {} if record.timings is None else asdict(record.timings)
        for metric, value in {**record.metrics, **timings}.items():
            rows.append({**base, "metric": metric, "value": value})
    return pd.DataFrame(rows, columns=None if rows else TIDY_COLUMNS)


def write_tidy(results_dir: str | Path) -> Path:
    """Rebuild ``<results_dir>/results.csv`` from the records; returns its path."""
    path = Path(results_dir) / TIDY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    # written aside and renamed: array jobs (--cell) finishing together never leave a torn file
    staging = path.with_name(temporary_name(TIDY_FILE))
    tidy(RunStore(results_dir).records()).to_csv(staging, index=False)
    staging.replace(path)
    return path


SUMMARY_METRICS = ("error_pct", "map_micro_pct", "map_macro_pct", "rmse", "train_seconds")


def mean_std(values: pd.Series, digits: int = 2) -> str:
    """ "mean ± std" over seeds (std with ddof=1; a single value has no ± part)."""
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def summarize(frame: pd.DataFrame, run_order: list[str] | None = None) -> pd.DataFrame:
    """One row per model label and grid point: mean ± std over seeds of the main metrics,
    plus counts of finished and failed runs. Rows come in the order of their first run in
    ``run_order`` (e.g. a suite's), else of the frame."""
    if run_order is not None:
        position = {run_id: i for i, run_id in enumerate(run_order)}
        frame = frame.sort_values("run_id", key=lambda ids: ids.map(position), kind="stable")
    keys = ["label"] + [c for c in frame.columns if c.startswith(("data.", "param."))]
    ok = frame[frame["status"] == "ok"]
    rows = []
    for key, group in frame.groupby(keys, dropna=False, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(keys, key))
        for metric in SUMMARY_METRICS:
            values = ok[(ok["metric"] == metric) & ok["run_id"].isin(group["run_id"])]["value"]
            if len(values):
                row[metric] = mean_std(values, digits=3 if metric == "rmse" else 2)
        row["runs"] = (
            f"{group[group['status'] == 'ok']['run_id'].nunique()} ok, "
            f"{group[group['status'] != 'ok']['run_id'].nunique()} failed"
        )
        rows.append(row)
    table = pd.DataFrame(rows)
    metrics = [m for m in SUMMARY_METRICS if m in table.columns]
    return table[keys + metrics + ["runs"]].astype(object).fillna("")
