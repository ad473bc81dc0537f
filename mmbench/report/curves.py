"""Learning curves from the records' fit history: the training loss, the validation loss and each
named part of the loss per epoch, mean ± std over a series' runs (its seeds and data points), one
panel per series.

A record's ``fit.history`` holds one row per epoch: ``epoch``, ``loss`` (the epoch's mean training
loss), the mean of each named part of the loss (e.g. ``reconstruction``, ``kl``) and
``valid_loss``. Models fitted in one closed-form step (CCA) have no curve and are left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from mmbench.records import Record
from mmbench.report.runs import ReportError, ordered_series, series_names
from mmbench.report.style import (
    DOUBLE_COLUMN,
    LINESTYLES,
    PALETTE,
    PAPER_RC,
    collect_handles,
    first_column,
    legend_below,
    legend_columns,
    legend_height,
    panel_grid,
    panel_title,
    panels_per_row,
    styled,
    text_width,
)

TRAINING, VALIDATION = "loss", "valid_loss"
PART_NAMES = {TRAINING: "training loss", VALIDATION: "validation loss"}
SYMLOG_SPAN = 30.0  # curves whose typical sizes differ more than this share a symlog axis


def closed_form(records: list[Record]) -> dict[str, str]:
    """{series: why it has no curve} for the series none of whose runs trained over epochs
    (fitted in closed form, or a single epoch)."""
    names = series_names(records)
    trained = {names[r.run_id] for r in records if _trains(r)}
    out = {}
    for record in records:
        name = names[record.run_id]
        if name not in trained:
            fit = record.fit
            out[name] = (
                "fitted in closed form (one step)"
                if fit is not None and fit.stopped_by == "closed_form"
                else "no history of more than one epoch"
            )
    return out


def _trains(record: Record) -> bool:
    fit = record.fit
    return fit is not None and fit.stopped_by != "closed_form" and len(fit.history) > 1


def loss_curves(records: list[Record]) -> pd.DataFrame:
    """Per series, part of the loss and epoch: the mean over the series' runs that reached that
    epoch, their std (ddof=1; 0 for one run) and their number. Columns: label, series, part,
    epoch, mean, std, runs; ``part`` is "loss" (training), "valid_loss" or a named part."""
    names = series_names(records)
    rows: list[dict] = []
    for record in records:
        fit = record.fit
        if fit is None or not _trains(record):
            continue
        for entry in fit.history:
            epoch = int(entry["epoch"])
            rows.extend(
                {
                    "label": record.label,
                    "series": names[record.run_id],
                    "run_id": record.run_id,
                    "part": part,
                    "epoch": epoch,
                    "value": float(value),
                }
                for part, value in entry.items()
                if part != "epoch"
            )
    if not rows:
        raise ReportError(
            "no run has a history of more than one epoch (models fitted in closed "
            "form, e.g. CCA, have no learning curve)"
        )
    frame = pd.DataFrame(rows)
    out = (
        frame.groupby(["label", "series", "part", "epoch"], sort=False)["value"]
        .agg(mean="mean", std="std", runs="count")
        .reset_index()
    )
    out["std"] = out["std"].fillna(0.0)
    return out


def _same(values: np.ndarray, total: np.ndarray) -> bool:
    return values.shape == total.shape and bool(np.allclose(values, total))


def _symlog(ax: Axes, linthresh: float, top: float, negative: bool) -> None:
    """A symmetric log y axis, linear below ``linthresh``, labelled at 0 and at every k-th power
    of 10 from ``linthresh`` to ``top`` (k chosen for at most 4 labels), mirrored below 0 when
    the curves go ``negative``."""
    first, last = math.ceil(math.log10(linthresh)), math.ceil(math.log10(max(top, linthresh)))
    step = max(1, math.ceil((last - first + 1) / 4))
    decades = [10.0**k for k in range(last, first - 1, -step)]
    ticks = [0.0, *decades] + ([-d for d in decades] if negative else [])
    ax.set_yscale("symlog", linthresh=linthresh)
    ax.yaxis.set_major_locator(FixedLocator(sorted(ticks)))
    ax.yaxis.set_minor_locator(NullLocator())


def part_styles(parts: Iterable[str]) -> dict[str, dict]:
    """Line keywords per part: the training loss solid black, the validation loss dashed black,
    the named parts in the palette's colours (the same in every panel)."""
    styles = {
        TRAINING: {"color": "0.1", "linestyle": "-", "linewidth": 1.4},
        VALIDATION: {"color": "0.1", "linestyle": "--", "linewidth": 1.4},
    }
    named = sorted(set(parts) - set(styles))
    for k, part in enumerate(named):
        styles[part] = {
            "color": PALETTE[k % len(PALETTE)],
            "linestyle": LINESTYLES[k % len(LINESTYLES)],
            "linewidth": 1.0,
        }
    return styles


@styled
def plot_curves(curves: pd.DataFrame, width: float = DOUBLE_COLUMN) -> Figure:
    """One panel per series (at most 4 per row): each part's mean against the epoch with a
    ± std band. A panel whose curves differ in size by more than SYMLOG_SPAN uses a symmetric
    log scale, so that small parts stay readable beside a large reconstruction term."""
    order = ordered_series(curves["series"])
    styles = part_styles(curves["part"])
    legend_names = [PART_NAMES.get(p, p) for p in styles]
    columns = legend_columns(legend_names, width)
    fig, axes = panel_grid(
        len(order), width, aspect=0.75, extra_height=legend_height(len(styles), columns) + 0.1
    )
    panel_width = width / min(len(order), panels_per_row(width))
    for index, (ax, name) in enumerate(zip(axes, order)):
        part = curves[curves["series"] == name]
        typical, lowest, largest = [], 0.0, 0.0
        total = part[part["part"] == TRAINING].sort_values("epoch")["mean"].to_numpy()
        for key in styles:
            line = part[part["part"] == key].sort_values("epoch")
            if line.empty or (key != TRAINING and _same(line["mean"].to_numpy(), total)):
                continue  # a loss with one part (e.g. M-xO's classification) draws it once
            epoch, mean, std = (line[c].to_numpy() for c in ("epoch", "mean", "std"))
            ax.plot(epoch, mean, label=PART_NAMES.get(key, key), **styles[key])
            ax.fill_between(
                epoch, mean - std, mean + std, color=styles[key]["color"], alpha=0.15, linewidth=0
            )
            typical.append(float(np.median(np.abs(mean))))
            lowest = min(lowest, float(mean.min()))
            largest = max(largest, float(np.abs(mean).max()))
        runs = int(part["runs"].max())
        count = f"{runs} run{'s' if runs > 1 else ''}"
        title = f"{name} ({count})"
        if text_width(f"(m) {title}", PAPER_RC["axes.titlesize"]) > 0.9 * panel_width:
            title = f"{name}\n{count}"  # on two lines rather than over the next panel
        panel_title(ax, index, title)
        positive = [t for t in typical if t > 0]
        if positive and max(positive) / min(positive) > SYMLOG_SPAN:
            _symlog(ax, min(positive), largest, lowest < -min(positive))
        if first_column(ax):
            ax.set_ylabel("loss")
        ax.set_xlabel("epoch")
    legend_below(fig, collect_handles(axes), columns)
    return fig
