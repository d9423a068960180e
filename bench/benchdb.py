"""Shared by the bench scripts: a fresh, migrated database on a given server."""

from __future__ import annotations

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dbdedup import db as dbmod


def fresh_database(admin: str, name: str, migrate: bool = True) -> str:
    """Drop and re-create database ``name`` on the server of ``admin``, migrate it (unless not ``migrate``),
    return its DSN."""
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    params = conninfo_to_dict(admin)
    params["dbname"] = name
    dsn = make_conninfo(**params)
    if migrate:
        dbmod.apply_migrations(dsn)
    return dsn
