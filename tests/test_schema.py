"""The SQL's home: sql/ makes a new database, migrations/ upgrades an old one, and both give one schema.

procrastinate's check: a database made from sql/ and one made by an older dbdedup and then
upgraded are dumped with pg_dump and compared. tests/data/db_0004.sql.gz is a real database made
by dbdedup before the SQL moved (four migrations, examples/ loaded and matched).
"""

from __future__ import annotations

import gzip
import re
import subprocess
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dbdedup import db as dbmod
from dbdedup import schema
from dbdedup.sqlfiles import read_sql

OLD_DATABASE = Path(__file__).parent / "data" / "db_0004.sql.gz"
SQL_DIR = Path(__file__).parent.parent / "sql"
ROUTINE = re.compile(r"^CREATE (?:OR REPLACE )?(FUNCTION|PROCEDURE|VIEW)\s+(dbdedup\.\w+)", re.M)


def _bin(name: str) -> str:
    return str(dbmod.psql_path().parent / name)


def _pg_dump_schema(dsn: str) -> str:
    out = subprocess.run([_bin("pg_dump"), "--schema-only", "--no-owner", "--no-privileges", "-n", "dbdedup", dsn],
                         check=True, capture_output=True, text=True).stdout
    # pg_dump 18 brackets its output with a random \restrict key
    kept = "\n".join(line for line in out.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))
    return re.sub(r"\n{3,}", "\n\n", kept)


def _restore_old_database(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    subprocess.run([_bin("psql"), "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn],
                   input=gzip.decompress(OLD_DATABASE.read_bytes()), check=True, capture_output=True)


@pytest.fixture
def second_empty_db_dsn(pg_server):
    """Another database with nothing of dbdedup in it."""
    admin, _ = pg_server
    params = conninfo_to_dict(admin)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS schema_from_sql WITH (FORCE)")
        conn.execute("CREATE DATABASE schema_from_sql TEMPLATE template0")
    yield make_conninfo(**{**params, "dbname": "schema_from_sql"})
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS schema_from_sql WITH (FORCE)")


def test_old_database_upgrades_to_the_schema_of_sql(empty_db_dsn, second_empty_db_dsn):
    assert dbmod.apply_migrations(second_empty_db_dsn) is True
    fresh = _pg_dump_schema(second_empty_db_dsn)

    _restore_old_database(empty_db_dsn)
    with psycopg.connect(empty_db_dsn) as conn:
        assert dbmod.current_revision(conn) == "0004"
        images_before = conn.execute("SELECT count(*) FROM dbdedup.images WHERE status = 'ok'").fetchone()[0]
    assert images_before > 0
    assert dbmod.apply_migrations(empty_db_dsn) is True
    upgraded = _pg_dump_schema(empty_db_dsn)
    # the pgvector index is built after a load (dbdedup.build_embedding_index): the old database
    # has loaded images, the new one none
    vector_index = re.compile(r"\n--\n-- Name: image_embeddings_vector_idx.*?;\n", re.S)
    assert len(vector_index.findall(upgraded)) == 1
    assert re.sub(r"\n{3,}", "\n\n", vector_index.sub("", upgraded)) == fresh

    with psycopg.connect(empty_db_dsn) as conn:
        assert dbmod.current_revision(conn) == dbmod.head_revision()
        assert conn.execute("SELECT count(*) FROM dbdedup.images WHERE status = 'ok'").fetchone()[0] == images_before
        # the upgraded database works: today's match and clustering run on yesterday's rows
        conn.execute("SELECT * FROM dbdedup.match(8, full_rematch => true)")
        clusters = conn.execute("SELECT count(*) FROM dbdedup.build_clusters(8)").fetchone()[0]
    assert clusters >= 1
    assert dbmod.apply_migrations(empty_db_dsn) is False


def test_each_function_and_view_is_defined_in_exactly_one_file(db_dsn):
    defined: dict[str, list[str]] = {}
    for path in sorted(SQL_DIR.glob("*.sql")):
        for kind, name in ROUTINE.findall(path.read_text()):
            defined.setdefault(name, []).append(path.name)
    with psycopg.connect(db_dsn) as conn:
        in_database = {
            row[0]
            for row in conn.execute(
                "SELECT 'dbdedup.' || p.proname FROM pg_proc p WHERE p.pronamespace = 'dbdedup'::regnamespace "
                "UNION SELECT 'dbdedup.' || c.relname FROM pg_class c "
                "WHERE c.relnamespace = 'dbdedup'::regnamespace AND c.relkind = 'v'"
            )
        }
    assert in_database == set(defined)
    # overloads (similar(bigint, ...) and similar(text, ...)) share a file; no name is in two files
    assert {name: files for name, files in defined.items() if len(set(files)) > 1} == {}
    # tables live in tables.sql (image_embeddings, made inside enable_embeddings() where pgvector is, aside)
    assert not re.search(r"^(CREATE|ALTER) (UNLOGGED )?TABLE", "".join(read_sql(f) for f in schema.DEFINITION_FILES), re.M)
    assert not re.search(r"CREATE (OR REPLACE )?(FUNCTION|PROCEDURE|VIEW)", read_sql("tables.sql"))
    # the migrations carry no copy of a function or view
    for path in (SQL_DIR.parent / "migrations").rglob("*.py"):
        assert not ROUTINE.search(path.read_text()), path


_SEQUENCES_WITHOUT_COMMENT = ("SELECT c.relname FROM pg_class c WHERE c.relkind = 'S' "
                              "AND c.relnamespace = 'dbdedup'::regnamespace "
                              "AND obj_description(c.oid, 'pg_class') IS NULL ORDER BY 1")


def test_every_sequence_has_a_comment_made_or_upgraded(db_dsn):
    """The identity columns' sequences are public objects too (psql's \\ds lists them): each says what it numbers,
    in a database made from sql/tables.sql and in one that revision 0038 upgraded (test_db.py's check of every
    object's comment covers the first)."""
    with psycopg.connect(db_dsn) as conn:
        sequences = [name for (name,) in conn.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'S' AND relnamespace = 'dbdedup'::regnamespace ORDER BY 1")]
        assert conn.execute(_SEQUENCES_WITHOUT_COMMENT).fetchall() == []
    assert {"images_id_seq", "load_runs_id_seq", "load_errors_id_seq", "verdicts_id_seq"} <= set(sequences)
    dbmod.downgrade_migrations(db_dsn, "0037")
    with psycopg.connect(db_dsn) as conn:
        assert [n for (n,) in conn.execute(_SEQUENCES_WITHOUT_COMMENT)] == [s for s in sequences if s != "change_seq"]
    assert dbmod.apply_migrations(db_dsn) is True
    with psycopg.connect(db_dsn) as conn:
        assert conn.execute(_SEQUENCES_WITHOUT_COMMENT).fetchall() == []


def test_changed_definitions_are_applied_again_and_readers_keep_access(db_dsn):
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS dbdedup_schema_reader")
        conn.execute("CREATE ROLE dbdedup_schema_reader LOGIN")
        conn.execute("SELECT dbdedup.grant_read_access('dbdedup_schema_reader')")
        # a database that runs older text: another checksum and a function edited by hand
        conn.execute("UPDATE dbdedup.schema_definitions SET checksum = 'older'")
        conn.execute("CREATE OR REPLACE FUNCTION dbdedup.hamming(a bigint, b bigint) RETURNS integer "
                     "LANGUAGE sql AS $$ SELECT -1 $$")
    try:
        assert dbmod.apply_migrations(db_dsn) is True
        with psycopg.connect(db_dsn) as conn:
            assert conn.execute("SELECT dbdedup.hamming(0, 7)").fetchone()[0] == 3
            assert schema.stored_checksum(conn) == schema.definitions_checksum()
            conn.execute("SET ROLE dbdedup_schema_reader")
            assert conn.execute("SELECT count(*) FROM dbdedup.clusters").fetchone()[0] == 0
            assert conn.execute("SELECT dbdedup.hamming(1, 2)").fetchone()[0] == 2
    finally:
        with psycopg.connect(db_dsn, autocommit=True) as conn:
            conn.execute("DROP OWNED BY dbdedup_schema_reader")
            conn.execute("DROP ROLE dbdedup_schema_reader")


def test_a_users_view_on_ours_stops_the_upgrade_with_a_clear_error(db_dsn):
    from dbdedup.errors import DbdedupError

    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute("CREATE VIEW public.my_clusters AS SELECT * FROM dbdedup.clusters")
        conn.execute("UPDATE dbdedup.schema_definitions SET checksum = 'older'")
    with pytest.raises(DbdedupError) as info:
        dbmod.apply_migrations(db_dsn)
    assert "my_clusters" in info.value.message or "depend" in info.value.message
    with psycopg.connect(db_dsn) as conn:
        # nothing was half-applied: the transaction rolled back, the user's view is there
        assert conn.execute("SELECT count(*) FROM public.my_clusters").fetchone()[0] == 0
        assert schema.stored_checksum(conn) == "older"


_REASON_COMMENT = ("SELECT col_description('dbdedup.pairs'::regclass, (SELECT attnum FROM pg_attribute "
                   "WHERE attrelid = 'dbdedup.pairs'::regclass AND attname = 'verify_reason'))")


def _loaded_photos(db_dsn, folder, count: int) -> list[int]:
    """``count`` small photos (a.png, b.png, ...) loaded into the database at ``db_dsn`` with no pairs: their ids,
    in the order of their names."""
    from dbdedup.load import load_paths
    from images import photo, save

    for k in range(count):
        save(photo(k + 1, (96, 72)), folder / f"{chr(ord('a') + k)}.png")
    with psycopg.connect(db_dsn) as conn:
        load_paths(conn, [folder], workers=1, embedder=None)
        conn.execute("DELETE FROM dbdedup.pairs")
        conn.commit()
        return [i for (i,) in conn.execute("SELECT id FROM dbdedup.images ORDER BY path")]


def _upgraded_verdicts(db_dsn, folder, reasons: tuple[str, str], revision: str) -> tuple[dict, str, str]:
    """Three loaded images a, b, c; the pairs (a, b) and (a, c) refused with ``reasons``; the schema taken down to
    ``revision`` and up to the head again: ({'ab'|'ac': (verified, score, reason)}, the reason column's comment at
    ``revision``, and at the head)."""
    a, b, c = _loaded_photos(db_dsn, folder, 3)
    with psycopg.connect(db_dsn) as conn:
        conn.execute("INSERT INTO dbdedup.pairs (hash_kind, image_a, image_b, distance, is_exact, verified, "
                     "verify_score, verify_reason) VALUES ('phash', %s, %s, 10, false, false, 0.3, %s), "
                     "('phash', %s, %s, 10, false, false, 0.4, %s)", (a, b, reasons[0], a, c, reasons[1]))
        conn.commit()
    dbmod.downgrade_migrations(db_dsn, revision)
    with psycopg.connect(db_dsn) as conn:
        before = conn.execute(_REASON_COMMENT).fetchone()[0]
    assert dbmod.apply_migrations(db_dsn) is True
    with psycopg.connect(db_dsn) as conn:
        assert dbmod.current_revision(conn) == dbmod.head_revision()
        verdicts = {{(a, b): "ab", (a, c): "ac"}[(x, y)]: (v, s, r) for x, y, v, s, r in conn.execute(
            "SELECT image_a, image_b, verified, verify_score, verify_reason FROM dbdedup.pairs")}
        return verdicts, before, conn.execute(_REASON_COMMENT).fetchone()[0]


def test_refusals_for_the_layout_alone_are_given_again_by_the_upgrade_to_0030(db_dsn, tmp_path):
    """Revision 0030: the SQL step no longer refuses an aligned pair for its lightness layout alone (a copy turned a
    little is as far apart); a database judged before holds such refusals, which the upgrade makes pending again,
    and the reason leaves the column's comment. Other verdicts stay."""
    verdicts, before, after = _upgraded_verdicts(db_dsn, tmp_path, ("layout", "detail"), "0029")
    assert "layout (lightness layout)" in before and "layout (lightness layout)" not in after
    assert verdicts["ab"] == (None, None, None)
    assert verdicts["ac"][0::2] == (False, "detail")


def test_refusals_for_colour_are_given_again_by_the_upgrade_to_0031(db_dsn, tmp_path):
    """Revision 0031: a greyscale picture and a colour one refused for colour may be a greyscale conversion, which
    the check by pixels now verifies (converted); the upgrade makes every colour refusal pending again and names
    the reason in the column's comment. Other verdicts stay."""
    verdicts, before, after = _upgraded_verdicts(db_dsn, tmp_path, ("colour", "no_geometry"), "0030")
    assert "converted (" not in before and "converted (one is greyscale" in after
    assert verdicts["ab"] == (None, None, None)
    assert verdicts["ac"][0::2] == (False, "no_geometry")


def test_the_upgrade_to_0032_has_the_structure_of_flipped_signature_verdicts_measured_again(db_dsn, tmp_path):
    """Revision 0032 adds pairs.region, measured by the structure check of signature-verified pairs compared under
    a flip or a turn: such a pair measured before has its structure cleared, so that the next run measures both
    (and the region may send it to the check by pixels); one verified through a trimmed variant under a flip goes
    back to pending (the check by pixels decides those now). Other verdicts keep theirs; the unturned pair's structure
    is cleared by 0037 on the way to the head (test_the_upgrade_to_0037_...)."""
    a, b, c, d, e = _loaded_photos(db_dsn, tmp_path, 5)
    with psycopg.connect(db_dsn) as conn:
        conn.execute("INSERT INTO dbdedup.pairs (hash_kind, image_a, image_b, distance, is_exact, transform, "
                     "transform_distance, verified, verify_score, verify_reason, structure) VALUES "
                     "('phash', %(a)s, %(b)s, 30, false, 'flip_h', 0, true, 0.9, 'signature', 0.95), "
                     "('phash', %(a)s, %(c)s, 2, false, NULL, NULL, true, 0.9, 'signature', 0.93), "
                     "('phash', %(a)s, %(d)s, 30, false, 'rotate_90', 0, true, 0.8, 'geometry', NULL), "
                     "('phash', %(a)s, %(e)s, 30, false, 'trim+flip_h', 0, true, 0.9, 'signature', 'NaN')",
                     {"a": a, "b": b, "c": c, "d": d, "e": e})
        conn.commit()
    dbmod.downgrade_migrations(db_dsn, "0031")
    with psycopg.connect(db_dsn) as conn:
        assert "region" not in {name for (name,) in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'dbdedup' "
            "AND table_name = 'pairs'")}
    assert dbmod.apply_migrations(db_dsn) is True
    with psycopg.connect(db_dsn) as conn:
        rows = {(x, y): rest for x, y, *rest in conn.execute(
            "SELECT image_a, image_b, verified, verify_reason, structure, region FROM dbdedup.pairs")}
    assert rows[(a, b)] == [True, "signature", None, None]
    assert rows[(a, c)] == [True, "signature", None, None]
    assert rows[(a, d)] == [True, "geometry", None, None]
    assert rows[(a, e)] == [None, None, None, None]


def test_the_upgrade_to_0037_has_the_unturned_signature_verdicts_measured_again(db_dsn, tmp_path):
    """Revision 0037 adds pairs.detail_gap, measured by the structure check of signature-verified pairs compared
    unturned: such a pair measured before has its structure cleared, so that the next run measures both (and the gap
    may send it to the check by pixels). A flipped pair keeps its structure, other verdicts theirs; the column has
    its comment."""
    a, b, c = _loaded_photos(db_dsn, tmp_path, 3)
    with psycopg.connect(db_dsn) as conn:
        conn.execute("INSERT INTO dbdedup.pairs (hash_kind, image_a, image_b, distance, is_exact, transform, "
                     "transform_distance, verified, verify_score, verify_reason, structure) VALUES "
                     "('phash', %(a)s, %(b)s, 30, false, 'flip_h', 0, true, 0.9, 'signature', 0.95), "
                     "('phash', %(a)s, %(c)s, 2, false, NULL, NULL, true, 0.9, 'signature', 0.93), "
                     "('phash', %(b)s, %(c)s, 4, false, NULL, NULL, false, 0.2, 'colour', NULL)",
                     {"a": a, "b": b, "c": c})
        conn.commit()
    dbmod.downgrade_migrations(db_dsn, "0036")
    assert dbmod.apply_migrations(db_dsn) is True
    with psycopg.connect(db_dsn) as conn:
        rows = {(x, y): rest for x, y, *rest in conn.execute(
            "SELECT image_a, image_b, verified, verify_reason, structure, detail_gap FROM dbdedup.pairs")}
        comment = conn.execute("SELECT col_description('dbdedup.pairs'::regclass, attnum) FROM pg_attribute "
                               "WHERE attrelid = 'dbdedup.pairs'::regclass AND attname = 'detail_gap'").fetchone()[0]
    assert rows[(a, b)][:2] == [True, "signature"] and rows[(a, b)][2] == pytest.approx(0.95) and rows[(a, b)][3] is None
    assert rows[(a, c)] == [True, "signature", None, None]
    assert rows[(b, c)] == [False, "colour", None, None]
    assert comment and "detail_gate" in comment
