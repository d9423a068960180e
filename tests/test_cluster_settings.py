"""Clustering settings are one value stored in the database (issue 9 item 7, issue 10)."""

from __future__ import annotations

import json
import os

import psycopg
import pytest

from dbdedup.clusters import ClusterSettings, current_settings, stored_settings, update_settings
from dbdedup.errors import DbdedupError
from test_report_sample import load, make_collection, members, run_cli, tree_state


def test_a_reference_set_by_match_survives_report_and_apply(db_dsn, tmp_path):
    """`match --reference R`, then a plain `report`, then `apply --yes`: nothing under R moves."""
    col = make_collection(tmp_path / "photos")
    load(db_dsn, col.root)
    reference = col.root / "copies"  # smaller copies: without the reference, their originals are keepers
    run_cli(db_dsn, "match", "--reference", str(reference))
    report = run_cli(db_dsn, "report", "--format", "json")
    assert json.loads(report.stdout)["parameters"]["reference_paths"] == [str(reference)]
    assert "reference paths" in report.stderr and str(reference) in report.stderr
    under = {p: s for p, s in tree_state(col.root).items() if p.startswith(bytes(reference))}
    result = run_cli(db_dsn, "apply", "--move-to", str(tmp_path / "removed"), "--yes",
                     "--manifest", str(tmp_path / "m.jsonl"))
    assert "clustering:" in result.stderr and str(reference) in result.stderr
    assert {p: s for p, s in tree_state(col.root).items() if p.startswith(bytes(reference))} == under
    moved = [p for p in tree_state(tmp_path / "removed")]
    assert moved and not any(bytes(reference) in p.split(b"/removed", 1)[1] for p in moved)


def test_a_reference_whose_name_is_not_utf8_protects_its_files(db_dsn, tmp_path):
    # a folder name that is not UTF-8 gave a traceback (a text array cannot hold the escaped bytes): the reference
    # is stored in the form the loader stores paths in, and its files compared by their bytes
    col = make_collection(tmp_path / os.fsdecode(b"ph\xffotos"))
    load(db_dsn, col.root)
    reference = col.root / "copies"
    report = run_cli(db_dsn, "report", "--reference", str(reference), "--format", "json")
    shown = os.fsencode(reference).decode("utf-8", "backslashreplace")
    assert "\\xff" in shown and json.loads(report.stdout)["parameters"]["reference_paths"] == [shown]
    assert "warning" not in report.stderr
    copies = [m for m in members(db_dsn) if bytes(m["path_bytes"]).startswith(os.fsencode(reference) + b"/")]
    assert copies and all(m["is_protected"] for m in copies)
    under = {p: s for p, s in tree_state(col.root).items() if p.startswith(os.fsencode(reference))}
    run_cli(db_dsn, "apply", "--move-to", str(tmp_path / "removed"), "--yes", "--manifest", str(tmp_path / "m.jsonl"))
    assert {p: s for p, s in tree_state(col.root).items() if p.startswith(os.fsencode(reference))} == under
    assert tree_state(tmp_path / "removed")  # the originals of protected copies were moved instead


def test_a_reference_named_through_a_symbolic_link_protects_the_files_loaded_under_their_real_path(db_dsn, tmp_path):
    """Protection compares paths as loaded: `--reference ~/photos/copies`, where ~/photos links to the folder
    that was loaded by its real path, protected nothing, and apply moved the copies it named."""
    col = make_collection(tmp_path / "photos")
    load(db_dsn, col.root)
    alias = tmp_path / "alias"
    alias.symlink_to(col.root)
    run_cli(db_dsn, "report", "--format", "json")
    copies = {bytes(m["path_bytes"]) for m in members(db_dsn) if bytes(m["path_bytes"]).startswith(
        bytes(col.root / "copies"))}
    assert copies  # the copies are in clusters, and removable without a reference
    report = run_cli(db_dsn, "report", "--reference", str(alias / "copies"), "--format", "json")
    assert json.loads(report.stdout)["parameters"]["reference_paths"] == [str(alias / "copies"),
                                                                          str(col.root / "copies")]
    assert "warning" not in report.stderr
    assert all(m["is_protected"] for m in members(db_dsn) if bytes(m["path_bytes"]) in copies)
    under = {p: s for p, s in tree_state(col.root).items() if p in copies}
    run_cli(db_dsn, "apply", "--move-to", str(tmp_path / "removed"), "--yes", "--manifest", str(tmp_path / "m.jsonl"))
    assert {p: s for p, s in tree_state(col.root).items() if p in copies} == under


def test_a_reference_by_real_path_protects_files_loaded_through_a_symbolic_link(db_dsn, tmp_path):
    col = make_collection(tmp_path / "photos")
    alias = tmp_path / "alias"
    alias.symlink_to(col.root)
    load(db_dsn, alias)  # recorded as alias/...
    report = run_cli(db_dsn, "report", "--reference", str(col.root / "copies"), "--format", "json")
    assert str(alias / "copies") in json.loads(report.stdout)["parameters"]["reference_paths"]
    protected = [m for m in members(db_dsn) if m["path"].startswith(str(alias / "copies") + "/")]
    assert protected and all(m["is_protected"] for m in protected)


def test_a_reference_set_before_a_load_through_a_symbolic_link_gains_its_alias(db_dsn, tmp_path):
    # a reference's aliases were found only among the roots loaded when it was given: files loaded later through
    # a linked root were not protected (the report warned, apply went on)
    col = make_collection(tmp_path / "photos")
    run_cli(db_dsn, "match", "--reference", str(col.root / "copies"))  # nothing loaded yet
    alias = tmp_path / "alias"
    alias.symlink_to(col.root)
    load(db_dsn, alias)
    report = run_cli(db_dsn, "report", "--format", "json")
    assert "warning" not in report.stderr
    assert json.loads(report.stdout)["parameters"]["reference_paths"] == [str(alias / "copies"),
                                                                          str(col.root / "copies")]
    protected = [m for m in members(db_dsn) if m["path"].startswith(str(alias / "copies") + "/")]
    assert protected and all(m["is_protected"] for m in protected)


def test_a_reference_reached_through_a_link_inside_the_tree_is_protected(db_dsn, tmp_path):
    # a link inside a loaded folder (not a root) to the reference folder: its files are recorded under the link's
    # path, which no alias named: the report counted them removable and warned of an empty reference (apply, which
    # follows each path to where it leads, still left them alone)
    col = make_collection(tmp_path / "photos")
    keep = tmp_path / "keep"
    (col.root / "copies").rename(keep)
    (col.root / "copies").symlink_to(keep)
    load(db_dsn, col.root)
    report = run_cli(db_dsn, "report", "--reference", str(keep), "--format", "json")
    assert "warning" not in report.stderr
    assert json.loads(report.stdout)["parameters"]["reference_paths"] == [str(keep), str(col.root / "copies")]
    linked = [m for m in members(db_dsn) if m["path"].startswith(str(col.root / "copies") + "/")]
    assert linked and all(m["is_protected"] for m in linked)
    assert not any(m["is_protected"] for m in members(db_dsn) if m not in linked)
    under = tree_state(keep)
    dry = run_cli(db_dsn, "apply", "--move-to", str(tmp_path / "removed"))
    assert not [line for line in dry.stdout.splitlines() if line.startswith("move") and "/copies/" in line]
    run_cli(db_dsn, "apply", "--move-to", str(tmp_path / "removed"), "--yes", "--manifest", str(tmp_path / "m.jsonl"))
    assert tree_state(keep) == under


def test_a_root_loaded_through_a_link_into_a_reference_folder_is_protected(db_dsn, tmp_path):
    # the root's link leads to a folder inside the reference: every file loaded under the root lies in it
    col = make_collection(tmp_path / "archive" / "photos")
    alias = tmp_path / "alias"
    alias.symlink_to(col.root)
    load(db_dsn, alias)
    report = run_cli(db_dsn, "report", "--reference", str(tmp_path / "archive"), "--format", "json")
    assert "warning" not in report.stderr
    assert json.loads(report.stdout)["parameters"]["reference_paths"] == [str(alias), str(tmp_path / "archive")]
    loaded = members(db_dsn)
    assert loaded and all(m["is_protected"] for m in loaded)


def test_a_load_records_the_folder_links_its_walk_entered(db_dsn, tmp_path):
    col = make_collection(tmp_path / "photos")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (col.root / "inside").symlink_to(elsewhere)
    (col.root / "broken").symlink_to(tmp_path / "nowhere")
    load(db_dsn, col.root)
    with psycopg.connect(db_dsn) as conn:
        linked = conn.execute("SELECT linked_folders FROM dbdedup.load_runs ORDER BY id DESC LIMIT 1").fetchone()[0]
    assert linked == [str(col.root / "inside")]


def test_a_reference_that_holds_no_loaded_image_is_a_warning_even_when_quiet(db_dsn, tmp_path):
    col = make_collection(tmp_path / "photos")
    load(db_dsn, col.root)
    typo = tmp_path / "photos" / "copeis"
    result = run_cli(db_dsn, "--quiet", "report", "--reference", str(typo), "--format", "json")
    assert result.stderr.splitlines() == [
        f"warning: no loaded image lies under the reference path {typo}, so it protects nothing (a typo, or a "
        "folder loaded under another path?); --clear-references forgets the reference paths"]
    # a reference that holds images, with or without a trailing slash, is no warning
    fine = run_cli(db_dsn, "report", "--clear-references", "--reference", str(col.root / "copies") + "/")
    assert "warning" not in fine.stderr


def test_settings_are_kept_until_changed_and_references_until_cleared(db_dsn, tmp_path):
    col = make_collection(tmp_path / "photos")
    load(db_dsn, col.root)
    run_cli(db_dsn, "report", "--threshold", "4", "--keeper", "newest", "--reference", str(col.root / "copies"))
    params = json.loads(run_cli(db_dsn, "report", "--format", "json").stdout)["parameters"]
    assert (params["threshold"], params["keeper_rule"], params["reference_paths"]) == (
        4, "newest", [str(col.root / "copies")])
    # another --reference adds to the kept ones; only --clear-references forgets them
    run_cli(db_dsn, "match", "--reference", str(col.root / "originals" / "o101.jpg"))
    with psycopg.connect(db_dsn) as conn:
        assert current_settings(conn).reference_paths == (str(col.root / "copies"),
                                                          str(col.root / "originals" / "o101.jpg"))
    run_cli(db_dsn, "match", "--clear-references", "-t", "8")
    with psycopg.connect(db_dsn) as conn:
        settings = stored_settings(conn)
    assert settings is not None and settings.reference_paths == () and settings.threshold == 8
    assert settings.keeper_rule == "newest"  # not given: kept


def test_update_settings_stores_only_changes_and_checks_them(conn):
    assert stored_settings(conn) is None
    settings, changed = update_settings(conn)
    assert settings == ClusterSettings() and not changed and stored_settings(conn) is None
    settings, changed = update_settings(conn, threshold=6, add_references=["/photos/keep/"])
    assert changed and stored_settings(conn) == settings == ClusterSettings(threshold=6,
                                                                             reference_paths=("/photos/keep",))
    assert update_settings(conn, threshold=6) == (settings, False)
    with pytest.raises(DbdedupError):
        update_settings(conn, transform_distance=40)
    assert stored_settings(conn) == settings


def test_an_upgraded_database_keeps_the_references_of_its_clustering(empty_db_dsn):
    """Migration 0006 turns the clustering a database has into its stored settings (references included)."""
    from dbdedup import db as dbmod
    from test_schema import _restore_old_database

    _restore_old_database(empty_db_dsn)  # a database made before the SQL moved (migration 0004)
    with psycopg.connect(empty_db_dsn) as conn:
        conn.execute("DELETE FROM dbdedup.cluster_parameters")
        conn.execute("INSERT INTO dbdedup.cluster_parameters (max_distance, hash_kind, keeper_rule, reference_paths, "
                     "matched_seq, rule, min_similarity, confirm_distance, transform_distance) "
                     "VALUES (6, 'phash', 'oldest', '{/photos/originals}', 0, 'transforms', 0.9, 18, 2)")
        conn.commit()
    dbmod.apply_migrations(empty_db_dsn)
    with psycopg.connect(empty_db_dsn) as conn:
        assert stored_settings(conn) == ClusterSettings(threshold=6, keeper_rule="oldest", rule="transforms",
                                                        reference_paths=("/photos/originals",), min_similarity=0.9,
                                                        confirm_distance=18)


def test_refresh_clusters_with_the_settings_every_command_uses_and_else_their_defaults(db_dsn, pg_server, tmp_path):
    # a pg_cron-only setup: the first clustering ever is CALL dbdedup.refresh(), which clustered by rule hash
    # (what the last build had, and none had been) where every command uses the stored settings, else the defaults
    from conftest import TEMPLATE_DB, _drop_database, _fresh_database

    from dbdedup.clusters import _built_settings, current_parameters, save_settings
    from test_verify_plan import mini_set, named_clusters

    root = tmp_path / "mini"
    mini_set(root)
    run_cli(db_dsn, "load", "--workers", "1", str(root))  # (with embedding vectors: fused applies as fused)
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute("CALL dbdedup.refresh()")
        assert _built_settings(current_parameters(conn)) == ClusterSettings()
    # then the cron job's `dbdedup verify` and the next refresh: the clusters a report gives on a new database
    run_cli(db_dsn, "verify", "--workers", "1")
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute("CALL dbdedup.refresh()")
    admin, _ = pg_server
    name, fresh = _fresh_database(admin, TEMPLATE_DB)
    try:
        run_cli(fresh, "load", "--workers", "1", str(root))
        run_cli(fresh, "report")
        assert named_clusters(db_dsn) == named_clusters(fresh)
        assert {"p01", "p01_border", "p01_crop"} in named_clusters(fresh)
    finally:
        _drop_database(admin, name)

    # settings stored (as by `report --keeper oldest ...`): refresh builds with them
    stored = ClusterSettings(threshold=6, keeper_rule="oldest", min_similarity=0.9, confirm_distance=20,
                             transform_distance=3, reference_paths=(str(root / "p01.jpg"),))
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        save_settings(conn, stored)
        conn.execute("CALL dbdedup.refresh()")
        assert _built_settings(current_parameters(conn)) == stored
        save_settings(conn, ClusterSettings(rule="embedding"))
        conn.execute("UPDATE dbdedup.image_embeddings SET embedding = NULL")
        with pytest.raises(psycopg.errors.RaiseException, match="rule 'embedding' needs embedding vectors"):
            conn.execute("CALL dbdedup.refresh()")


def test_refresh_applies_the_fused_rule_as_transforms_without_vectors_as_the_commands_do(plain_pg_dsn):
    # Debian's PostgreSQL has no pgvector (no dbdedup.image_embeddings): refresh says nothing of embeddings
    from dbdedup.clusters import _built_settings, current_parameters
    from test_matching import insert_images, planted_hashes
    from test_signals import fresh_plain_database

    name = f"hashonly_refresh_{os.getpid()}"
    dsn = fresh_plain_database(plain_pg_dsn, name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            insert_images(conn, planted_hashes(100, seed=41, share=0.3))
            notices: list[str] = []
            conn.add_notice_handler(lambda diag: notices.append(diag.message_primary))
            conn.execute("CALL dbdedup.refresh()")
            assert _built_settings(current_parameters(conn)) == ClusterSettings(rule="transforms")
            assert notices == []
    finally:
        with psycopg.connect(plain_pg_dsn, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
