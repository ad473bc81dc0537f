"""The ``mmbench`` command line: ``run`` and ``models`` (:mod:`mmbench.cli.run`), ``table``,
``collapse`` and ``figure`` (:mod:`mmbench.cli.report`), and ``data`` (:mod:`mmbench.cli.data`).
Commands import the heavy libraries (torch, pandas, matplotlib, scikit-learn, numpy) when they
run, so ``mmbench --help`` starts fast."""

from __future__ import annotations

import typer

from mmbench import __version__
from mmbench.cli import data, report, run

app = typer.Typer(
    help="Benchmark multimodal generative models with missing modalities.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(f"mmbench {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False,
        "--version",
        is_eager=True,
        callback=_print_version,
        help="Print mmbench's version and exit",
    ),
) -> None:
    """The options of ``mmbench`` itself (its help is the Typer's)."""


app.add_typer(data.app, name="data")
app.command()(run.run)
app.command()(run.models)
app.command()(report.table)
app.command()(report.collapse)
app.command()(report.figure)
