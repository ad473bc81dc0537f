"""The critical-difference diagram (Demšar 2006, Fig. 1) of a rank analysis.

An axis of average ranks (1, the best, on the left), each model joined to its average rank by a
line to its name (the better half on the left, the other half on the right), the critical
difference as a bar above the axis, and a thick bar under every group of models whose average
ranks differ by less than the critical difference (no significant difference among them).
"""

from __future__ import annotations

import math

from matplotlib.figure import Figure
from matplotlib.textpath import TextPath

from mmbench.report.ranks import RankResult
from mmbench.report.style import styled

LINE_INCHES = 0.2  # vertical step between two names
FONT_SIZE = 8
MIN_AXIS_SHARE = 0.4  # names lose their average rank rather than squeeze the axis below this


def _inches(text: str) -> float:
    """The width of ``text`` at FONT_SIZE, in inches."""
    return TextPath((0, 0), text, size=FONT_SIZE).get_extents().width / 72


@styled
def plot_cd(result: RankResult, width: float = 6.75) -> Figure:
    """The diagram, ``width`` inches wide (its height follows the number of models)."""
    ranked = result.average_ranks
    names = [f"{name} ({rank:.2f})" for name, rank in ranked.items()]
    if width - 2 * _margin(names) < MIN_AXIS_SHARE * width:
        names = [str(name) for name in ranked.index]
    k = len(names)
    half = math.ceil(k / 2)
    groups = result.groups()
    height = 0.75 + LINE_INCHES * (half + 1) + 0.08 * len(groups)
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)  # inches from the top

    left, right = _margin(names), width - _margin(names)

    def x(rank: float) -> float:
        return left + (rank - 1) / max(k - 1, 1) * (right - left)

    axis_y = 0.55
    ax.plot([left, right], [axis_y, axis_y], color="black", linewidth=0.8)
    for tick in range(1, k + 1):
        ax.plot([x(tick), x(tick)], [axis_y - 0.05, axis_y], color="black", linewidth=0.8)
        ax.text(x(tick), axis_y - 0.08, str(tick), ha="center", va="bottom", fontsize=FONT_SIZE)
    cd_end = min(1 + result.cd, k)
    ax.plot([x(1), x(cd_end)], [0.15, 0.15], color="black", linewidth=1.2)
    for end in (1, cd_end):
        ax.plot([x(end), x(end)], [0.11, 0.19], color="black", linewidth=0.8)
    ax.text(
        (x(1) + x(cd_end)) / 2,
        0.1,
        f"CD = {result.cd:.2f}",
        ha="center",
        va="bottom",
        fontsize=FONT_SIZE,
    )

    bars_y = axis_y + 0.1
    for position, group in enumerate(groups):
        y = bars_y + 0.08 * position
        ax.plot(
            [x(ranked[group[0]]) - 0.04, x(ranked[group[-1]]) + 0.04],
            [y, y],
            color="black",
            linewidth=2.5,
            solid_capstyle="round",
        )
    names_y = bars_y + 0.08 * len(groups) + LINE_INCHES
    for position, rank in enumerate(ranked.to_numpy()):
        on_left = position < half
        row = position if on_left else k - 1 - position
        y = names_y + LINE_INCHES * row
        end = left - 0.1 if on_left else right + 0.1
        ax.plot([x(rank), x(rank), end], [axis_y, y, y], color="black", linewidth=0.8)
        ax.text(
            end - 0.05 if on_left else end + 0.05,
            y,
            names[position],
            ha="right" if on_left else "left",
            va="center",
            fontsize=FONT_SIZE,
        )
    return fig


def _margin(names: list[str]) -> float:
    """Room for the longest name beside the axis, in inches."""
    return 0.25 + max(_inches(name) for name in names)
