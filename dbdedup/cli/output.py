"""Shared output formats for commands whose output is data: table, json, csv, ndjson."""

from __future__ import annotations

import csv
import json
import sys
from typing import Any, Iterable, Sequence, TextIO

import click

FORMATS = ("table", "json", "csv", "ndjson")


def format_option(default: str = "table", choices: Sequence[str] = FORMATS):
    """The ``--format`` option shared by data commands; its help names only the ``choices`` offered."""
    for_tools = "/".join(c for c in choices if c != "table")
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(list(choices)),
        default=default,
        show_default=True,
        help=f"Output format: a table for people, {for_tools} for tools." if "table" in choices
        else f"Output format: {for_tools}.",
    )


def _plain(value: Any) -> Any:
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def emit_rows(
    rows: Iterable[dict[str, Any]],
    columns: Sequence[str],
    fmt: str,
    *,
    title: str | None = None,
    out: TextIO | None = None,
) -> None:
    """Write ``rows`` (dicts keyed by ``columns``) to stdout in ``fmt``."""
    out = out or sys.stdout
    if fmt == "json":
        json.dump([{c: _plain(r.get(c)) for c in columns} for r in rows], out, indent=2)
        out.write("\n")
    elif fmt == "ndjson":
        for r in rows:
            out.write(json.dumps({c: _plain(r.get(c)) for c in columns}) + "\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for r in rows:
            writer.writerow(["" if r.get(c) is None else _plain(r.get(c)) for c in columns])
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for c in columns:
            table.add_column(c.replace("_", " "), overflow="fold")
        for r in rows:
            table.add_row(*("" if r.get(c) is None else str(_plain(r.get(c))) for c in columns))
        Console(file=out, soft_wrap=False).print(table)
