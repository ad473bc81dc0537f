"""One look for every table and figure: the order of models, a colour, line style and marker per
model that stay the same across figures (seaborn's colour-blind palette), and figures sized in
inches at the width they are printed at.

A figure is drawn at its final size (``width`` inches: 6.75 for a two-column paper's text width,
3.25 for one column), so its fonts (8 pt and up) are the sizes the reader sees; LaTeX should
include it without scaling. Legends sit outside the panels (constrained layout makes room), and
panels carry letters (a), (b), ... in their titles.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import seaborn as sns
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.colors import to_hex, to_rgb

# Bare Figures, never pyplot: no window, no global figure registry (works on clusters and in CI);
# saving picks the Agg canvas for PNG and the vector PDF canvas for PDF.
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.legend import Legend
from matplotlib.textpath import TextToPath

if TYPE_CHECKING:
    import pandas as pd

DOUBLE_COLUMN = 6.75  # inches: the text width of a two-column paper (a figure* spans it)
SINGLE_COLUMN = 3.25  # inches: one column
MIN_FONT_PT = 8.0
MAX_PANELS_PER_ROW = 4
MIN_PANEL_INCHES = 1.55  # the narrowest panel whose tick labels and title stay readable

# The paper's models in the order of its tables (Tables 1 and 2); other labels follow by name.
MODEL_ORDER = (
    "M-xO",
    "CCA",
    "DCCA",
    "DCCAE",
    "VCCA",
    "VCCA-private",
    "MVAE",
    "MMVAE-ELBO",
    "MMVAE-IWAE",
    "CMMD",
)

PALETTE = tuple(sns.color_palette("colorblind", 10).as_hex())
LINESTYLES: tuple[Any, ...] = ("-", "--", "-.", ":", (0, (5, 1.5)), (0, (3, 1, 1, 1, 1, 1)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")


@dataclass(frozen=True)
class SeriesStyle:
    """How one model is drawn: a colour, a line style and a marker."""

    colour: str
    linestyle: Any
    marker: str

    def line(self, colour: str | None = None) -> dict[str, Any]:
        """Keyword arguments of ``Axes.plot`` (``colour`` overrides, e.g. a grid point's shade)."""
        return {"color": colour or self.colour, "linestyle": self.linestyle, "marker": self.marker}


# Every paper model differs from each other one in colour, and the models whose curves tend to
# coincide (VCCA / VCCA-private, MMVAE-ELBO / MMVAE-IWAE, DCCA / DCCAE) also in line and marker.
MODEL_STYLES = {
    "CMMD": SeriesStyle(PALETTE[0], "-", "o"),
    "M-xO": SeriesStyle(PALETTE[9], (0, (1, 1)), "x"),
    "CCA": SeriesStyle(PALETTE[8], "-.", "v"),
    "DCCA": SeriesStyle(PALETTE[5], "--", "<"),
    "DCCAE": SeriesStyle(PALETTE[6], ":", ">"),
    "VCCA": SeriesStyle(PALETTE[2], "-", "s"),
    "VCCA-private": SeriesStyle(PALETTE[7], "--", "D"),
    "MVAE": SeriesStyle(PALETTE[1], "-.", "^"),
    "MMVAE-ELBO": SeriesStyle(PALETTE[4], ":", "P"),
    "MMVAE-IWAE": SeriesStyle(PALETTE[3], "--", "X"),
    # Beyond the paper: the colours of CCA, DCCA and DCCAE, which have no posteriors and so never
    # share a collapse figure with them, and markers of their own
    "MoPoE": SeriesStyle(PALETTE[8], "--", "h"),
    "MMVAE+": SeriesStyle(PALETTE[5], "-.", "*"),
    "JMVAE": SeriesStyle(PALETTE[6], "-", "p"),
}

# Paper settings on top of seaborn's "ticks" style and "paper" context. Every font is at least
# MIN_FONT_PT at the printed size; TrueType (Type 42) fonts are embedded in the PDF, as journals
# ask.
PAPER_RC = {
    **sns.axes_style("ticks"),
    **sns.plotting_context("paper"),
    "font.sans-serif": ["DejaVu Sans", "Arial", "Liberation Sans", "sans-serif"],
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "font.size": 8,
    "axes.titlesize": 8.5,
    "axes.labelsize": 8,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "figure.titlesize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": cycler(color=PALETTE),
    "image.cmap": "viridis",
    "lines.linewidth": 1.2,
    "lines.markersize": 3.5,
    "savefig.dpi": 300,
    "figure.dpi": 100,
    "figure.constrained_layout.h_pad": 0.03,
    "figure.constrained_layout.w_pad": 0.03,
}


def model_rank(label: str) -> tuple[int, str]:
    """Sort key putting the paper's models in the paper's order, then the others by name."""
    base = label.split(" (")[0]
    return (MODEL_ORDER.index(base) if base in MODEL_ORDER else len(MODEL_ORDER), label)


def model_style(label: str) -> SeriesStyle:
    """The style of model ``label``: a paper model keeps its own; another label gets a stable one
    (picked by a hash of the label, so the same in every figure)."""
    if label in MODEL_STYLES:
        return MODEL_STYLES[label]
    digest = int(hashlib.sha256(label.encode()).hexdigest(), 16)
    return SeriesStyle(
        PALETTE[digest % len(PALETTE)],
        LINESTYLES[digest % len(LINESTYLES)],
        MARKERS[digest % len(MARKERS)],
    )


def model_colour(label: str) -> str:
    """The colour of model ``label``."""
    return model_style(label).colour


def shade(colour: str, position: int, count: int) -> str:
    """The ``position``-th of ``count`` shades of ``colour``, from light to full (for the points
    of one model's grid, e.g. omega = 0, 0.1, ..., 1)."""
    if count <= 1:
        return to_hex(colour)
    weight = 0.35 + 0.65 * position / (count - 1)
    red, green, blue = (1 - weight * (1 - c) for c in to_rgb(colour))
    return to_hex((red, green, blue))


def class_palette(count: int) -> list[str]:
    """``count`` distinguishable colours for classes: the colour-blind palette up to 10, evenly
    spaced hues (seaborn's husl) beyond."""
    if count <= len(PALETTE):
        return list(PALETTE[:count])
    return list(sns.color_palette("husl", count).as_hex())


def styled(draw: Callable[..., Figure]) -> Callable[..., Figure]:
    """Decorator: ``draw`` builds its figure under the paper style."""

    @functools.wraps(draw)
    def with_style(*args, **kwargs):
        with matplotlib.rc_context(PAPER_RC):
            return draw(*args, **kwargs)

    return with_style


def check_width(width: float) -> float:
    """``width`` in inches, refused outside 1 to 20 inches (a figure for a page)."""
    from mmbench.report.runs import ReportError

    if not 1.0 <= width <= 20.0:
        raise ReportError(
            f"--width {width}: a figure's width in inches lies in [1, 20] "
            f"(a column: {SINGLE_COLUMN}, the text width: {DOUBLE_COLUMN})"
        )
    return width


def panels_per_row(width: float) -> int:
    """How many panels a row of ``width`` inches holds: at most MAX_PANELS_PER_ROW, each at
    least MIN_PANEL_INCHES wide (4 at 6.75 inches, 2 at 3.25)."""
    return max(1, min(MAX_PANELS_PER_ROW, int(width // MIN_PANEL_INCHES)))


def panel_grid(
    count: int,
    width: float,
    aspect: float = 0.8,
    columns: int | None = None,
    extra_height: float = 0.0,
) -> tuple[Figure, list[Axes]]:
    """A figure ``width`` inches wide with ``count`` panels on rows of at most ``columns``
    (default: :func:`panels_per_row`), each panel ``aspect`` times as high as it is wide, plus
    ``extra_height`` inches (e.g. for a legend under the panels). Call inside :func:`styled`."""
    columns = max(1, min(count, columns or panels_per_row(width)))
    rows = math.ceil(count / columns)
    height = rows * (width / columns) * aspect + extra_height
    # a bare Figure, not pyplot's: nothing to close, no figure kept alive after it is saved
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for extra in axes.ravel()[count:]:
        extra.set_visible(False)
    return fig, list(axes.ravel()[:count])


def first_column(ax: Axes) -> bool:
    """Whether panel ``ax`` is in the first column of its grid (where the y label goes)."""
    spec = ax.get_subplotspec()
    return spec is None or spec.is_first_col()


def letter(index: int) -> str:
    """The panel letter of the ``index``-th panel: "(a)", "(b)", ..., "(z)", "(aa)", ..."""
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(ord("a") + rest) + name
    return f"({name})"


def panel_title(ax: Axes, index: int, title: str) -> None:
    """Title the ``index``-th panel "(a) title", left-aligned."""
    ax.set_title(f"{letter(index)} {title}".rstrip(), loc="left")


def text_width(text: str, size: float) -> float:
    """The width in inches of ``text`` set in the paper font at ``size`` points."""
    with matplotlib.rc_context(PAPER_RC):
        width, _, _ = TextToPath().get_text_width_height_descent(
            text, FontProperties(size=size), ismath="$" in text
        )
    return width / 72


def legend_columns(names: Sequence[str], width: float, handle_length: float = 2.0) -> int:
    """How many legend entries fit side by side in ``width`` inches: each entry is its handle
    (``handle_length`` em), the gap to its text (0.8 em), the longest text and the gap to the
    next column (2 em), matplotlib's legend defaults at the legend's font size."""
    size = PAPER_RC["legend.fontsize"]
    em = size / 72
    text = max((text_width(n, size) for n in names), default=0.0)
    entry = (handle_length + 0.8 + 2.0) * em + text
    room = width - 2 * (0.4 + 0.5) * em + 2.0 * em  # border pads; no gap after the last column
    return max(1, min(len(names), int(room // entry)))


def legend_height(entries: int, columns: int) -> float:
    """The height in inches of a legend of ``entries`` in ``columns`` columns."""
    return math.ceil(entries / columns) * PAPER_RC["legend.fontsize"] * 1.5 / 72 + 0.1


def legend_below(
    fig: Figure,
    handles: dict[str, Any],
    columns: int,
    title: str | None = None,
    handle_length: float = 2.0,
) -> Legend:
    """One legend under the panels (outside every axes: constrained layout makes room)."""
    return fig.legend(
        list(handles.values()),
        list(handles),
        loc="outside lower center",
        ncol=columns,
        frameon=False,
        title=title,
        handlelength=handle_length,
    )


def collect_handles(axes: Iterable[Axes]) -> dict[str, Any]:
    """{name: handle} of every labelled artist of ``axes``, each name once, in drawing order."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            if not name.startswith("_"):
                handles.setdefault(name, handle)
    return handles


def save_figure(
    fig: Figure, stem: Path, values: pd.DataFrame | None = None, title: str | None = None
) -> list[Path]:
    """Write ``stem``.pdf (vector, TrueType fonts embedded), ``stem``.png and, given ``values``,
    ``stem``.csv (the values drawn); the PDF's metadata title is ``title``. Returns the paths.
    The files keep the figure's size in inches (no cropping), so a figure drawn for 3.25 inches
    is 3.25 inches wide."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    pdf, png, csv = (stem.with_name(f"{stem.name}.{suffix}") for suffix in ("pdf", "png", "csv"))
    with matplotlib.rc_context(PAPER_RC):
        fig.savefig(pdf, metadata={"Title": title or stem.name, "Creator": "mmbench"})
        fig.savefig(png)
    paths = [pdf, png]
    if values is not None:
        values.to_csv(csv, index=False)
        paths.append(csv)
    return paths
