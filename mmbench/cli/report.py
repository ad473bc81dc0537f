"""``mmbench table``, ``collapse`` and ``figure``: paper tables and figures from a results
directory's records and artifacts. Nothing here imports torch; the report modules (pandas,
matplotlib, scikit-learn) are imported when a command runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mmbench.cli.console import console, csv_list, fail

if TYPE_CHECKING:  # annotations only: the commands import pandas when they run
    import pandas as pd

    from mmbench.records import Record
    from mmbench.report.suite_info import SuiteInfo


def _results_dir(results: Path | None) -> Path:
    """``results``, or the most recently modified results directory under results/."""
    from mmbench.report.runs import latest_results_dir

    if results is not None:
        return results
    chosen = latest_results_dir("results")
    console.print(f"results: {chosen} (the most recently modified under results/)", highlight=False)
    return chosen


def table(
    results: list[Path] = typer.Argument(
        ...,
        help="Results directories, e.g. results/xrmb_folds (several: the tables of each, "
        "or one rank analysis across them with --ranks)",
    ),
    fmt: str = typer.Option("markdown", "--format", help="markdown, latex or csv"),
    metric: str | None = typer.Option(
        None,
        help="Comma-separated metrics \\[default: those of error_pct, map_micro_pct, "
        "map_macro_pct, rmse that the runs have]",
    ),
    digits: int | None = typer.Option(None, help="Decimals \\[default: 3 for rmse, else 2]"),
    reference: Path | None = typer.Option(
        None,
        help="CSV of the paper's figures "
        "\\[default: mmbench/reference/cmmd_paper_results.csv, in the package]",
    ),
    no_paper: bool = typer.Option(False, "--no-paper", help="Leave out the paper's figures"),
    by_group: bool = typer.Option(
        False, "--by-group", help="One column per test group, e.g. XRMB speaker (Table 6)"
    ),
    transpose: bool = typer.Option(
        False, "--transpose", help="Data points as rows and models as columns (the old layout)"
    ),
    standalone: bool = typer.Option(
        False, "--standalone", help="With --format latex: a whole document that compiles"
    ),
    params: bool = typer.Option(
        False,
        "--params",
        help="The hyper-parameters each model's reported runs used: the "
        "tuned ones (all of them when no model was tuned)",
    ),
    all_params: bool = typer.Option(
        False, "--all-params", help="With --params: the fixed settings too"
    ),
    ranks: bool = typer.Option(
        False,
        "--ranks",
        help="Average ranks across data sets, folds or speakers (--by-group), "
        "Friedman test and critical-difference diagram (PDF, PNG, CSV)",
    ),
    width: float = typer.Option(6.75, help="--ranks: the diagram's width in inches"),
    figures: Path | None = typer.Option(
        None, help="--ranks: folder of the diagram \\[default: RESULTS/figures, the first]"
    ),
    out: Path | None = typer.Option(None, help="Also write the table(s) to this file"),
) -> None:
    """Paper tables: models as rows, folds/speakers as columns, mean ± std over seeds; bold the
    best, underlined the models not significantly worse (paired Wilcoxon or t-test), † where
    runs hit the epoch cap, the paper's published figure under ours, reference rows apart."""
    from mmbench.report.runs import ReportError, all_records
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
            # each folder's records are read once: an unreadable record is reported once
            records = [all_records(folder) for folder in results]
            frames = [
                _results_frame(folder, found, by_group) for folder, found in zip(results, records)
            ]
            metrics = csv_list(metric) or [
                m for m in DEFAULT_METRICS if any(m in set(frame["metric"]) for _, frame in frames)
            ]
            if ranks:
                texts, written = _ranks_text(
                    frames, metrics, fmt, standalone, width, figures or results[0] / "figures"
                )
            else:
                texts = [
                    _tables_text(
                        records,
                        frames,
                        metrics,
                        fmt,
                        digits,
                        reference,
                        no_paper,
                        by_group,
                        transpose,
                        standalone,
                    )
                ]
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


def _results_frame(
    folder: Path, records: list[Record], by_group: bool
) -> tuple[SuiteInfo, pd.DataFrame]:
    """The suite facts and the run frame of the reported runs (no tuning trials) among the
    ``records`` of the results directory ``folder``."""
    from mmbench.report.runs import ReportError, per_group, reported, run_frame
    from mmbench.report.suite_info import SuiteInfo

    shown = [r for r in reported(records) if r.ok]
    if not shown:
        raise ReportError(f"{folder}: no finished run")
    return SuiteInfo.read(folder), run_frame(per_group(shown) if by_group else shown)


def _tables_text(
    records: list[list[Record]],
    frames: list[tuple[SuiteInfo, pd.DataFrame]],
    metrics: list[str],
    fmt: str,
    digits: int | None,
    reference: Path | None,
    no_paper: bool,
    by_group: bool,
    transpose: bool,
    standalone: bool,
) -> str:
    from mmbench.report.params import budget
    from mmbench.report.table_formats import render
    from mmbench.report.tables import REFERENCE_CSV, PaperReference, build_table

    paper = None if no_paper else PaperReference(reference or REFERENCE_CSV)
    tables = []
    for found, (suite, frame) in zip(records, frames):
        facts = budget(found)
        for name in metrics:
            tables += build_table(
                frame, name, paper, digits, suite=suite, budget=facts, by_group=by_group
            )
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


def _ranks_text(
    frames: list[tuple[SuiteInfo, pd.DataFrame]],
    metrics: list[str],
    fmt: str,
    standalone: bool,
    width: float,
    folder: Path,
) -> tuple[list[str], list[Path]]:
    """Per metric: the ranks table, and the critical-difference diagram as PDF, PNG and CSV
    (cd_<metric>) in ``folder``."""
    import pandas as pd

    from mmbench.report.cd_diagram import plot_cd
    from mmbench.report.ranks import block_values, rank_models
    from mmbench.report.runs import ReportError
    from mmbench.report.style import check_width, save_figure
    from mmbench.report.table_formats import render_ranks
    from mmbench.report.tables import higher_is_better

    check_width(width)
    texts: list[str] = []
    written: list[Path] = []
    suite = " + ".join(dict.fromkeys(info.name for info, _ in frames))
    for metric in metrics:
        parts = [
            block_values(frame, metric, info.name if len(frames) > 1 else "")
            for info, frame in frames
        ]
        values = pd.concat([p for p in parts if not p.empty])
        if values.empty:
            raise ReportError(f"no model run has metric {metric!r}")
        result = rank_models(values, metric, higher_is_better(metric))
        texts.append(render_ranks(result, suite, fmt, standalone))
        written += save_figure(
            plot_cd(result, width),
            folder / f"cd_{metric}",
            result.to_frame(),
            title=f"{suite}: critical difference, {metric}",
        )
    return texts, written


WIDTH_HELP = "Figure width in inches, as printed (6.75: a two-column page; 3.25: one column)"


def collapse(
    results: Path | None = typer.Argument(
        None, help="Results directory \\[default: the most recently modified under results/]"
    ),
    eps: str = typer.Option("0:6", help="KL range START:STOP in nats"),
    variance_eps: str | None = typer.Option(
        None,
        help="Range START:STOP for the decoder variance \\[default: 0 to the largest "
        "variance that decides a curve]",
    ),
    delta: float = typer.Option(
        0.01, help="A dimension collapses when >= 1 - delta of the points are below eps"
    ),
    points: int = typer.Option(40, help="Points on each eps range"),
    width: float = typer.Option(6.75, help=WIDTH_HELP),
    layout: str | None = typer.Option(
        None, help="row (four panels side by side) or 2x2 \\[default: row from 6.2 inches up]"
    ),
    where: list[str] | None = typer.Option(
        None, help="Only runs with KEY=VALUE (e.g. fold=1, seed=0); repeatable"
    ),
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
    from mmbench.report.runs import ReportError, model_records, parse_where, select
    from mmbench.report.style import check_width, save_figure
    from mmbench.store import RecordError

    try:
        if not 0 < delta < 1:
            raise ReportError(f"--delta {delta}: must lie in (0, 1)")
        if layout is not None and layout not in LAYOUTS:
            raise ReportError(f"--layout {layout!r}; allowed: {', '.join(LAYOUTS)}")
        check_width(width)
        kl_grid = eps_grid(eps, points)
        variance_grid = None if variance_eps is None else eps_grid(variance_eps, points)
        results = _results_dir(results)
        records = select(model_records(results), parse_where(where))
        curves = mean_curves(
            collapse_curves(results, records, kl_grid, variance_grid, delta, points)
        )
        name = data_name(results, records)
        figure = plot_collapse(curves, delta, width, layout)
    except (ReportError, RecordError) as error:
        fail(str(error))
    paths = save_figure(
        figure,
        (out or results / "figures") / "collapse",
        curves.assign(data=name),
        title=f"{name}: posterior collapse",
    )
    for path in paths:
        console.print(f"written {path}", highlight=False)


FIGURES = ("omega", "generations", "tsne", "curves")


def figure(
    kind: str = typer.Argument(..., help="omega, generations, tsne or curves"),
    results: Path | None = typer.Argument(
        None, help="Results directory \\[default: the most recently modified under results/]"
    ),
    where: list[str] | None = typer.Option(None, help="Only runs with KEY=VALUE; repeatable"),
    width: float = typer.Option(6.75, help=WIDTH_HELP),
    examples: int = typer.Option(
        8, help="generations: test points shown for multi-label data (otherwise one per class)"
    ),
    points: int = typer.Option(2000, help="tsne: test points embedded"),
    perplexity: float = typer.Option(30.0, help="tsne: perplexity"),
    out: Path | None = typer.Option(None, help="Output folder \\[default: RESULTS/figures]"),
) -> None:
    """Error and rmse against omega (Fig. 3; per speaker too when there are speakers), generated
    missing modalities beside the truth (App. G), t-SNE of the test representations (App. F), or
    learning curves (loss per epoch): PDF, PNG and CSV of the values."""
    from mmbench.paths import UnsafePath, inside, safe_name
    from mmbench.report import curves, figures
    from mmbench.report.runs import ReportError, model_records, parse_where, select
    from mmbench.report.style import check_width, save_figure
    from mmbench.store import RecordError

    if kind not in FIGURES:
        fail(f"figure {kind!r}; allowed: {', '.join(FIGURES)}")
    notes: list[str] = []
    try:
        check_width(width)
        results = _results_dir(results)
        records = select(model_records(results), parse_where(where))
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
                            values[values["metric"] == metric],
                        )
        elif kind == "generations":
            for modality, made in figures.generation_figures(
                results, records, width, examples
            ).items():
                drawn[f"generations_{safe_name('view name', modality)}"] = (
                    made.figure,
                    made.values,
                )
                notes += [made.note] if made.note else []
        elif kind == "tsne":
            values = figures.tsne_embeddings(results, records, points, perplexity)
            drawn["tsne"] = (figures.plot_tsne(values, width), values)
        else:
            values = curves.loss_curves(records)
            drawn["curves"] = (curves.plot_curves(values, width), values)
            notes += [
                f"{series}: {why}, no learning curve"
                for series, why in curves.closed_form(records).items()
            ]
        folder = out or results / "figures"
        # names of views come from the results' files: never let one point outside the folder
        stems = {stem: inside(folder, stem) for stem in drawn}
    except (ReportError, RecordError, UnsafePath) as error:
        fail(str(error))
    for stem, (fig, values) in drawn.items():
        for path in save_figure(
            fig, stems[stem], values.assign(data=name), title=f"{name}: {stem.replace('_', ' ')}"
        ):
            console.print(f"written {path}", highlight=False)
    for note in dict.fromkeys(notes):
        console.print(f"note: {note}", highlight=False)
