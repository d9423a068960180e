"""The schema: new databases made from ``sql/``, functions and views re-applied when their text changes.

Three kinds of SQL, each with one home:
- tables: ``sql/tables.sql`` makes a new database; ``migrations/`` upgrades an existing one
  (Alembic versions, table changes only);
- functions and views: ``sql/bits.sql``, ``signals.sql``, ``matching.sql``, ``clusters.sql`` and
  ``api.sql`` hold their current definitions. A database records the SHA-256 of the text it
  runs (``dbdedup.schema_definitions``); when dbdedup ships another text, every object is
  dropped and created again from these files in one transaction (the "replaceable objects" of
  Alembic's cookbook, re-applied like Flyway's repeatable migrations);
- named queries: ``sql/queries/*.sql``, read by the modules that run them.

The caller (``dbdedup.db``) holds the migration lock and the transaction.
"""

from __future__ import annotations

import hashlib
from functools import cache

import psycopg

from .sqlfiles import named_queries, read_sql

# In dependency order: views and SQL functions need what they call to exist.
DEFINITION_FILES = ("bits.sql", "signals.sql", "matching.sql", "keypoints.sql", "distributed.sql", "verification.sql",
                    "clusters.sql", "api.sql")


def _queries() -> dict[str, str]:
    return named_queries("queries/schema.sql")


@cache
def definitions_checksum() -> str:
    """SHA-256 of the function and view definitions this version of dbdedup ships."""
    digest = hashlib.sha256()
    for name in DEFINITION_FILES:
        digest.update(name.encode() + b"\0" + read_sql(name).encode() + b"\0")
    return digest.hexdigest()


def stored_checksum(conn: psycopg.Connection) -> str | None:
    """The checksum of the definitions the database runs, or None (a new or pre-0005 database)."""
    exists = conn.execute("SELECT to_regclass('dbdedup.schema_definitions') IS NOT NULL").fetchone()[0]
    if not exists:
        return None
    row = conn.execute(_queries()["stored_checksum"]).fetchone()
    return row[0] if row else None


def _execute_file(conn: psycopg.Connection, name: str) -> None:
    # Straight to a cursor with no parameters: psycopg sends the text as is (many statements,
    # literal % signs), with no placeholder parsing.
    with conn.cursor() as cursor:
        cursor.execute(read_sql(name))


def install_tables(conn: psycopg.Connection) -> None:
    """Create every table of a new database from ``sql/tables.sql`` (the schema must be empty)."""
    _execute_file(conn, "tables.sql")


def drop_definitions(conn: psycopg.Connection) -> None:
    """Drop every function, view and trigger of schema dbdedup and forget which text was applied."""
    q = _queries()
    conn.execute(q["drop_definitions"])
    conn.execute(q["forget_checksum"])


def apply_definitions(conn: psycopg.Connection) -> None:
    """Drop every function, view and trigger of schema dbdedup and create them again from ``sql/``.

    Roles given read access keep it: ``grant_read_access`` runs again for each.
    """
    q = _queries()
    readers = [row[0] for row in conn.execute(q["reader_roles"]).fetchall()]
    conn.execute("SET LOCAL check_function_bodies = off")
    conn.execute(q["drop_definitions"])
    for name in DEFINITION_FILES:
        _execute_file(conn, name)
    conn.execute(q["enable_embeddings"])
    for role in readers:
        conn.execute(q["grant_read_access"], {"role": role})
    conn.execute(q["record_checksum"], {"checksum": definitions_checksum()})
