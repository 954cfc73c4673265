"""Tables and progress bars for people (rich); numbers formatted once, here."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

# Wide enough for the request log when the output is not a terminal (a pipe, a file, a test).
console = Console(width=None if os.isatty(1) else 200, soft_wrap=False)
errors = Console(stderr=True)

Column = tuple[str, str, Callable[[Any], str]]


def text(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def count(value: Any) -> str:
    return "-" if value is None else f"{int(value):,}"


def money(value: Any) -> str:
    if value is None:
        return "unpriced"
    v = float(value)
    if v == 0:
        return "$0"
    return f"${v:,.2f}" if abs(v) >= 1 else f"${v:.6f}" if abs(v) >= 1e-6 else f"${v:.9f}"


def percent(value: Any) -> str:
    return "-" if value is None else f"{float(value) * 100:.1f}%"


def millis(value: Any) -> str:
    return "-" if value is None else f"{float(value):,.0f} ms"


def show(title: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], caption: str | None = None) -> None:
    """Prints `rows` as a table, one column per (header, key, format)."""
    console.print(title, style="bold", highlight=False)
    table = Table()
    for header, _, fmt in columns:
        numeric = fmt is not text
        table.add_column(header, justify="right" if numeric else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(fmt(row.get(key)) for _, key, fmt in columns))
    if not rows:
        table.add_row(*(["(none)"] + [""] * (len(columns) - 1)))
    console.print(table)
    if caption:
        console.print(caption, highlight=False)


@contextmanager
def progress(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr; yields advance(n)."""
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=errors,
        transient=True,
    )
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
