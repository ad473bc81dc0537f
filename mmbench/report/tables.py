"""Paper tables from a results directory (paper Tables 1-4 and 6).

Rows are the data points of the suite's data grid (folds, speakers; a single "test" row when
there is none) plus an "average" row, columns are the series (models, and their grid points when
a model has several), cells are mean ± std over replicate seeds, the best of ours per row is in
bold, and the paper's published figure stands beside ours in a column marked "(paper)" wherever
``mmbench/reference/cmmd_paper_results.csv`` has it. The paper's figures are reference data,
never results of ours.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from mmbench.reference import PAPER_RESULTS_CSV
from mmbench.report.runs import ReportError, ordered_series
from mmbench.results import mean_std

REFERENCE_CSV = PAPER_RESULTS_CSV
DEFAULT_METRICS = ("error_pct", "map_micro_pct", "map_macro_pct", "rmse")
METRIC_TITLES = {"error_pct": "error (%)", "rmse": "rmse of the generated missing modalities",
                 "map_micro_pct": "mAP, micro-averaged (%)",
                 "map_macro_pct": "mAP, macro-averaged (%)",
                 "train_seconds": "training time (s)", "eval_seconds": "evaluation time (s)"}
AVERAGE_ROW = "average"
MISSING = "—"

# Our data set names -> the "dataset" column of the paper's CSV.
PAPER_DATASETS = {"mnist_noisy": "noisy_mnist", "xrmb": "xrmb", "flickr": "flickr",
                  "mnist_svhn": "mnist_svhn", "mnist3": "mnist3"}
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
        if dataset not in PAPER_DATASETS or split is None or split == AVERAGE_ROW:
            return None
        for name in self._names(label):
            found = self.values.get((PAPER_DATASETS[dataset], split, name, metric))
            if found:
                return next(iter(found.values()))
        return None

    def column(self, dataset: str, splits: dict[str, str | None], label: str,
               metric: str) -> dict[str, float | None]:
        """The paper's figures for the rows of a table; ``splits`` maps our row names to the
        paper's splits (AVERAGE_ROW to itself)."""
        column = {row: self.value(dataset, split, label, metric) for row, split in splits.items()}
        if AVERAGE_ROW in splits:
            covered = {split for split in splits.values() if split not in (None, AVERAGE_ROW)}
            column[AVERAGE_ROW] = self._average(dataset, covered, label, metric)
        return column

    def _average(self, dataset: str, covered: set[str], label: str, metric: str) -> float | None:
        """The paper's figure for our average over rows that are the paper's ``covered``
        splits: the paper's own average from the table whose averaged splits are all covered
        (an average over 2 folds is not the paper's over 4), or the paper's figure when all our
        rows are one split (Flickr's 5 data splits are all the paper's "test")."""
        if len(covered) == 1:
            return self.value(dataset, next(iter(covered)), label, metric)
        paper_dataset = PAPER_DATASETS.get(dataset)
        for name in self._names(label):
            averages = self.values.get((paper_dataset, AVERAGE_ROW, name, metric), {})
            for table, value in averages.items():
                averaged = {split for (d, split, m, k), tables in self.values.items()
                            if table in tables and (d, m, k) == (paper_dataset, name, metric)}
                if averaged - {AVERAGE_ROW} <= covered:
                    return value
        return None


@dataclass
class PaperTable:
    """One metric on one data set: display text per cell, and which cells are best.

    cells: rows x columns of text (mean ± std, the paper's figure, or MISSING).
    best: rows x columns of bool (only our columns can be best).
    numbers: (row, column) -> (mean, std, number of seeds) of our cells; (value, nan, 0) of the
        paper's.
    paper_columns: the columns holding the paper's figures.
    """

    dataset: str
    metric: str
    row_title: str
    cells: pd.DataFrame
    best: pd.DataFrame
    numbers: dict[tuple[str, str], tuple[float, float, int]] = field(default_factory=dict)
    paper_columns: list[str] = field(default_factory=list)
    n_seeds: int = 1

    @property
    def caption(self) -> str:
        better = "higher" if higher_is_better(self.metric) else "lower"
        text = (f"{METRIC_TITLES.get(self.metric, self.metric)} on {self.dataset}: "
                f"mean ± std over {self.n_seeds} seed{'s' * (self.n_seeds > 1)} "
                f"({better} is better; bold: best per row")
        if self.paper_columns:
            text += "; (paper): the figure published in the CMMD paper, not a result of ours"
        return text + ")."


def build_table(frame: pd.DataFrame, metric: str, reference: PaperReference | None = None,
                digits: int | None = None) -> list[PaperTable]:
    """The tables of ``metric`` (one per data set) from a run frame (mmbench.report.runs.run_frame);
    ``digits`` after the decimal point (default: 3 for rmse, 2 otherwise)."""
    if digits is None:
        digits = 3 if metric.startswith("rmse") else 2
    data = frame[(frame["status"] == "ok") & (frame["metric"] == metric)]
    if data.empty:
        available = sorted(frame.loc[frame["status"] == "ok", "metric"].unique())
        raise ReportError(f"no run has metric {metric!r}; available: {available}")
    return [_one_table(part, dataset, metric, reference, digits)
            for dataset, part in data.groupby("dataset", sort=True)]


def _one_table(data: pd.DataFrame, dataset: str, metric: str,
               reference: PaperReference | None, digits: int) -> PaperTable:
    data, rows, row_title = _rows(data)
    series = ordered_series(data["series"])
    n_seeds = int(data.groupby(["row", "series"])["seed"].nunique().max())
    ours = _values_over_seeds(data, rows, series)
    if len(rows) > 1:
        rows = rows + [AVERAGE_ROW]
    columns, paper = _columns_with_paper(data, dataset, metric, rows, series, reference)

    cells = pd.DataFrame(MISSING, index=rows, columns=columns)
    means = pd.DataFrame(np.nan, index=rows, columns=series)
    numbers = {}
    for (row, column), values in ours.items():
        cells.loc[row, column] = mean_std(values, digits) + (
            f" (n={len(values)})" if len(values) < n_seeds else "")
        means.loc[row, column] = values.mean()
        numbers[(row, column)] = (values.mean(), values.std(ddof=1), len(values))
    for (row, column), value in paper.items():
        cells.loc[row, column] = format(value, "g")
        numbers[(row, column)] = (value, np.nan, 0)

    best = pd.DataFrame(False, index=rows, columns=columns)
    shown = means.round(digits)  # best as displayed: means equal at the shown precision tie
    extreme = shown.max(axis=1) if higher_is_better(metric) else shown.min(axis=1)
    best[series] = shown.eq(extreme, axis=0)
    paper_columns = list(dict.fromkeys(column for _, column in paper))
    return PaperTable(dataset, metric, row_title, cells, best, numbers, paper_columns, n_seeds)


def _rows(data: pd.DataFrame) -> tuple[pd.DataFrame, list[str], str]:
    """Name each run's table row after its data grid point ("fold 1"; "test" without a data
    grid); returns the runs with a ``row`` column, the rows in order and the rows' title."""
    axes = [c for c in data.columns if c.startswith("data.") and data[c].notna().any()]
    if not axes:
        return data.assign(row="test"), ["test"], "data"
    names = data[axes].apply(lambda point: ", ".join(
        f"{axis.removeprefix('data.')} {_plain(value)}" for axis, value in point.items()), axis=1)
    data = data.assign(row=names)
    rows = list(dict.fromkeys(data.sort_values(axes)["row"]))
    return data, rows, " / ".join(a.removeprefix("data.") for a in axes)


def _values_over_seeds(data: pd.DataFrame, rows: list[str],
                       series: list[str]) -> dict[tuple[str, str], pd.Series]:
    """(row, series) -> the metric per seed. With several rows, the AVERAGE_ROW holds each
    seed's average over the rows (seeds missing from a row are left out of it)."""
    values = {key: group.set_index("seed")["value"]
              for key, group in data.groupby(["row", "series"])}
    if len(rows) > 1:
        for name in series:
            if all((row, name) in values for row in rows):
                per_seed = pd.concat([values[(row, name)] for row in rows], axis=1).dropna()
                if len(per_seed):
                    values[(AVERAGE_ROW, name)] = per_seed.mean(axis=1)
    return values


def _columns_with_paper(data: pd.DataFrame, dataset: str, metric: str, rows: list[str],
                        series: list[str], reference: PaperReference | None
                        ) -> tuple[list[str], dict[tuple[str, str], float]]:
    """The columns: our series, each model's "(paper)" column after its last series where the
    paper has a figure; and (row, paper column) -> the paper's figure."""
    labels = {name: data.loc[data["series"] == name, "label"].iloc[0] for name in series}
    options = {row: {c.removeprefix("option."): v for c, v in group.iloc[0].items()
                     if c.startswith("option.")} for row, group in data.groupby("row")}
    splits = {row: AVERAGE_ROW if row == AVERAGE_ROW else paper_split(dataset, options[row])
              for row in rows}
    columns, paper = [], {}
    for position, name in enumerate(series):
        columns.append(name)
        label = labels[name]
        last_of_label = position + 1 == len(series) or labels[series[position + 1]] != label
        if reference is None or not last_of_label:
            continue
        figures = {row: v for row, v in reference.column(dataset, splits, label, metric).items()
                   if v is not None}
        if figures:
            columns.append(f"{label} (paper)")
            paper.update({(row, columns[-1]): value for row, value in figures.items()})
    return columns, paper


def _plain(value: Any) -> str:
    """1.0 -> "1", 0.5 -> "0.5" (grid values read back from CSV/JSON as floats);
    ["mnist", "mnist_rotated"] -> "mnist+mnist_rotated"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return "+".join(map(_plain, value))
    return str(value)


def to_markdown(table: PaperTable) -> str:
    header = [table.row_title, *table.cells.columns]
    lines = [f"**{table.caption}**", "",
             "| " + " | ".join(header) + " |",
             "|:--" + "|--:" * len(table.cells.columns) + "|"]
    for row in table.cells.index:
        texts = [f"**{text}**" if table.best.loc[row, column] else text
                 for column, text in table.cells.loc[row].items()]
        lines.append("| " + " | ".join([row, *texts]) + " |")
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"),
                          ("#", r"\#"), ("$", r"\$"), ("±", r"$\pm$"), ("—", "---")):
        text = text.replace(char, escaped)
    return text


def to_latex(table: PaperTable) -> str:
    """A booktabs table (``\\usepackage{booktabs}``)."""
    lines = [r"\begin{table}[t]", r"\centering",
             rf"\caption{{{_latex_escape(table.caption)}}}",
             rf"\begin{{tabular}}{{l{'r' * len(table.cells.columns)}}}", r"\toprule",
             " & ".join(_latex_escape(c) for c in [table.row_title, *table.cells.columns]) + r" \\",
             r"\midrule"]
    for row in table.cells.index:
        if row == AVERAGE_ROW:
            lines.append(r"\midrule")
        texts = [rf"\textbf{{{_latex_escape(text)}}}" if table.best.loc[row, column]
                 else _latex_escape(text) for column, text in table.cells.loc[row].items()]
        lines.append(" & ".join([_latex_escape(row), *texts]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_csv(tables: list[PaperTable]) -> str:
    """Long form, one line per filled cell: dataset, metric, row, column, source (ours or
    paper), mean, std, n (seeds; 0 for the paper's figures), best."""
    rows = []
    for table in tables:
        for (row, column), (mean, std, n) in table.numbers.items():
            rows.append({"dataset": table.dataset, "metric": table.metric, "row": row,
                         "column": column,
                         "source": "paper" if column in table.paper_columns else "ours",
                         "mean": mean, "std": std, "n": n,
                         "best": bool(table.best.loc[row, column])})
    buffer = io.StringIO()
    pd.DataFrame(rows).to_csv(buffer, index=False)
    return buffer.getvalue()


def render(tables: list[PaperTable], fmt: str) -> str:
    """All ``tables`` as one text in ``fmt`` (markdown, latex or csv)."""
    if fmt == "csv":
        return to_csv(tables)
    writer = {"markdown": to_markdown, "latex": to_latex}.get(fmt)
    if writer is None:
        raise ReportError(f"--format {fmt!r}; allowed: markdown, latex, csv")
    return "\n".join(writer(t) for t in tables)
