"""Finished runs as the tables and figures see them.

A *series* is what one table column or one figure curve shows: a model label, plus the values of
its grid axes when that label has several grid points (e.g. "CMMD (omega=0.4)"). Replicate seeds
and data points (folds, speakers) are aggregated within a series.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmbench.records import REFERENCE_ROLE, TRIAL_ROLE, Record
from mmbench.report.style import model_rank
from mmbench.results import tidy
from mmbench.store import RecordError, RunStore

# Run roles (mmbench.records): tuning trials are not reported (only tuning views show them);
# reference runs (computed from the data alone) are rows set apart from the models.


class ReportError(ValueError):
    """Results that cannot be drawn or tabulated as asked; the message says what is missing."""


def latest_results_dir(root: str | Path = "results") -> Path:
    """The results directory under ``root`` whose runs changed last (``root/reference`` holds
    the paper's figures, not runs, and has no ``runs/``)."""
    candidates = [d for d in Path(root).glob("*") if (d / "runs").is_dir()]
    if not candidates:
        raise ReportError(
            f"no results directory (with runs/) under {root}/; run a suite first "
            "(mmbench run SUITE) or name one"
        )
    return max(candidates, key=lambda d: (d / "runs").stat().st_mtime)


def all_records(results_dir: str | Path) -> list[Record]:
    """Every record of a results directory, failed runs included."""
    store = RunStore(results_dir)
    if not store.runs.is_dir():
        raise ReportError(f"{results_dir}: not a results directory (no runs/ inside)")
    try:
        return store.records()
    except RecordError as error:
        raise ReportError(str(error)) from None


def ok_records(results_dir: str | Path) -> list[Record]:
    """The finished records of a results directory (failed runs are left out)."""
    records = [r for r in all_records(results_dir) if r.ok]
    if not records:
        raise ReportError(f"{results_dir}: no finished run")
    return records


def reported(records: Iterable[Record]) -> list[Record]:
    """The records tables and figures report: model and reference runs, not tuning trials."""
    return [r for r in records if r.role != TRIAL_ROLE]


def model_records(results_dir: str | Path) -> list[Record]:
    """The finished runs that figures draw: the models' reported runs (no tuning trials, and no
    reference rows, which are computed from the data alone and are not models)."""
    records = [r for r in reported(ok_records(results_dir)) if r.role != REFERENCE_ROLE]
    if not records:
        raise ReportError(
            f"{results_dir}: no finished model run (only tuning trials or reference rows)"
        )
    return records


def series_names(records: Iterable[Record], along: str | None = None) -> dict[str, str]:
    """run_id -> series name: the label, plus "(axis=value, ...)" for the grid axes whose value
    varies among the runs of that label, except ``along`` (the x axis of a figure)."""
    records = list(records)
    varying: dict[str, set[str]] = {}
    for label in {r.label for r in records}:
        points = [r.coordinates.grid for r in records if r.label == label]
        axes = {axis for point in points for axis in point} - {along}
        varying[label] = {a for a in axes if len({repr(p.get(a)) for p in points}) > 1}
    names = {}
    for record in records:
        grid = record.coordinates.grid
        shown = [f"{axis}={grid[axis]}" for axis in grid if axis in varying[record.label]]
        names[record.run_id] = record.label + (f" ({', '.join(shown)})" if shown else "")
    return names


# What the test groups of a data set are, where its loader does not say (info["group_name"]).
GROUP_NAMES = {"xrmb": "speaker"}


def group_axis(record: Record) -> str:
    """What a run's test groups are called, e.g. "speaker"."""
    dataset = record.config.data.name
    return record.data_info.get("group_name") or GROUP_NAMES.get(dataset, "group")


def per_group(records: list[Record]) -> list[Record]:
    """One pseudo-record per run and test group (e.g. XRMB speaker) holding that group's
    metrics, the group id added to the run's data coordinates and options; runs without groups
    are left out."""
    out = []
    for record in records:
        axis = group_axis(record)
        for group, metrics in record.metrics_by_group.items():
            value = int(group) if group.lstrip("-").isdigit() else group
            coordinates = replace(record.coordinates, data={**record.coordinates.data, axis: value})
            data = record.config.data
            config = replace(
                record.config, data=replace(data, options={**data.options, axis: value})
            )
            out.append(
                replace(
                    record,
                    run_id=f"{record.run_id}@{axis}={value}",
                    coordinates=coordinates,
                    config=config,
                    metrics=metrics,
                )
            )
    if not out:
        raise ReportError("no run has per-group metrics (test groups such as XRMB speakers)")
    return out


def run_frame(records: list[Record], along: str | None = None) -> pd.DataFrame:
    """One row per run and metric (mmbench.results.tidy) plus ``series`` (see
    :func:`series_names`), ``stopped_by`` (why training stopped; None without a fit summary),
    every data option of the run as ``option.<name>`` and every scalar hyper-parameter as
    ``hp.<name>``."""
    frame = tidy(records)
    names = series_names(records, along)
    extra = []
    for record in records:
        row: dict[str, Any] = {
            "run_id": record.run_id,
            "series": names[record.run_id],
            "stopped_by": None if record.fit is None else record.fit.stopped_by,
        }
        row.update(
            {f"option.{k}": v for k, v in record.config.data.options.items() if np.isscalar(v)}
        )
        row.update({f"hp.{k}": v for k, v in record.config.model.params.items() if np.isscalar(v)})
        extra.append(row)
    return frame.merge(pd.DataFrame(extra), on="run_id", how="left")


def ordered_series(names: Iterable[str]) -> list[str]:
    """Series in the paper's model order, grid points in their natural order within a model."""
    return sorted(set(names), key=lambda name: (model_rank(name.split(" (")[0]), _natural(name)))


def _natural(name: str) -> tuple:
    """Sort key that orders "omega=0.2" before "omega=0.10" numerically."""
    parts = []
    for token in name.replace("(", " ").replace(")", " ").replace(",", " ").split():
        value = token.split("=")[-1]
        try:
            parts.append((0, float(value), ""))
        except ValueError:
            parts.append((1, 0.0, token))
    return tuple(parts)


def parse_where(items: Iterable[str] | None) -> dict[str, str]:
    """["fold=1", "seed=0"] -> {"fold": "1", "seed": "0"}."""
    where = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ReportError(f"--where {item!r}: expected KEY=VALUE, e.g. fold=1 or seed=0")
        where[key.strip()] = value.strip()
    return where


def run_coordinates(record: Record) -> dict[str, Any]:
    """What ``--where`` can select a run by: label, model, seed, data options, hyper-parameters."""
    config = record.config
    return {
        **config.model.params,
        **config.data.options,
        "label": record.label,
        "model": config.model.name,
        "seed": record.coordinates.seed,
    }


def select(records: list[Record], where: dict[str, str]) -> list[Record]:
    """The records whose coordinates match every ``where`` item (numbers compared as numbers)."""
    if not where:
        return records
    known = set().union(*(run_coordinates(r) for r in records))
    unknown = sorted(set(where) - known)
    if unknown:
        raise ReportError(
            f"--where {unknown}: no run has such a coordinate; known: {sorted(known)}"
        )
    chosen = [
        r for r in records if all(_same(run_coordinates(r).get(k), v) for k, v in where.items())
    ]
    if not chosen:
        raise ReportError(f"--where {where}: no finished run matches")
    return chosen


def _same(value: Any, wanted: str) -> bool:
    try:
        return float(value) == float(wanted)
    except (TypeError, ValueError):
        return str(value) == wanted
