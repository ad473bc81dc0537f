"""``mmbench table``, ``collapse`` and ``figure``: paper tables and figures from a results
directory's records and artifacts. Nothing here imports torch; the report modules (pandas,
matplotlib, scikit-learn) are imported when a command runs."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from mmbench.cli.console import console, csv_list, fail

if TYPE_CHECKING:  # annotations only: the commands import pandas when they run
    import pandas as pd

    from mmbench.report.suite_info import SuiteInfo


def _results_dir(results: Optional[Path]) -> Path:
    """``results``, or the most recently modified results directory under results/."""
    from mmbench.report.runs import latest_results_dir
    if results is not None:
        return results
    chosen = latest_results_dir("results")
    console.print(f"results: {chosen} (the most recently modified under results/)", highlight=False)
    return chosen


def table(
    results: list[Path] = typer.Argument(
        ..., help="Results directories, e.g. results/xrmb_folds (several: the tables of each, "
                  "or one rank analysis across them with --ranks)"),
    fmt: str = typer.Option("markdown", "--format", help="markdown, latex or csv"),
    metric: str | None = typer.Option(
        None, help="Comma-separated metrics \\[default: those of error_pct, map_micro_pct, "
                   "map_macro_pct, rmse that the runs have]"),
    digits: int | None = typer.Option(None, help="Decimals \\[default: 3 for rmse, else 2]"),
    reference: Path | None = typer.Option(
        None, help="CSV of the paper's figures "
                   "\\[default: mmbench/reference/cmmd_paper_results.csv, in the package]"),
    no_paper: bool = typer.Option(False, "--no-paper", help="Leave out the paper's figures"),
    by_group: bool = typer.Option(False, "--by-group",
                                  help="One column per test group, e.g. XRMB speaker (Table 6)"),
    transpose: bool = typer.Option(
        False, "--transpose", help="Data points as rows and models as columns (the old layout)"),
    standalone: bool = typer.Option(
        False, "--standalone", help="With --format latex: a whole document that compiles"),
    params: bool = typer.Option(
        False, "--params", help="The hyper-parameters each model's reported runs used: the "
                                "tuned ones (all of them when no model was tuned)"),
    all_params: bool = typer.Option(
        False, "--all-params", help="With --params: the fixed settings too"),
    ranks: bool = typer.Option(
        False, "--ranks", help="Average ranks across data sets, folds or speakers (--by-group), "
                               "Friedman test and critical-difference diagram (PDF, PNG, CSV)"),
    width: float = typer.Option(6.75, help="--ranks: the diagram's width in inches"),
    figures: Path | None = typer.Option(
        None, help="--ranks: folder of the diagram \\[default: RESULTS/figures, the first]"),
    out: Path | None = typer.Option(None, help="Also write the table(s) to this file"),
) -> None:
    """Paper tables: models as rows, folds/speakers as columns, mean ± std over seeds; bold the
    best, underlined the models not significantly worse (paired Wilcoxon or t-test), † where
    runs hit the epoch cap, the paper's published figure under ours, reference rows apart."""
    from mmbench.report.runs import ReportError
    from mmbench.report.tables import DEFAULT_METRICS
    written: list[Path] = []
    try:
        if params and ranks:
            raise ReportError("--params and --ranks are separate tables: ask for one")
        if all_params and not params:
            raise ReportError("--all-params goes with --params")
        if transpose and (params or ranks):
            raise ReportError("--transpose turns result tables, not --params or --ranks")
        if params:
            texts = [_params_text(folder, all_params, fmt, standalone) for folder in results]
        else:
            frames = [_results_frame(folder, by_group) for folder in results]
            metrics = csv_list(metric) or [m for m in DEFAULT_METRICS if any(
                m in set(frame["metric"]) for _, frame in frames)]
            if ranks:
                texts, written = _ranks_text(frames, metrics, fmt, standalone, width,
                                             figures or results[0] / "figures")
            else:
                texts = [_tables_text(results, frames, metrics, fmt, digits, reference,
                                      no_paper, by_group, transpose, standalone)]
    except ReportError as error:
        fail(str(error))
    text = "\n".join(texts)
    typer.echo(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        written.append(out)
    for path in written:
        console.print(f"written {path}", highlight=False)


def _results_frame(folder: Path, by_group: bool) -> tuple[SuiteInfo, pd.DataFrame]:
    """The suite facts and the run frame of the reported runs (no tuning trials) of a results
    directory."""
    from mmbench.report.runs import ReportError, all_records, per_group, reported, run_frame
    from mmbench.report.suite_info import SuiteInfo
    shown = [r for r in reported(all_records(folder)) if r.ok]
    if not shown:
        raise ReportError(f"{folder}: no finished run")
    return SuiteInfo.read(folder), run_frame(per_group(shown) if by_group else shown)


def _tables_text(results: list[Path], frames: list[tuple[SuiteInfo, pd.DataFrame]],
                 metrics: list[str], fmt: str, digits: int | None, reference: Path | None,
                 no_paper: bool, by_group: bool, transpose: bool, standalone: bool) -> str:
    from mmbench.report.params import budget
    from mmbench.report.runs import all_records
    from mmbench.report.table_formats import render
    from mmbench.report.tables import REFERENCE_CSV, PaperReference, build_table
    paper = None if no_paper else PaperReference(reference or REFERENCE_CSV)
    tables = []
    for folder, (suite, frame) in zip(results, frames):
        facts = budget(all_records(folder))
        for name in metrics:
            tables += build_table(frame, name, paper, digits, suite=suite, budget=facts,
                                  by_group=by_group)
    return render(tables, fmt, transpose=transpose, standalone=standalone)


def _params_text(folder: Path, all_params: bool, fmt: str, standalone: bool) -> str:
    """The chosen hyper-parameters; every setting where no model was tuned."""
    from mmbench.report.params import budget, chosen_params
    from mmbench.report.runs import all_records
    from mmbench.report.suite_info import SuiteInfo
    from mmbench.report.table_formats import render_params
    records = all_records(folder)
    chosen = chosen_params(records, include_fixed=all_params)
    if not any(c.tuned for c in chosen):
        chosen = chosen_params(records, include_fixed=True)
    return render_params(chosen, budget(records), SuiteInfo.read(folder).name, fmt, standalone)


def _ranks_text(frames: list[tuple[SuiteInfo, pd.DataFrame]], metrics: list[str], fmt: str,
                standalone: bool, width: float, folder: Path) -> tuple[list[str], list[Path]]:
    """Per metric: the ranks table, and the critical-difference diagram as PDF, PNG and CSV
    (cd_<metric>) in ``folder``."""
    import pandas as pd

    from mmbench.report.cd_diagram import plot_cd
    from mmbench.report.ranks import block_values, rank_models
    from mmbench.report.runs import ReportError
    from mmbench.report.style import save_figure
    from mmbench.report.table_formats import render_ranks
    from mmbench.report.tables import higher_is_better
    texts: list[str] = []
    written: list[Path] = []
    suite = " + ".join(dict.fromkeys(info.name for info, _ in frames))
    for metric in metrics:
        parts = [block_values(frame, metric, info.name if len(frames) > 1 else "")
                 for info, frame in frames]
        values = pd.concat([p for p in parts if not p.empty])
        if values.empty:
            raise ReportError(f"no model run has metric {metric!r}")
        result = rank_models(values, metric, higher_is_better(metric))
        texts.append(render_ranks(result, suite, fmt, standalone))
        stem = folder / f"cd_{metric}"
        written += save_figure(plot_cd(result, width), stem)
        result.to_frame().to_csv(stem.with_suffix(".csv"), index=False)
        written.append(stem.with_suffix(".csv"))
    return texts, written


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
