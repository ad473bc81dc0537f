"""``mmbench table``, ``collapse`` and ``figure``: paper tables and figures from a results
directory's records and artifacts. Nothing here imports torch; the report modules (pandas,
matplotlib, scikit-learn) are imported when a command runs."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mmbench.cli.console import console, csv_list, fail


def _results_dir(results: Optional[Path]) -> Path:
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


def collapse(
    results: Optional[Path] = typer.Argument(
        None, help="Results directory \\[default: the most recently modified under results/]"),
    eps: str = typer.Option("0:6", help="KL range START:STOP in nats"),
    variance_eps: str = typer.Option("0:0.13", help="Range START:STOP for the decoder variance"),
    delta: float = typer.Option(
        0.01, help="A dimension collapses when >= 1 - delta of the points are below eps"),
    points: int = typer.Option(40, help="Points on each eps range"),
    where: Optional[list[str]] = typer.Option(
        None, help="Only runs with KEY=VALUE (e.g. fold=1, seed=0); repeatable"),
    out: Optional[Path] = typer.Option(None, help="Output folder \\[default: RESULTS/figures]"),
) -> None:
    """Posterior-collapse curves (paper Fig. 2) from the stored posterior statistics: PDF, PNG
    and the curve values as CSV."""
    from mmbench.report.collapse import collapse_curves, eps_grid, mean_curves, plot_collapse
    from mmbench.report.runs import ReportError, ok_records, parse_where, select
    from mmbench.report.style import save_figure
    from mmbench.store import RecordError
    try:
        if not 0 < delta < 1:
            raise ReportError(f"--delta {delta}: must lie in (0, 1)")
        kl_grid, variance_grid = eps_grid(eps, points), eps_grid(variance_eps, points)
        results = _results_dir(results)
        records = select(ok_records(results), parse_where(where))
        curves = mean_curves(collapse_curves(results, records, kl_grid, variance_grid, delta))
    except (ReportError, RecordError) as error:
        fail(str(error))
    stem = (out or results / "figures") / "collapse"
    paths = save_figure(plot_collapse(curves, delta), stem)
    curves.to_csv(stem.with_suffix(".csv"), index=False)
    for path in [*paths, stem.with_suffix(".csv")]:
        console.print(f"written {path}", highlight=False)


FIGURES = ("omega", "generations", "tsne")


def figure(
    kind: str = typer.Argument(..., help="omega, generations or tsne"),
    results: Optional[Path] = typer.Argument(
        None, help="Results directory \\[default: the most recently modified under results/]"),
    where: Optional[list[str]] = typer.Option(None, help="Only runs with KEY=VALUE; repeatable"),
    examples: int = typer.Option(8, help="generations: test points shown"),
    points: int = typer.Option(2000, help="tsne: test points embedded"),
    perplexity: float = typer.Option(30.0, help="tsne: perplexity"),
    out: Optional[Path] = typer.Option(None, help="Output folder \\[default: RESULTS/figures]"),
) -> None:
    """Error and rmse against omega (Fig. 3), generated missing modalities beside the truth
    (App. G), or t-SNE of the test representations (App. F): PDF and PNG (and CSV of the values)."""
    from mmbench.paths import UnsafePath, inside, safe_name
    from mmbench.report import figures
    from mmbench.report.runs import ReportError, ok_records, parse_where, select
    from mmbench.report.style import save_figure
    from mmbench.store import RecordError
    if kind not in FIGURES:
        fail(f"figure {kind!r}; allowed: {', '.join(FIGURES)}")
    try:
        results = _results_dir(results)
        records = select(ok_records(results), parse_where(where))
        folder = out or results / "figures"
        if kind == "omega":
            values = figures.omega_curves(records)
            drawn = {"omega": figures.plot_omega(values)}
        elif kind == "generations":
            values = None
            drawn = {f"generations_{m}": fig for m, fig in
                     figures.generation_figures(results, records, examples).items()}
        else:
            values = figures.tsne_embeddings(results, records, points, perplexity)
            drawn = {"tsne": figures.plot_tsne(values)}
        # names of views come from the results' files: never let one point outside the folder
        stems = {name: inside(folder, safe_name("figure name", name)) for name in drawn}
    except (ReportError, RecordError, UnsafePath) as error:
        fail(str(error))
    written = [p for name, fig in drawn.items() for p in save_figure(fig, stems[name])]
    if values is not None:
        values.to_csv(folder / f"{kind}.csv", index=False)
        written.append(folder / f"{kind}.csv")
    for path in written:
        console.print(f"written {path}", highlight=False)
