"""What a new user hits first (issue 9, item 10): flags where people put them, what the hash-only mode
says, the JSON parameters, the SQL defaults, apply --hardlink on the sample."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from dbdedup import db as dbmod
from dbdedup.cli.main import cli
from test_report_sample import load, make_collection, run_cli

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_report_takes_t_and_global_options_after_the_command(db_dsn, tmp_path):
    col = make_collection(tmp_path / "photos")
    # `dbdedup load DIR --quiet --db DSN`, as cron lines write it
    result = CliRunner().invoke(cli, ["load", str(col.root), "--quiet", "--db", db_dsn, "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # --quiet after the command silences the summary too
    data = json.loads(run_cli(db_dsn, "report", "-t", "6", "--format", "json").stdout)
    assert data["parameters"]["threshold"] == 6
    verbose = CliRunner().invoke(cli, ["--db", "not a dsn", "status", "-v"])
    assert verbose.exit_code == 1 and "Traceback" in verbose.stderr  # -v after the command too


def test_json_parameters_show_the_values_in_effect(db_dsn, tmp_path):
    from dbdedup.embedding_defaults import DEFAULT_CLUSTER_CONFIRM_DISTANCE, DEFAULT_CLUSTER_MIN_SIMILARITY
    from dbdedup.matching import DEFAULT_THRESHOLD, DEFAULT_TRANSFORM_DISTANCE

    load(db_dsn, make_collection(tmp_path / "photos").root)
    params = json.loads(run_cli(db_dsn, "report", "--format", "json").stdout)["parameters"]
    assert None not in (params["min_similarity"], params["confirm_distance"], params["transform_distance"])
    assert (params["threshold"], params["rule"], params["min_similarity"], params["confirm_distance"],
            params["transform_distance"]) == (DEFAULT_THRESHOLD, "fused", DEFAULT_CLUSTER_MIN_SIMILARITY,
                                              DEFAULT_CLUSTER_CONFIRM_DISTANCE, DEFAULT_TRANSFORM_DISTANCE)


def test_status_help_offers_only_the_formats_it_takes():
    text = CliRunner().invoke(cli, ["status", "--help"]).stdout
    assert "ndjson" not in text and "json" in text
    assert CliRunner().invoke(cli, ["status", "--format", "ndjson"]).exit_code == 2


def test_apply_hardlink_frees_the_exact_copies_status_counts(db_dsn, tmp_path):
    """On the sample, the exact copy's keeper is a larger near-duplicate: the copy is linked to its twin."""
    sample = shutil.copytree(EXAMPLES, tmp_path / "examples")
    load(db_dsn, sample)
    counted = json.loads(run_cli(db_dsn, "status", "--format", "json").stdout)["counts"]["exact_duplicate_bytes"]
    assert counted > 0
    out = run_cli(db_dsn, "apply", "--hardlink", "--yes", "--manifest", str(tmp_path / "m.jsonl")).stdout
    freed = int(re.search(r"\(([\d,]+) bytes\) freed", out).group(1).replace(",", ""))
    assert freed == counted
    twins = [p for p in sample.rglob("harbour*.jpg") if "large" not in p.name]
    assert len(twins) == 2 and os.path.samefile(*twins)


def test_match_8_says_no_notice(conn):
    from test_matching import insert_images, planted_hashes

    insert_images(conn, planted_hashes(200, seed=3, share=0.3))
    notices: list[str] = []
    conn.add_notice_handler(lambda diag: notices.append(diag.message_primary))
    conn.execute("SELECT * FROM dbdedup.match(8)")  # full
    insert_images(conn, planted_hashes(20, seed=4), prefix="/more")
    conn.execute("SELECT * FROM dbdedup.match(8)")  # incremental
    conn.execute("SELECT * FROM dbdedup.build_clusters()")
    conn.commit()
    assert notices == []


def test_sql_defaults_are_the_command_lines(conn):
    from dbdedup.embedding_defaults import (DEFAULT_CLUSTER_CONFIRM_DISTANCE, DEFAULT_CLUSTER_MIN_SIMILARITY,
                                            DEFAULT_CONFIRM_DISTANCE, DEFAULT_MIN_SIMILARITY)
    from dbdedup.matching import DEFAULT_THRESHOLD, DEFAULT_TRANSFORM_DISTANCE

    def arguments(name: str) -> dict[str, str]:
        rows = conn.execute("SELECT pg_get_function_arguments(p.oid) FROM pg_proc p JOIN pg_namespace n "
                            "ON n.oid = p.pronamespace WHERE n.nspname = 'dbdedup' AND p.proname = %s",
                            (name,)).fetchall()
        found = {}
        for (text,) in rows:
            for arg in text.split(", "):
                m = re.match(r"(\w+) .* DEFAULT (.+)$", arg)
                if m:
                    found.setdefault(m.group(1), m.group(2).strip("'").split("'")[0])
        return found

    build = arguments("build_clusters")
    assert int(build["max_distance"]) == DEFAULT_THRESHOLD and build["rule"] == "fused"
    assert float(build["min_similarity"]) == DEFAULT_CLUSTER_MIN_SIMILARITY
    assert int(build["confirm_distance"]) == DEFAULT_CLUSTER_CONFIRM_DISTANCE
    assert int(build["transform_distance"]) == DEFAULT_TRANSFORM_DISTANCE
    for name in ("similar", "similar_to_hash"):
        assert int(arguments(name)["max_distance"]) == DEFAULT_THRESHOLD, name
    # lookups check no pixels: their embedding matches keep the pHash bound
    assert int(arguments("similar")["confirm_distance"]) == DEFAULT_CONFIRM_DISTANCE
    assert float(arguments("similar")["min_similarity"]) == DEFAULT_MIN_SIMILARITY


def test_hash_only_server_says_so_once_and_reports_the_rule_it_applies(plain_pg_dsn, tmp_path):
    from conftest import dsn_for

    from dbdedup.embedding_index import HASH_ONLY_NOTE
    from dbdedup.load import load_paths

    name = f"hashonly_rule_{os.getpid()}"
    with psycopg.connect(plain_pg_dsn, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    dsn = dsn_for(plain_pg_dsn, name)
    try:
        dbmod.apply_migrations(dsn)
        col = make_collection(tmp_path / "photos")
        with psycopg.connect(dsn) as conn:
            assert HASH_ONLY_NOTE in load_paths(conn, [col.root / "originals"], workers=1).notes
            assert HASH_ONLY_NOTE not in load_paths(conn, [col.root], workers=1).notes  # once per database
        text = run_cli(dsn, "report").stdout
        assert "rule transforms" in text and "rule fused" not in text
        assert json.loads(run_cli(dsn, "report", "--format", "json").stdout)["parameters"]["rule"] == "transforms"
    finally:
        with psycopg.connect(plain_pg_dsn, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_under_move_to_leaves_no_temporary_file(db_dsn, tmp_path):
    """--move-to on a 20 KiB tmpfs (another file system: files are copied): the copies that do not fit
    fail, leave no .dbdedup-* file, stay where they were, and undo puts back the ones that moved."""
    import subprocess

    col = make_collection(tmp_path / "photos")
    load(db_dsn, col.root)
    full = tmp_path / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20k", "tmpfs", str(full)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        before = {p: p.read_bytes() for p in col.root.rglob("*") if p.is_file()}
        result = CliRunner().invoke(cli, ["--db", db_dsn, "apply", "--move-to", str(full), "--yes",
                                          "--manifest", str(tmp_path / "m.jsonl")])
        assert result.exit_code == 1 and "No space left" in result.stderr, result.output
        assert "Traceback" not in result.output
        assert not [p for p in full.rglob(".dbdedup-*")]
        undo = CliRunner().invoke(cli, ["--db", db_dsn, "undo", str(tmp_path / "m.jsonl")])
        assert undo.exit_code == 0, undo.output
        assert not [p for p in full.rglob("*") if p.is_file()]
        assert {p: p.read_bytes() for p in col.root.rglob("*") if p.is_file()} == before
    finally:
        subprocess.run(["umount", str(full)], capture_output=True)


def test_chromium_test_is_required_in_ci_only(monkeypatch):
    """The contact-sheet test skips with a reason where chromium is missing, unless CI=true."""
    import test_export

    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium"):
        test_export._chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="chromium"):
        test_export._chromium()
