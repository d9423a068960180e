"""`dbdedup migrate` and `dbdedup db ...`: the database itself."""

from __future__ import annotations

import os
import sys

import click

from .. import db as dbmod
from .. import distributed
from ..errors import DbdedupError
from .context import note, settings_of


def register(cli: click.Group) -> None:
    cli.add_command(migrate)
    cli.add_command(db_group)


@click.command()
@click.option("--to", "revision", default="head", show_default=True, help="Target migration revision.")
@click.pass_context
def migrate(ctx: click.Context, revision: str) -> None:
    """Create or upgrade the dbdedup schema (every command also does this on first use).

    \b
    Example:
      dbdedup --db postgresql://me@dbhost/photos migrate
    """
    settings = settings_of(ctx)
    target = dbmod.resolve_target(settings.db, settings.data_dir)
    dsn = dbmod.target_uri(target)
    with dbmod.open_connection(dsn, autocommit=True) as conn:
        before = dbmod.current_revision(conn)
    head = dbmod.head_revision()
    if revision != "head" and before is not None and revision < before:
        dbmod.downgrade_migrations(dsn, revision)
    else:
        dbmod.apply_migrations(dsn, revision)
    with dbmod.open_connection(dsn, autocommit=True) as conn:
        after = dbmod.current_revision(conn)
        vector = dbmod.has_pgvector(conn)
        spread = distributed.describe(conn)
    note(ctx, f"{target.describe()}: schema dbdedup at {after} (was {before or 'empty'}; newest {head})")
    if spread:
        note(ctx, spread)
    if not vector:
        note(ctx, dbmod.HASH_ONLY_MESSAGE)


@click.group("db")
def db_group() -> None:
    """The embedded PostgreSQL server: its URL, a psql shell, stopping it."""


def _embedded_target(ctx: click.Context) -> dbmod.Target:
    settings = settings_of(ctx)
    target = dbmod.resolve_target(settings.db, settings.data_dir)
    return target


@db_group.command("url")
@click.pass_context
def db_url(ctx: click.Context) -> None:
    """Print a connection URI (starting the embedded server if needed).

    The embedded server's URI names its socket and no password: only the
    account that owns the server can connect with it (peer authentication).

    \b
    Example:
      psql "$(dbdedup db url)" -c 'select count(*) from dbdedup.images'
    """
    target = _embedded_target(ctx)
    click.echo(dbmod.target_uri(target))


@db_group.command("psql", context_settings={"ignore_unknown_options": True})
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def db_psql(ctx: click.Context, psql_args: tuple[str, ...]) -> None:
    """Open psql on the database (extra arguments go to psql).

    \b
    Example:
      dbdedup db psql -c 'table dbdedup.exact_duplicates'
    """
    target = _embedded_target(ctx)
    uri = dbmod.target_uri(target)
    psql = dbmod.psql_path() if target.embedded else "psql"
    sys.stdout.flush()
    try:
        os.execvp(str(psql), [str(psql), uri, *psql_args])
    except OSError as exc:
        raise DbdedupError(f"cannot run psql: {exc.strerror}", hint="install a PostgreSQL client") from exc


@db_group.command("stop")
@click.pass_context
def db_stop(ctx: click.Context) -> None:
    """Stop the embedded server (the next command starts it again).

    \b
    Example:
      dbdedup db stop
      DBDEDUP_DATA_DIR=/tmp/trial dbdedup db stop   # another data directory's server
    """
    target = _embedded_target(ctx)
    if not target.embedded:
        raise DbdedupError("`db stop` applies to the embedded server only", hint="omit --db / DBDEDUP_DATABASE_URL")
    assert target.data_dir is not None
    if dbmod.stop_embedded(target.data_dir):
        note(ctx, f"stopped the embedded server in {target.data_dir}")
    else:
        note(ctx, f"the embedded server in {target.data_dir} was not running")
