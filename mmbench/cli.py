"""The ``mmbench`` command line."""
from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Optional

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mmbench.results import summarize, write_tidy
from mmbench.cli_data import app as data_app
from mmbench.executors import (Executor, ExecutorError, LocalExecutor, ProcessExecutor,
                               RayExecutor)
from mmbench.runner import RunStore, pending, smoke_version
from mmbench.suite import SuiteError, load_suite

app = typer.Typer(help="Benchmark multimodal generative models with missing modalities.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(data_app, name="data")
console = Console()


def fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(2)


def _csv_list(value: Optional[str], cast=str) -> Optional[list]:
    return None if value is None else [cast(v) for v in value.split(",") if v]


def select_runs(suite, models: Optional[str], seeds: Optional[str], smoke: bool) -> list[dict]:
    runs = suite.runs()
    wanted_models, wanted_seeds = _csv_list(models), _csv_list(seeds, int)
    if wanted_models:
        unknown = sorted(set(wanted_models) - {r["coordinates"]["model"] for r in runs}
                         - {r["label"] for r in runs})
        if unknown:
            fail(f"--models: {unknown} not in suite {suite.name!r} "
                 f"(has {sorted({r['coordinates']['model'] for r in runs})})")
        runs = [r for r in runs if r["coordinates"]["model"] in wanted_models
                or r["label"] in wanted_models]
    if wanted_seeds:
        runs = [r for r in runs if r["coordinates"]["seed"] in wanted_seeds]
    if smoke:
        runs = [smoke_version(r) for r in runs]
    return runs


class ExecutorKind(str, Enum):
    local = "local"
    process = "process"
    ray = "ray"


def check_executor_options(executor: ExecutorKind, jobs: Optional[int],
                           address: Optional[str]) -> None:
    if jobs is not None and executor == ExecutorKind.local:
        fail("--jobs needs --executor process or ray")
    if address is not None and executor != ExecutorKind.ray:
        fail("--address needs --executor ray")
    if address is not None and jobs is not None:
        fail("--jobs sizes a local Ray cluster; with --address the cluster's resources decide")


@app.command()
def run(
    suite_file: Path = typer.Argument(..., help="Suite YAML, e.g. suites/quickstart.yaml"),
    results: Optional[Path] = typer.Option(None, help="Results directory \\[default: results/<suite name>]"),
    models: Optional[str] = typer.Option(None, help="Comma-separated model names or labels to run"),
    seeds: Optional[str] = typer.Option(None, help="Comma-separated replicate seeds to run"),
    device: Optional[str] = typer.Option(None, help="cpu, cuda or cuda:N \\[default: the suite's]"),
    smoke: bool = typer.Option(False, help="Tiny budget (2 epochs, a few hundred points) to check plumbing"),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the runs and whether each is done"),
    cell: Optional[int] = typer.Option(None, help="Run only the run with this --dry-run index"),
    retry_failed: bool = typer.Option(False, help="Run again the runs recorded as failed"),
    data_dir: Optional[str] = typer.Option(None, help="Data directory \\[default: $MMBENCH_DATA]"),
    executor: ExecutorKind = typer.Option(
        ExecutorKind.local, help="local: one run after another in this process; process: "
                                 "--jobs runs at once, a worker process each; ray: Ray tasks"),
    jobs: Optional[int] = typer.Option(
        None, min=1, help="Runs at once (process), CPUs of the local Ray cluster (ray) "
                          "\\[default: the number of CPU cores]"),
    address: Optional[str] = typer.Option(
        None, help="Ray cluster to run on, e.g. auto or ray://head:10001 \\[default: start a "
                   "local one]; the results directory must be on a file system all nodes share"),
) -> None:
    """Run a suite; finished runs are skipped, so an interrupted suite resumes. Exits with 1 when
    a run was lost (its worker died): run the suite again to redo it."""
    try:
        suite = load_suite(suite_file)
    except SuiteError as error:
        fail(str(error))
    check_executor_options(executor, jobs, address)
    results = results or Path("results") / (suite.name + ("-smoke" if smoke else ""))
    device = device or suite.device
    runs = select_runs(suite, models, seeds, smoke)
    store = RunStore(results)
    if dry_run:
        _print_plan(runs, store)
        return
    if cell is not None:
        if not 0 <= cell < len(runs):
            fail(f"--cell {cell}: the suite has runs 0..{len(runs) - 1} (see --dry-run)")
        runs = [runs[cell]]
    todo = pending(runs, store, retry_failed)
    console.print(f"[bold]{suite.name}[/]: {len(runs)} runs, {len(runs) - len(todo)} already "
                  f"done, results in {results}")
    lost = _execute(todo, results, device, data_dir, executor, jobs, address) if todo else 0
    tidy_path = write_tidy(results)
    _print_summary(pd.read_csv(tidy_path), [r["run_id"] for r in runs])
    console.print(f"tidy results: {tidy_path}")
    if lost:
        console.print(f"[bold red]{lost} run(s) lost[/] (their worker died): run the suite again "
                      "to redo them", highlight=False)
        raise typer.Exit(1)


def _execute(todo: list[dict], results: Path, device: str, data_dir: Optional[str],
             kind: ExecutorKind, jobs: Optional[int], address: Optional[str]) -> int:
    """Run ``todo`` with the chosen executor under a progress display (the local executor shows
    one bar per run, the others one line per finished run); returns the number of runs lost."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn())
    bars: dict[str, int] = {}
    lost: list[dict] = []
    with Progress(*columns, console=console) as progress:
        overall = progress.add_task("suite", total=len(todo), status="")

        def on_start(run):
            bar = progress.add_task(f"  {_name(run)}", total=run["config"]["train"]["epochs"],
                                    status="")
            bars[run["run_id"]] = bar

            def on_epoch(epoch, total, row):
                loss = row.get("valid_loss", row["loss"])
                progress.update(bar, completed=epoch, status=f"loss {loss:.4g}")
            return on_epoch

        def on_done(run, record, why):
            if record is None:
                lost.append(run)
                status = f"[red]lost[/]: {why}"
            elif record["status"] == "ok":
                status = "[green]ok[/]"
            else:
                status = f"[red]failed[/]: {record['error'][:80]}"
            if run["run_id"] in bars:
                progress.update(bars[run["run_id"]], completed=run["config"]["train"]["epochs"],
                                status=status)
            else:
                progress.console.print(f"  {_name(run)}: {status}", highlight=False)
            progress.advance(overall)

        try:
            _executor(kind, jobs, address, on_start).execute(todo, results, device, data_dir,
                                                             on_done)
        except ExecutorError as error:
            fail(str(error))
    return len(lost)


def _executor(kind: ExecutorKind, jobs: Optional[int], address: Optional[str],
              on_start) -> Executor:
    if kind == ExecutorKind.local:
        return LocalExecutor(on_start)
    if kind == ExecutorKind.process:
        return ProcessExecutor(jobs or os.cpu_count() or 1)
    return RayExecutor(jobs, address)


def _name(run: dict) -> str:
    return f"{run['label']} seed {run['coordinates']['seed']}"


def _print_plan(runs: list[dict], store: RunStore) -> None:
    table = Table("index", "run id", "model", "data", "grid", "seed", "status")
    counts: dict[str, int] = {}
    for index, run in enumerate(runs):
        record = store.record(run["run_id"])
        status = "pending" if record is None else record["status"]
        c = run["coordinates"]
        table.add_row(str(index), run["run_id"], run["label"],
                      ", ".join(f"{k}={v}" for k, v in c["data"].items()),
                      ", ".join(f"{k}={v}" for k, v in c["grid"].items()), str(c["seed"]), status)
        counts[status] = counts.get(status, 0) + 1
    console.print(table)
    console.print(f"{len(runs)} runs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                  + (f"; run one with --cell N (0..{len(runs) - 1})" if runs else ""),
                  highlight=False)


def _print_summary(frame: pd.DataFrame, run_ids: list[str]) -> None:
    frame = frame[frame["run_id"].isin(run_ids)]
    if frame.empty:
        return
    summary = summarize(frame, run_ids)
    table = Table(*summary.columns, title="mean ± std over seeds")
    for row in summary.itertuples(index=False):
        table.add_row(*map(str, row))
    console.print(table)


@app.command("models")
def list_models() -> None:
    """List the registered models and their capabilities."""
    from mmbench.registry import available_models, model_class
    table = Table("model", "capabilities", "description")
    for name in available_models():
        cls = model_class(name)
        table.add_row(name, ", ".join(sorted(cls.capabilities)),
                      (cls.__doc__ or "").strip().splitlines()[0])
    console.print(table)


def _results_dir(results: Optional[Path]) -> Path:
    """``results``, or the most recently modified results directory under results/."""
    from mmbench.report.runs import latest_results_dir
    if results is not None:
        return results
    chosen = latest_results_dir("results")
    console.print(f"results: {chosen} (the most recently modified under results/)", highlight=False)
    return chosen


@app.command()
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
        metrics = _csv_list(metric) or [m for m in DEFAULT_METRICS if m in set(frame["metric"])]
        paper = None if no_paper else PaperReference(reference or REFERENCE_CSV)
        text = render([t for m in metrics for t in build_table(frame, m, paper, digits)], fmt)
    except ReportError as error:
        fail(str(error))
    typer.echo(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        console.print(f"written to {out}", highlight=False)


@app.command()
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
    try:
        if not 0 < delta < 1:
            raise ReportError(f"--delta {delta}: must lie in (0, 1)")
        kl_grid, variance_grid = eps_grid(eps, points), eps_grid(variance_eps, points)
        results = _results_dir(results)
        records = select(ok_records(results), parse_where(where))
        curves = mean_curves(collapse_curves(results, records, kl_grid, variance_grid, delta))
    except ReportError as error:
        fail(str(error))
    stem = (out or results / "figures") / "collapse"
    paths = save_figure(plot_collapse(curves, delta), stem)
    curves.to_csv(stem.with_suffix(".csv"), index=False)
    for path in [*paths, stem.with_suffix(".csv")]:
        console.print(f"written {path}", highlight=False)


FIGURES = ("omega", "generations", "tsne")


@app.command()
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
    from mmbench.report import figures
    from mmbench.report.runs import ReportError, ok_records, parse_where, select
    from mmbench.report.style import save_figure
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
    except ReportError as error:
        fail(str(error))
    written = [p for name, fig in drawn.items() for p in save_figure(fig, folder / name)]
    if values is not None:
        values.to_csv(folder / f"{kind}.csv", index=False)
        written.append(folder / f"{kind}.csv")
    for path in written:
        console.print(f"written {path}", highlight=False)


if __name__ == "__main__":
    app()
