"""Posterior-collapse curves (paper Fig. 2 and App. E) from the stored posterior statistics.

Every finished run of a model that declares the "posteriors" capability keeps ``posteriors.npz``
(test-split means and log-variances of z|xO and z|xM, and the decoder's log-variance of xM), so
any epsilon grid or delta is computed from those statistics, never by retraining.

A latent dimension is collapsed at eps when at least 1 - delta of the test points have a KL below
eps; a curve is the share of collapsed dimensions along an eps grid. The four panels:

    kl_xO_prior       KL[z|xO || N(0, I)]   the representation available at test time vs the prior
    kl_xM_prior       KL[z|xM || N(0, I)]   the representation that sees the missing modalities
    kl_xO_xM          KL[z|xO || z|xM]      whether z|xO carries what z|xM knows about xM
    decoder_variance  sigma^2 of p(xM|xO,z) per feature instead of a KL, on its own eps range
                      (by default from 0 to the largest variance that decides a curve)

The figure is drawn at the width it is printed at, as a row of four panels or a 2 x 2 grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mmbench.metrics import (
    DELTA,
    collapse_curve,
    collapse_thresholds,
    kl_between,
    kl_to_standard_normal,
)
from mmbench.records import Record
from mmbench.report.runs import ReportError, ordered_series, series_names
from mmbench.report.style import (
    DOUBLE_COLUMN,
    MIN_PANEL_INCHES,
    PAPER_RC,
    collect_handles,
    first_column,
    legend_below,
    legend_columns,
    legend_height,
    model_style,
    panel_grid,
    panel_title,
    shade,
    styled,
)
from mmbench.stats import PosteriorStats
from mmbench.store import POSTERIORS, RunStore

LAYOUTS = ("row", "2x2")


@dataclass(frozen=True)
class Panel:
    key: str
    title: str
    xlabel: str


PANELS = (
    Panel("kl_xO_prior", r"KL[$z|x_O$ ‖ N(0, I)]", "ε (nats)"),
    Panel("kl_xM_prior", r"KL[$z|x_M$ ‖ N(0, I)]", "ε (nats)"),
    Panel("kl_xO_xM", r"KL[$z|x_O$ ‖ $z|x_M$]", "ε (nats)"),
    Panel("decoder_variance", "decoder variance", r"ε (variance of $x_M$)"),
)


def eps_grid(spec: str, points: int) -> np.ndarray:
    """ "0:6" with 40 points -> numpy.linspace(0, 6, 40) (the official CMMD grid)."""
    try:
        start, stop = (float(part) for part in spec.split(":"))
    except ValueError:
        raise ReportError(f"eps range {spec!r}: expected START:STOP, e.g. 0:6") from None
    if stop <= start or points < 2:
        raise ReportError(
            f"eps range {spec!r} with {points} points: need STOP > START and at least 2 points"
        )
    return np.linspace(start, stop, points)


def panel_values(stats: PosteriorStats) -> dict[str, np.ndarray]:
    """Per test point and dimension (n, d), the quantity each panel thresholds; panels the model
    has no statistics for are absent."""
    values = {"kl_xO_prior": kl_to_standard_normal(stats.z_given_xO)}
    if stats.z_given_xM is not None:
        values["kl_xM_prior"] = kl_to_standard_normal(stats.z_given_xM)
        # Comparable only in one latent space (VCCA-private's z and h2 may differ in size).
        if stats.z_given_xM.mean.shape == stats.z_given_xO.mean.shape:
            values["kl_xO_xM"] = kl_between(stats.z_given_xO, stats.z_given_xM)
    if stats.decoder_logvar is not None:
        values["decoder_variance"] = np.exp(stats.decoder_logvar)
    return values


def collapse_curves(
    results_dir: str | Path,
    records: list[Record],
    eps: np.ndarray,
    variance_eps: np.ndarray | None = None,
    delta: float = DELTA,
    points: int = 40,
) -> pd.DataFrame:
    """Long table of every run's curves: run_id, label, series, seed, panel, eps, share.

    The KL panels use ``eps`` (nats), the decoder-variance panel ``variance_eps``; None: a grid
    of ``points`` from 0 to the largest decoder variance that decides a curve (the largest
    per-feature threshold of :func:`mmbench.metrics.collapse_thresholds` over the runs), so that
    the axis fits the data's scale (pixels in [0, 1] or z-scored features alike) and every curve
    ends at 1. Runs without posteriors (models without the capability) are left out; none at all
    is an error.
    """
    store = RunStore(results_dir)
    names = series_names(records)
    values = [
        (record, panel_values(PosteriorStats.from_arrays(store.arrays(record.run_id, POSTERIORS))))
        for record in records
        if store.has(record.run_id, POSTERIORS)
    ]
    if not values:
        raise ReportError(
            f"{results_dir}: no run has {POSTERIORS}.npz (models with the "
            "'posteriors' capability write it)"
        )
    if variance_eps is None:
        variance_eps = variance_grid(
            [v["decoder_variance"] for _, v in values if "decoder_variance" in v], delta, points
        )
    parts = []
    for record, panels in values:
        for panel, value in panels.items():
            grid = variance_eps if panel == "decoder_variance" else eps
            parts.append(
                pd.DataFrame(
                    {
                        "run_id": record.run_id,
                        "label": record.label,
                        "series": names[record.run_id],
                        "seed": record.coordinates.seed,
                        "panel": panel,
                        "eps": grid,
                        "share": collapse_curve(value, grid, delta),
                    }
                )
            )
    return pd.concat(parts, ignore_index=True)


def variance_grid(variances: list[np.ndarray], delta: float, points: int) -> np.ndarray:
    """``points`` eps from 0 to the largest per-feature collapse threshold of the decoder
    ``variances`` ((n, d) arrays, one per run); [0, 1] when there are none."""
    top = max((float(collapse_thresholds(v, delta).max()) for v in variances), default=1.0)
    return np.linspace(0.0, top if top > 0 else 1.0, points)


def mean_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """Per series, panel and eps: the share averaged over the series' runs (seeds, data points),
    its std (ddof=1; 0 for one run) and the number of runs."""
    grouped = curves.groupby(["label", "series", "panel", "eps"], sort=False)["share"]
    out = grouped.agg(share="mean", share_std="std", runs="count").reset_index()
    out["share_std"] = out["share_std"].fillna(0.0)
    return out


ROW_MIN_WIDTH = len(PANELS) * MIN_PANEL_INCHES  # inches: four readable panels side by side


def default_layout(width: float) -> str:
    """ "row" (four panels side by side) where they fit, "2x2" below (e.g. one column)."""
    return "row" if width >= ROW_MIN_WIDTH else "2x2"


@styled
def plot_collapse(
    curves: pd.DataFrame,
    delta: float = DELTA,
    width: float = DOUBLE_COLUMN,
    layout: str | None = None,
) -> Figure:
    """The four panels of paper Fig. 2, one curve per series: the mean over its runs, with a
    ± std band (clipped to [0, 1]) when there are several. ``curves`` is :func:`mean_curves`'
    table; ``width`` in inches; ``layout`` "row" or "2x2" (None: :func:`default_layout`)."""
    layout = layout or default_layout(width)
    if layout not in LAYOUTS:
        raise ReportError(f"--layout {layout!r}; allowed: {', '.join(LAYOUTS)}")
    if layout == "row" and width < ROW_MIN_WIDTH:
        raise ReportError(
            f"--layout row at --width {width}: four panels side by side need "
            f"{ROW_MIN_WIDTH:.1f} inches or more; use --layout 2x2"
        )
    order = ordered_series(curves["series"])
    columns = legend_columns(order, width)
    fig, axes = panel_grid(
        len(PANELS),
        width,
        aspect=0.85,
        columns=4 if layout == "row" else 2,
        extra_height=legend_height(len(order), columns) + 0.25,
    )
    groups = _by_label(order, curves)
    for index, (ax, panel) in enumerate(zip(axes, PANELS)):
        part = curves[curves["panel"] == panel.key]
        drawn = 0
        for label, members in groups:
            style = model_style(label)
            for position, name in enumerate(members):
                line = part[part["series"] == name].sort_values("eps")
                if line.empty:
                    continue
                colour = shade(style.colour, position, len(members))
                eps, share = line["eps"].to_numpy(), line["share"].to_numpy()
                # a few markers per curve, staggered between series so that they do not coincide
                step = max(1, len(eps) // 6)
                ax.plot(
                    eps,
                    share,
                    label=name,
                    markevery=(drawn * step // len(order), step),
                    **style.line(colour),
                )
                drawn += 1
                if (line["runs"] > 1).any():
                    spread = line["share_std"].to_numpy()
                    ax.fill_between(
                        eps,
                        np.clip(share - spread, 0, 1),
                        np.clip(share + spread, 0, 1),
                        color=colour,
                        alpha=0.15,
                        linewidth=0,
                    )
        if part.empty:
            ax.text(
                0.5,
                0.5,
                "no model has\nthese statistics",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="0.4",
            )
        panel_title(ax, index, panel.title)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylim(-0.02, 1.02)
        if not first_column(ax):
            ax.tick_params(labelleft=False)
    fig.supylabel(
        f"share of dimensions with\n≥ {1 - delta:.0%} of points below ε",
        fontsize=PAPER_RC["axes.labelsize"],
    )
    legend_below(fig, collect_handles(axes), columns)
    return fig


def _by_label(order: list[str], curves: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """[(label, [its series in order])] in the order of ``order``."""
    label_of = dict(zip(curves["series"], curves["label"]))
    groups: dict[str, list[str]] = {}
    for name in order:
        groups.setdefault(label_of[name], []).append(name)
    return list(groups.items())
