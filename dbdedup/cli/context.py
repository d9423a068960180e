"""What every command takes from the global options: the settings, a database, notes on stderr.

Apart from ``main`` so that the command modules, which ``main`` registers, need not import it.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import click

from ..terminal import printable


@dataclass
class Settings:
    """Global options every command sees (through ``ctx.obj``)."""

    db: str | None
    data_dir: str | None
    verbose: int
    quiet: bool
    lock_wait: float | None = None


@contextmanager
def open_db(ctx: click.Context, *, autocommit: bool = False) -> Iterator:
    """Connect as the global options say (embedded server by default), migrations applied."""
    from ..db import connect

    settings: Settings = ctx.find_root().obj
    with connect(settings.db, settings.data_dir, autocommit=autocommit) as conn:
        yield conn


def settings_of(ctx: click.Context) -> Settings:
    """The global options."""
    return ctx.find_root().obj


def note(ctx: click.Context, message: str) -> None:
    """A line on stderr, unless --quiet."""
    if not settings_of(ctx).quiet:
        click.echo(printable(message), err=True)
