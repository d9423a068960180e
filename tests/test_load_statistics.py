"""A load leaves planner statistics of what it wrote: the match that follows plans its joins on
the loaded tables, not on those of the empty database (autovacuum would analyse them later)."""

from __future__ import annotations

from dbdedup.load import load_paths
from images import photo, save


def _planned_rows(conn, table: str) -> int:
    return conn.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", (table,)).fetchone()[0]


def test_a_load_analyses_the_images_and_their_vectors(conn, tmp_path):
    for seed in range(70):
        save(photo(seed, (96, 72)), tmp_path / "lib" / f"p{seed:02d}.jpg", quality=90)
    assert _planned_rows(conn, "dbdedup.images") == -1  # a new database: never analysed
    load_paths(conn, [tmp_path / "lib"], workers=2)
    assert _planned_rows(conn, "dbdedup.images") == 70
    assert _planned_rows(conn, "dbdedup.image_embeddings") == 70
    # the vectors were analysed once written, not while still NULL
    null_share = conn.execute("SELECT null_frac FROM pg_stats WHERE schemaname = 'dbdedup' "
                              "AND tablename = 'image_embeddings' AND attname = 'embedding'").fetchone()[0]
    assert null_share == 0.0

    # a small change to a large table is left to autovacuum (its threshold: 50 rows + 10%)
    save(photo(100, (96, 72)), tmp_path / "lib" / "p100.jpg", quality=90)
    load_paths(conn, [tmp_path / "lib"], workers=2)
    assert _planned_rows(conn, "dbdedup.images") == 70
