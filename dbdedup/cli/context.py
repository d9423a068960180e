"""What every command takes from the global options: the settings, a database, notes on stderr.

Apart from ``main`` so that the command modules, which ``main`` registers, need not import it.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import click

from ..reasons import DEFAULT_MAX_PIXELS
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


class PathParam(click.Path):
    """``click.Path`` that refuses an empty string: ``dbdedup load "$PHOTOS"`` with the variable unset would
    otherwise load the current folder, and ``apply --move-to "$DEST"`` move files under it."""

    def convert(self, value, param, ctx):
        if isinstance(value, (str, bytes)) and not value:
            self.fail("an empty path (an unset shell variable?); name the path, or . for this folder", param, ctx)
        return super().convert(value, param, ctx)


def warn(message: str) -> None:
    """A line on stderr that --quiet does not silence: something the user must know before acting."""
    click.echo(printable(f"warning: {message}"), err=True)


def workers_option(what: str):
    """The ``--workers`` option of a command that starts a pool of processes (``what`` they do): one a core by
    default, at most ``worker_pool.most_workers()``."""
    def at_most(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
        if value is None:
            return None
        from ..worker_pool import most_workers  # (multiprocessing: only when the option is given)

        most = most_workers()
        if value > most:
            raise click.BadParameter(f"{value} is more than {most}, the most this machine takes (4 a core, or 32): "
                                     "each worker is a process that holds images in memory")
        return value

    return click.option("--workers", type=click.IntRange(min=1), default=None, callback=at_most,
                        help=f"{what} [default: all cores; at most 4 a core, or 32].")


def max_pixels_option(refused: str):
    """The ``--max-pixels`` option of a command that decodes files it has not recorded (load, similar);
    ``refused`` says what becomes of a file over it."""
    return click.option("--max-pixels", type=click.IntRange(min=1), default=DEFAULT_MAX_PIXELS, show_default=True,
                        help=f"Refuse images with more pixels than this (decompression bombs), read from the file's "
                             f"header before anything is decoded; {refused}.")
