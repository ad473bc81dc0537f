"""The paper's other figures from a results directory, drawn at the width they are printed at.

omega        error and rmse against omega (paper Fig. 3): one line per series, mean ± std over
             seeds (the band clipped to the metric's range), models without omega as a dashed
             level; omega = 1 is the ELBO. With test groups (e.g. XRMB speakers) also one panel
             per group beside the average.
generations  the generated missing modalities beside the truth (paper App. G), one column per
             class: images when the data set's loader says the modality is one, tags (Flickr) as
             the most probable words, any other vector as a heat-map strip per test point.
tsne         2-D t-SNE (scikit-learn) of the test representations, one panel per series, coloured
             by class and named by the data's class names (App. F).
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.lines import Line2D
from matplotlib.transforms import Bbox
from sklearn.manifold import TSNE

from mmbench.records import Record
from mmbench.report.runs import ReportError, ordered_series, per_group, run_frame, series_names
from mmbench.report.style import (
    DOUBLE_COLUMN,
    PAPER_RC,
    class_palette,
    collect_handles,
    legend_below,
    legend_columns,
    legend_height,
    model_style,
    panel_grid,
    panel_title,
    panels_per_row,
    styled,
)
from mmbench.report.suite_info import SuiteInfo
from mmbench.stats import Generations, spread
from mmbench.store import GENERATED, REPRESENTATION, RunStore

OMEGA_METRICS = ("error_pct", "rmse")
AXIS_LABELS = {
    "error_pct": "error (%)",
    "rmse": "rmse of generated $x_M$",
    "map_micro_pct": "mAP, micro (%)",
    "map_macro_pct": "mAP, macro (%)",
}
# The range a metric's values (and so its ± std band) can take; others are unbounded.
METRIC_RANGES = {
    "error_pct": (0.0, 100.0),
    "map_micro_pct": (0.0, 100.0),
    "map_macro_pct": (0.0, 100.0),
    "rmse": (0.0, math.inf),
}
MIN_OMEGAS = 3
AVERAGE = "average"
# What a class is called, by data set (the legend's title); others: "class".
CLASS_KINDS = {
    "mnist_embedded": "digit",
    "digits_embedded": "digit",
    "mnist_noisy": "digit",
    "mnist_svhn": "digit",
    "mnist3": "digit",
    "xrmb": "phone",
    "flickr": "first label",
}


def metric_range(metric: str) -> tuple[float, float]:
    """The values ``metric`` can take (rmse.<modality> as rmse)."""
    return METRIC_RANGES.get(metric.split(".")[0], (-math.inf, math.inf))


def data_name(results_dir: str | Path, records: list[Record]) -> str:
    """What the figures' data is called, as the tables call it (:mod:`mmbench.report.names`,
    with the suite's ``display_names``): the data set's readable name, or for the user's own
    files (the npz and parquet loaders) the suite's name (``suite.json``, else the results
    folder's)."""
    names = SuiteInfo.read(results_dir).names
    return ", ".join(
        dict.fromkeys(names.dataset(n) for n in sorted({r.config.data.name for r in records}))
    )


# ---------------------------------------------------------------------------------------- omega


def omega_curves(
    records: list[Record], metrics: Sequence[str] = OMEGA_METRICS, axis: str = "omega"
) -> pd.DataFrame:
    """Per group, series, metric and value of hyper-parameter ``axis`` (nan for models without
    it): mean and std over seeds, and the number of seeds. Group "average" holds each seed's
    average over data points (e.g. speakers); when the runs have test groups (e.g. XRMB
    speakers, per-group metrics) or several data points, each one is also a group of its own
    ("speaker 7"). Columns: group, label, series, metric, omega, mean, std, seeds.

    No series with 3 or more values of ``axis`` draws no curve: an error that says which values
    each series has."""
    names = series_names(records, along=axis)
    values: dict[str, set[float]] = {}
    for record in records:
        value = record.config.model.params.get(axis)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values.setdefault(names[record.run_id], set()).add(float(value))
    if not values:
        raise ReportError(f"no model of these results has a hyper-parameter {axis!r}")
    if max(len(v) for v in values.values()) < MIN_OMEGAS:
        found = "; ".join(f"{name}: {axis} = {sorted(v)}" for name, v in values.items())
        raise ReportError(
            f"the {axis} figure needs a model run at {MIN_OMEGAS} or more values of {axis} to "
            f"draw a curve; these results have {found}. Run a suite with a grid over it, "
            f'e.g. grid: {{{axis}: "0:1:0.1"}} (suites/xrmb_omega.yaml)'
        )
    parts = [_mean_over_seeds(records, metrics, axis).assign(group=AVERAGE)]
    grouped = per_group(records) if any(r.metrics_by_group for r in records) else records
    names = {r.run_id: group_name(r) for r in grouped}
    if len(set(names.values())) > 1:
        for name in sorted(set(names.values()), key=_group_key):
            members = [r for r in grouped if names[r.run_id] == name]
            parts.append(_mean_over_seeds(members, metrics, axis).assign(group=name))
    out = pd.concat(parts, ignore_index=True)
    return out[["group", "label", "series", "metric", axis, "mean", "std", "seeds"]]


def group_name(record: Record) -> str:
    """A data point named by its coordinates: "speaker 7", "fold 1, speaker 3"."""
    return ", ".join(f"{key} {value}" for key, value in record.coordinates.data.items())


def _group_key(name: str) -> tuple:
    return tuple(
        (0, float(t), "") if _is_number(t) else (1, 0.0, t) for t in name.replace(",", " ").split()
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _mean_over_seeds(records: list[Record], metrics: Sequence[str], axis: str) -> pd.DataFrame:
    frame = run_frame(records, along=axis)
    frame = frame[frame["metric"].isin(metrics)]
    if frame.empty:
        raise ReportError(f"no run has any of the metrics {list(metrics)}")
    column = f"hp.{axis}"
    frame = frame.assign(x=frame[column].astype(float) if column in frame else np.nan)
    per_seed = (
        frame.groupby(["label", "series", "metric", "x", "seed"], dropna=False)["value"]
        .mean()
        .reset_index()
    )
    out = (
        per_seed.groupby(["label", "series", "metric", "x"], dropna=False)["value"]
        .agg(mean="mean", std="std", seeds="count")
        .reset_index()
    )
    out["std"] = out["std"].fillna(0.0)
    return out.rename(columns={"x": axis})


def _metrics_of(curves: pd.DataFrame) -> list[str]:
    present = set(curves["metric"])
    return [m for m in OMEGA_METRICS if m in present] + sorted(present - set(OMEGA_METRICS))


def _draw_omega(ax: Axes, part: pd.DataFrame, metric: str, axis: str) -> None:
    """One panel: each series' mean against ``axis`` with a ± std band clipped to the metric's
    range; a series without ``axis`` as a dashed level."""
    low, high = metric_range(metric)
    for name in ordered_series(part["series"]):
        line = part[part["series"] == name].sort_values(axis)
        style = model_style(line["label"].iloc[0])
        mean, std = line["mean"].to_numpy(), line["std"].to_numpy()
        band = np.clip(mean - std, low, high), np.clip(mean + std, low, high)
        if line[axis].isna().all():  # a model without omega: its level across the axis
            ax.axhline(mean[0], color=style.colour, linestyle="--", label=name)
            ax.axhspan(band[0][0], band[1][0], color=style.colour, alpha=0.1, linewidth=0)
            continue
        x = line[axis].to_numpy()
        ax.plot(x, mean, label=name, **style.line())
        ax.fill_between(x, *band, color=style.colour, alpha=0.15, linewidth=0)
    if axis == "omega":  # omega lies in [0, 1]
        ax.set_xlabel("ω (ω = 1: the ELBO)")
        ax.set_xlim(-0.05, 1.05)
    else:
        ax.set_xlabel(axis)


@styled
def plot_omega(
    curves: pd.DataFrame, axis: str = "omega", width: float = DOUBLE_COLUMN, group: str = AVERAGE
) -> Figure:
    """One panel per metric for ``group`` (default: the average over data points)."""
    part = curves[curves["group"] == group]
    metrics = _metrics_of(part)
    names = ordered_series(part["series"])
    columns = legend_columns(names, width)
    fig, axes = panel_grid(
        len(metrics), width, aspect=0.7, columns=2, extra_height=legend_height(len(names), columns)
    )
    for index, (ax, metric) in enumerate(zip(axes, metrics)):
        _draw_omega(ax, part[part["metric"] == metric], metric, axis)
        panel_title(ax, index, "" if group == AVERAGE else group)
        ax.set_ylabel(AXIS_LABELS.get(metric, metric))
    legend_below(fig, collect_handles(axes), columns)
    return fig


@styled
def plot_omega_by_group(
    curves: pd.DataFrame, metric: str, axis: str = "omega", width: float = DOUBLE_COLUMN
) -> Figure:
    """One panel per group (e.g. speaker) and a last one for their average, for ``metric``."""
    part = curves[curves["metric"] == metric]
    groups = [g for g in dict.fromkeys(part["group"]) if g != AVERAGE] + [AVERAGE]
    names = ordered_series(part["series"])
    columns = legend_columns(names, width)
    fig, axes = panel_grid(
        len(groups), width, aspect=0.8, extra_height=legend_height(len(names), columns)
    )
    per_row = min(len(groups), panels_per_row(width))
    for index, (ax, group) in enumerate(zip(axes, groups)):
        _draw_omega(ax, part[part["group"] == group], metric, axis)
        panel_title(ax, index, group)
        if index + per_row < len(groups):  # the x axis is named under each column only
            ax.set_xlabel("")
    fig.supylabel(AXIS_LABELS.get(metric, metric), fontsize=PAPER_RC["axes.labelsize"])
    legend_below(fig, collect_handles(axes), columns)
    return fig


# ---------------------------------------------------------------------------------- single runs


def representatives(
    records: list[Record], artifact: str, results_dir: str | Path
) -> dict[str, Record]:
    """One run per series, for figures that show single runs ({series: record}, in the paper's
    model order): on the first data point (by sorted data options; select another with
    ``--where``), the run with the lowest seed that kept ``artifact`` (e.g. GENERATED)."""
    store = RunStore(results_dir)
    names = series_names(records)
    having = [r for r in records if store.has(r.run_id, artifact)]
    if not having:
        raise ReportError(f"{results_dir}: no finished run has {artifact}.npz")

    def data_point(record: Record) -> str:
        return json.dumps(record.config.data.options, sort_keys=True)

    first = min(data_point(r) for r in having)
    chosen: dict[str, Record] = {}
    for record in sorted(having, key=lambda r: r.coordinates.seed):
        if data_point(record) == first:
            chosen.setdefault(names[record.run_id], record)
    return {name: chosen[name] for name in ordered_series(chosen)}


def class_names(record: Record, classes: Iterable[int]) -> dict[int, str]:
    """Class id -> its name: the values the user's file gave (``data_info["classes"]``), else the
    id itself (MNIST's ids are its digits); -1 is "none" (multi-label points without a label)."""
    given = record.data_info.get("class_names") or record.data_info.get("classes")
    names = {}
    for cls in classes:
        cls = int(cls)
        if cls < 0:
            names[cls] = "none"
        elif isinstance(given, list) and cls < len(given):
            names[cls] = str(given[cls])
        else:
            names[cls] = str(cls)
    return names


def class_kind(record: Record) -> str:
    """What the data set's classes are called, e.g. "digit", "phone"."""
    if record.data_info.get("class_name"):
        return str(record.data_info["class_name"])
    return CLASS_KINDS.get(record.config.data.name, "class")


# ---------------------------------------------------------------------------------- generations


@dataclass(frozen=True)
class GenerationFigure:
    """The figure of one missing modality, the values it draws (one row per series and test
    point: series, point, class, class_name, x0..x{d-1}) and a note for the reader (or None)."""

    figure: Figure
    values: pd.DataFrame
    note: str | None = None


def generation_figures(
    results_dir: str | Path,
    records: list[Record],
    width: float = DOUBLE_COLUMN,
    examples: int = 8,
    tags: int = 5,
) -> dict[str, GenerationFigure]:
    """One figure per missing modality. Every series' generation of the same test points is drawn
    beside the truth: one test point per class (the kept points of the first series; classes
    from the record's kept labels, else its stored representation labels), or ``examples``
    points spread over the kept ones for multi-label data."""
    store = RunStore(results_dir)
    chosen = representatives(records, GENERATED, results_dir)
    generations = {
        name: Generations.from_arrays(store.arrays(r.run_id, GENERATED))
        for name, r in chosen.items()
    }
    reference_name = next(iter(chosen))
    kept, record = generations[reference_name], chosen[reference_name]
    labels = _kept_labels(store, record, kept)
    pick, note = _columns(
        labels, len(next(iter(kept.truth.values()))), examples, _test_classes(store, record), record
    )
    if labels is not None:
        names = class_names(record, labels[pick])
        titles = [names[int(c)] for c in labels[pick]]
    else:
        titles = [f"point {i}" for i in range(len(pick))]
    figures = {}
    for modality, all_truth in kept.truth.items():
        truth = all_truth[pick]
        made = {
            name: _aligned(g, kept, modality, pick)
            for name, g in generations.items()
            if modality in g.generated
        }
        shape = image_shape(record, modality)
        vocabulary = kept.vocabulary.get(modality)
        rows = [(f"true {modality}", truth), *made.items()]
        if shape is not None:
            observed = [
                (f"observed {m}", x[pick], image_shape(record, m)) for m, x in kept.observed.items()
            ]
            shown = [(name, images, shape) for name, images in rows]
            limits = _image_limits(truth, record.modalities[modality].likelihood)
            fig = _image_grid(
                [s for s in observed if s[2] is not None] + shown,
                titles,
                limits,
                width,
                class_kind(record) if labels is not None else "test point",
            )
        elif vocabulary is not None:
            fig = _tag_table(truth, made, vocabulary, tags, width)
        else:
            fig = _heatmap_strips(
                rows,
                titles,
                modality,
                width,
                class_kind(record) if labels is not None else "test point",
            )
        figures[modality] = GenerationFigure(
            fig, _generation_values(rows, modality, kept, pick, labels, titles), note
        )
    return figures


def image_shape(record: Record, modality: str) -> tuple[int, ...] | None:
    """The image shape of a modality as its data set's loader recorded it; None when it is not
    an image (a vector is never taken for an image because its width is a square)."""
    info = record.modalities.get(modality)
    return info.image_shape if info is not None else None


def _kept_labels(store: RunStore, record: Record, kept: Generations) -> np.ndarray | None:
    """The classes of the kept points: kept with them, else looked up in the run's stored test
    labels (records written before the labels were kept); None for multi-label data."""
    if kept.labels is not None:
        return kept.labels
    if kept.index is None or not store.has(record.run_id, REPRESENTATION):
        return None
    stored = store.arrays(record.run_id, REPRESENTATION)["labels"]
    return stored[kept.index] if stored.ndim == 1 else None


def _test_classes(store: RunStore, record: Record) -> set[int]:
    """The classes of the run's test split (from its stored test labels; empty without them or
    for multi-label data)."""
    if not store.has(record.run_id, REPRESENTATION):
        return set()
    stored = store.arrays(record.run_id, REPRESENTATION)["labels"]
    return {int(c) for c in np.unique(stored)} if stored.ndim == 1 else set()


def _columns(
    labels: np.ndarray | None, n_kept: int, examples: int, test_classes: set[int], record: Record
) -> tuple[np.ndarray, str | None]:
    """Positions in the kept points to draw: the first point of each class present (in class
    order), or ``examples`` spread over them without classes; and a note naming the classes of
    the test split that are missing from the kept points."""
    if labels is None:
        return spread(n_kept, examples), None
    classes = np.unique(labels)
    pick = np.array([int(np.flatnonzero(labels == c)[0]) for c in classes])
    missing = sorted(test_classes - {int(c) for c in classes})
    if not missing:
        return pick, None
    names = class_names(record, missing)
    return pick, (
        f"classes {', '.join(names[c] for c in missing)} are not among the kept "
        "generations (runs written before mmbench kept test points of every class, or "
        "more than 64 classes): run them again to show every class"
    )


def _aligned(
    generations: Generations, reference: Generations, modality: str, pick: np.ndarray
) -> np.ndarray:
    """A series' generations at the reference's picked test points (rows by test index when both
    kept their indices, else by position); nan rows where the series lacks a point."""
    made = generations.generated[modality]
    if generations.index is None or reference.index is None:
        return made[pick]
    row_of = {int(i): r for r, i in enumerate(generations.index)}
    out = np.full((len(pick), made.shape[1]), np.nan)
    for k, position in enumerate(pick):
        row = row_of.get(int(reference.index[position]))
        if row is not None:
            out[k] = made[row]
    return out


def _image_limits(truth: np.ndarray, likelihood: str) -> tuple[float, float]:
    """The value range mapped to black..white: [0, 1] for Bernoulli pixels, else the truth's."""
    if likelihood == "bernoulli":
        return 0.0, 1.0
    return float(np.nanmin(truth)), float(np.nanmax(truth))


def as_image(vector: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A flattened image as (H, W) or (H, W, C) for imshow; channels-first shapes are moved last."""
    image = vector.reshape(shape)
    if image.ndim == 3 and shape[0] in (1, 3) and shape[-1] not in (1, 3):
        image = np.moveaxis(image, 0, -1)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    return np.clip(image, 0.0, 1.0) if image.ndim == 3 else image


MAX_IMAGE_COLUMNS = 10
LABEL_INCHES = 0.9  # room for the row names left of an image grid


@styled
def _image_grid(
    rows: list[tuple[str, np.ndarray, Any]],
    titles: list[str],
    limits: tuple[float, float],
    width: float,
    kind: str,
) -> Figure:
    """Rows of images (name, (columns, d) array, image shape), one column per class
    (``titles``), wrapped into blocks of at most MAX_IMAGE_COLUMNS columns; the row names on the
    left."""
    n_columns = min(len(titles), MAX_IMAGE_COLUMNS)
    blocks = math.ceil(len(titles) / n_columns)
    cell = (width - LABEL_INCHES) / n_columns
    fig_rows = blocks * len(rows)
    fig = Figure(
        figsize=(width, fig_rows * cell + 0.25 * blocks + 0.1),
        layout=ConstrainedLayoutEngine(w_pad=0.01, h_pad=0.01, wspace=0.02, hspace=0.02),
    )
    axes = fig.subplots(fig_rows, n_columns, squeeze=False)
    for block in range(blocks):
        for r, (name, images, shape) in enumerate(rows):
            for c in range(n_columns):
                ax = axes[block * len(rows) + r, c]
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(False)
                k = block * n_columns + c
                if k >= len(titles):
                    ax.set_visible(False)
                    continue
                if r == 0:
                    ax.set_title(titles[k], fontsize=8)
                if not np.isnan(images[k]).any():
                    image = as_image(images[k], shape)
                    ax.imshow(
                        image,
                        cmap="gray_r" if image.ndim == 2 else None,
                        vmin=limits[0],
                        vmax=limits[1],
                        interpolation="nearest",
                    )
            axes[block * len(rows) + r, 0].set_ylabel(name, rotation=0, ha="right", va="center")
    fig.suptitle(f"one {kind} per column", fontsize=8)
    return fig


@styled
def _heatmap_strips(
    rows: list[tuple[str, np.ndarray]], titles: list[str], modality: str, width: float, kind: str
) -> Figure:
    """One heat map per row (name, (columns, d) array): a vertical strip of the d features per
    test point, one test point per class (``titles``), on one colour scale (diverging around 0
    when the truth takes both signs)."""
    truth = rows[0][1]
    low, high = float(np.nanmin(truth)), float(np.nanmax(truth))
    if low < 0 < high:
        bound = max(-low, high)
        cmap, low, high = "vlag", -bound, bound
    else:
        cmap = "viridis"
    strip_height = 0.55
    fig = Figure(figsize=(width, len(rows) * strip_height + 0.7), layout="constrained")
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    images = []
    for ax, (name, values) in zip(axes, rows):
        images.append(
            ax.imshow(
                values.T, aspect="auto", cmap=cmap, vmin=low, vmax=high, interpolation="nearest"
            )
        )
        for k in range(1, len(titles)):
            ax.axvline(k - 0.5, color="white", linewidth=1.0)
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
        ax.set_xticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    axes[-1].set_xticks(np.arange(len(titles)), titles, rotation=90 if len(titles) > 12 else 0)
    axes[-1].set_xlabel(
        f"one {kind} per column; each strip: the {truth.shape[1]} features of "
        f"{modality}, top to bottom"
    )
    fig.colorbar(images[0], ax=list(axes), shrink=0.8, aspect=30, label=f"value of {modality}")
    return fig


@styled
def _tag_table(
    truth: np.ndarray, made: dict[str, np.ndarray], words: np.ndarray, top: int, width: float
) -> Figure:
    """Per test point: its true tags, and each series' ``top`` most probable tags."""
    columns = ["true tags", *made]
    characters = max(8, int(width / len(columns) * 72 / (0.55 * 8)) - 2)
    cells, heights = [], []
    for i in range(len(truth)):
        row = [", ".join(words[np.flatnonzero(truth[i] > 0.5)]) or "(none)"]
        for generated in made.values():
            row.append(", ".join(words[np.argsort(-generated[i], kind="stable")[:top]]))
        wrapped = [textwrap.fill(text, characters) for text in row]
        cells.append(wrapped)
        heights.append(max(text.count("\n") + 1 for text in wrapped))
    line = 8 * 1.4 / 72
    fig = Figure(
        figsize=(width, (sum(heights) + len(heights) + 2) * line + 0.3), layout="constrained"
    )
    ax = fig.subplots()
    ax.axis("off")
    table = ax.table(
        cellText=cells,
        colLabels=columns,
        loc="upper center",
        cellLoc="left",
        bbox=Bbox.from_bounds(0.0, 0.0, 1.0, 1.0),
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    total = sum(heights) + len(heights) + 1
    for (r, _), cell in table.get_celld().items():
        cell.set_height((1 if r == 0 else heights[r - 1] + 1) / total)
    ax.set_title(f"the {top} most probable tags per test point", loc="left")
    return fig


def _generation_values(
    rows: list[tuple[str, np.ndarray]],
    modality: str,
    kept: Generations,
    pick: np.ndarray,
    labels: np.ndarray | None,
    titles: list[str],
) -> pd.DataFrame:
    """The drawn values: one row per series (or "true <modality>") and test point."""
    index = kept.index[pick] if kept.index is not None else pick
    frames = []
    for name, values in rows:
        frame = pd.DataFrame(values, columns=[f"x{j}" for j in range(values.shape[1])])
        frame.insert(0, "series", name)
        frame.insert(1, "modality", modality)
        frame.insert(2, "point", index)
        frame.insert(3, "class", labels[pick] if labels is not None else -1)
        frame.insert(4, "class_name", titles)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------- t-SNE


def tsne_embeddings(
    results_dir: str | Path,
    records: list[Record],
    max_points: int = 2000,
    perplexity: float = 30.0,
    seed: int = 0,
) -> pd.DataFrame:
    """2-D t-SNE of ``max_points`` test representations (spread over the split) of one run per
    series. Columns: series, label, point, x, y, cls (the class; the first positive label for
    multi-label data, -1 when none), class_name."""
    store = RunStore(results_dir)
    chosen = representatives(records, REPRESENTATION, results_dir)
    parts = []
    for name, record in chosen.items():
        arrays = store.arrays(record.run_id, REPRESENTATION)
        pick = spread(len(arrays["z"]), max_points)
        z, labels = arrays["z"][pick], arrays["labels"][pick]
        classes = (
            labels if labels.ndim == 1 else np.where(labels.any(axis=1), labels.argmax(axis=1), -1)
        )
        embedding = tsne(z, perplexity, seed)
        names = class_names(record, np.unique(classes))
        parts.append(
            pd.DataFrame(
                {
                    "series": name,
                    "label": record.label,
                    "point": pick,
                    "x": embedding[:, 0],
                    "y": embedding[:, 1],
                    "cls": classes,
                    "class_name": [names[int(c)] for c in classes],
                    "kind": class_kind(record),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def tsne(z: np.ndarray, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """scikit-learn's t-SNE of ``z`` (n, d) to (n, 2), PCA-initialised (the perplexity is capped
    below n / 3 so that small test sets work)."""
    perplexity = min(perplexity, max(1.0, (len(z) - 1) / 3.0))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        z.astype(np.float64)
    )


@styled
def plot_tsne(embeddings: pd.DataFrame, width: float = DOUBLE_COLUMN) -> Figure:
    """One panel per series, at most 4 per row: the t-SNE points coloured by class, with the
    class names in a legend under the panels."""
    order = list(dict.fromkeys(embeddings["series"]))
    classes = sorted(set(embeddings["cls"]))
    named = dict(zip(embeddings["cls"], embeddings["class_name"]))
    colours = dict(zip([c for c in classes if c >= 0], class_palette(len(classes))))
    colours[-1] = "#bbbbbb"
    entries = [named[c] for c in classes]
    columns = legend_columns(entries, width, handle_length=1.0)
    fig, axes = panel_grid(
        len(order), width, aspect=1.0, extra_height=legend_height(len(entries), columns) + 0.15
    )
    size = 4.0 if len(embeddings) / len(order) < 1000 else 1.5
    for index, (ax, name) in enumerate(zip(axes, order)):
        part = embeddings[embeddings["series"] == name]
        ax.scatter(
            part["x"],
            part["y"],
            c=[colours[c] for c in part["cls"]],
            s=size,
            linewidths=0,
            rasterized=True,
        )
        panel_title(ax, index, name)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ("top", "right"):
            ax.spines[spine].set_visible(True)
    handles = {
        named[c]: Line2D([], [], marker="o", linestyle="", color=colours[c], markersize=4)
        for c in classes
    }
    legend_below(
        fig,
        handles,
        columns,
        title=str(embeddings["kind"].iloc[0]) if "kind" in embeddings else "class",
        handle_length=1.0,
    )
    return fig
