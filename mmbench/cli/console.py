"""What every command shares: the console it prints to, the one way a command fails, and
comma-separated option values."""
from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

console = Console()

T = TypeVar("T")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``message`` as an error (literally: brackets in it are not markup; never wrapped,
    so a log keeps each line whole) and exit with ``code``: 2 for bad usage or input, 1 for an
    operation that failed."""
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def csv_list(value: str | None, cast: Callable[[str], T] = str) -> list[T] | None:
    """"a,b" -> ["a", "b"] (each through ``cast``); None stays None."""
    return None if value is None else [cast(v) for v in value.split(",") if v]
