"""What the command line shows: a progress bar while a run goes, a table per input after it,
and one-line errors. `-q` keeps only errors and the closing counts; `-v` adds Prefect's logs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from mmflow.flows.progress import ItemDone, listening
from mmflow.tasks.models import Status
from mmflow.tasks.redaction import redact

console = Console()
errors = Console(stderr=True, soft_wrap=True)  # one error, one line, whatever the width
R = TypeVar("R")


class Verbosity:
    """Set once by the root command (`-q`, `-v`)."""

    level = 0  # -1 quiet, 0 normal, 1+ verbose


def fail(kind: str, message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error (`kind: message`) and return the exit to raise."""
    errors.print(f"[red]{escape(kind)}:[/] {escape(redact(message))}")
    return typer.Exit(code)


def note(message: str) -> None:
    if Verbosity.level >= 0:
        console.print(message)


def status_style(status: Status) -> str:
    return {"ok": "green", "rejected": "yellow", "failed": "red"}[status.value]


def name_of(uri: str) -> str:
    return PurePosixPath(uri.replace("\\", "/")).name or uri


def with_progress(
    label: str,
    total: float,
    run: Callable[[], R],
    *,
    units: str = "",
    units_of: Callable[[ItemDone], float] = lambda event: event.units,
) -> R:
    """Run a flow while a bar advances as each input ends (flows.progress events)."""
    if Verbosity.level < 0:
        return run()
    counter = (
        TextColumn(f"{{task.completed:.0f}}/{{task.total:.0f}} {units}")
        if units
        else MofNCompleteColumn()
    )
    progress = Progress(
        TextColumn(f"[bold]{escape(label)}"),
        BarColumn(),
        counter,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
        console=console,
    )
    with progress:
        bar = progress.add_task("starting…", total=total or 1.0)

        def advance(event: ItemDone) -> None:
            progress.update(bar, advance=units_of(event), description=escape(name_of(event.uri)))

        with listening(advance):
            return run()


def print_counts(statuses: list[Status], out: str) -> None:
    counts = {s: statuses.count(s) for s in Status}
    console.print(
        f"{counts[Status.OK]} ok, {counts[Status.REJECTED]} rejected, "
        f"{counts[Status.FAILED]} failed · manifest: {escape(redact(out))}/manifest.jsonl",
        soft_wrap=True,
    )


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    if Verbosity.level < 0:
        return
    table = Table(title=escape(title))
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(redact(cell) if isinstance(cell, str) else cell for cell in row))
    console.print(table)
