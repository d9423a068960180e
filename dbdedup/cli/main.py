"""`dbdedup` entry point: global options, error handling, and the command groups."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import traceback

import click

from .. import __version__
from ..errors import Terminated, user_error
from ..terminal import printable
from .context import PathParam, Settings


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


class DbdedupGroup(click.Group):
    """Turns user errors (DbdedupError, database failures) into one line plus a hint on stderr and
    a non-zero exit; the traceback only with -v. SIGTERM stops a command as Ctrl-C does."""

    def invoke(self, ctx: click.Context):
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _raise_terminated)
        try:
            return super().invoke(ctx)
        except Terminated:
            click.echo("dbdedup: stopped (SIGTERM); run the same command again to continue", err=True)
            ctx.exit(143)
        except KeyboardInterrupt:
            click.echo("dbdedup: interrupted; run the same command again to continue", err=True)
            ctx.exit(130)
        except click.exceptions.Exit:
            raise
        except Exception as exc:
            error = user_error(exc)
            if error is None:
                raise
            settings = ctx.obj if isinstance(ctx.obj, Settings) else None
            if settings and settings.verbose:
                traceback.print_exc(file=sys.stderr)
            click.echo(f"dbdedup: error: {printable(error.message)}", err=True)
            if error.hint:
                click.echo(f"hint: {printable(error.hint)}", err=True)
            ctx.exit(1)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


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
    type=PathParam(file_okay=False),
    help="Data directory of the embedded server [env DBDEDUP_DATA_DIR; default: the user data dir].",
)
@click.option(
    "--lock-wait",
    envvar="DBDEDUP_LOCK_WAIT",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="How long load and match wait for each other (the load lock) before giving up and naming what holds "
    "it [env DBDEDUP_LOCK_WAIT; default: 30].",
)
@click.option("-v", "--verbose", count=True, help="Show tracebacks and debug logs.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or notes on stderr.")
@click.version_option(__version__, prog_name="dbdedup")
@click.pass_context
def cli(ctx: click.Context, db: str | None, data_dir: str | None, lock_wait: float | None, verbose: int,
        quiet: bool) -> None:
    """Find duplicate and near-duplicate images with PostgreSQL.

    Global options may also follow the command (dbdedup load ~/Pictures --quiet).

    \b
    Example:
      dbdedup load ~/Pictures      # hash every image into the database
      dbdedup report               # clusters of duplicates, keeper first
    """
    ctx.obj = Settings(db=db, data_dir=data_dir, verbose=verbose, quiet=quiet, lock_wait=lock_wait)
    _configure_logging(verbose)


def _configure_logging(verbose: int) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


# ---------------------------------------------------------------- global options after the command


def _late_setting(ctx: click.Context, param: click.Parameter, value):
    """A global option given after the command name: it updates the root's Settings."""
    root = ctx.find_root().obj
    if not isinstance(root, Settings) or value is None:
        return
    if param.name == "verbose":
        if value:
            root.verbose += value
            _configure_logging(root.verbose)
    elif param.name == "quiet":
        root.quiet = root.quiet or value
    else:
        setattr(root, param.name, value)


def _late_options() -> list[click.Option]:
    common = {"expose_value": False, "callback": _late_setting, "hidden": True}
    return [
        click.Option(["--db"], metavar="DSN", **common),
        click.Option(["--data-dir"], type=PathParam(file_okay=False), **common),
        click.Option(["--lock-wait"], type=click.FloatRange(min=0), **common),
        click.Option(["-v", "--verbose"], count=True, **common),
        click.Option(["-q", "--quiet"], is_flag=True, **common),
    ]


def accept_global_options(command: click.Command) -> None:
    """Let ``command`` (and the commands of a group) take the global options after its name too, as
    cron lines often do (``dbdedup load ~/Pictures --quiet``). Commands that pass their unknown
    options on (``db psql``) are left alone."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            accept_global_options(sub)
        return
    if command.context_settings.get("ignore_unknown_options"):
        return
    taken = {opt for p in command.params for opt in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])}
    for option in _late_options():
        if not taken.intersection(option.opts):
            command.params.append(option)


def _register_commands() -> None:
    from . import db_commands

    db_commands.register(cli)
    for name in ("load_commands", "match_commands", "report_commands", "embedding_commands", "review_commands",
                 "verify_commands"):
        try:
            module = __import__(f"dbdedup.cli.{name}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"dbdedup.cli.{name}":
                raise
            continue
        module.register(cli)
    for command in cli.commands.values():
        accept_global_options(command)


_register_commands()


def main() -> None:
    """Console script."""
    cli(prog_name="dbdedup")


if __name__ == "__main__":
    main()
