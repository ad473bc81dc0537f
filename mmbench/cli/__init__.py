"""The ``mmbench`` command line: ``run`` and ``models`` (:mod:`mmbench.cli.run`), ``table``,
``collapse`` and ``figure`` (:mod:`mmbench.cli.report`), and ``data`` (:mod:`mmbench.cli.data`).
Commands import the heavy libraries (torch, pandas, matplotlib, scikit-learn) when they run, so
``mmbench --help`` starts fast."""
from __future__ import annotations

import typer

from mmbench.cli import data, report, run

app = typer.Typer(help="Benchmark multimodal generative models with missing modalities.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(data.app, name="data")
app.command()(run.run)
app.command()(run.models)
app.command()(report.table)
app.command()(report.collapse)
app.command()(report.figure)
