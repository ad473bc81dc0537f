"""Checks every paper figure must pass, read from the saved matplotlib Figure objects: its size in
inches, the size of every text at that size, and a legend clear of the panels' data areas."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
from matplotlib.text import Text

MIN_FONT_PT = 8.0


def visible_texts(fig) -> list[Text]:
    """Every drawn, non-empty text of ``fig`` (titles, labels, tick labels, legend entries);
    tick labels of ticks outside the axis' view limits exist but are not drawn."""
    fig.draw_without_rendering()
    undrawn = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            slack = 1e-9 * max(1.0, abs(high - low))
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not low - slack <= tick.get_loc() <= high + slack:
                    undrawn.update({id(tick.label1), id(tick.label2)})
    return [
        t
        for t in fig.findobj(Text)
        if t.get_visible() and t.get_text().strip() and _shown(t) and id(t) not in undrawn
    ]


def _shown(text: Text) -> bool:
    axes = text.axes
    return axes is None or axes.get_visible()


def check_paper_ready(fig, width: float) -> None:
    """``fig`` is ``width`` inches wide, every text is at least 8 pt and overlaps no other,
    every legend lies outside every visible panel and inside the figure."""
    np.testing.assert_allclose(fig.get_size_inches()[0], width)
    small = [
        (t.get_text(), t.get_fontsize())
        for t in visible_texts(fig)
        if t.get_fontsize() < MIN_FONT_PT
    ]
    assert not small, f"texts under {MIN_FONT_PT} pt: {small[:5]}"
    for legend in fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]:
        box = legend.get_window_extent()
        for ax in fig.axes:
            if ax.get_visible() and ax.has_data():
                assert not box.overlaps(ax.get_window_extent()), "a legend covers a panel"
    boxes = [(t.get_text(), t.get_window_extent()) for t in visible_texts(fig)]
    for k, (text, box) in enumerate(boxes):
        for other, other_box in boxes[k + 1 :]:
            assert not box.overlaps(other_box), f"texts {text!r} and {other!r} overlap"
    figure_box = fig.bbox
    for legend in fig.legends:  # and it is inside the figure (not cut off)
        box = legend.get_window_extent()
        assert box.x0 >= figure_box.x0 - 1 and box.x1 <= figure_box.x1 + 1
        assert box.y0 >= figure_box.y0 - 1 and box.y1 <= figure_box.y1 + 1


def panel_titles(fig) -> list[str]:
    """The left titles of the visible panels, in order."""
    return [
        ax.get_title(loc="left") for ax in fig.axes if ax.get_visible() and ax.get_title(loc="left")
    ]


def grid_shape(axes) -> tuple[int, int]:
    """(rows, columns) of the panels as laid out: distinct tops and lefts of their positions."""
    positions = [ax.get_position() for ax in axes]
    rows = len({round(p.y1, 3) for p in positions})
    columns = len({round(p.x0, 3) for p in positions})
    return rows, columns


def check_fonts_embedded(pdf: Path) -> None:
    """Every font of ``pdf`` is embedded and TrueType (pdffonts when installed, else the font
    objects of the file itself): no Type 3 bitmaps, no referenced-only fonts."""
    if shutil.which("pdffonts"):
        lines = subprocess.run(
            ["pdffonts", str(pdf)], capture_output=True, text=True, check=True
        ).stdout.splitlines()[2:]
        assert lines and all(" yes " in line and "Type 3" not in line for line in lines), lines
        return
    content = pdf.read_bytes()
    assert b"/FontFile2" in content  # an embedded TrueType font program
    assert not re.search(rb"/Subtype\s*/Type3", content)
