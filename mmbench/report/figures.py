"""The paper's other figures from a results directory.

omega        error and rmse against omega (paper Fig. 3): one line per series, mean ± std over
             seeds of the average over data points (e.g. speakers); models without omega as a
             dashed level; omega = 1 is the ELBO.
generations  the generated missing modalities beside the truth (paper App. G): images drawn with
             the modality's image shape, tags (Flickr) as the most probable words of the
             vocabulary, other vectors (XRMB articulation) as curves over the features.
tsne         2-D t-SNE (scikit-learn) of the test representations, coloured by class (App. F).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.lines import Line2D
from sklearn.manifold import TSNE

from mmbench.records import Record
from mmbench.report.runs import ReportError, ordered_series, run_frame, series_names
from mmbench.report.style import figure_legend, model_colour, panels, styled
from mmbench.stats import Generations, spread
from mmbench.store import GENERATED, REPRESENTATION, RunStore

OMEGA_METRICS = ("error_pct", "rmse")
AXIS_LABELS = {"error_pct": "error (%)", "rmse": "rmse of generated $x_M$",
               "map_micro_pct": "mAP, micro (%)", "map_macro_pct": "mAP, macro (%)"}


def omega_curves(records: list[Record], metrics=OMEGA_METRICS,
                 axis: str = "omega") -> pd.DataFrame:
    """Per series, metric and value of hyper-parameter ``axis`` (nan for models without it):
    mean and std over seeds of each seed's average over data points, and the number of seeds.
    Columns: label, series, metric, omega, mean, std, seeds."""
    frame = run_frame(records, along=axis)
    frame = frame[frame["metric"].isin(metrics)]
    if frame.empty:
        raise ReportError(f"no run has any of the metrics {list(metrics)}")
    column = f"hp.{axis}"
    if column not in frame or frame[column].isna().all():
        raise ReportError(f"no model of these results has a hyper-parameter {axis!r}")
    frame = frame.assign(x=frame[column].astype(float))
    per_seed = (frame.groupby(["label", "series", "metric", "x", "seed"], dropna=False)["value"]
                .mean().reset_index())
    out = (per_seed.groupby(["label", "series", "metric", "x"], dropna=False)["value"]
           .agg(mean="mean", std="std", seeds="count").reset_index())
    out["std"] = out["std"].fillna(0.0)
    return out.rename(columns={"x": axis})


@styled
def plot_omega(curves: pd.DataFrame, axis: str = "omega"):
    """One panel per metric: each series' mean against ``axis`` with ± std error bars."""
    metrics = [m for m in OMEGA_METRICS if m in set(curves["metric"])] + sorted(
        set(curves["metric"]) - set(OMEGA_METRICS))
    fig, axes = panels(len(metrics), panel_size=(3.2, 2.5))
    for ax, metric in zip(axes, metrics):
        part = curves[curves["metric"] == metric]
        for name in ordered_series(part["series"]):
            line = part[part["series"] == name].sort_values(axis)
            colour = model_colour(line["label"].iloc[0])
            if line[axis].isna().all():  # a model without omega: its level across the axis
                ax.axhline(line["mean"].iloc[0], color=colour, linestyle="--", label=name)
                continue
            ax.errorbar(line[axis].to_numpy(), line["mean"].to_numpy(), yerr=line["std"].to_numpy(),
                        color=colour, marker="o", markersize=3, capsize=2, label=name)
        ax.set_ylabel(AXIS_LABELS.get(metric, metric))
        if axis == "omega":  # omega lies in [0, 1]
            ax.set_xlabel("ω (ω = 1: the ELBO)")
            ax.set_xlim(-0.05, 1.05)
        else:
            ax.set_xlabel(axis)
    figure_legend(fig, axes, max_columns=4)
    return fig


def representatives(records: list[Record], artifact: str,
                    results_dir: str | Path) -> dict[str, Record]:
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


def image_shape(record: Record, modality: str, size: int) -> tuple[int, ...] | None:
    """The image shape of a flattened modality of ``size`` features: the one the record keeps,
    else a square (size = k^2) or a square RGB image (size = 3 k^2, channels last); None when the
    modality is not an image."""
    info = record.modalities.get(modality)
    if info is not None and info.image_shape:
        return info.image_shape
    for channels in (1, 3):
        side = math.isqrt(size // channels)
        if side > 1 and side * side * channels == size:
            return (side, side) if channels == 1 else (side, side, 3)
    return None


def as_image(vector: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A flattened image as (H, W) or (H, W, C) for imshow; channels-first shapes are moved last."""
    image = vector.reshape(shape)
    if image.ndim == 3 and shape[0] in (1, 3) and shape[-1] not in (1, 3):
        image = np.moveaxis(image, 0, -1)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    return np.clip(image, 0.0, 1.0) if image.ndim == 3 else image


def generation_figures(results_dir: str | Path, records: list[Record],
                       examples: int = 8, tags: int = 5) -> dict[str, Any]:
    """One figure per missing modality: {modality: Figure}. Every series' generation of the
    same test points is drawn under the truth (and the observed images, when they are images)."""
    store = RunStore(results_dir)
    chosen = representatives(records, GENERATED, results_dir)
    generations = {name: Generations.from_arrays(store.arrays(r.run_id, GENERATED))
                   for name, r in chosen.items()}
    reference_name = next(iter(chosen))
    kept, record = generations[reference_name], chosen[reference_name]
    figures = {}
    for modality, all_truth in kept.truth.items():
        pick = spread(len(all_truth), examples)
        truth = all_truth[pick]
        made = {name: g.generated[modality][pick] for name, g in generations.items()
                if modality in g.generated}
        shape = image_shape(record, modality, truth.shape[1])
        vocabulary = kept.vocabulary.get(modality)
        info = record.modalities.get(modality)
        if shape is not None:
            shown = [(f"observed {m}", x[pick], image_shape(record, m, x.shape[1]))
                     for m, x in kept.observed.items()]
            shown = [s for s in shown if s[2] is not None]
            shown += [(f"true {modality}", truth, shape)]
            shown += [(f"{name}", g, shape) for name, g in made.items()]
            figures[modality] = _image_grid(shown, modality)
        elif vocabulary is not None or (info is not None and info.likelihood == "bernoulli"):
            words = vocabulary if vocabulary is not None else np.array(
                [f"word{k}" for k in range(truth.shape[1])])
            figures[modality] = _tag_table(truth, made, words, tags, modality)
        else:
            figures[modality] = _vector_panels(truth, made, modality, chosen)
    return figures


@styled
def _image_grid(rows: list[tuple[str, np.ndarray, tuple[int, ...]]], modality: str):
    """Rows of images (name, (examples, d) array, image shape): one column per test point."""
    n_columns = max(len(images) for _, images, _ in rows)
    fig, axes = panels(len(rows) * n_columns, panel_size=(0.8, 0.8), rows=len(rows))
    for r, (name, images, shape) in enumerate(rows):
        for c in range(n_columns):
            ax = axes[r * n_columns + c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(images):
                image = as_image(images[c], shape)
                ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0.0, vmax=1.0)
        axes[r * n_columns].set_ylabel(name, rotation=0, ha="right", va="center")
    fig.suptitle(f"generated {modality} (rows) for the same test points (columns)", y=1.0)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return fig


@styled
def _tag_table(truth: np.ndarray, made: dict[str, np.ndarray], words: np.ndarray, top: int,
               modality: str):
    """Per test point: its true tags, and each series' ``top`` most probable tags."""
    columns = ["true tags"] + list(made)
    cells = []
    for i in range(len(truth)):
        row = [", ".join(words[np.flatnonzero(truth[i] > 0.5)]) or "(none)"]
        for generated in made.values():
            row.append(", ".join(words[np.argsort(-generated[i], kind="stable")[:top]]))
        cells.append(row)
    fig, (ax,) = panels(1, panel_size=(2.4 * len(columns), 0.45 * (len(cells) + 1)))
    ax.axis("off")
    table = ax.table(cellText=cells, colLabels=columns, loc="center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    ax.set_title(f"generated {modality}: the {top} most probable words per test point")
    return fig


@styled
def _vector_panels(truth: np.ndarray, made: dict[str, np.ndarray], modality: str,
                   chosen: dict[str, Record]):
    """Per test point, the true feature vector and each series' generation over feature index."""
    count = min(len(truth), 4)
    fig, axes = panels(count, panel_size=(3.0, 2.2))
    for i, ax in enumerate(axes):
        features = np.arange(truth.shape[1])
        ax.plot(features, truth[i], color="black", linewidth=1.0, label=f"true {modality}")
        for name, generated in made.items():
            ax.plot(features, generated[i], color=model_colour(chosen[name].label),
                    linewidth=1.0, label=name)
        ax.set_xlabel(f"feature of {modality}")
        ax.set_title(f"test point {i}")
    axes[0].set_ylabel(f"value of {modality} (data units)")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper center", ncol=min(len(names), 4),
               bbox_to_anchor=(0.5, 0.0), frameon=False)
    fig.tight_layout()
    return fig


def tsne_embeddings(results_dir: str | Path, records: list[Record],
                    max_points: int = 2000, perplexity: float = 30.0,
                    seed: int = 0) -> pd.DataFrame:
    """2-D t-SNE of the first ``max_points`` test representations of one run per series.
    Columns: series, label, point, x, y, cls (the class; the first positive label for
    multi-label data, -1 when none)."""
    store = RunStore(results_dir)
    chosen = representatives(records, REPRESENTATION, results_dir)
    parts = []
    for name, record in chosen.items():
        arrays = store.arrays(record.run_id, REPRESENTATION)
        pick = spread(len(arrays["z"]), max_points)
        z, labels = arrays["z"][pick], arrays["labels"][pick]
        classes = labels if labels.ndim == 1 else np.where(
            labels.any(axis=1), labels.argmax(axis=1), -1)
        embedding = tsne(z, perplexity, seed)
        parts.append(pd.DataFrame({"series": name, "label": record.label,
                                   "point": np.arange(len(z)), "x": embedding[:, 0],
                                   "y": embedding[:, 1], "cls": classes}))
    return pd.concat(parts, ignore_index=True)


def tsne(z: np.ndarray, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """scikit-learn's t-SNE of ``z`` (n, d) to (n, 2), PCA-initialised (the perplexity is capped
    below n / 3 so that small test sets work)."""
    perplexity = min(perplexity, max(1.0, (len(z) - 1) / 3.0))
    return TSNE(n_components=2, perplexity=perplexity, init="pca",
                random_state=seed).fit_transform(z.astype(np.float64))


@styled
def plot_tsne(embeddings: pd.DataFrame):
    """One panel per series: the t-SNE points coloured by class."""
    order = list(dict.fromkeys(embeddings["series"]))
    classes = np.unique(embeddings["cls"])
    colours = _class_colours(classes)
    fig, axes = panels(len(order), panel_size=(2.6, 2.6))
    for ax, name in zip(axes, order):
        part = embeddings[embeddings["series"] == name]
        ax.scatter(part["x"], part["y"], c=[colours[c] for c in part["cls"]], s=3, linewidths=0)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("t-SNE 1")
    axes[0].set_ylabel("t-SNE 2")
    handles = [Line2D([], [], marker="o", linestyle="", color=colours[c], markersize=4,
                      label=str(c) if c >= 0 else "none") for c in classes]
    fig.legend(handles=handles, title="class", loc="center left", bbox_to_anchor=(1.0, 0.5),
               frameon=False)
    fig.tight_layout()
    return fig


def _class_colours(classes: np.ndarray) -> dict[int, Any]:
    named = [c for c in classes if c >= 0]
    cmap = colormaps["tab10" if len(named) <= 10 else "tab20" if len(named) <= 20 else "turbo"]
    colours = {c: cmap(k / max(len(named) - 1, 1)) if cmap.N > 20 else cmap(k % cmap.N)
               for k, c in enumerate(named)}
    colours[-1] = (0.6, 0.6, 0.6, 1.0)
    return colours
