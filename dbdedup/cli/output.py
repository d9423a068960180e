"""Shared output formats for commands whose output is data: table, json, csv, ndjson."""

from __future__ import annotations

import csv
import json
import sys
from typing import Any, Iterable, Sequence, TextIO

import click

from ..terminal import printable

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
        from rich.text import Text

        # (Text: a path or a value with brackets in it is shown as it is, not read as markup)
        console = Console(file=out, soft_wrap=False)
        headers = [c.replace("_", " ") for c in columns]
        cells = [[_cell(r.get(c)) for c in columns] for r in rows]
        # a table's width: each column's widest cell, a space either side and a border after
        natural = sum(max([len(h), *(len(row[k]) for row in cells)]) for k, h in enumerate(headers)) + 3 * len(headers) + 1
        if title:
            # (on a line of its own, never broken: as a table's title it wrapped to the table's width, and a path
            # in it is copied whole from a terminal that wraps it)
            console.print(Text(printable(title)), soft_wrap=True)
        if not cells:
            console.print("(none)")
        elif natural <= console.width:
            table = Table()
            for header in headers:
                table.add_column(header, overflow="fold")
            for row in cells:
                table.add_row(*map(Text, row))
            console.print(table)
        else:
            # too wide for the terminal (a path beside ten numbers, folded into every column): one block a
            # row, as psql's expanded display (\x) gives it; a value longer than the line is left to the terminal
            # to wrap, so that a path is copied whole
            names = max(map(len, headers))
            for number, row in enumerate(cells, 1):
                console.rule(f"[{number}]", align="left")
                for header, value in zip(headers, row):
                    console.print(Text.assemble((header.ljust(names), "bold"), "  ", value), soft_wrap=True)


def _cell(value: Any) -> str:
    # for reading: a cosine of 0.99999994 is 1.000; json and csv keep every digit
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return printable(str(_plain(value)))
