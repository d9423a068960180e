"""Verdicts: reviewers' decisions in dbdedup.verdicts, keyed by content, honoured by clustering.

Real photo-like images (tests/images.py), a real database; each test builds the clustering,
records verdicts, and checks what the clusters became.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import psycopg
import pytest

from conftest import TEMPLATE_DB, _drop_database, _fresh_database
from dbdedup import verdicts as vd
from dbdedup.clusters import ClusterSettings, build_clusters, ensure_clusters
from dbdedup.errors import DbdedupError
from images import photo, save
from test_report_sample import load, make_collection, run_cli


def groups(dsn: str) -> set[frozenset[str]]:
    """The current clusters as sets of file names."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT cluster_id, path FROM dbdedup.cluster_members").fetchall()
    out: dict[int, set[str]] = {}
    for cluster_id, path in rows:
        out.setdefault(cluster_id, set()).add(Path(path).name)
    return {frozenset(names) for names in out.values()}


def keeper_of(dsn: str, name: str) -> str | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT k.path FROM dbdedup.cluster_members m JOIN dbdedup.images k ON k.id = m.cluster_id "
            "WHERE m.path LIKE %s", ("%/" + name,)).fetchone()
    return Path(row[0]).name if row else None


def sha(path: Path) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest()


def cluster(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        ensure_clusters(conn)


def recluster(dsn: str):
    with psycopg.connect(dsn) as conn:
        return vd.recluster(conn)


def add(dsn: str, kind: str, *paths: Path, by: str = "tester") -> int:
    with psycopg.connect(dsn) as conn:
        return vd.add(conn, kind, *(sha(p) for p in paths), by=by)


EXPECTED = {
    frozenset({"o101.jpg", "o101_copy.jpg", "o101_small.jpg"}),
    frozenset({"o102.jpg", "o102_lowq.jpg", "o102_bright.jpg"}),
    frozenset({"o103.jpg", "o103_large.png"}),
}


@pytest.fixture
def collection(db_dsn, tmp_path):
    col = make_collection(tmp_path / "photos")
    load(db_dsn, col.root)
    cluster(db_dsn)
    assert groups(db_dsn) == EXPECTED
    return col


def test_not_duplicate_pair_never_links(db_dsn, collection):
    bright = collection.near["o102_bright.jpg"][1]
    keeper = keeper_of(db_dsn, "o102_bright.jpg")
    keeper_path = next(p for p in collection.root.rglob(keeper))
    other = bright if keeper != bright.name else collection.near["o102_lowq.jpg"][1]
    add(db_dsn, "not_duplicate", keeper_path, other)
    recluster(db_dsn)
    after = groups(db_dsn)
    assert not any({keeper, other.name} <= g for g in after)
    # the rest of the collection is untouched
    assert {g for g in after if "o101.jpg" in g or "o103.jpg" in g} == EXPECTED - {
        frozenset({"o102.jpg", "o102_lowq.jpg", "o102_bright.jpg"})}
    # removing the verdict brings the cluster back
    with psycopg.connect(db_dsn) as conn:
        (v,) = vd.list_verdicts(conn)
        assert v.kind == "not_duplicate" and v.decided_by == "tester" and not v.stale
        assert vd.remove(conn, [v.id]) == [v.id]
    recluster(db_dsn)
    assert groups(db_dsn) == EXPECTED


def test_not_in_cluster_makes_a_singleton_and_links_only_by_confirmed_pairs(db_dsn, collection):
    lowq = collection.near["o102_lowq.jpg"][1]
    add(db_dsn, "not_in_cluster", lowq)
    recluster(db_dsn)
    after = groups(db_dsn)
    assert not any("o102_lowq.jpg" in g for g in after)
    assert frozenset({"o102.jpg", "o102_bright.jpg"}) in after
    # a confirmed pair still links it, here to an unrelated original
    add(db_dsn, "duplicate", lowq, collection.originals["o110"])
    recluster(db_dsn)
    assert frozenset({"o102_lowq.jpg", "o110.jpg"}) in groups(db_dsn)
    # byte-identical copies of an image judged not in its cluster stay together (same bytes)
    copy = collection.near["o101_copy.jpg"][1]
    add(db_dsn, "not_in_cluster", copy)
    recluster(db_dsn)
    assert frozenset({"o101.jpg", "o101_copy.jpg"}) in groups(db_dsn)


def test_duplicate_pair_links_beyond_the_threshold(db_dsn, collection):
    a, b = collection.originals["o110"], collection.originals["o111"]
    add(db_dsn, "duplicate", a, b)
    recluster(db_dsn)
    assert frozenset({"o110.jpg", "o111.jpg"}) in groups(db_dsn)
    with psycopg.connect(db_dsn) as conn:
        distance = conn.execute(
            "SELECT max(distance_to_keeper) FROM dbdedup.cluster_members WHERE path LIKE '%/o11_.jpg'").fetchone()[0]
        threshold = conn.execute("SELECT max_distance FROM dbdedup.cluster_parameters").fetchone()[0]
    assert distance > threshold  # the real pHash distance, far beyond what the signals link


def test_chosen_keeper_stays_the_keeper(db_dsn, collection):
    small = collection.near["o101_small.jpg"][1]
    assert keeper_of(db_dsn, "o101_small.jpg") != "o101_small.jpg"  # the largest is kept by default
    with psycopg.connect(db_dsn) as conn:
        vd.choose_keeper(conn, vd.resolve_image(conn, small), by="tester")
    recluster(db_dsn)
    assert keeper_of(db_dsn, "o101.jpg") == "o101_small.jpg"
    assert groups(db_dsn) == EXPECTED
    # whatever the keeper rule
    for rule in ("newest", "oldest", "largest"):
        with psycopg.connect(db_dsn) as conn:
            build_clusters(conn, ClusterSettings(keeper_rule=rule))
        assert keeper_of(db_dsn, "o101.jpg") == "o101_small.jpg"
    # choosing another keeper in the same cluster replaces the choice
    with psycopg.connect(db_dsn) as conn:
        vd.choose_keeper(conn, vd.resolve_image(conn, collection.originals["o101"]), by="tester")
        assert [v.kind for v in vd.list_verdicts(conn)] == ["keeper"]
    recluster(db_dsn)
    # a verdict names content: either byte-identical copy may keep the cluster
    assert keeper_of(db_dsn, "o101_small.jpg") in ("o101.jpg", "o101_copy.jpg")


def test_refresh_in_sql_honours_verdicts(db_dsn, collection):
    lowq, o102 = collection.near["o102_lowq.jpg"][1], collection.originals["o102"]
    a, b = sorted((sha(lowq), sha(o102)))
    bright = sha(collection.near["o102_bright.jpg"][1])
    with psycopg.connect(db_dsn) as conn:
        # written by hand, as an analyst's script or pg_cron job would
        conn.execute("INSERT INTO dbdedup.verdicts (kind, sha256_a, sha256_b) VALUES ('not_duplicate', %s, %s)", (a, b))
        conn.execute("INSERT INTO dbdedup.verdicts (kind, sha256_a) VALUES ('keeper', %s)", (bright,))
        conn.commit()
        conn.execute("CALL dbdedup.refresh()")
        conn.commit()
        (by,) = conn.execute("SELECT decided_by FROM dbdedup.verdicts WHERE kind = 'keeper'").fetchone()
        assert by == conn.execute("SELECT current_user").fetchone()[0]
    after = groups(db_dsn)
    assert not any({"o102.jpg", "o102_lowq.jpg"} <= g for g in after)
    assert keeper_of(db_dsn, "o102.jpg") in ("o102_bright.jpg", None)
    assert keeper_of(db_dsn, "o102_bright.jpg") == "o102_bright.jpg"
    # the table refuses a pair out of order or an image verdict with two sides
    with psycopg.connect(db_dsn) as conn:
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO dbdedup.verdicts (kind, sha256_a, sha256_b) VALUES ('duplicate', %s, %s)", (b, a))


@pytest.fixture
def second_db(pg_server):
    admin, _ = pg_server
    name, dsn = _fresh_database(admin, TEMPLATE_DB)
    yield dsn
    _drop_database(admin, name)


def test_verdicts_survive_a_fresh_database_and_a_rename(db_dsn, second_db, collection, tmp_path):
    bright = collection.near["o102_bright.jpg"][1]
    small = collection.near["o101_small.jpg"][1]
    add(db_dsn, "not_in_cluster", bright)
    add(db_dsn, "keeper", small)
    add(db_dsn, "duplicate", collection.originals["o110"], collection.originals["o111"])
    recluster(db_dsn)
    decided = groups(db_dsn)
    assert frozenset({"o102.jpg", "o102_lowq.jpg"}) in decided and keeper_of(db_dsn, "o101.jpg") == "o101_small.jpg"
    exported = tmp_path / "verdicts.json"
    run_cli(db_dsn, "verdicts", "export", str(exported))
    data = json.loads(exported.read_text())
    assert data["format"] == "dbdedup-verdicts" and len(data["verdicts"]) == 3

    # a fresh database loaded from the same files, with the verdicts imported
    load(second_db, collection.root)
    result = run_cli(second_db, "verdicts", "import", str(exported))
    assert "3 new" in result.stdout
    cluster(second_db)
    assert groups(second_db) == decided and keeper_of(second_db, "o101.jpg") == "o101_small.jpg"
    # importing the same file again changes nothing
    assert "0 new, 0 replaced by newer, 3 kept" in run_cli(second_db, "verdicts", "import", str(exported)).stdout

    # renamed and moved files keep their verdicts (content, not path)
    moved = collection.root / "elsewhere"
    moved.mkdir()
    shutil.move(bright, moved / "renamed_bright.jpg")
    shutil.move(small, moved / "renamed_small.jpg")
    load(second_db, collection.root)
    cluster(second_db)
    assert frozenset({"o102.jpg", "o102_lowq.jpg"}) in groups(second_db)
    assert not any("renamed_bright.jpg" in g for g in groups(second_db))
    assert keeper_of(second_db, "o101.jpg") == "renamed_small.jpg"
    assert len(groups(second_db)) == len(decided)
    with psycopg.connect(second_db) as conn:
        assert not any(v.stale for v in vd.list_verdicts(conn))


def _cluster_of(dsn: str, name: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT cluster_id FROM dbdedup.cluster_members WHERE path LIKE %s",
                            ("%/" + name,)).fetchone()[0]


def test_what_a_verdict_was_given_on_goes_through_export_and_import(db_dsn, second_db, collection, tmp_path):
    """A member taken out of its cluster in the review page names only that member; the verdict keeps the SHA-256 of
    the cluster it was given on (given_on), which makes the rest of that cluster reviewed by whoever took it out.
    The export writes them (hex, in the JSON file and the list's CSV) and the import takes them back: in a fresh
    database loaded from the same files, the rest counts as reviewed as it did. A file without them (written before
    they were exported) still imports, and a newer verdict from it replaces what the stored one was given on."""
    from dbdedup.review import reviewed_clusters

    lowq = collection.near["o102_lowq.jpg"][1]
    members = sorted(sha(p) for p in (collection.originals["o102"], lowq, collection.near["o102_bright.jpg"][1]))
    with psycopg.connect(db_dsn) as conn:
        vd.add(conn, "not_in_cluster", sha(lowq), by="me", given_on=members)  # as the review page records it
        vd.recluster(conn)
        assert reviewed_clusters(conn, "me") == {_cluster_of(db_dsn, "o102.jpg")}
    exported = tmp_path / "verdicts.json"
    run_cli(db_dsn, "verdicts", "export", str(exported))
    (item,) = json.loads(exported.read_text())["verdicts"]
    assert item["given_on"] == [s.hex() for s in members]
    listed = run_cli(db_dsn, "verdicts", "list", "--format", "csv").stdout.splitlines()
    assert listed[0].endswith(",given_on") and listed[1].endswith("," + "; ".join(s.hex() for s in members))

    load(second_db, collection.root)
    cluster(second_db)
    assert "1 new" in run_cli(second_db, "verdicts", "import", str(exported)).stdout  # (and the clusters rebuilt)
    assert frozenset({"o102.jpg", "o102_bright.jpg"}) in groups(second_db)
    with psycopg.connect(second_db) as conn:
        (imported,) = vd.list_verdicts(conn)
        assert imported.given_on == tuple(members) and imported.decided_by == "me"
        assert reviewed_clusters(conn, "me") == {_cluster_of(second_db, "o102.jpg")}

    # an export by an older dbdedup: no given_on; its verdict, decided later, replaces the stored one whole
    item.pop("given_on")
    item["decided_at"] = "2099-01-01T00:00:00+00:00"
    older = tmp_path / "older.json"
    older.write_text(json.dumps({"format": "dbdedup-verdicts", "version": 1, "verdicts": [item]}))
    assert "1 replaced by newer" in run_cli(second_db, "verdicts", "import", str(older)).stdout
    with psycopg.connect(second_db) as conn:
        assert vd.list_verdicts(conn)[0].given_on is None
        assert reviewed_clusters(conn, "me") == set()


def test_verdict_on_a_gone_image_is_stale_not_an_error(db_dsn, collection):
    bright = collection.near["o102_bright.jpg"][1]
    add(db_dsn, "not_duplicate", bright, collection.originals["o102"])
    add(db_dsn, "keeper", collection.originals["o103"])
    recluster(db_dsn)
    kept = bright.read_bytes()
    bright.unlink()
    load(db_dsn, collection.root)  # marks it missing
    cluster(db_dsn)
    with psycopg.connect(db_dsn) as conn:
        stale = vd.list_verdicts(conn, stale=True)
        assert [v.kind for v in stale] == ["not_duplicate"]
        assert [v.kind for v in vd.list_verdicts(conn, stale=False)] == ["keeper"]
        sides = dict(zip(stale[0].sha256, stale[0].paths))
        assert sides[sha(collection.originals["o102"])] == (str(collection.originals["o102"]),)
        assert sides[hashlib.sha256(kept).digest()] == ()
    listed = run_cli(db_dsn, "verdicts", "list", "--format", "json")
    rows = json.loads(listed.stdout)
    assert [r["stale"] for r in rows] == [True, False] and rows[0]["paths_a"] == [] or rows[0]["paths_b"] == []
    assert "1 stale verdict" in listed.stderr
    table = run_cli(db_dsn, "verdicts", "list")
    assert "(not loaded)" in table.stdout
    # the file comes back: the verdict applies again
    bright.write_bytes(kept)
    load(db_dsn, collection.root)
    cluster(db_dsn)
    with psycopg.connect(db_dsn) as conn:
        assert not any(v.stale for v in vd.list_verdicts(conn))
    assert not any({"o102.jpg", "o102_bright.jpg"} <= g for g in groups(db_dsn))


@pytest.mark.parametrize("content, expected", [
    ("{not json", "is not valid JSON"),
    (json.dumps({"verdicts": "all"}), "has no list of verdicts"),
    (json.dumps({"format": "something-else", "verdicts": []}), "is not a dbdedup verdicts file"),
    (json.dumps({"verdicts": [{"kind": "keeper", "sha256": ["ab" * 32]},
                              {"kind": "maybe", "sha256": ["cd" * 32]}]}), "verdict 2: kind 'maybe'"),
    (json.dumps({"verdicts": [{"kind": "keeper", "sha256": ["ab" * 32]},
                              {"kind": "not_duplicate", "sha256": ["ab" * 32]}]}), "not_duplicate needs 2 sha256"),
    (json.dumps({"verdicts": [{"kind": "keeper", "sha256": ["xyz"]}]}), "is not a SHA-256"),
    (json.dumps({"verdicts": [{"kind": "keeper", "sha256": ["ab" * 32], "decided_at": "yesterday"}]}),
     "is not an ISO 8601 time"),
    (json.dumps({"verdicts": [{"kind": "duplicate", "sha256": ["ab" * 32, "ab" * 32]}]}), "byte-identical"),
    (json.dumps({"verdicts": [{"kind": "keeper", "sha256": ["ab" * 32]},
                              {"kind": "not_in_cluster", "sha256": ["AB" * 32]}]}), "name the same image"),
    (json.dumps({"verdicts": [{"kind": "keeper", "sha256": ["ab" * 32], "given_on": ["ab" * 32, "xyz"]}]}),
     "verdict 1: given_on must be a list of SHA-256"),
    ("[" * 100_000 + "]" * 100_000, "its JSON nests too deeply"),
    ('{"verdicts": [' + "1" * 5000 + "]}", "integer string conversion"),
])
def test_malformed_import_is_one_line_and_imports_nothing(db_dsn, tmp_path, content, expected):
    with psycopg.connect(db_dsn) as conn:
        vd.add(conn, "keeper", b"\x01" * 32, by="before")
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    result = run_cli(db_dsn, "verdicts", "import", str(bad), ok=False)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("dbdedup: error: ") and expected in lines[0], result.stderr
    assert lines[1].startswith("hint: a verdicts file is JSON as `dbdedup verdicts export` writes it")
    assert "nothing was imported" in lines[0] and "Traceback" not in result.output
    with psycopg.connect(db_dsn) as conn:
        assert [(v.kind, v.decided_by) for v in vd.list_verdicts(conn)] == [("keeper", "before")]


def test_cli_add_list_remove(db_dsn, collection):
    lowq, o102 = collection.near["o102_lowq.jpg"][1], collection.originals["o102"]
    out = run_cli(db_dsn, "verdicts", "add", "not_duplicate", str(lowq), str(o102), "--note", "colours differ")
    assert "not_duplicate" in out.stdout and "clusters rebuilt" in out.stderr
    assert not any({"o102.jpg", "o102_lowq.jpg"} <= g for g in groups(db_dsn))
    rows = json.loads(run_cli(db_dsn, "verdicts", "list", "--format", "json").stdout)
    assert len(rows) == 1 and rows[0]["note"] == "colours differ" and rows[0]["decided_by"]
    assert sorted(rows[0]["paths_a"] + rows[0]["paths_b"]) == sorted([str(lowq), str(o102)])
    csv_text = run_cli(db_dsn, "verdicts", "list", "--format", "csv").stdout
    assert csv_text.splitlines()[0].startswith("id,kind,paths_a,paths_b,stale") and "colours differ" in csv_text
    # a file dbdedup never loaded cannot be named
    stranger = save(photo(999), collection.root.parent / "stranger.jpg")
    bad = run_cli(db_dsn, "verdicts", "add", "keeper", str(stranger), ok=False)
    assert bad.exit_code == 1 and "is not a loaded image" in bad.stderr
    bad = run_cli(db_dsn, "verdicts", "add", "not_duplicate", str(lowq), ok=False)
    assert bad.exit_code == 1 and "names two images" in bad.stderr
    run_cli(db_dsn, "verdicts", "remove", "--image", str(lowq))
    assert groups(db_dsn) == EXPECTED


def test_readable_by_the_analysts_role(conn, collection):
    vd.add(conn, "keeper", sha(collection.originals["o101"]), by="tester")
    role = f"verdict_reader_{os.getpid()}"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role}")
    conn.execute("SELECT dbdedup.grant_read_access(%s)", (role,))
    conn.commit()
    try:
        conn.execute(f"SET ROLE {role}")
        assert conn.execute("SELECT count(*) FROM dbdedup.verdicts").fetchone()[0] == 1
        assert conn.execute("SELECT stale FROM dbdedup.verdicts_current").fetchone()[0] is False
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM dbdedup.verdicts")
    finally:
        conn.rollback()
        conn.execute("RESET ROLE")
        conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA dbdedup FROM {role}")
        conn.execute(f"REVOKE ALL ON SCHEMA dbdedup FROM {role}")
        conn.execute(f"REVOKE ALL ON ALL FUNCTIONS IN SCHEMA dbdedup FROM {role}")
        conn.execute(f"DROP ROLE {role}")
        conn.commit()


def test_subject_checks():
    a, b = b"\x02" * 32, b"\x01" * 32
    assert vd.subject("duplicate", a, b) == (b, a)
    assert vd.subject("keeper", a) == (a, None)
    for args in (("maybe", a), ("keeper", a, b), ("not_duplicate", a), ("duplicate", a, a)):
        with pytest.raises(DbdedupError):
            vd.subject(*args)


def test_report_json_and_html_sheet_show_verdicts(db_dsn, collection, tmp_path):
    small = collection.near["o101_small.jpg"][1]
    lowq, o102 = collection.near["o102_lowq.jpg"][1], collection.originals["o102"]
    add(db_dsn, "keeper", small)
    add(db_dsn, "not_duplicate", lowq, o102)
    run_cli(db_dsn, "verdicts", "add", "keeper", str(small))  # through the CLI too: same subject, replaced
    report = json.loads(run_cli(db_dsn, "report", "--format", "json").stdout)
    members = {Path(m["path"]).name: (c, m) for c in report["clusters"] for m in c["members"]}
    cluster_101, keeper = members["o101_small.jpg"]
    assert keeper["keeper"] and keeper["reviewed"] and [v["kind"] for v in keeper["verdicts"]] == ["keeper"]
    assert cluster_101["reviewed"] and not members["o101.jpg"][1]["reviewed"]
    assert members["o101.jpg"][1]["verdicts"] == []
    o102_member = members["o102.jpg"][1]
    (v,) = o102_member["verdicts"]
    assert v["kind"] == "not_duplicate" and v["other_paths"] == [str(lowq)] and v["other_sha256"] == sha(lowq).hex()
    assert not members["o103.jpg"][0]["reviewed"]
    ndjson = [json.loads(line) for line in run_cli(db_dsn, "report", "--format", "ndjson").stdout.splitlines()]
    assert sorted(c["reviewed"] for c in ndjson) == sorted(c["reviewed"] for c in report["clusters"])

    sheet = tmp_path / "sheet.html"
    run_cli(db_dsn, "export", str(sheet))
    text = sheet.read_text(encoding="utf-8")
    assert text.count('<span class="badge reviewed">reviewed</span>') == 2  # o101_small and o102
    assert '<li data-kind="keeper">chosen keeper' in text
    assert '<li data-kind="not_duplicate">not a duplicate of o102_lowq.jpg' in text
    assert "<td>verdicts</td><td>2</td>" in text


def test_a_picture_chosen_as_keeper_is_never_removed_when_another_chosen_one_keeps_its_cluster(db_dsn, collection,
                                                                                              tmp_path):
    # two keeper verdicts in one cluster (named by SHA-256, or two clusters merged since): one picture keeps the
    # cluster, and apply moved the other, which a reviewer had said to keep
    from dbdedup.apply import plan_actions

    small, original = collection.near["o101_small.jpg"][1], collection.originals["o101"]
    add(db_dsn, "keeper", small)
    add(db_dsn, "keeper", original)
    recluster(db_dsn)
    assert frozenset({"o101.jpg", "o101_copy.jpg", "o101_small.jpg"}) in groups(db_dsn)
    keeper = keeper_of(db_dsn, "o101.jpg")
    assert keeper in ("o101.jpg", "o101_copy.jpg", "o101_small.jpg")
    with psycopg.connect(db_dsn) as conn:
        rows = {Path(p).name: (k, prot, chosen) for p, k, prot, chosen in conn.execute(
            "SELECT path, is_keeper, is_protected, has_keeper_verdict FROM dbdedup.cluster_members "
            "WHERE path LIKE '%/o101%'")}
        plan = plan_actions(conn, "move", move_to=tmp_path / "removed")
    planned = {Path(a.path).name for a in plan.actions}
    chosen_other = "o101.jpg" if keeper == "o101_small.jpg" else "o101_small.jpg"
    assert rows[chosen_other] == (False, True, True) and chosen_other not in planned
    assert (chosen_other, "chosen as keeper by a reviewer's verdict (protected)") in {
        (Path(p).name, why) for p, why in plan.left_alone}
    if keeper != "o101_small.jpg":
        # a byte-identical copy of the keeper is still a duplicate to remove, verdict or not
        copy = "o101_copy.jpg" if keeper == "o101.jpg" else "o101.jpg"
        assert rows[copy] == (False, False, True) and copy in planned


def test_a_verdict_on_an_empty_name_is_a_usage_error(db_dsn, collection):
    # '' named the current folder ("... is not a loaded image"): an unset shell variable, most likely
    result = run_cli(db_dsn, "verdicts", "add", "keeper", "", ok=False)
    assert result.exit_code == 2 and "an empty path (an unset shell variable?)" in result.stderr
