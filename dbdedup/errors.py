"""The one error type users see, and how database and file system failures become one."""

from __future__ import annotations

import os
import re


class DbdedupError(Exception):
    """A failure the user can act on: a one-line message plus a hint.

    The CLI prints ``message`` and ``hint`` and exits non-zero; the traceback
    is shown only with ``-v``.
    """

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception by the CLI: a command stops as after Ctrl-C (its run is
    recorded as interrupted, its worker processes stopped, its locks released)."""


_BAD_DSN = re.compile(r"connection info string|connection option|in URI|URI query parameter|missing \"=\"")

_AGAIN = "run the same command again: what was committed is kept, and a load carries on where it stopped"


# Citus adds this context to an error it passes on from a worker node (remote_commands.c, ReportResultError)
_ON_NODE = re.compile(r"while executing command on (\S+:\d+)")
# what libpq says when a connection it had is gone; Citus passes it on as XX000 when the node sent no error
_CONNECTION_LOST = re.compile(r"server closed the connection|connection not open|could not receive data|"
                              r"no connection to the server|SSL SYSCALL error|terminating connection")


def _lost_worker_node(exc: BaseException, first: str) -> str | None:
    """The worker node whose connection the Citus coordinator lost, as 'host:port' ('' when it does not
    say which), or None when ``exc`` is not about a lost worker node."""
    import psycopg

    if isinstance(exc, psycopg.OperationalError) and "remote node" in first:
        return ""
    on_node = _ON_NODE.search(getattr(getattr(exc, "diag", None), "context", None) or "")
    if on_node is None:
        return None
    sqlstate = getattr(exc, "sqlstate", None) or ""
    if sqlstate.startswith("08") or sqlstate.startswith("57P") or _CONNECTION_LOST.search(first):
        return on_node.group(1)
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0].strip() if text else exc.__class__.__name__
    return line.removeprefix("connection is bad: ")


def database_error(exc: BaseException) -> DbdedupError | None:
    """A DbdedupError (message and hint) for a psycopg error, or None for anything else.

    What PostgreSQL says goes in the message, what to do about it in the hint: a connection
    string that does not parse, a lost server, a full disk, a deadlock, a role without the
    rights a command needs, a damaged schema.
    """
    import psycopg
    from psycopg import errors as pe

    if not isinstance(exc, psycopg.Error):
        return None
    first = _first_line(exc)
    if isinstance(exc, psycopg.ProgrammingError) and exc.sqlstate is None and _BAD_DSN.search(str(exc)):
        return DbdedupError(
            f"the database connection string is not valid: {first}",
            hint="--db (or DBDEDUP_DATABASE_URL) takes a URI such as postgresql://user@host:5432/photos "
                 "or key=value pairs such as 'host=dbhost dbname=photos user=me'",
        )
    if isinstance(exc, pe.InsufficientPrivilege):
        return DbdedupError(
            f"the database refused: {first}",
            hint="this role may only read (dbdedup.grant_read_access gives read access): load, match, apply and a "
                 "report that has to re-cluster write to the database, so run them as the role that owns the "
                 "dbdedup schema; read-only roles can query the dbdedup views from psql",
        )
    if isinstance(exc, (pe.UndefinedTable, pe.UndefinedFunction, pe.UndefinedColumn, pe.InvalidSchemaName,
                        pe.UndefinedObject)):
        return DbdedupError(
            f"the dbdedup schema is damaged: {first}",
            hint="something outside dbdedup dropped or changed it (dbdedup migrate only adds what newer versions "
                 "bring); restore the database from a backup, or load again into a new one (--db)",
        )
    if isinstance(exc, pe.DiskFull):
        return DbdedupError(
            f"the database server's disk is full: {first}",
            hint="free space where the server keeps its data, then " + _AGAIN,
        )
    if isinstance(exc, pe.DeadlockDetected):
        return DbdedupError(f"the database ended this command to break a deadlock: {first}",
                            hint="another session was changing the same data at the same time; " + _AGAIN)
    if isinstance(exc, (pe.SerializationFailure, pe.LockNotAvailable)):
        return DbdedupError(
            f"the database stopped this command: {first}",
            hint="another session was changing the same data; " + _AGAIN,
        )
    if isinstance(exc, (pe.OutOfMemory, pe.TooManyConnections, pe.InsufficientResources)):
        return DbdedupError(f"the database server is short of resources: {first}",
                            hint="ask its administrator, or try again later")
    lost_node = _lost_worker_node(exc, first)
    if lost_node is not None:
        # Citus: the coordinator lost a worker node (while connecting to it, or in mid-command, as when it
        # prepares the distributed transaction's commit); the transaction was rolled back on every node
        where = f" ({lost_node})" if lost_node else ""
        return DbdedupError(
            f"a worker node of the Citus cluster is unreachable: {first}{where}",
            hint="the transaction that failed was rolled back on every node; start the node again (or remove it "
                 "from the cluster with citus_remove_node), then " + _AGAIN,
        )
    if isinstance(exc, psycopg.OperationalError):
        return DbdedupError(
            f"lost the connection to the database: {first}",
            hint="the server stopped, restarted or ended this session; check that it runs (the embedded one "
                 "starts again with the next command), then " + _AGAIN,
        )
    return DbdedupError(f"database error: {first}", hint="run the command again with -v for the details")


def file_problem(exc: OSError) -> str:
    """What went wrong with a path, in words: "PATH: No such file or directory", "PATH exists and is not a folder"."""
    where = os.fsdecode(exc.filename) if exc.filename is not None else "a file"
    if exc.filename2 is not None:
        where += f" -> {os.fsdecode(exc.filename2)}"
    if isinstance(exc, NotADirectoryError):
        return f"{where}: a part of this path is a file, not a folder"
    if isinstance(exc, FileExistsError) and exc.filename is not None and not os.path.isdir(exc.filename):
        return f"{where} exists and is not a folder"  # (a folder to be made there)
    return f"{where}: {exc.strerror or exc.__class__.__name__}"


def file_error(exc: OSError) -> DbdedupError:
    """A file system failure on a path (a folder that does not exist, no permission, a full disk) as one line."""
    return DbdedupError(file_problem(exc),
                        hint="check that the path and the folders above it exist and that you may write there "
                             "(-v shows what dbdedup was doing)")


def user_error(exc: BaseException) -> DbdedupError | None:
    """``exc`` as a DbdedupError when a user can act on it; None when it is a bug (keep the traceback)."""
    if isinstance(exc, DbdedupError):
        return exc
    if type(exc).__module__.split(".")[0] == "psycopg":
        return database_error(exc)
    if isinstance(exc, OSError) and exc.filename is not None:  # a path given, or one to be written
        return file_error(exc)
    return None
