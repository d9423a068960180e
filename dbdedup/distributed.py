"""dbdedup on a Citus cluster: the schema spread over the workers.

When the database dbdedup connects to has the ``citus`` extension (a Citus coordinator), the
migration step that makes or upgrades the tables also distributes them
(``sql/queries/distributed.sql`` says which table goes where and why): images and everything
per image by image id, co-located; the tables of the matching equi-joins by their join key;
the small tables as reference tables. Nothing to ask for: ``dbdedup --db URL`` on a
coordinator does it, and ``dbdedup migrate`` reports it.

The functions keep one definition for both kinds of server; where Citus needs another way
(the block and LSH joins on distributed key tables, ``sql/distributed.sql``), the single-server
functions call ``dbdedup.is_distributed()`` and hand over.

The caller (``dbdedup.db``) holds the migration lock and the transaction.
"""

from __future__ import annotations

import psycopg

from .errors import DbdedupError
from .sqlfiles import named_queries


def _queries() -> dict[str, str]:
    return named_queries("queries/distributed.sql")


def citus_state(conn: psycopg.Connection) -> tuple[bool, bool]:
    """(the citus extension is installed, some dbdedup table is not distributed yet)."""
    if conn.execute("SELECT to_regclass('pg_catalog.pg_dist_partition') IS NULL").fetchone()[0]:
        return False, False
    row = conn.execute(_queries()["citus_state"]).fetchone()
    return bool(row[0]), bool(row[1])


def needs_distributing(conn: psycopg.Connection) -> bool:
    """True on a Citus coordinator where a table of schema dbdedup is still a plain table."""
    return citus_state(conn)[1]


def is_distributed(conn: psycopg.Connection) -> bool:
    """True when the dbdedup schema of this database lives on a Citus cluster."""
    return bool(conn.execute(_queries()["is_distributed"]).fetchone()[0])


def describe(conn: psycopg.Connection) -> str | None:
    """One line on how the schema is spread ("on a Citus cluster: 2 worker nodes, ..."), or None off Citus."""
    if not citus_state(conn)[0] or not is_distributed(conn):
        return None
    row = conn.execute(_queries()["describe"]).fetchone()
    return (f"on a Citus cluster: {row[0]} worker node(s); {row[1]} distributed tables of {row[2]} shards each "
            f"(images and per-image tables by image id), {row[3]} reference tables")


def distribute(conn: psycopg.Connection) -> None:
    """Distribute every plain table of schema dbdedup (idempotent; inside the caller's transaction).

    Raises DbdedupError when the cluster has no worker node to put the shards on.
    """
    if not conn.execute(_queries()["worker_count"]).fetchone()[0]:
        raise DbdedupError(
            "the citus extension is installed in this database, but the cluster has no worker node",
            hint="add the workers on the coordinator (SELECT citus_add_node('host', port) in this database), or "
                 "DROP EXTENSION citus to use the database as one server",
        )
    with conn.cursor() as cursor:
        cursor.execute(_queries()["distribute"])


LOADER_QUERIES = ("claim_paths", "upsert_stage", "upsert_stage_embeddings", "mark_missing")


def loader_queries(conn: psycopg.Connection) -> dict[str, str]:
    """The loader's queries that differ on a Citus cluster (none elsewhere).

    ``claim_paths`` gives each new path its image id in ``dbdedup.image_paths``; the two upserts
    then write by image id instead of by path (see ``sql/queries/distributed.sql``).
    """
    if not is_distributed(conn):
        return {}
    queries = _queries()
    return {name: queries[name] for name in LOADER_QUERIES}
