"""Shared by the bench scripts: a fresh, migrated database on a given server, and the embedded servers a
bench starts, stopped when it ends."""

from __future__ import annotations

from pathlib import Path

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


_started: list[Path] = []


def start_embedded(data_dir: Path) -> str:
    """Start dbdedup's embedded server in ``data_dir`` (initialising it on first use); return its admin URI.
    ``stop_started`` stops it (the server outlives the bench's process otherwise, as for dbdedup's commands)."""
    admin = dbmod.start_embedded(Path(data_dir))
    if Path(data_dir) not in _started:
        _started.append(Path(data_dir))
    return admin


def stop_started() -> None:
    """Stop every embedded server ``start_embedded`` started: called when a bench ends, however it ends."""
    while _started:
        dbmod.stop_embedded(_started.pop())
