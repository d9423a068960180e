"""The database layer: targets, migrations, schema contract, hash-only servers."""

from __future__ import annotations

import subprocess

import psycopg
import pytest

from dbdedup import db as dbmod
from dbdedup.errors import DbdedupError


def test_target_resolution_order(monkeypatch, tmp_path):
    for var in ("DBDEDUP_DATABASE_URL", "DBDEDUP_DATA_DIR", "PGHOST", "PGDATABASE", "PGSERVICE", "PGPORT", "PGHOSTADDR"):
        monkeypatch.delenv(var, raising=False)
    assert dbmod.resolve_target("postgresql://x/y").dsn == "postgresql://x/y"
    monkeypatch.setenv("DBDEDUP_DATABASE_URL", "postgresql://env/db")
    assert dbmod.resolve_target().dsn == "postgresql://env/db"
    assert dbmod.resolve_target("postgresql://flag/db").dsn == "postgresql://flag/db"
    monkeypatch.delenv("DBDEDUP_DATABASE_URL")
    monkeypatch.setenv("PGHOST", "somewhere")
    target = dbmod.resolve_target()
    assert target.dsn == "" and not target.embedded
    monkeypatch.delenv("PGHOST")
    monkeypatch.setenv("DBDEDUP_DATA_DIR", str(tmp_path / "d"))
    target = dbmod.resolve_target()
    assert target.embedded and target.data_dir == tmp_path / "d"
    assert dbmod.resolve_target(data_dir=tmp_path / "e").data_dir == tmp_path / "e"


def test_head_revision_from_file_names_is_alembics_head():
    assert dbmod.head_revision() == dbmod.alembic_head_revision()


def test_current_database_needs_no_alembic_import(db_dsn):
    import subprocess
    import sys

    code = (
        "import sys; from dbdedup import db; "
        f"assert db.apply_migrations({db_dsn!r}) is False; "
        "print('alembic' in sys.modules, 'sqlalchemy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_migrate_creates_schema_and_is_idempotent(empty_db_dsn):
    assert dbmod.apply_migrations(empty_db_dsn) is True
    assert dbmod.apply_migrations(empty_db_dsn) is False
    with psycopg.connect(empty_db_dsn) as conn:
        assert dbmod.current_revision(conn) == dbmod.head_revision()
        assert dbmod.has_pgvector(conn)


def _schema_dump(dsn: str) -> str:
    """Catalog listing of schema dbdedup: enough to compare two databases."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            """
            SELECT c.relkind::text, c.relname, coalesce(obj_description(c.oid, 'pg_class'), ''),
                   coalesce((SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', '
                                               ORDER BY a.attnum)
                             FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'dbdedup'
            UNION ALL
            SELECT 'f', p.oid::regprocedure::text, coalesce(obj_description(p.oid, 'pg_proc'), ''), md5(p.prosrc)
            FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = 'dbdedup'
            ORDER BY 1, 2
            """
        ).fetchall()
    return "\n".join(" | ".join(r) for r in rows)


def test_downgrade_then_upgrade_gives_the_same_schema(empty_db_dsn):
    dbmod.apply_migrations(empty_db_dsn)
    first = _schema_dump(empty_db_dsn)
    dbmod.downgrade_migrations(empty_db_dsn, "0004")
    with psycopg.connect(empty_db_dsn) as conn:
        assert dbmod.current_revision(conn) == "0004"
        assert conn.execute("SELECT to_regclass('dbdedup.schema_definitions')").fetchone()[0] is None
    assert dbmod.apply_migrations(empty_db_dsn) is True
    assert _schema_dump(empty_db_dsn) == first


def test_below_the_baseline_is_refused_in_one_line(empty_db_dsn):
    dbmod.apply_migrations(empty_db_dsn)
    with pytest.raises(DbdedupError) as info:
        dbmod.downgrade_migrations(empty_db_dsn, "base")
    assert "baseline" in info.value.message


def test_every_public_object_has_a_comment(db_dsn):
    with psycopg.connect(db_dsn) as conn:
        missing = conn.execute(
            """
            SELECT c.relkind::text || ' ' || c.relname
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'dbdedup' AND c.relkind IN ('r', 'v', 'm', 'S', 'p')
              AND obj_description(c.oid, 'pg_class') IS NULL
            UNION ALL
            SELECT 'function ' || p.oid::regprocedure::text
            FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = 'dbdedup' AND obj_description(p.oid, 'pg_proc') IS NULL
            """
        ).fetchall()
    assert missing == []


def test_analyze_if_changed_is_autovacuums_default_threshold(db_dsn):
    """dbdedup.analyze_if_changed, the one rule of the loader's and the cluster builds' ANALYZE: the table is analysed
    once the rows changed exceed 50 + 10% of the rows its statistics count; a table that is not there is left alone."""
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE counted AS SELECT g FROM generate_series(1, 400) g")  # (no autovacuum)

        def analyse(changed: int) -> tuple[bool, int]:
            done = conn.execute("SELECT dbdedup.analyze_if_changed('counted', %s)", (changed,)).fetchone()[0]
            planned = conn.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = 'counted'::regclass").fetchone()
            return done, planned[0]

        assert analyse(50) == (False, -1)  # never analysed: 50 + 0
        assert analyse(51) == (True, 400)
        assert analyse(90) == (False, 400)  # 50 + 40
        assert analyse(91) == (True, 400)
        assert conn.execute("SELECT dbdedup.analyze_if_changed(NULL, 1000)").fetchone()[0] is False
        assert dbmod.analyze_if_changed(conn, "dbdedup.no_such_table", 1000) is False
        assert dbmod.analyze_if_changed(conn, "counted", 91) is True


def test_plain_server_runs_hash_only(plain_pg_dsn):
    dbmod.apply_migrations(plain_pg_dsn)
    with psycopg.connect(plain_pg_dsn) as conn:
        assert dbmod.current_revision(conn) == dbmod.head_revision()
        assert not dbmod.has_pgvector(conn)
        assert conn.info.server_version < 180000


def test_unreachable_server_is_a_clear_error():
    with pytest.raises(DbdedupError) as info:
        dbmod.open_connection("host=/nonexistent-dir dbname=x connect_timeout=2")
    assert "cannot connect" in info.value.message
    assert info.value.hint
