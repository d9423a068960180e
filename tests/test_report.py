"""`dbdedup report` and `dbdedup pairs`: formats parse and match the database, right after a load."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil

import psycopg
import pytest

from test_report_sample import load, make_collection, members, run_cli


def _expected_clusters(dsn: str) -> dict[int, dict]:
    clusters: dict[int, dict] = {}
    for m in members(dsn):
        c = clusters.setdefault(m["cluster_id"], {"keeper": None, "members": {}})
        if m["is_keeper"]:
            c["keeper"] = m["path"]
        c["members"][m["path"]] = m
    return clusters


def test_report_json_right_after_load_matches_the_database(db_dsn, tmp_path):
    col = make_collection(tmp_path / "photos")
    load(db_dsn, col.root)
    result = run_cli(db_dsn, "report", "--format", "json")  # no match step: report runs it
    data = json.loads(result.stdout)
    expected = _expected_clusters(db_dsn)

    # the planted near-duplicates are found: each copy is in its original's cluster
    by_path = {m["path"]: c for c in data["clusters"] for m in c["members"]}
    for copy_name, (original, copy_path) in col.near.items():
        assert by_path[str(copy_path)]["id"] == by_path[str(col.originals[original])]["id"], copy_name
    assert len(data["clusters"]) == 3

    assert {c["id"] for c in data["clusters"]} == set(expected)
    for c in data["clusters"]:
        exp = expected[c["id"]]
        assert c["keeper"] == exp["keeper"]
        assert {m["path"] for m in c["members"]} == set(exp["members"])  # keeper included
        assert c["members"][0]["path"] == c["keeper"] and c["members"][0]["distance"] == 0
        for m in c["members"]:
            row = exp["members"][m["path"]]
            assert (m["distance"], m["width"], m["height"], m["bytes"]) == (
                row["distance_to_keeper"], row["width"], row["height"], row["size_bytes"])
            assert m["keeper"] == row["is_keeper"]
        assert c["reclaimable_bytes"] == sum(
            r["size_bytes"] for r in exp["members"].values() if not r["is_keeper"] and not r["is_protected"])

    params, summary = data["parameters"], data["summary"]
    from dbdedup.matching import DEFAULT_THRESHOLD

    assert params["threshold"] == DEFAULT_THRESHOLD and params["hash"] == "phash"
    with psycopg.connect(db_dsn) as conn:
        images = conn.execute("SELECT count(*) FROM dbdedup.images WHERE status = 'ok'").fetchone()[0]
        reclaimable = conn.execute("SELECT sum(reclaimable_bytes) FROM dbdedup.clusters").fetchone()[0]
    assert summary["images"] == images == 17
    assert summary["near_duplicate_clusters"] == 3
    assert summary["exact_duplicate_groups"] == 1  # o101.jpg and its byte copy
    assert summary["removable_images"] == 5
    assert summary["reclaimable_bytes"] == reclaimable


def test_csv_and_ndjson_carry_the_same_clusters(db_dsn, tmp_path):
    col = make_collection(tmp_path / "photos")
    load(db_dsn, col.root)
    data = json.loads(run_cli(db_dsn, "report", "--format", "json").stdout)

    rows = list(csv.DictReader(io.StringIO(run_cli(db_dsn, "report", "--format", "csv").stdout)))
    assert len(rows) == sum(len(c["members"]) for c in data["clusters"]) == len(members(db_dsn))
    for c in data["clusters"]:
        mine = [r for r in rows if int(r["cluster_id"]) == c["id"]]
        assert [r["path"] for r in mine] == [m["path"] for m in c["members"]]
        assert [r["keeper"] for r in mine].count("true") == 1
        assert all(r["keeper_path"] == c["keeper"] for r in mine)
        assert [int(r["bytes"]) for r in mine] == [m["bytes"] for m in c["members"]]

    lines = run_cli(db_dsn, "report", "--format", "ndjson").stdout.splitlines()
    assert [json.loads(line) for line in lines] == data["clusters"]

    out = tmp_path / "out" / "report.json"
    run_cli(db_dsn, "report", "--format", "json", "--output", str(out))
    assert json.loads(out.read_text()) == data


def test_terminal_report_shows_summary_keeper_and_histogram(db_dsn, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # one line per member, however long the temporary paths
    col = make_collection(tmp_path / "photos")
    load(db_dsn, col.root)
    text = run_cli(db_dsn, "report", "--threshold", "8").stdout
    assert "near-duplicate clusters" in text and "bytes reclaimable" in text
    assert "phash distance <= 8" in text
    keepers = [m["path"] for m in members(db_dsn) if m["is_keeper"]]
    keeper_rows = [line for line in text.splitlines() if line.startswith("keep ") and "│" in line]
    assert len(keeper_rows) == 3
    for line in keeper_rows:
        assert any(os.path.basename(k) in line for k in keepers)
    assert "threshold 8" in text  # the histogram's cut


def test_every_member_says_why_it_is_in_its_cluster(db_dsn, tmp_path, monkeypatch):
    """JSON, CSV and the terminal carry, per member, how its pair with the keeper was verified: the
    reason stored on that pair in dbdedup.pairs (never a pair that was not verified)."""
    monkeypatch.setenv("COLUMNS", "300")
    col = make_collection(tmp_path / "photos")
    load(db_dsn, col.root)
    data = json.loads(run_cli(db_dsn, "report", "--format", "json").stdout)
    rows = {r["path"]: r for r in csv.DictReader(io.StringIO(run_cli(db_dsn, "report", "--format", "csv").stdout))}
    text = run_cli(db_dsn, "report").stdout
    with psycopg.connect(db_dsn) as conn:
        ids = dict(conn.execute("SELECT path, id FROM dbdedup.images").fetchall())
        stored = {(a, b): (verified, reason) for a, b, verified, reason in conn.execute(
            "SELECT image_a, image_b, verified, verify_reason FROM dbdedup.pairs WHERE hash_kind = 'phash'")}
    near = 0
    for c in data["clusters"]:
        keeper = c["members"][0]
        assert keeper["keeper"] and keeper["verify_reason"] is None
        for m in c["members"][1:]:
            if m["exact_duplicate"]:
                assert m["verify_reason"] == "exact" and m["verify_score"] == 1
                continue
            near += 1
            a, b = sorted((ids[m["path"]], ids[keeper["path"]]))
            # the member's link is a verified pair with the keeper (or with a byte copy of it)
            if (a, b) in stored:
                assert stored[(a, b)] == (True, m["verify_reason"])
            assert m["verify_reason"] in ("signature", "geometry", "exact")
            assert 0 < m["verify_score"] <= 1
            assert rows[m["path"]]["verify_reason"] == m["verify_reason"]
            line = next(line for line in text.splitlines() if os.path.basename(m["path"]) in line)
            matched = f"{m['transform']} {m['distance']}" if m["transform"] else f"pHash {m['distance']}"
            said = {"signature": "colours agree", "geometry": "features align", "exact": "same pixels"}
            assert f"{matched}, {said[m['verify_reason']]} {m['verify_score']:.2f}" in line, line
    assert near >= 3


def test_sort_and_limit_pick_clusters(db_dsn, tmp_path):
    col = make_collection(tmp_path / "photos")
    load(db_dsn, col.root)
    everything = json.loads(run_cli(db_dsn, "report", "--format", "json").stdout)["clusters"]
    by_bytes = json.loads(run_cli(db_dsn, "report", "--format", "json", "--sort", "bytes", "--limit", "1").stdout)
    assert len(by_bytes["clusters"]) == 1
    assert by_bytes["clusters"][0]["reclaimable_bytes"] == max(c["reclaimable_bytes"] for c in everything)
    by_members = json.loads(run_cli(db_dsn, "report", "--format", "json", "--limit", "2").stdout)["clusters"]
    assert [len(c["members"]) for c in by_members] == sorted((len(c["members"]) for c in everything),
                                                             reverse=True)[:2]


def test_reference_paths_are_marked_protected(db_dsn, tmp_path):
    col = make_collection(tmp_path / "photos")
    load(db_dsn, col.root)
    data = json.loads(run_cli(db_dsn, "report", "--format", "json", "--reference", str(col.root / "copies")).stdout)
    for c in data["clusters"]:
        for m in c["members"]:
            if m["path"].startswith(str(col.root / "copies") + "/") and not m["keeper"]:
                assert m["protected"]
    assert data["parameters"]["reference_paths"] == [str(col.root / "copies")]


def test_paths_that_are_not_utf8_come_with_their_bytes(db_dsn, tmp_path):
    col = make_collection(tmp_path / "photos")
    odd = os.path.join(os.fsencode(col.root / "copies"), b"caf\xe9.jpg")
    shutil.copyfile(col.originals["o104"], odd)
    load(db_dsn, col.root)
    data = json.loads(run_cli(db_dsn, "report", "--format", "json").stdout)
    found = [m for c in data["clusters"] for m in c["members"] if "path_bytes" in m]
    assert len(found) == 1 and bytes.fromhex(found[0]["path_bytes"]) == odd
    assert "\\xe9" in found[0]["path"]

    # the CSV carries the same column, last, so a name with a real backslash is told apart from an escape
    named = shutil.copyfile(col.originals["o105"], col.root / "copies" / "back\\xe9slash.jpg")
    load(db_dsn, col.root)
    text = run_cli(db_dsn, "report", "--format", "csv").stdout
    header = next(csv.reader(io.StringIO(text)))
    assert header == ["cluster_id", "keeper", "path", "distance", "width", "height", "bytes", "exact_duplicate",
                      "protected", "keeper_path", "transform", "similarity", "verify_reason", "verify_score",
                      "path_bytes"]
    rows = {r["path"]: r for r in csv.DictReader(io.StringIO(text))}
    assert bytes.fromhex(rows[found[0]["path"]]["path_bytes"]) == odd
    assert rows[str(named)]["path_bytes"] == ""  # a UTF-8 name, backslash and all, is its path as it is
    assert sum(1 for r in rows.values() if r["path_bytes"]) == 1


def test_pairs_lists_every_kind_of_pair_with_how_it_matched_and_its_verdict(db_dsn, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # long temporary paths must not fold inside a name
    from PIL import Image, ImageOps

    col = make_collection(tmp_path / "photos")
    mirrored = tmp_path / "photos" / "copies" / "o104_mirror.jpg"
    with Image.open(col.originals["o104"]) as im:
        ImageOps.mirror(im).save(mirrored, quality=92)
    load(db_dsn, col.root)
    pairs = json.loads(run_cli(db_dsn, "pairs", "--threshold", "6", "--format", "json").stdout)
    with psycopg.connect(db_dsn) as conn:
        ids = dict(conn.execute("SELECT path, id FROM dbdedup.images").fetchall())
        stored = {(a, b): (v, r) for a, b, v, r in conn.execute(
            "SELECT image_a, image_b, verified, verify_reason FROM dbdedup.pairs WHERE hash_kind = 'phash'")}
        hash_pairs = conn.execute(
            "SELECT count(*) FROM dbdedup.pairs WHERE hash_kind = 'phash' AND distance <= 6").fetchone()[0]

    # every kind of pair, each within its own bound at this threshold, and how it matched
    kinds = {p["matched_by"] for p in pairs}
    assert kinds <= {"hash", "variant", "embedding", "exact"} and {"hash", "variant", "exact"} <= kinds
    for p in pairs:
        if p["matched_by"] == "hash":
            assert p["distance"] <= 6
        elif p["matched_by"] == "variant":
            assert p["transform"] and p["transform_distance"] <= 2 < p["distance"]
        elif p["matched_by"] == "embedding":
            assert p["similarity"] >= 0.92 and p["distance"] <= 20
    # the flipped copy is listed as a variant of its original, and verified
    flip = [p for p in pairs if {p["path_a"], p["path_b"]} == {str(col.originals["o104"]), str(mirrored)}]
    assert len(flip) == 1 and flip[0]["transform"] == "flip_h" and flip[0]["verified"] is True
    # the verdict is the stored pair's (a copy's rows are its representative's pairs)
    for p in pairs:
        key = (min(ids[p["path_a"]], ids[p["path_b"]]), max(ids[p["path_a"]], ids[p["path_b"]]))
        if key in stored:
            assert stored[key] == (p["verified"], p["verify_reason"]), p
        assert p["verified"] is not None  # pairs runs the verification first
    # verified first, then the most similar first by the signal that matched
    order = [(not p["verified"], p["transform_distance"] if p["matched_by"] == "variant" else p["distance"])
             for p in pairs]
    assert order == sorted(order)
    # o101 + its exact copy + its resize: 3 pairs; o102 + two edits: 3; o103 + resize: 1. The table
    # stores the exact copy as a star (copy -> o101 only): the listing gives it o101's pair with the resize.
    assert len([p for p in pairs if p["matched_by"] in ("hash", "exact")]) == 7 and hash_pairs == 6
    exact = [p for p in pairs if p["exact"]]
    assert len(exact) == 1 and {os.path.basename(exact[0]["path_a"]), os.path.basename(exact[0]["path_b"])} == {
        "o101.jpg", "o101_copy.jpg"}
    rows = list(csv.DictReader(io.StringIO(run_cli(db_dsn, "pairs", "--threshold", "6", "--format", "csv").stdout)))
    assert [(r["path_a"], r["path_b"], r["matched_by"]) for r in rows] == [
        (p["path_a"], p["path_b"], p["matched_by"]) for p in pairs]
    # --max-distance, the name issue 11 gives the filter, is the same option
    assert json.loads(run_cli(db_dsn, "pairs", "--max-distance", "6", "--format", "json").stdout) == pairs
    table = run_cli(db_dsn, "pairs", "--threshold", "6").stdout
    assert "o101_copy.jpg" in table and "same bytes" in table
    line = next(line for line in table.splitlines() if "o104_mirror.jpg" in line)
    assert f"flip_h {flip[0]['transform_distance']}" in line and "colours agree" in line


def test_library_streams_clusters_on_autocommit_and_transaction_connections(db_dsn, tmp_path):
    from dbdedup import results
    from dbdedup.clusters import ClusterSettings, ensure_clusters

    col = make_collection(tmp_path / "photos")
    load(db_dsn, col.root)
    with psycopg.connect(db_dsn) as conn:
        ensure_clusters(conn, ClusterSettings(threshold=8))
        in_transaction = [c.to_json() for c in results.iter_clusters(conn, sort="path")]
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        autocommit = [c.to_json() for c in results.iter_clusters(conn, sort="path")]
    assert in_transaction == autocommit and len(autocommit) == 3
    assert [c["keeper"] for c in autocommit] == sorted(c["keeper"] for c in autocommit)


def test_flat_images_are_counted_apart(db_dsn, tmp_path, monkeypatch):
    """Blank pictures share a low-information hash: matching keeps them out of near-duplicate
    pairs, and the report says how many there are."""
    from PIL import Image

    monkeypatch.setenv("COLUMNS", "300")
    col = make_collection(tmp_path / "photos")
    for i, colour in enumerate(((250, 250, 250), (10, 10, 10), (128, 30, 30))):
        Image.new("RGB", (200, 150), colour).save(col.root / f"flat{i}.png")
    load(db_dsn, col.root)
    data = json.loads(run_cli(db_dsn, "report", "--format", "json").stdout)
    with psycopg.connect(db_dsn) as conn:
        common = conn.execute(
            "SELECT count(*) FROM dbdedup.common_hash_images WHERE hash_kind = 'phash'").fetchone()[0]
    assert data["summary"]["common_hash_images"] == common == 3
    assert not any(os.path.basename(m["path"]).startswith("flat") for c in data["clusters"] for m in c["members"])
    assert "over-common hashes" in run_cli(db_dsn, "report").stdout


def test_report_on_an_empty_database_says_what_to_do(db_dsn):
    text = run_cli(db_dsn, "report").stdout
    assert "no images loaded yet" in text


def test_limit_0_lists_no_cluster_and_says_so(db_dsn, tmp_path):
    col = make_collection(tmp_path / "photos")
    load(db_dsn, col.root)
    text = run_cli(db_dsn, "report", "--limit", "0").stdout
    assert "3 near-duplicate clusters, none listed (--limit 0)" in text
    assert "no near-duplicate clusters" not in text
    assert not any(line.startswith("cluster ") for line in text.splitlines())
    assert "showing 1 of 3 clusters" in run_cli(db_dsn, "report", "--limit", "1").stdout


def test_a_similarity_that_is_not_a_number_is_reported_as_unknown(db_dsn, tmp_path):
    # a cosine with a zero vector is NaN in PostgreSQL: the JSON report wrote "similarity": NaN, which strict
    # parsers refuse, and the table "embedding nan"
    col = make_collection(tmp_path / "photos")
    load(db_dsn, col.root)
    run_cli(db_dsn, "report")
    with psycopg.connect(db_dsn) as conn:
        conn.execute("UPDATE dbdedup.cluster_assignments SET similarity = 'NaN' WHERE NOT is_keeper")
    report = run_cli(db_dsn, "report", "--format", "json").stdout
    members = [m for c in json.loads(report, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))["clusters"]
               for m in c["members"]]
    assert members and all(m["similarity"] is None for m in members)
    assert "nan" not in run_cli(db_dsn, "report").stdout.lower()
