"""``mmbench data``: the data sets there are (embedded, full, your own files), where the full
ones are looked for, download the public ones, verify their checksums. Mounted by
:mod:`mmbench.cli` as the ``data`` sub-command; numpy and the loaders are imported when a
command runs."""

from __future__ import annotations

import re
from functools import partial
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from mmbench.cli.console import console, fail

if TYPE_CHECKING:
    from pathlib import Path

    from mmbench.data.sources import DataFile, Source

app = typer.Typer(
    help="Find, download and verify the full data sets.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

DATA_DIR_HELP = "Data directory \\[default: $MMBENCH_DATA, else ~/.cache/mmbench/data]"
# The layouts of a user's files, in one line each (README "Your own data" has them in full)
USER_FORMATS = {
    "npz": "one .npz: view_<name> arrays (n, ...), labels (n,) or (n, L) 0/1, optional groups "
    "and split (train/valid/test)",
    "parquet": "one .parquet: columns <view>__<i> per feature, labels (or labels__<j>), "
    "optional groups and split",
}


def _size(n_bytes: float) -> str:
    """A byte count for people: 9.9 MB."""
    for unit in ("B", "kB", "MB"):
        if n_bytes < 1000:
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    return f"{n_bytes:.1f} GB"


# A download that fails exits with 1 (a bad name, or an unverified file not trusted, exits with 2).
_fail = partial(fail, code=1)


def _chosen_sources(name: str | None) -> list[Source]:
    from mmbench.data.errors import DataError
    from mmbench.data.sources import SOURCES, sources_for

    if name is None:
        return list(SOURCES.values())
    try:
        return sources_for(name)
    except DataError as error:
        fail(str(error))


def _file_state(root: Path, source: Source, file: DataFile) -> tuple[str, str]:
    """(state, size on disk or expected size in brackets) of one file, for ``list``; no checksum
    is computed."""
    from mmbench.data.sources import find

    found = find(root, source, file)
    if not found:
        return "[red]missing[/]", "" if file.size is None else f"({_size(file.size)})"
    size = sum(p.stat().st_size for p in found)
    if file.is_pattern:
        return f"[green]present[/] ({len(found)} files)", _size(size)
    if found[0].name != file.name:
        return f"[green]present[/] as {found[0].name}", _size(size)
    if file.size is not None and size != file.size:
        return f"[yellow]present, wrong size[/] (expected {_size(file.size)})", _size(size)
    return "[green]present[/]", _size(size)


def _checksum_label(file: DataFile) -> str:
    if file.checksum is None:
        return "[dim]no checksum recorded[/]"
    return f"{file.checksum.split(':')[0]} recorded"


@app.command("list")
def list_data(data_dir: str | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP)) -> None:
    """The data sets: embedded ones (no download), full ones (each source: where its files are
    looked for, present or missing, size, checksum) and the formats of your own files."""
    from mmbench.data import available_datasets, dataset_doc
    from mmbench.data import data_dir as resolve_data_dir
    from mmbench.data.sources import SOURCES

    root = resolve_data_dir(data_dir)
    sourced = {name for source in SOURCES.values() for name in source.datasets}
    embedded = Table(
        "data set",
        "what it is",
        title_justify="left",
        title="[bold]Embedded[/]: ship with mmbench and its dependencies, no download",
    )
    for name in available_datasets():
        if name not in sourced and name not in USER_FORMATS:
            embedded.add_row(name, escape(_plain(dataset_doc(name))))
    console.print(embedded)
    console.print(f"Full data sets: data directory {root}", highlight=False)
    for source in SOURCES.values():
        used_by = ", ".join(source.datasets) or "-"
        table = Table(
            "file",
            "state",
            "size",
            "checksum",
            title_justify="left",
            title=f"[bold]{source.name}[/]: {source.title}\n"
            f"in {source.folder_in(root)}; data sets: {used_by}",
        )
        for file in source.files:
            state, size = _file_state(root, source, file)
            table.add_row(file.name, state, size, _checksum_label(file))
        console.print(table)
    fetchable = [s.name for s in SOURCES.values() if s.fetchable]
    console.print(
        f"Download: mmbench data fetch NAME ({', '.join(fetchable)}). "
        "Verify checksums: mmbench data check.",
        highlight=False,
    )
    own = Table(
        "data set",
        "layout",
        "reader",
        title_justify="left",
        title="[bold]Your own data[/]: data: {name: npz, options: {path: FILE, observed: "
        "[VIEW]}}; a relative path is looked for beside the suite file first",
    )
    for name, layout in USER_FORMATS.items():
        own.add_row(name, escape(layout), _reader_state(name))
    console.print(own)


def _plain(doc: str) -> str:
    """A docstring's reST markup as plain text: ``x`` -> x, :class:`X` -> X."""
    return re.sub(r":\w+:`~?([^`]+)`", r"\1", doc).replace("``", "")


def _reader_state(name: str) -> str:
    """Whether the reader of user format ``name`` is installed."""
    if name != "parquet":
        return "[green]numpy[/]"
    import importlib.util

    if importlib.util.find_spec("pyarrow") is None:
        return "[yellow]needs pyarrow[/]: pip install 'mmbench\\[parquet]'"
    return "[green]pyarrow installed[/]"


@app.command()
def fetch(
    name: str = typer.Argument(
        ..., help="A source (mnist, svhn, xrmb, flickr) or a data set (mnist_svhn, ...)"
    ),
    data_dir: str | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    trust_unverified: bool = typer.Option(
        False,
        "--trust-unverified",
        help="Also install files that have no recorded sha256 (their sha256 is printed)",
    ),
) -> None:
    """Download the public files of a data set: resumable, checksum-verified."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from mmbench.data import data_dir as resolve_data_dir
    from mmbench.data.errors import DataError
    from mmbench.data.fetch import UnverifiedRefused, fetch_source

    root = resolve_data_dir(data_dir)
    chosen = _chosen_sources(name)
    unobtainable = [s for s in chosen if not s.fetchable]
    for source in unobtainable:
        console.print(
            f"[yellow]{source.name}[/] has no public download: obtain it from "
            f"{source.obtain} and put its files in {source.folder_in(root)}",
            highlight=False,
        )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    for source in chosen:
        if source in unobtainable:
            continue
        console.print(f"[bold]{source.name}[/] -> {source.folder_in(root)}", highlight=False)
        try:
            with Progress(*columns, console=console) as progress:
                report = fetch_source(
                    source,
                    root,
                    progress,
                    retry=_retry(source, data_dir),
                    trust_unverified=trust_unverified,
                )
        except UnverifiedRefused as error:
            fail(str(error))
        except DataError as error:
            _fail(str(error))
        for line in report:
            console.print(f"  {line}", highlight=False)
    if unobtainable:
        raise typer.Exit(1)


def _retry(source: Source, data_dir: str | None) -> str:
    return f"mmbench data fetch {source.name}" + (f" --data-dir {data_dir}" if data_dir else "")


@app.command()
def check(
    name: str | None = typer.Argument(None, help="A source or data set \\[default: all]"),
    data_dir: str | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
) -> None:
    """Verify the checksums of the files present; exit status 1 when one does not match."""
    from mmbench.data import data_dir as resolve_data_dir
    from mmbench.data.sources import checksum_matches, find

    root = resolve_data_dir(data_dir)
    table = Table("source", "file", "result", title=f"data directory {root}")
    mismatches = []
    for source in _chosen_sources(name):
        for file in source.files:
            found = find(root, source, file)
            if not found:
                result = "[dim]missing[/]"
            elif file.checksum is None:
                result = "present, [yellow]no checksum recorded[/]"
            elif found[0].name != file.name:
                result = f"present as {found[0].name} (the checksum is for {file.name})"
            else:
                matches, actual = checksum_matches(found[0], file.checksum)
                result = "[green]ok[/]" if matches else "[red]MISMATCH[/]"
                if not matches:
                    mismatches.append(
                        f"{found[0]}: {actual}, expected {file.checksum}; run "
                        f"`{_retry(source, data_dir)}` to download it again"
                    )
            table.add_row(source.name, file.name, result)
    console.print(table)
    for line in mismatches:
        console.print(f"[red]mismatch:[/] {line}", highlight=False)
    if mismatches:
        raise typer.Exit(1)
