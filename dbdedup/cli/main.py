"""`dbdedup` entry point: global options, error handling, and the command groups."""

from __future__ import annotations

import logging
import sys
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import click

from .. import __version__
from ..errors import DbdedupError


@dataclass
class Settings:
    """Global options every command sees (through ``ctx.obj``)."""

    db: str | None
    data_dir: str | None
    verbose: int
    quiet: bool


class DbdedupGroup(click.Group):
    """Turns DbdedupError into one line plus a hint on stderr and a non-zero exit."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DbdedupError as exc:
            settings = ctx.obj if isinstance(ctx.obj, Settings) else None
            if settings and settings.verbose:
                traceback.print_exc(file=sys.stderr)
            click.echo(f"dbdedup: error: {exc.message}", err=True)
            if exc.hint:
                click.echo(f"hint: {exc.hint}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("dbdedup: interrupted; run the same command again to continue", err=True)
            ctx.exit(130)


@click.group(cls=DbdedupGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--db",
    envvar="DBDEDUP_DATABASE_URL",
    metavar="DSN",
    help="PostgreSQL 14+ connection string [env DBDEDUP_DATABASE_URL; else libpq's PG* variables; "
    "else an embedded server].",
)
@click.option(
    "--data-dir",
    envvar="DBDEDUP_DATA_DIR",
    type=click.Path(file_okay=False),
    help="Data directory of the embedded server [env DBDEDUP_DATA_DIR; default: the user data dir].",
)
@click.option("-v", "--verbose", count=True, help="Show tracebacks and debug logs.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or notes on stderr.")
@click.version_option(__version__, prog_name="dbdedup")
@click.pass_context
def cli(ctx: click.Context, db: str | None, data_dir: str | None, verbose: int, quiet: bool) -> None:
    """Find duplicate and near-duplicate images with PostgreSQL.

    \b
    Example:
      dbdedup load ~/Pictures      # hash every image into the database
      dbdedup report               # clusters of duplicates, keeper first
    """
    ctx.obj = Settings(db=db, data_dir=data_dir, verbose=verbose, quiet=quiet)
    logging.basicConfig(
        level=logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


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
        click.echo(message, err=True)


def _register_commands() -> None:
    from . import db_commands

    db_commands.register(cli)
    for name in ("load_commands", "match_commands", "report_commands", "embedding_commands"):
        try:
            module = __import__(f"dbdedup.cli.{name}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"dbdedup.cli.{name}":
                raise
            continue
        module.register(cli)


_register_commands()


def main() -> None:
    """Console script."""
    cli(prog_name="dbdedup")


if __name__ == "__main__":
    main()
