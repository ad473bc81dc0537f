"""A :class:`~mmbench.report.tables.ResultTable` as markdown, LaTeX or CSV.

Markdown and LaTeX show the same grid: models as rows and data points as columns, or the
transpose (``transpose=True``: data points as rows, the layout of earlier mmbench versions). The
best model is bold, the models not significantly worse underlined (markdown: ``<u>``), both
spanning mean and ± std; a dagger follows a cell whose runs hit the epoch cap. The paper's
figures are in italics; reference rows are set apart (LaTeX: a rule; markdown: a "no model"
line; transposed: a gap before their columns). LaTeX needs ``\\usepackage{booktabs}``;
``standalone=True`` writes a whole document that compiles with pdflatex (7-inch text block,
so an overfull line means the table does not fit a double-column page). CSV is long form, one
line per cell, with the paired test and its p-value.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mmbench.report.params import TIMES, Budget, ChosenParam
from mmbench.report.ranks import RankResult
from mmbench.report.runs import ReportError
from mmbench.report.significance import TEST_NAMES
from mmbench.report.tables import AVERAGE, CAP_MARKS, Cell, ResultTable, Row

FORMATS = ("markdown", "latex", "csv")
MISSING = "—"
NO_MODEL = "no model"
EN_DASH, ALPHA = "\N{EN DASH}", "\N{GREEK SMALL LETTER ALPHA}"
# A document for --standalone: booktabs, and a 7-inch text block (a double-column page).
LATEX_DOCUMENT = (
    r"""\documentclass[10pt]{article}
\usepackage{booktabs}
\setlength{\textwidth}{7in}
\setlength{\oddsidemargin}{-0.25in}
\setlength{\evensidemargin}{-0.25in}
\begin{document}
""",
    r"""\end{document}
""",
)


@dataclass(frozen=True)
class _Line:
    """One line of the grid: its title, kind (model, paper, reference, data) and cells."""

    title: str
    kind: str
    cells: list[Cell | None]


@dataclass(frozen=True)
class _Grid:
    """What markdown and LaTeX draw: the corner, column titles and kinds, and the lines."""

    corner: str
    titles: list[str]
    kinds: list[str]
    lines: list[_Line]


def _grid(table: ResultTable, transpose: bool) -> _Grid:
    if not transpose:
        return _Grid(
            "model",
            [table.header(c) for c in table.columns],
            ["data"] * len(table.columns),
            [
                _Line(row.name, row.kind, [row.cells.get(c) for c in table.columns])
                for row in table.rows
            ],
        )
    return _Grid(
        table.names.other(table.axis) if table.axis else "data",
        [row.name for row in table.rows],
        [row.kind for row in table.rows],
        [
            _Line(table.header(c), "data", [row.cells.get(c) for row in table.rows])
            for c in table.columns
        ],
    )


def _number(cell: Cell, table: ResultTable) -> str:
    """ "13.80 ± 1.24"; a single seed without ±; the paper's figure as published."""
    if cell.n == 0:  # as published (CSV values read back as floats: 3.0 stays "3.0")
        text = format(cell.mean, "g")
        return text if any(c in text for c in ".en") else text + ".0"
    text = f"{cell.mean:.{table.digits}f}"
    if not math.isnan(cell.std):
        text += f" ± {cell.std:.{table.digits}f}"
    return text


def _fewer(cell: Cell, table: ResultTable) -> str:
    return f" (n={cell.n})" if 0 < cell.n < table.n_seeds else ""


def _caps(cell: Cell) -> str:
    return "".join(CAP_MARKS[reason] for reason in cell.stopped)


def to_markdown(table: ResultTable, transpose: bool = False) -> str:
    grid = _grid(table, transpose)
    gap = _gap_before(grid.kinds, "reference")
    titles = [f"*{t}*" if k == "paper" else t for t, k in zip(grid.titles, grid.kinds)]
    if gap is not None:
        titles.insert(gap, "")
    lines = [
        f"**{table.caption}**",
        "",
        "| " + " | ".join([grid.corner, *titles]) + " |",
        "|:--" + "|--:" * len(titles) + "|",
    ]
    for position, line in enumerate(grid.lines):
        if line.kind == "reference" and (
            position == 0 or grid.lines[position - 1].kind != "reference"
        ):
            lines.append("| " + " | ".join([f"*{NO_MODEL}*"] + [""] * len(titles)) + " |")
        kinds = grid.kinds if transpose else [line.kind] * len(line.cells)
        texts = [_markdown_cell(cell, kind, table) for cell, kind in zip(line.cells, kinds)]
        if gap is not None:
            texts.insert(gap, "")
        title = f"*{line.title}*" if line.kind == "paper" else line.title
        lines.append("| " + " | ".join([title, *texts]) + " |")
    return "\n".join(lines) + "\n"


def _markdown_cell(cell: Cell | None, kind: str, table: ResultTable) -> str:
    if cell is None:
        return MISSING
    text = _number(cell, table)
    if kind == "paper":
        text = f"*{text}*"
    elif cell.mark == "best":
        text = f"**{text}**"
    elif cell.mark == "tied":
        text = f"<u>{text}</u>"
    return text + _caps(cell) + _fewer(cell, table)


def _gap_before(kinds: list[str], kind: str) -> int | None:
    """The position of the first column of ``kind`` (None: none, or it is the first)."""
    position = next((i for i, k in enumerate(kinds) if k == kind), None)
    return position if position else None


def latex_escape(text: str) -> str:
    for char, escaped in (
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("_", r"\_"),
        ("#", r"\#"),
        ("$", r"\$"),
        ("{", r"\{"),
        ("}", r"\}"),
        ("±", r"$\pm$"),
        ("≥", r"$\geq$"),
        (TIMES, r"$\times$"),
        ("→", r"$\to$"),
        ("—", "---"),
        (EN_DASH, "--"),
        ("χ²", r"$\chi^2$"),
        (ALPHA, r"$\alpha$"),
        ("†", r"$^\dagger$"),
        ("‡", r"$^\ddagger$"),
    ):
        text = text.replace(char, escaped)
    return text


def to_latex(table: ResultTable, transpose: bool = False) -> str:
    """A booktabs table with ``\\label{tab:<suite>-<metric>}``."""
    grid = _grid(table, transpose)
    gap = _gap_before(grid.kinds, "reference")
    spec = "l" + "".join((r"@{\qquad}" if i == gap else "") + "r" for i in range(len(grid.titles)))
    titles = [
        rf"\textit{{{latex_escape(t)}}}" if k == "paper" else latex_escape(t)
        for t, k in zip(grid.titles, grid.kinds)
    ]
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(table.caption)}}}",
        rf"\label{{{table.label}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join([latex_escape(grid.corner), *titles]) + r" \\",
        r"\midrule",
    ]
    for position, line in enumerate(grid.lines):
        previous = grid.lines[position - 1] if position else None
        if previous is not None and (
            (line.kind == "reference" and previous.kind != "reference")
            or (transpose and line.title == AVERAGE)
        ):
            lines.append(r"\midrule")
        kinds = grid.kinds if transpose else [line.kind] * len(line.cells)
        texts = [_latex_cell(cell, kind, table) for cell, kind in zip(line.cells, kinds)]
        title = latex_escape(line.title)
        lines.append(
            " & ".join([rf"\textit{{{title}}}" if line.kind == "paper" else title, *texts]) + r" \\"
        )
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _latex_cell(cell: Cell | None, kind: str, table: ResultTable) -> str:
    if cell is None:
        return latex_escape(MISSING)
    text = latex_escape(_number(cell, table))
    if kind == "paper":
        text = rf"\textit{{{text}}}"
    elif cell.mark == "best":  # \boldmath: the ± (math) is bold too
        text = rf"\textbf{{\boldmath {text}}}"
    elif cell.mark == "tied":
        text = rf"\underline{{{text}}}"
    return text + latex_escape(_caps(cell) + _fewer(cell, table))


def to_csv(tables: list[ResultTable]) -> str:
    """One line per cell: suite, dataset, metric, row, kind (model, paper, reference), column,
    mean, std, n (seeds; 0 for the paper's figure), mark (best, tied or empty), the paired
    test against the column's best model (test, pairs, p_value) and ``stopped`` (the caps some
    of its runs hit, e.g. "epochs")."""
    lines = []
    for table in tables:
        for row in table.rows:
            for column, cell in row.cells.items():
                lines.append(_csv_line(table, row, column, cell))
    frame = pd.DataFrame(lines)
    if len(frame):
        frame["pairs"] = frame["pairs"].astype("Int64")
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue()


def _csv_line(table: ResultTable, row: Row, column: str, cell: Cell) -> dict:
    comparison = cell.comparison
    return {
        "suite": table.suite,
        "dataset": table.dataset,
        "metric": table.metric,
        "row": row.name,
        "kind": row.kind,
        "column": column,
        "mean": cell.mean,
        "std": cell.std,
        "n": cell.n,
        "mark": cell.mark,
        "test": "" if comparison is None else TEST_NAMES[comparison.test],
        "pairs": None if comparison is None else comparison.n_pairs,
        "p_value": None if comparison is None else comparison.p_value,
        "stopped": " ".join(cell.stopped),
    }


def render(
    tables: list[ResultTable], fmt: str, *, transpose: bool = False, standalone: bool = False
) -> str:
    """All ``tables`` as one text in ``fmt`` (markdown, latex or csv); ``standalone``: a whole
    LaTeX document."""
    _check(fmt, standalone)
    if fmt == "csv":
        return to_csv(tables)
    writer = to_markdown if fmt == "markdown" else to_latex
    text = "\n".join(writer(t, transpose) for t in tables)
    return _document(text) if standalone else text


def _simple(
    fmt: str, caption: str, label: str, header: list[str], body: list[list[str]], aligns: str
) -> str:
    """A plain table (no marks) in ``fmt``: markdown or LaTeX (booktabs) or CSV."""
    if fmt == "csv":
        buffer = io.StringIO()
        pd.DataFrame(body, columns=header).to_csv(buffer, index=False)
        return buffer.getvalue()
    if fmt == "markdown":
        rule = "|" + "|".join(":--" if a == "l" else "--:" for a in aligns) + "|"
        lines = [f"**{caption}**", "", "| " + " | ".join(header) + " |", rule]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines) + "\n"
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(caption)}}}",
        rf"\label{{{label}}}",
        rf"\begin{{tabular}}{{{aligns}}}",
        r"\toprule",
        " & ".join(map(latex_escape, header)) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(map(latex_escape, row)) + r" \\" for row in body]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def render_params(
    chosen: list[ChosenParam], budget: Budget, suite: str, fmt: str, standalone: bool = False
) -> str:
    """The chosen hyper-parameters, one line per model and setting: its value and, for a tuned
    one, the values its trials tried."""
    _check(fmt, standalone)
    tuned = any(p.tuned for p in chosen)
    caption = f"Hyper-parameters of {suite} ({budget.describe()})" + (
        "; tried: the values the tuning trials drew." if tuned else "."
    )
    body, previous = [], None
    for param in chosen:
        shown = "" if param.label == previous and fmt != "csv" else param.label
        previous = param.label
        body.append([shown, param.name, _value_text(param.value), _tried_text(param.tried)])
    header = ["model", "hyper-parameter", "chosen", "tried"]
    text = _simple(fmt, caption, f"tab:{_label_part(suite)}-params", header, body, "llrl")
    return _document(text) if standalone else text


def _value_text(value: Any) -> str:
    if isinstance(value, dict):  # per data point
        return "; ".join(f"{point}: {_value_text(v)}" for point, v in value.items())
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


def _tried_text(tried: tuple[Any, ...]) -> str:
    if not tried:
        return ""
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in tried)
    if numbers and len(tried) > 3:
        return f"{_value_text(tried[0])}{EN_DASH}{_value_text(tried[-1])} ({len(tried)} values)"
    return ", ".join(map(_value_text, tried))


def render_ranks(result: RankResult, suite: str, fmt: str, standalone: bool = False) -> str:
    """Each model's rank per block and its average rank (best first), the Friedman test and the
    critical difference in the caption."""
    _check(fmt, standalone)
    ranked = result.average_ranks
    caption = (
        f"Ranks by {result.metric} over {len(result.ranks)} blocks (1 = best): "
        f"Friedman χ² = {result.chi2:.2f} (p = {result.p_value:.3g}), "
        f"Iman{EN_DASH}Davenport F = {result.f_statistic:.2f} "
        f"(p = {result.f_p_value:.3g}); Nemenyi critical difference CD = {result.cd:.2f} "
        f"at {ALPHA} = {result.alpha:g}: models whose average ranks differ by less than "
        "CD are not significantly different."
    )
    if result.left_out:
        caption += f" Left out (missing from some blocks): {', '.join(sorted(result.left_out))}."
    header = ["model", *map(str, result.ranks.index), "average rank"]
    body = [
        [str(model), *(f"{r:g}" for r in result.ranks[model]), f"{ranked[model]:.2f}"]
        for model in ranked.index
    ]
    label = f"tab:{_label_part(suite)}-{_label_part(result.metric)}-ranks"
    text = _simple(fmt, caption, label, header, body, "l" + "r" * (len(header) - 1))
    return _document(text) if standalone else text


def _label_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._:]+", "_", text)


def _check(fmt: str, standalone: bool) -> None:
    if fmt not in FORMATS:
        raise ReportError(f"--format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if standalone and fmt != "latex":
        raise ReportError("--standalone writes a LaTeX document: use it with --format latex")


def _document(text: str) -> str:
    return LATEX_DOCUMENT[0] + text + LATEX_DOCUMENT[1]
