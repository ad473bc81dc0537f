"""``mmbench table``, ``collapse`` and ``figure``: paper tables and figures from a results
directory's records and artifacts. Nothing here imports torch; the report modules (pandas,
matplotlib, scikit-learn) are imported when a command runs."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mmbench.cli.console import console, csv_list, fail
from mmbench.paths import safe_name


def _results_dir(results: Path | None) -> Path:
    """``results``, or the most recently modified results directory under results/."""
    from mmbench.report.runs import latest_results_dir
    if results is not None:
        return results
    chosen = latest_results_dir("results")
    console.print(f"results: {chosen} (the most recently modified under results/)", highlight=False)
    return chosen


def table(
    results: Path = typer.Argument(..., help="Results directory, e.g. results/xrmb_folds"),
    fmt: str = typer.Option("markdown", "--format", help="markdown, latex or csv"),
    metric: Optional[str] = typer.Option(
        None, help="Comma-separated metrics \\[default: those of error_pct, map_micro_pct, "
                   "map_macro_pct, rmse that the runs have]"),
    digits: Optional[int] = typer.Option(None, help="Decimals \\[default: 3 for rmse, else 2]"),
    reference: Optional[Path] = typer.Option(
        None, help="CSV of the paper's figures "
                   "\\[default: results/reference/cmmd_paper_results.csv]"),
    no_paper: bool = typer.Option(False, "--no-paper", help="Leave out the paper's figures"),
    by_group: bool = typer.Option(False, "--by-group",
                                  help="One row per test group, e.g. XRMB speaker (Table 6)"),
    out: Optional[Path] = typer.Option(None, help="Also write the table(s) to this file"),
) -> None:
    """Paper tables: rows are folds/speakers, columns models, mean ± std over seeds, best in
    bold, the paper's published figure beside ours."""
    from mmbench.report.runs import ReportError, ok_records, per_group, run_frame
    from mmbench.report.tables import (DEFAULT_METRICS, REFERENCE_CSV, PaperReference,
                                       build_table, render)
    try:
        records = ok_records(results)
        frame = run_frame(per_group(records) if by_group else records)
        metrics = csv_list(metric) or [m for m in DEFAULT_METRICS if m in set(frame["metric"])]
        paper = None if no_paper else PaperReference(reference or REFERENCE_CSV)
        text = render([t for m in metrics for t in build_table(frame, m, paper, digits)], fmt)
    except ReportError as error:
        fail(str(error))
    typer.echo(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        console.print(f"written to {out}", highlight=False)


WIDTH_HELP = "Figure width in inches, as printed (6.75: a two-column page; 3.25: one column)"


def collapse(
    results: Path | None = typer.Argument(
        None, help="Results directory \\[default: the most recently modified under results/]"),
    eps: str = typer.Option("0:6", help="KL range START:STOP in nats"),
    variance_eps: str | None = typer.Option(
        None, help="Range START:STOP for the decoder variance \\[default: 0 to the largest "
                   "variance that decides a curve]"),
    delta: float = typer.Option(
        0.01, help="A dimension collapses when >= 1 - delta of the points are below eps"),
    points: int = typer.Option(40, help="Points on each eps range"),
    width: float = typer.Option(6.75, help=WIDTH_HELP),
    layout: str | None = typer.Option(
        None, help="row (four panels side by side) or 2x2 \\[default: row from 6.2 inches up]"),
    where: list[str] | None = typer.Option(
        None, help="Only runs with KEY=VALUE (e.g. fold=1, seed=0); repeatable"),
    out: Path | None = typer.Option(None, help="Output folder \\[default: RESULTS/figures]"),
) -> None:
    """Posterior-collapse curves (paper Fig. 2) from the stored posterior statistics: PDF, PNG
    and the curve values as CSV."""
    from mmbench.report.collapse import (
        LAYOUTS,
        collapse_curves,
        eps_grid,
        mean_curves,
        plot_collapse,
    )
    from mmbench.report.figures import data_name
    from mmbench.report.runs import ReportError, ok_records, parse_where, select
    from mmbench.report.style import check_width, save_figure
    try:
        if not 0 < delta < 1:
            raise ReportError(f"--delta {delta}: must lie in (0, 1)")
        if layout is not None and layout not in LAYOUTS:
            raise ReportError(f"--layout {layout!r}; allowed: {', '.join(LAYOUTS)}")
        check_width(width)
        kl_grid = eps_grid(eps, points)
        variance_grid = None if variance_eps is None else eps_grid(variance_eps, points)
        results = _results_dir(results)
        records = select(ok_records(results), parse_where(where))
        curves = mean_curves(collapse_curves(results, records, kl_grid, variance_grid, delta,
                                             points))
        name = data_name(results, records)
        figure = plot_collapse(curves, delta, width, layout)
    except ReportError as error:
        fail(str(error))
    paths = save_figure(figure, (out or results / "figures") / "collapse",
                        curves.assign(data=name), title=f"{name}: posterior collapse")
    for path in paths:
        console.print(f"written {path}", highlight=False)


FIGURES = ("omega", "generations", "tsne", "curves")


def figure(
    kind: str = typer.Argument(..., help="omega, generations, tsne or curves"),
    results: Path | None = typer.Argument(
        None, help="Results directory \\[default: the most recently modified under results/]"),
    where: list[str] | None = typer.Option(None, help="Only runs with KEY=VALUE; repeatable"),
    width: float = typer.Option(6.75, help=WIDTH_HELP),
    examples: int = typer.Option(8, help="generations: test points shown for multi-label data "
                                         "(otherwise one per class)"),
    points: int = typer.Option(2000, help="tsne: test points embedded"),
    perplexity: float = typer.Option(30.0, help="tsne: perplexity"),
    out: Path | None = typer.Option(None, help="Output folder \\[default: RESULTS/figures]"),
) -> None:
    """Error and rmse against omega (Fig. 3; per speaker too when there are speakers), generated
    missing modalities beside the truth (App. G), t-SNE of the test representations (App. F), or
    learning curves (loss per epoch): PDF, PNG and CSV of the values."""
    from mmbench.report import curves, figures
    from mmbench.report.runs import ReportError, ok_records, parse_where, select
    from mmbench.report.style import check_width, save_figure
    if kind not in FIGURES:
        fail(f"figure {kind!r}; allowed: {', '.join(FIGURES)}")
    notes: list[str] = []
    try:
        check_width(width)
        results = _results_dir(results)
        records = select(ok_records(results), parse_where(where))
        name = figures.data_name(results, records)
        drawn: dict[str, tuple] = {}  # file stem -> (figure, values)
        if kind == "omega":
            values = figures.omega_curves(records)
            drawn["omega"] = (figures.plot_omega(values, width=width), values)
            if set(values["group"]) != {figures.AVERAGE}:
                for metric in figures.OMEGA_METRICS:
                    if metric in set(values["metric"]):
                        drawn[f"omega_{metric}_by_group"] = (
                            figures.plot_omega_by_group(values, metric, width=width),
                            values[values["metric"] == metric])
        elif kind == "generations":
            for modality, made in figures.generation_figures(results, records, width,
                                                             examples).items():
                drawn[f"generations_{safe_name('view name', modality)}"] = (made.figure,
                                                                          made.values)
                notes += [made.note] if made.note else []
        elif kind == "tsne":
            values = figures.tsne_embeddings(results, records, points, perplexity)
            drawn["tsne"] = (figures.plot_tsne(values, width), values)
        else:
            values = curves.loss_curves(records)
            drawn["curves"] = (curves.plot_curves(values, width), values)
            notes += [f"{series}: {why}, no learning curve"
                      for series, why in curves.closed_form(records).items()]
    except ReportError as error:
        fail(str(error))
    folder = out or results / "figures"
    for stem, (fig, values) in drawn.items():
        for path in save_figure(fig, folder / stem, values.assign(data=name),
                                title=f"{name}: {stem.replace('_', ' ')}"):
            console.print(f"written {path}", highlight=False)
    for note in dict.fromkeys(notes):
        console.print(f"note: {note}", highlight=False)
