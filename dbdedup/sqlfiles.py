"""Reading the SQL files shipped with the package (top-level ``sql/``, installed as ``dbdedup.sql``)."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def read_sql(name: str) -> str:
    """Return the text of ``sql/<name>`` (for example ``"queries/load.sql"`` or ``"tables.sql"``)."""
    return resources.files("dbdedup.sql").joinpath(name).read_text(encoding="utf-8")


@cache
def named_queries(name: str) -> dict[str, str]:
    """Split a SQL file into named queries.

    Each query starts with a line ``-- name: some_name``; the text up to the
    next such line is the query.
    """
    queries: dict[str, str] = {}
    current: str | None = None
    lines: list[str] = []
    for line in read_sql(name).splitlines():
        if line.startswith("-- name:"):
            if current is not None:
                queries[current] = "\n".join(lines).strip()
            current = line.split(":", 1)[1].strip()
            lines = []
        elif current is not None:
            lines.append(line)
    if current is not None:
        queries[current] = "\n".join(lines).strip()
    return queries
