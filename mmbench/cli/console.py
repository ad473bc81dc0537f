"""What every command shares: the console it prints to (mmbench's logged warnings too, e.g. a
record that cannot be read), the one way a command fails, the one way Ctrl-C ends a command,
and comma-separated option values."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar, overload

import typer
from rich.console import Console
from rich.markup import escape

console = Console()

T = TypeVar("T")

INTERRUPTED = "interrupted; run the same command to resume"


class _ConsoleHandler(logging.Handler):
    """Prints the warnings of mmbench's loggers as "warning: ..." lines on the console."""

    def emit(self, record: logging.LogRecord) -> None:
        # not wrapped: the message names files, which stay whole for copying
        console.print(
            f"[yellow]warning:[/] {escape(record.getMessage())}", highlight=False, soft_wrap=True
        )


logging.getLogger("mmbench").addHandler(_ConsoleHandler(logging.WARNING))


def interruptible(command: Callable[..., T]) -> Callable[..., T]:
    """Decorator: Ctrl-C during ``command`` prints one line, :data:`INTERRUPTED`, and exits with
    130 (128 + SIGINT), without a traceback."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> T:
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            console.print(INTERRUPTED, highlight=False)
            raise typer.Exit(130) from None

    return run


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``message`` as an error (literally: brackets in it are not markup; never wrapped,
    so a log keeps each line whole) and exit with ``code``: 2 for bad usage or input, 1 for an
    operation that failed."""
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@overload
def csv_list(value: str | None) -> list[str] | None: ...


@overload
def csv_list(value: str | None, cast: Callable[[str], T]) -> list[T] | None: ...


def csv_list(value: str | None, cast: Callable[[str], Any] = str) -> list[Any] | None:
    """ "a,b" -> ["a", "b"] (each through ``cast``); None stays None."""
    return None if value is None else [cast(v) for v in value.split(",") if v]
