"""Loads and matches at the same time, and a stray session holding the load lock (issue 9, items 4 and 6)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from dbdedup import db as dbmod
from dbdedup import embedding_index
from dbdedup.clusters import ClusterSettings, ensure_clusters
from dbdedup.errors import DbdedupError
from dbdedup.load import LoadProgress, load_paths
from dbdedup.locks import LOAD_LOCK_KEY
from dbdedup.matching import find_pairs
from images import brighter, mirrored, photo, reencoded, resized, save


def _collection(root: Path, originals: int = 40) -> Path:
    """Unrelated photos, each with a resized, a re-encoded, a brighter and a mirrored copy."""
    for seed in range(originals):
        base = photo(500 + seed, (160, 120))
        save(base, root / "o" / f"{seed:03d}.jpg", quality=92)
        if seed % 2 == 0:
            save(resized(base, 0.6), root / "small" / f"{seed:03d}.jpg", quality=88)
            save(reencoded(base, 40), root / "lowq" / f"{seed:03d}.jpg", quality=40)
        if seed % 3 == 0:
            save(brighter(base, 1.15), root / "bright" / f"{seed:03d}.jpg", quality=90)
            save(mirrored(base), root / "mirror" / f"{seed:03d}.jpg", quality=90)
    return root


def _pairs(conn) -> list[tuple]:
    # transform_distance is left out: a variant of the new image against an old one's pHash is not always
    # as close as the old image's variant against the new one (a full match tries both ways, an
    # incremental one the first); clusters, compared too, use it
    return conn.execute(
        "SELECT image_a, image_b, distance, is_exact, transform IS NOT NULL, round(similarity::numeric, 3) "
        "FROM dbdedup.pairs ORDER BY 1, 2, 3").fetchall()


def _clusters(conn) -> set[frozenset]:
    return {frozenset(ids) for (ids,) in conn.execute(
        "SELECT array_agg(image_id) FROM dbdedup.cluster_members GROUP BY cluster_id").fetchall()}


def _incremental_equals_full(dsn: str) -> None:
    """Pairs and clusters after an incremental match are those of a full re-match."""
    settings = ClusterSettings()
    with psycopg.connect(dsn) as conn:
        dbmod.register_vector_if_present(conn)
        ensure_clusters(conn, settings, lock_wait=60)
        incremental_pairs, incremental_clusters = _pairs(conn), _clusters(conn)
        ensure_clusters(conn, settings, full=True, lock_wait=60)
        assert _pairs(conn) == incremental_pairs
        assert _clusters(conn) == incremental_clusters
        assert any(p[5] is not None for p in incremental_pairs), "the embedding pairs must be part of it"
        assert any(p[4] for p in incremental_pairs), "the flipped copies must be part of it"


class _MatchDuringLoad(LoadProgress):
    """Starts a match on its own connection when the load reaches a point, and waits for it at the end."""

    def __init__(self, dsn: str, when: str):
        self.dsn, self.when = dsn, when
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.result = None

    def start(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._match, daemon=True)
            self.thread.start()
            time.sleep(0.2)  # the match is waiting by the time the load goes on

    def _match(self) -> None:
        try:
            with psycopg.connect(self.dsn) as conn:
                dbmod.register_vector_if_present(conn)
                self.result = ensure_clusters(conn, ClusterSettings(), lock_wait=120)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def files_found(self, found: int, scan_complete: bool) -> None:
        if self.when == "walking" and found:
            self.start()

    def files_done(self, done: int, errors: int) -> None:
        if self.when == "hashing" and done >= 40:
            self.start()


@pytest.mark.slow
@pytest.mark.parametrize("when", ["walking", "hashing", "vectors"])
def test_match_during_a_load_queues_and_incremental_equals_full(db_dsn, tmp_path, monkeypatch, when):
    """`match` started while a load walks, hashes, or projects its vectors: no deadlock, the load's run
    is completed with every vector, the match runs after it, and an incremental match equals a full one."""
    root = _collection(tmp_path / "photos")
    with psycopg.connect(db_dsn) as conn:
        # a first load and match: the second load, with more new images than vectors, drops and rebuilds
        # the vector index while the match runs (the deadlock of issue 9: its DROP INDEX waited for the
        # match's read of the vectors, and the match waited for the load)
        dbmod.register_vector_if_present(conn)
        load_paths(conn, [root / "o"], workers=2)
        ensure_clusters(conn, ClusterSettings())
    progress = _MatchDuringLoad(db_dsn, when)
    if when == "vectors":
        real = embedding_index.project_pending

        def project_while_a_match_waits(conn, *args, **kwargs):
            progress.start()
            return real(conn, *args, **kwargs)

        monkeypatch.setattr(embedding_index, "project_pending", project_while_a_match_waits)
    with psycopg.connect(db_dsn) as conn:
        dbmod.register_vector_if_present(conn)
        summary = load_paths(conn, [root], workers=2, progress=progress, lock_wait=60)
    assert progress.thread is not None
    progress.thread.join(120)
    assert progress.error is None, repr(progress.error)
    assert progress.result is not None
    with psycopg.connect(db_dsn) as conn:
        status, = conn.execute("SELECT status FROM dbdedup.load_runs WHERE id = %s", (summary.run_id,)).fetchone()
        assert status == "completed"
        missing = conn.execute("SELECT count(*) FROM dbdedup.images i WHERE i.status = 'ok' AND NOT EXISTS "
                               "(SELECT 1 FROM dbdedup.image_embeddings e WHERE e.image_id = i.id "
                               "AND e.embedding IS NOT NULL)").fetchone()[0]
        assert missing == 0
        if when == "vectors":
            # images were written, so the match had to wait for the whole load: it saw every image
            assert progress.result.matched
            matched_seq, = conn.execute("SELECT matched_seq FROM dbdedup.match_state "
                                        "WHERE hash_kind = 'phash'").fetchone()
            assert matched_seq >= conn.execute("SELECT max(change_seq) FROM dbdedup.images").fetchone()[0]
    _incremental_equals_full(db_dsn)


def test_a_load_stopped_before_its_vectors_is_not_completed_and_the_next_load_finishes_it(db_dsn, tmp_path,
                                                                                         monkeypatch):
    """The vectors stage fails: the run is 'failed', not 'completed'; a match runs meanwhile; the next load
    projects the missing vectors, and an incremental match then finds what a full one finds."""
    root = _collection(tmp_path / "photos", originals=24)
    real = embedding_index.project_pending

    def broken(*args, **kwargs):
        raise RuntimeError("the server went away while projecting")

    with psycopg.connect(db_dsn) as conn:
        # most of it first, matched with its vectors: the embedding signal has run (and the reduction
        # is fitted on enough images that the few added later do not refit it, which would redo it all)
        dbmod.register_vector_if_present(conn)
        load_paths(conn, [root / "o", root / "small", root / "lowq"], workers=2)
        ensure_clusters(conn, ClusterSettings())
    monkeypatch.setattr(embedding_index, "project_pending", broken)
    with psycopg.connect(db_dsn) as conn:
        dbmod.register_vector_if_present(conn)
        with pytest.raises(RuntimeError):
            load_paths(conn, [root], workers=2)
        status, message = conn.execute("SELECT status, message FROM dbdedup.load_runs ORDER BY id DESC").fetchone()
        assert status == "failed" and "went away" in message
        ensure_clusters(conn, ClusterSettings())  # a match on the images without vectors
    monkeypatch.setattr(embedding_index, "project_pending", real)
    with psycopg.connect(db_dsn) as conn:
        dbmod.register_vector_if_present(conn)
        again = load_paths(conn, [root], workers=2)
        assert again.loaded == 0 and again.embedded > 0
        assert conn.execute("SELECT status FROM dbdedup.load_runs WHERE id = %s",
                            (again.run_id,)).fetchone()[0] == "completed"
    _incremental_equals_full(db_dsn)


# ---------------------------------------------------------------- a read-only role holding the lock


@pytest.fixture
def hash_only_db(plain_pg_dsn):
    """A migrated database on Debian's PostgreSQL (trust: any role may log in) and an analyst role with
    read access: (owner DSN, analyst DSN, analyst role)."""
    from conftest import dsn_for

    name, role = f"locks_{os.getpid()}", f"analyst_{os.getpid()}"
    with psycopg.connect(plain_pg_dsn, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
        admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.execute(f"CREATE ROLE {role} LOGIN")
    dsn = dsn_for(plain_pg_dsn, name)
    dbmod.apply_migrations(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT dbdedup.grant_read_access(%s)", (role,))
    analyst = psycopg.conninfo.make_conninfo(dsn, user=role)
    yield dsn, analyst, role
    with psycopg.connect(plain_pg_dsn, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"DROP ROLE IF EXISTS {role}")


def test_a_read_only_role_holding_the_load_lock_is_named_and_waited_for_a_bounded_time(hash_only_db, tmp_path):
    from dbdedup.cli.main import cli

    dsn, analyst_dsn, role = hash_only_db
    save(photo(1), tmp_path / "a.jpg")
    with psycopg.connect(analyst_dsn, autocommit=True, application_name="psql") as analyst:
        analyst.execute("SELECT pg_advisory_lock(%s)", (LOAD_LOCK_KEY,))  # any role may take an advisory lock
        pid = analyst.info.backend_pid
        with psycopg.connect(dsn) as conn:
            started = time.monotonic()
            with pytest.raises(DbdedupError) as info:
                load_paths(conn, [tmp_path], workers=1, lock_wait=1)
            assert 1 <= time.monotonic() - started < 10
        message, hint = info.value.message, info.value.hint
        assert f"pid {pid}" in message and f"role {role}" in message and "application psql" in message
        assert "since" in message and f"pg_terminate_backend({pid})" in hint
        # the CLI: match waits the bounded time too, and says the same in one line
        result = CliRunner().invoke(cli, ["--db", dsn, "--lock-wait", "1", "match"])
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output and f"role {role}" in result.stderr and "hint:" in result.stderr
        # ... and given after the command, as cron lines do
        result = CliRunner().invoke(cli, ["--db", dsn, "load", str(tmp_path), "--lock-wait", "0.5", "-q"])
        assert result.exit_code == 1 and f"pid {pid}" in result.stderr
        analyst.execute("SELECT pg_advisory_unlock(%s)", (LOAD_LOCK_KEY,))
    with psycopg.connect(dsn) as conn:
        assert load_paths(conn, [tmp_path], workers=1, lock_wait=1).loaded == 1
