"""Paper tables from a results directory (paper Tables 1-4 and 6).

Models are rows; the columns are the data points of the suite's data grid (folds, speakers),
with their "average", or the data set alone when there is no grid. A cell is mean ± std over
replicate seeds. In every column each model is compared with the best one by a paired test
(:mod:`mmbench.report.significance`): bold marks the best, underline every model not
significantly worse. A dagger marks a cell some of whose runs stopped at the epoch cap (a double
dagger: at the time budget), i.e. that training did not show convergence. The paper's published
figure for a model is the italic row "<model> (paper)" right under it, wherever
``mmbench/reference/cmmd_paper_results.csv`` has it: the paper's figures are reference data,
never results of ours, and are never marked. Reference rows (runs with role "reference", computed
from the data alone: "raw xO", "mean xM", "ridge xO→xM") come last, set apart, and are compared
with the best model (the p-value is in the CSV) but never marked: they are not candidates.

:mod:`mmbench.report.table_formats` writes a :class:`ResultTable` as markdown, LaTeX or CSV.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from mmbench.records import REFERENCE_ROLE, TRIAL_ROLE
from mmbench.reference import PAPER_RESULTS_CSV
from mmbench.report.names import DisplayNames
from mmbench.report.params import Budget
from mmbench.report.runs import ReportError, ordered_series
from mmbench.report.significance import Comparison, Mark, mark_column
from mmbench.report.suite_info import SuiteInfo

REFERENCE_CSV = PAPER_RESULTS_CSV
DEFAULT_METRICS = ("error_pct", "map_micro_pct", "map_macro_pct", "rmse")
AVERAGE = "average"
# Reference rows in this order, others after them by name.
REFERENCE_ORDER = ("raw xO", "mean xM", "ridge xO→xM")
# Why some runs of a cell stopped before showing convergence -> the cell's mark.
CAP_MARKS = {"epochs": "†", "time_budget": "‡"}
CAP_NOTES = {
    "epochs": "some of its runs stopped at the epoch cap (not by early stopping)",
    "time_budget": "some of its runs stopped at the time budget",
}

# Our data set names -> the "dataset" column of the paper's CSV.
PAPER_DATASETS = {
    "mnist_noisy": "noisy_mnist",
    "xrmb": "xrmb",
    "flickr": "flickr",
    "mnist_svhn": "mnist_svhn",
    "mnist3": "mnist3",
}
# The paper's metrics -> (our metric, conversion of the paper's value into our units).
PAPER_METRICS: dict[str, list[tuple[str, Callable[[float], float]]]] = {
    "error_pct": [("error_pct", lambda v: v)],
    "accuracy_pct": [("error_pct", lambda v: 100.0 - v)],
    "error_rate": [("error_pct", lambda v: 100.0 * v)],  # Table 6 gives a fraction
    "rmse": [("rmse", lambda v: v)],
    # The paper's "mAP" does not say which average: CMMD's code is micro, the VCCA rows macro.
    "map_pct": [("map_micro_pct", lambda v: v), ("map_macro_pct", lambda v: v)],
}
# Our labels -> other names of the same model in the paper (Table 3 quotes Shi et al.'s "MMVAE").
PAPER_ALIASES = {"MMVAE-IWAE": ("MMVAE",)}


def higher_is_better(metric: str) -> bool:
    return metric.startswith(("map", "accuracy"))


def paper_split(dataset: str, options: dict[str, Any]) -> str | None:
    """The paper CSV's ``split`` for a run on ``dataset`` with data ``options``; None where the
    paper has no figure for that data (e.g. XRMB's speaker-dependent protocol, Fig. 3 only)."""
    if dataset == "xrmb":
        protocol = options.get("protocol")
        if protocol == "folds":
            return f"fold{options['fold']}"
        if protocol == "speakers":  # all 8 test speakers (Table 2), or one of them (Table 6)
            return f"speaker{options['speaker']}" if "speaker" in options else "test_speakers"
        return None
    if dataset == "mnist3":  # the paper's x1, x2, x3 are our mnist, mnist_rotated, svhn
        observed = options.get("observed", ("mnist",))
        observed = [observed] if isinstance(observed, str) else list(observed)
        names = {"mnist": "x1", "mnist_rotated": "x2", "svhn": "x3"}
        return "missing_" + "_".join(x for m, x in names.items() if m not in observed)
    return "test" if dataset in PAPER_DATASETS else None


class PaperReference:
    """The paper's published figures, in our metric names and units.

    source: a CSV with columns table, dataset, split, model, metric, value (the paper's units).
    """

    def __init__(self, source: str | Path | pd.DataFrame = REFERENCE_CSV):
        raw = source if isinstance(source, pd.DataFrame) else pd.read_csv(source)
        # (dataset, split, model, our metric) -> {paper table: value}; only "average" occurs in
        # several tables (XRMB: over the folds in Table 1, over the speakers in Table 6)
        self.values: dict[tuple[str, str, str, str], dict[str, float]] = {}
        for item in raw.itertuples(index=False):
            for metric, convert in PAPER_METRICS.get(item.metric, ()):
                key = (item.dataset, str(item.split), item.model, metric)
                value = round(convert(float(item.value)), 6)
                self.values.setdefault(key, {})[str(item.table)] = value

    def _names(self, label: str) -> tuple[str, ...]:
        return (label, *PAPER_ALIASES.get(label, ()))

    def value(self, dataset: str, split: str | None, label: str, metric: str) -> float | None:
        """The paper's figure for model ``label`` (the paper's name, e.g. "CMMD") on a split
        other than an average, or None."""
        if dataset not in PAPER_DATASETS or split is None or split == AVERAGE:
            return None
        for name in self._names(label):
            found = self.values.get((PAPER_DATASETS[dataset], split, name, metric))
            if found:
                return next(iter(found.values()))
        return None

    def column(
        self, dataset: str, splits: dict[str, str | None], label: str, metric: str
    ) -> dict[str, float | None]:
        """The paper's figures for the rows of a table; ``splits`` maps our row names to the
        paper's splits (AVERAGE to itself)."""
        column = {row: self.value(dataset, split, label, metric) for row, split in splits.items()}
        if AVERAGE in splits:
            covered = {split for split in splits.values() if split not in (None, AVERAGE)}
            column[AVERAGE] = self._average(dataset, covered, label, metric)
        return column

    def _average(self, dataset: str, covered: set[str], label: str, metric: str) -> float | None:
        """The paper's figure for our average over rows that are the paper's ``covered``
        splits: the paper's own average from the table whose averaged splits are all covered
        (an average over 2 folds is not the paper's over 4), or the paper's figure when all our
        rows are one split (Flickr's 5 data splits are all the paper's "test")."""
        if len(covered) == 1:
            return self.value(dataset, next(iter(covered)), label, metric)
        paper_dataset = PAPER_DATASETS.get(dataset)
        if paper_dataset is None:
            return None
        for name in self._names(label):
            averages = self.values.get((paper_dataset, AVERAGE, name, metric), {})
            for table, value in averages.items():
                averaged = {
                    split
                    for (d, split, m, k), tables in self.values.items()
                    if table in tables and (d, m, k) == (paper_dataset, name, metric)
                }
                if averaged - {AVERAGE} <= covered:
                    return value
        return None


RowKind = Literal["model", "paper", "reference"]


@dataclass(frozen=True)
class Cell:
    """One number of a table.

    mean, std: over the replicate seeds (std nan for a single value and for the paper's figure).
    n: the seeds averaged (0: the paper's figure).
    mark: "best" (bold), "tied" (not significantly worse than the best: underlined) or "".
    comparison: the paired test against the column's best model (None: the best itself, the
        paper's figures, or a column with a single model).
    stopped: why some of its runs stopped without showing convergence ("epochs",
        "time_budget"), in CAP_MARKS order.
    """

    mean: float
    std: float = math.nan
    n: int = 0
    mark: Mark = ""
    comparison: Comparison | None = None
    stopped: tuple[str, ...] = ()


@dataclass(frozen=True)
class Row:
    """A model (one series: a label and, where it has several, its grid point), the paper's
    figures for a model, or a reference row; ``cells`` by column (missing: no value)."""

    name: str
    kind: RowKind
    cells: dict[str, Cell]


@dataclass
class ResultTable:
    """One metric on one data set of one suite.

    columns: the data points ("fold 1", ...) and AVERAGE; ["test"] without a data grid.
    axis: the data grid's axes ("fold"; "fold / speaker"), None without a grid.
    seeds: the replicate seeds of its runs; missing_seeds: the suite's seeds that have none.
    by_group: the columns are test groups of the runs (--by-group), not runs of a data grid.
    headers: column -> its title, where it differs from the column (display names).
    """

    suite: str
    dataset: str
    metric: str
    columns: list[str]
    axis: str | None
    rows: list[Row]
    seeds: tuple[int, ...]
    budget: Budget | None
    names: DisplayNames = field(default_factory=DisplayNames)
    digits: int = 2
    missing_seeds: tuple[int, ...] = ()
    by_group: bool = False
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def higher_is_better(self) -> bool:
        return higher_is_better(self.metric)

    @property
    def label(self) -> str:
        """The LaTeX label, tab:<suite>-<metric> (-by-<axis> for a --by-group table)."""
        parts = [self.suite, self.metric] + ([f"by-{self.axis}"] if self.by_group else [])
        return "tab:" + "-".join(re.sub(r"[^A-Za-z0-9._:-]+", "_", p) for p in parts)

    @property
    def n_seeds(self) -> int:
        """The most seeds behind one cell (cells with fewer say so)."""
        return max((c.n for r in self.rows for c in r.cells.values()), default=0)

    def header(self, column: str) -> str:
        """A column's title: "fold 1" (the axis by its display name), "average", or the data
        set's name in a table without a data grid."""
        if self.axis is None:
            return self.names.dataset(self.dataset)
        return self.headers.get(column, column)

    def cells(self) -> list[Cell]:
        return [cell for row in self.rows for cell in row.cells.values()]

    @property
    def caption(self) -> str:
        """What a reader needs to read the table: the metric, data, seeds, split, budget, marks
        and the test behind them, daggers, reference rows and the paper's figures."""
        seeds = ", ".join(map(str, self.seeds))
        count = f"{len(self.seeds)} seed{'s' * (len(self.seeds) != 1)}"
        missing = (
            f"; the suite's seed{'s' * (len(self.missing_seeds) > 1)} "
            f"{', '.join(map(str, self.missing_seeds))} not run"
            if self.missing_seeds
            else ""
        )
        text = (
            f"{self.names.metric(self.metric)} on {self.names.dataset(self.dataset)}: "
            f"mean ± std over {count} ({seeds}{missing}) {self._split_text()}; "
            f"{'higher' if self.higher_is_better else 'lower'} is better."
        )
        if self.budget is not None:
            text += f" Budget: {self.budget.describe()}."
        text += self._marks_text()
        stopped = [reason for reason in CAP_MARKS if any(reason in c.stopped for c in self.cells())]
        text += "".join(f" {CAP_MARKS[r]}: {CAP_NOTES[r]}." for r in stopped)
        if any(r.kind == "reference" for r in self.rows):
            text += " Set apart: references without a model, computed from the data alone."
        if any(r.kind == "paper" for r in self.rows):
            text += " (paper): the figure published in the CMMD paper, not a result of ours."
        return text

    def _split_text(self) -> str:
        if self.axis is None:
            return "on the test split"
        axis = self.names.other(self.axis)
        if self.by_group:
            text = f"on each test {axis} of the test split"
        else:
            text = f"on the test split of each {axis}"
        if AVERAGE in self.columns:
            text += f" (average: each seed's mean over the {axis}s)"
        return text

    def _marks_text(self) -> str:
        comparisons = [
            c.comparison
            for r in self.rows
            if r.kind == "model"
            for c in r.cells.values()
            if c.comparison is not None
        ]
        if not comparisons:
            return ""
        used = {c.test for c in comparisons}
        tests = []
        if "wilcoxon" in used:
            tests.append("Wilcoxon signed-rank test over 6 or more pairs")
        if "paired_t" in used:
            tests.append("paired t-test over 2 to 5 pairs")
        pairing = "seed" if self.axis is None else f"{self.names.other(self.axis)} and seed"
        text = (
            " Bold: the best model; underlined: not significantly worse than the best "
            f"(p ≥ 0.05, two-sided {' or '.join(tests) or 'test'}; runs paired by "
            f"{pairing}) or equal to it as shown."
        )
        if "none" in used:
            text += " No test where fewer than 2 runs pair up (bold is then the best mean)."
        if self._any_all_tied():
            text += " No mark in a column where no model is significantly worse than the best."
        return text

    def _any_all_tied(self) -> bool:
        for column in self.columns:
            cells = [r.cells[column] for r in self.rows if r.kind == "model" and column in r.cells]
            if len(cells) > 1 and not any(c.mark for c in cells):
                return True
        return False


def build_table(
    frame: pd.DataFrame,
    metric: str,
    reference: PaperReference | None = None,
    digits: int | None = None,
    *,
    suite: SuiteInfo | None = None,
    budget: Budget | None = None,
    by_group: bool = False,
) -> list[ResultTable]:
    """The tables of ``metric`` (one per data set) from a run frame
    (mmbench.report.runs.run_frame; tuning trials in it are left out).

    digits: after the decimal point (default: 3 for rmse, 2 otherwise).
    suite: the suite's name, seeds and display names (default: unknown, named "results").
    budget: the models' training budget (mmbench.report.params.budget; None: not stated).
    by_group: the frame's data points are test groups (mmbench.report.runs.per_group).
    """
    if digits is None:
        digits = 3 if metric.startswith("rmse") else 2
    suite = suite or SuiteInfo("results")
    data = frame[(frame["status"] == "ok") & (frame["role"] != TRIAL_ROLE)]
    available = sorted(data["metric"].unique())
    data = data[data["metric"] == metric]
    if data.empty:
        raise ReportError(f"no run has metric {metric!r}; available: {available}")
    return [
        _one_table(part, str(dataset), metric, reference, digits, suite, budget, by_group)
        for dataset, part in data.groupby("dataset", sort=True)
    ]


def _one_table(
    data: pd.DataFrame,
    dataset: str,
    metric: str,
    reference: PaperReference | None,
    digits: int,
    suite: SuiteInfo,
    budget: Budget | None,
    by_group: bool,
) -> ResultTable:
    data, columns, axis = _columns(data)
    headers = (
        {
            column: ", ".join(_display_point(part, suite.names) for part in column.split(", "))
            for column in columns
        }
        if axis
        else {}
    )
    if len(columns) > 1:
        columns = [*columns, AVERAGE]
    is_reference = data["role"] == REFERENCE_ROLE
    models = ordered_series(data.loc[~is_reference, "series"])
    references = sorted(set(data.loc[is_reference, "series"]), key=_reference_rank)
    shown, paired = _values(data, columns)
    stopped = _stopped(data, columns)

    cells: dict[str, dict[str, Cell]] = {name: {} for name in [*models, *references]}
    for column in columns:
        in_column = [name for name in cells if (column, name) in shown]
        means = {name: float(shown[(column, name)].mean()) for name in in_column}
        marks = mark_column(
            {name: paired[(column, name)] for name in in_column},
            means,
            higher_is_better(metric),
            [m for m in models if m in means],
            digits,
        )
        for name in in_column:
            values = shown[(column, name)]
            std = float(values.std(ddof=1)) if len(values) > 1 else math.nan
            cells[name][column] = Cell(
                means[name],
                std,
                len(values),
                marks.marks.get(name, ""),
                marks.comparisons.get(name),
                stopped.get((column, name), ()),
            )
    rows = []
    shown_name = suite.names.other
    paper = _paper_rows(data, dataset, metric, columns, models, reference)
    for name in models:
        rows.append(Row(shown_name(name), "model", cells[name]))
        if name in paper:
            rows.append(replace(paper[name], name=f"{shown_name(paper[name].name)} (paper)"))
    rows += [Row(shown_name(name), "reference", cells[name]) for name in references]
    present = tuple(sorted(int(s) for s in data["seed"].unique()))
    missing = tuple(s for s in suite.seeds or () if s not in present)
    return ResultTable(
        suite.name,
        dataset,
        metric,
        columns,
        axis,
        rows,
        present,
        budget,
        suite.names,
        digits,
        missing,
        by_group,
        headers,
    )


def _display_point(part: str, names: DisplayNames) -> str:
    """ "fold 1" with the axis by its display name."""
    axis, _, value = part.partition(" ")
    return f"{names.other(axis)} {value}"


def _reference_rank(name: str) -> tuple[int, str]:
    return (REFERENCE_ORDER.index(name) if name in REFERENCE_ORDER else len(REFERENCE_ORDER), name)


def _columns(data: pd.DataFrame) -> tuple[pd.DataFrame, list[str], str | None]:
    """Name each run's column after its data grid point ("fold 1"; "test" without a data
    grid); returns the runs with a ``column`` column, the columns in order and the grid's axes
    (None without a grid)."""
    axes = [c for c in data.columns if c.startswith("data.") and data[c].notna().any()]
    if not axes:
        return data.assign(column="test"), ["test"], None
    names = data[axes].apply(
        lambda point: ", ".join(
            f"{axis.removeprefix('data.')} {_plain(value)}" for axis, value in point.items()
        ),
        axis=1,
    )
    data = data.assign(column=names)
    columns = list(dict.fromkeys(data.sort_values(axes)["column"]))
    return data, columns, " / ".join(a.removeprefix("data.") for a in axes)


def _values(
    data: pd.DataFrame, columns: list[str]
) -> tuple[dict[tuple[str, str], pd.Series], dict[tuple[str, str], pd.Series]]:
    """(column, series) -> the values a cell shows (one per seed) and the values its paired
    test sees. In a data point's column both are the runs by seed. In the AVERAGE column a
    cell shows each seed's mean over the data points (a seed missing from one is left out) and
    its test pairs runs by (data point, seed)."""
    shown, paired = {}, {}
    for (column, name), group in data.groupby(["column", "series"]):
        shown[(column, name)] = paired[(column, name)] = group.set_index("seed")["value"]
    if AVERAGE in columns:
        points = [c for c in columns if c != AVERAGE]
        for name, group in data.groupby("series"):
            per_seed = group.pivot_table(index="seed", columns="column", values="value")
            per_seed = per_seed.reindex(columns=points).dropna()
            if len(per_seed):
                shown[(AVERAGE, name)] = per_seed.mean(axis=1)
                paired[(AVERAGE, name)] = group.set_index(["column", "seed"])["value"]
    return shown, paired


def _stopped(data: pd.DataFrame, columns: list[str]) -> dict[tuple[str, str], tuple[str, ...]]:
    """(column, series) -> the caps (CAP_MARKS) some of the cell's runs stopped at; the
    AVERAGE column gathers every data point's."""
    out: dict[tuple[str, str], tuple[str, ...]] = {}
    for (column, name), group in data.groupby(["column", "series"]):
        reasons = set(group["stopped_by"].dropna())
        out[(column, name)] = tuple(r for r in CAP_MARKS if r in reasons)
        if AVERAGE in columns:
            merged = set(out.get((AVERAGE, name), ())) | set(out[(column, name)])
            out[(AVERAGE, name)] = tuple(r for r in CAP_MARKS if r in merged)
    return out


def _paper_rows(
    data: pd.DataFrame,
    dataset: str,
    metric: str,
    columns: list[str],
    models: list[str],
    reference: PaperReference | None,
) -> dict[str, Row]:
    """series -> the row of the paper's figures for its label, after the label's last series,
    where the paper has a figure for one of the table's columns."""
    if reference is None:
        return {}
    labels = {name: data.loc[data["series"] == name, "label"].iloc[0] for name in models}
    options = {
        column: {
            c.removeprefix("option."): v
            for c, v in group.iloc[0].items()
            if c.startswith("option.") and not _missing(v)
        }
        for column, group in data.groupby("column")
    }
    splits = {
        column: AVERAGE if column == AVERAGE else paper_split(dataset, options[column])
        for column in columns
    }
    rows = {}
    for position, name in enumerate(models):
        label = labels[name]
        if position + 1 < len(models) and labels[models[position + 1]] == label:
            continue
        figures = {
            column: Cell(value)
            for column, value in reference.column(dataset, splits, label, metric).items()
            if value is not None
        }
        if figures:  # named after the label; the caller adds " (paper)"
            rows[name] = Row(label, "paper", figures)
    return rows


def _missing(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _plain(value: Any) -> str:
    """1.0 -> "1", 0.5 -> "0.5" (grid values read back from CSV/JSON as floats);
    ["mnist", "mnist_rotated"] -> "mnist+mnist_rotated"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return "+".join(map(_plain, value))
    return str(value)
