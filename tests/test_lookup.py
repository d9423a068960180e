"""One-image lookups from the block indexes: exact against a brute force, variants, files not loaded, access."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from dbdedup.cli.main import cli
from images import mirrored, photo, resized, save

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "photos"


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _signed(v: int) -> int:
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


def _flip(rng: random.Random, v: int, bits: int) -> int:
    for b in rng.sample(range(64), bits):
        v ^= 1 << b
    return _signed(v)


def _distance(a: int, b: int) -> int:
    return bin((a ^ b) & ((1 << 64) - 1)).count("1")


def _load_synthetic(conn: psycopg.Connection, rng: random.Random, n: int = 3000) -> list[tuple[int, int, list[int]]]:
    """n ok images: random pHashes plus planted near copies (0-15 bits away); every third has a trimmed pHash."""
    hashes = [_signed(rng.getrandbits(64)) for _ in range(n * 2 // 3)]
    hashes += [_flip(rng, rng.choice(hashes), rng.randint(0, 15)) for _ in range(n - len(hashes))]
    with conn.cursor() as cur, cur.copy(
        "COPY dbdedup.images (path, path_bytes, size_bytes, mtime_ns, status, sha256, width, height, "
        "phash, dhash, ahash, phash_variants) FROM STDIN"
    ) as copy:
        for i, h in enumerate(hashes):
            variants = [_flip(rng, h, rng.randint(20, 40)) for _ in range(7)]
            if i % 3 == 0:
                variants.append(_flip(rng, h, rng.randint(0, 6)))
            path = f"/synthetic/{i}.jpg"
            copy.write_row((path, path.encode(), 1000, i, "ok", rng.randbytes(32), 64, 64, h, h, h, variants))
    conn.execute("ANALYZE dbdedup.images")
    conn.commit()
    return conn.execute("SELECT id, phash, phash_variants FROM dbdedup.images").fetchall()


def _index_scans(conn: psycopg.Connection) -> tuple[int, int]:
    """(scans of the pHash block indexes, sequential scans of dbdedup.images) so far."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.commit()
    blocks = conn.execute(
        "SELECT coalesce(sum(idx_scan), 0) FROM pg_stat_user_indexes "
        "WHERE schemaname = 'dbdedup' AND indexrelname LIKE 'images_phash_block%'").fetchone()[0]
    seq = conn.execute("SELECT seq_scan FROM pg_stat_user_tables WHERE relid = 'dbdedup.images'::regclass").fetchone()[0]
    return int(blocks), int(seq)


def test_lookups_equal_a_brute_force_at_every_threshold_up_to_15(conn):
    rng = random.Random(15)
    rows = _load_synthetic(conn, rng)
    stored = [h for _, h, _ in rows]
    blocks_before, seq_before = _index_scans(conn)
    checked = 0
    for t in range(16):
        queries = [_flip(rng, rng.choice(stored), rng.randint(0, t)) for _ in range(12)]
        queries += [_signed(rng.getrandbits(64)) for _ in range(4)]
        for q in queries:
            want = sorted(i for i, h, _ in rows if _distance(h, q) <= t)
            got = conn.execute("SELECT image_id, distance FROM dbdedup.similar_to_hash(%s, %s)", (q, t)).fetchall()
            assert sorted(r[0] for r in got) == want, (t, q)
            assert all(d == _distance(q, dict((i, h) for i, h, _ in rows)[r]) for r, d in got)
            looked_up = conn.execute("SELECT image_id FROM dbdedup.lookup(%s, NULL, NULL, %s)", (q, t)).fetchall()
            assert sorted(r[0] for r in looked_up) == want
            trimmed = conn.execute("SELECT dbdedup.near_trimmed_images(ARRAY[%s]::bigint[], %s)", (q, t)).fetchone()[0]
            assert set(trimmed) == {i for i, _, v in rows if len(v) == 8 and _distance(v[7], q) <= t}
            checked += 1
    assert checked == 16 * 16
    blocks_after, seq_after = _index_scans(conn)
    assert blocks_after > blocks_before  # the block indexes answered
    assert seq_after == seq_before  # and no lookup read the whole table


def test_flipped_and_trimmed_lookups_equal_a_brute_force(conn):
    """The variants' probes at transform distances whose per-block radii run from -1 to 3."""
    rng = random.Random(19)
    rows = _load_synthetic(conn, rng, n=2000)
    for t, td in ((0, 0), (4, 2), (8, 6), (8, 12), (12, 15)):
        for _ in range(6):
            _, h, v = rng.choice(rows)
            query = _flip(rng, h, rng.randint(0, t + 3))
            # the query's orientations: some near stored pHashes, some near stored trimmed pHashes
            variants = [_flip(rng, rng.choice(rows)[1], rng.randint(0, td + 2)) for _ in range(4)]
            trimmed = [r[2][7] for r in rows if len(r[2]) == 8]
            variants += [_flip(rng, rng.choice(trimmed), rng.randint(0, td + 2)) for _ in range(3)]
            by_hash = {i for i, p, _ in rows if _distance(p, query) <= t}
            by_variant = {i for i, p, _ in rows if any(_distance(p, x) <= td for x in variants)}
            by_trim = {i for i, _, w in rows if len(w) == 8 and any(_distance(w[7], x) <= td for x in [query] + variants)}
            got = conn.execute("SELECT image_id, matched_by, transform_distance FROM dbdedup.lookup(%s, %s, NULL, %s, %s)",
                               (query, variants, t, td)).fetchall()
            assert {r[0] for r in got} == by_hash | by_variant | by_trim, (t, td)
            assert {r[0] for r in got if r[1] == "hash"} == by_hash
            assert all(r[1] == "transform" and (r[2] is None or r[2] <= td) for r in got if r[0] not in by_hash)


def test_a_lookup_probes_the_indexes_once(conn):
    """similar_to_hash ran the probes twice a call when they sat inside its query (the planner's estimate ran them)."""
    rng = random.Random(20)
    rows = _load_synthetic(conn, rng, n=300)
    conn.execute("SET track_functions = 'all'")

    def probe_calls() -> int:
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.commit()
        return conn.execute("SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions "
                            "WHERE schemaname = 'dbdedup' AND funcname = 'near_phash_values'").fetchone()[0]

    before = probe_calls()
    for _, h, _ in rows[:7]:
        assert conn.execute("SELECT count(*) FROM dbdedup.similar_to_hash(%s, 8)", (h,)).fetchone()[0] >= 1
        conn.execute("SELECT count(*) FROM dbdedup.lookup(%s, NULL, NULL, 8)", (h,)).fetchone()
    assert probe_calls() - before == 14


def test_a_path_is_found_by_its_bytes_without_a_scan(conn):
    from dbdedup.lookup import find_image

    rng = random.Random(21)
    rows = _load_synthetic(conn, rng, n=500)
    _, seq_before = _index_scans(conn)
    assert find_image(conn, "/synthetic/7.jpg") == rows[7][0]
    assert find_image(conn, "/synthetic/nowhere.jpg") is None
    expected = conn.execute("SELECT * FROM dbdedup.similar(%s::bigint, 12)", (rows[7][0],)).fetchall()
    assert conn.execute("SELECT * FROM dbdedup.similar('/synthetic/7.jpg', 12)").fetchall() == expected
    assert conn.execute("SELECT count(*) FROM dbdedup.similar('/synthetic/nowhere.jpg')").fetchone()[0] == 0
    _, seq_after = _index_scans(conn)
    assert seq_after == seq_before  # 500 rows would be read by a scan of images.path (no index)
    # a displayed path with the \xNN escape of a byte that is not UTF-8 is still found (by the scan)
    with conn.cursor() as cur, cur.copy("COPY dbdedup.images (path, path_bytes, size_bytes, mtime_ns, status, sha256, "
                                        "phash, dhash, ahash) FROM STDIN") as copy:
        copy.write_row(("/t/caf\\xe9.jpg", b"/t/caf\xe9.jpg", 1, 1, "ok", rng.randbytes(32), 5, 5, 5))
    conn.commit()
    assert find_image(conn, "/t/caf\\xe9.jpg") is not None
    assert find_image(conn, os.fsdecode(b"/t/caf\xe9.jpg")) is not None


def test_above_15_the_lookup_is_still_exact(conn):
    rng = random.Random(16)
    rows = _load_synthetic(conn, rng, n=600)
    q = rows[5][1]
    got = conn.execute("SELECT image_id FROM dbdedup.similar_to_hash(%s, 20)", (q,)).fetchall()
    assert sorted(r[0] for r in got) == sorted(i for i, h, _ in rows if _distance(h, q) <= 20)


def test_the_lookup_radius_splits_the_threshold_over_the_blocks_in_one_inlined_function(conn):
    """dbdedup.lookup_radius is the one home of the radius each block is probed at: (t + 1) spread evenly over the 4
    blocks, the first (t + 1) % 4 one more, less 1, for every threshold the lookups are exact at; the masks
    dbdedup.lookup_flips gives are the 16-bit ball of that radius. No other function carries the formula, and
    PostgreSQL inlines it into the query that reads dbdedup.lookup_flips (as it was written out there before)."""
    from math import comb

    got = {(t, b): (r, n) for t, b, r, n in conn.execute(
        "SELECT t, b, dbdedup.lookup_radius(t, b), cardinality(dbdedup.lookup_flips(t, b)) "
        "FROM generate_series(0, 15) t, generate_series(0, 3) b")}
    for t in range(16):
        radii = [got[(t, b)][0] for b in range(4)]
        assert radii == [(t + 1) // 4 + (1 if b < (t + 1) % 4 else 0) - 1 for b in range(4)], t
        assert sum(r + 1 for r in radii) == t + 1 and min(radii) >= -1 and max(radii) <= 3
        assert [got[(t, b)][1] for b in range(4)] == [sum(comb(16, k) for k in range(r + 1)) for r in radii]
    assert [name for (name,) in conn.execute(
        "SELECT proname FROM pg_proc WHERE pronamespace = 'dbdedup'::regnamespace "
        "AND prosrc LIKE '% 4 THEN 1 ELSE 0 END%' ORDER BY 1")] == ["lookup_radius"]
    plan = "\n".join(r[0] for r in conn.execute(
        "EXPLAIN (VERBOSE) SELECT f.flips FROM dbdedup.lookup_flips f "
        "WHERE f.radius = dbdedup.lookup_radius(8, f.block)"))
    assert "lookup_radius" not in plan and "CASE WHEN" in plan, plan


def test_a_stored_image_finds_its_transformed_copies_and_says_how(conn):
    rng = random.Random(17)
    rows = _load_synthetic(conn, rng, n=400)
    image_id, phash, variants = rows[0]
    # an image that is this one flipped (its pHash is this one's flip_h variant), and one with a border
    with conn.cursor() as cur, cur.copy("COPY dbdedup.images (path, path_bytes, size_bytes, mtime_ns, status, sha256, "
                                        "phash, dhash, ahash, phash_variants) FROM STDIN") as copy:
        copy.write_row(("/t/flipped.jpg", b"/t/flipped.jpg", 1, 1, "ok", rng.randbytes(32), _flip(rng, variants[0], 1),
                        0, 0, [_flip(rng, phash, 1)] + variants[1:7]))
        copy.write_row(("/t/bordered.jpg", b"/t/bordered.jpg", 1, 1, "ok", rng.randbytes(32), _flip(rng, phash, 30),
                        0, 0, variants[:7] + [_flip(rng, phash, 2)]))
    conn.commit()
    hits = {r[0].rsplit("/", 1)[1]: r[1:] for r in conn.execute(
        "SELECT path, matched_by, transform, transform_distance FROM dbdedup.similar(%s, 8)", (image_id,))}
    assert hits["flipped.jpg"] == ("transform", "flip_h", 1)
    assert hits["bordered.jpg"][0] == "transform" and hits["bordered.jpg"][1].startswith("trim")
    assert hits["bordered.jpg"][2] <= 2


def test_analyst_role_calls_the_lookups(conn):
    rng = random.Random(18)
    rows = _load_synthetic(conn, rng, n=300)
    role = f"analyst_{os.getpid()}"
    conn.execute(f"CREATE ROLE {role}")
    conn.execute("SELECT dbdedup.grant_read_access(%s)", (role,))
    conn.commit()
    try:
        expected = conn.execute("SELECT * FROM dbdedup.similar(%s, 12)", (rows[1][0],)).fetchall()
        conn.execute(f"SET ROLE {role}")
        assert conn.execute("SELECT * FROM dbdedup.similar(%s, 12)", (rows[1][0],)).fetchall() == expected
        assert conn.execute("SELECT * FROM dbdedup.similar('/synthetic/1.jpg', 12)").fetchall() == expected
        assert conn.execute("SELECT count(*) FROM dbdedup.similar_to_hash(%s, 4)", (rows[1][1],)).fetchone()[0] >= 1
        assert conn.execute("SELECT count(*) FROM dbdedup.lookup(%s)", (rows[1][1],)).fetchone()[0] >= 1
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM dbdedup.images")
    finally:
        conn.rollback()
        conn.execute("RESET ROLE")
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")
        conn.commit()


def _names(result) -> dict[str, dict]:
    assert result.exit_code == 0, result.output
    return {r["path"].rsplit("/", 1)[1]: r for r in json.loads(result.stdout)}


def test_similar_file_finds_a_mirrored_copy_loaded_or_not(db_dsn, tmp_path):
    root = tmp_path / "lib"
    for seed in range(5):
        save(photo(seed), root / f"p{seed}.jpg", quality=92)
    save(mirrored(photo(7)), root / "p7_mirrored.jpg", quality=90)
    if (EXAMPLES / "copies" / "market_mirrored.jpg").exists():
        shutil.copy(EXAMPLES / "copies" / "market_mirrored.jpg", root / "market_mirrored.jpg")
    assert run("--db", db_dsn, "load", str(root)).exit_code == 0

    # neither original is loaded: fingerprinted on the fly, found by its flip_h variant
    save(photo(7), tmp_path / "p7.jpg", quality=92)
    result = run("--db", db_dsn, "similar", str(tmp_path / "p7.jpg"), "-t", "10", "--format", "json")
    assert "is not loaded" in result.stderr
    hits = _names(result)
    assert hits["p7_mirrored.jpg"]["matched_by"] == "transform"
    assert hits["p7_mirrored.jpg"]["transform"] == "flip_h"
    assert hits["p7_mirrored.jpg"]["similarity"] is not None  # the embedding's cosine, when pgvector is there
    assert not {"p0.jpg", "p1.jpg", "p2.jpg"} & set(hits)
    if (EXAMPLES / "market.jpg").exists():
        market = _names(run("--db", db_dsn, "similar", str(EXAMPLES / "market.jpg"), "-t", "10", "--format", "json"))
        assert market["market_mirrored.jpg"]["transform"] == "flip_h"

    # loaded, the stored variants give the same answer
    save(photo(7), root / "p7.jpg", quality=92)
    assert run("--db", db_dsn, "load", str(root)).exit_code == 0
    stored = _names(run("--db", db_dsn, "similar", str(root / "p7.jpg"), "-t", "10", "--format", "json"))
    assert stored["p7_mirrored.jpg"]["matched_by"] == "transform"
    assert "p7.jpg" not in stored


def test_the_index_follows_incremental_loads_and_missing_files(db_dsn, tmp_path):
    root = tmp_path / "lib"
    for seed in range(4):
        save(photo(seed), root / f"p{seed}.jpg", quality=92)
    assert run("--db", db_dsn, "load", str(root)).exit_code == 0
    assert "p0_small.jpg" not in _names(run("--db", db_dsn, "similar", str(root / "p0.jpg"), "--format", "json"))

    save(resized(photo(0), 0.6), root / "p0_small.jpg", quality=90)
    assert run("--db", db_dsn, "load", str(root)).exit_code == 0
    hits = _names(run("--db", db_dsn, "similar", str(root / "p0.jpg"), "--format", "json"))
    assert hits["p0_small.jpg"]["matched_by"] == "hash"

    # the copy goes; then it comes back as another picture under the same name
    (root / "p0_small.jpg").unlink()
    assert run("--db", db_dsn, "load", str(root)).exit_code == 0
    assert "p0_small.jpg" not in _names(run("--db", db_dsn, "similar", str(root / "p0.jpg"), "--format", "json"))
    save(photo(9), root / "p0_small.jpg", quality=90)
    assert run("--db", db_dsn, "load", str(root)).exit_code == 0
    assert "p0_small.jpg" not in _names(run("--db", db_dsn, "similar", str(root / "p0.jpg"), "--format", "json"))
    save(photo(9), tmp_path / "p9.jpg", quality=90)
    assert _names(run("--db", db_dsn, "similar", str(tmp_path / "p9.jpg"), "--format", "json"))["p0_small.jpg"]["distance"] <= 2


def test_similar_reports_bad_targets_in_one_line(db_dsn, tmp_path):
    (tmp_path / "notes.txt").write_text("not a picture")
    for target in ("0xnothex", "0x1ffffffffffffffff", str(tmp_path / "nowhere.jpg"), str(tmp_path / "notes.txt")):
        result = CliRunner().invoke(cli, ["--db", db_dsn, "similar", target])
        assert result.exit_code != 0
        assert "Traceback" not in result.output


@pytest.mark.parametrize("call, args, message", [
    ("similar_to_hash(%s, %s)", (123, -1), "threshold must be a Hamming distance from 0 to 64, not -1"),
    ("similar_to_hash(%s, %s)", (123, 100), "threshold must be a Hamming distance from 0 to 64, not 100"),
    ("similar_to_hash(%s, %s)", (123, None), "threshold must be a Hamming distance from 0 to 64"),
    ("similar_to_hash(%s, %s)", (None, 8), "similar_to_hash needs a hash"),
    ("lookup(%s, NULL, NULL, 8, 2, %s::real)", (123, 2.0), "minimum similarity must be in (0, 1], not 2"),
    ("lookup(%s, NULL, NULL, 8, 2, %s::real)", (123, -1.0), "minimum similarity must be in (0, 1], not -1"),
    ("lookup(%s, %s)", (123, [1, 2, 3]), "variants must be 7 to 15 pHashes, as images.phash_variants holds them, not 3"),
    ("lookup(%s, NULL, NULL, 8, 2, 0.9, %s)", (123, 65), "confirm distance must be a Hamming distance from 0 to 64"),
])
def test_lookups_in_sql_refuse_arguments_out_of_range(conn, call, args, message):
    # a negative threshold found nothing and NULL or 100 every image, silently, where the command line refuses them
    with pytest.raises(psycopg.errors.RaiseException) as info:
        conn.execute(f"SELECT * FROM dbdedup.{call}", args).fetchall()
    assert message in str(info.value)
    conn.rollback()


def test_similar_refuses_an_empty_name_and_says_nothing_of_fingerprinting_a_file_it_cannot_read(db_dsn, tmp_path):
    empty = run("--db", db_dsn, "similar", "")
    assert empty.exit_code == 2 and "an empty path (an unset shell variable?)" in empty.stderr
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    result = run("--db", db_dsn, "similar", str(broken))
    assert result.exit_code == 1 and result.stderr.startswith(f"dbdedup: error: cannot read {broken}"), result.stderr
    assert "fingerprinted it now" not in result.stderr
    photo_file = save(photo(7), tmp_path / "p.jpg", quality=90)
    ok = run("--db", db_dsn, "similar", str(photo_file))
    assert ok.exit_code == 0 and "is not loaded: fingerprinted it now" in ok.stderr
