"""A file's name cannot change what the terminal shows: control characters in paths are printed escaped."""

from __future__ import annotations

import json

from click.testing import CliRunner

from dbdedup.cli.main import cli
from dbdedup.terminal import printable
from images import photo, resized, save

# a name that, printed as it is, clears its own line, writes "keep" over it, turns the rest right to left and
# starts a new line: the report and the plan would show a row that is not a file
EVIL = "copy\x1b[2K\rkeep \u202egpj.exe [x]\nline.jpg"
BROKEN = "bad\x1b]0;owned\x07.jpg"  # an escape sequence that sets the terminal's title


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_printable_escapes_control_and_direction_characters_only():
    assert printable("/photos/a [x] ünï.jpg") == "/photos/a [x] ünï.jpg"
    assert printable("C:\\photos\\a.jpg") == "C:\\photos\\a.jpg"  # no control character: left as it is
    assert printable(EVIL) == "copy\\x1b[2K\\rkeep \\u202egpj.exe [x]\\nline.jpg"
    assert printable("a\\b\tc\x9b\x7f") == "a\\\\b\\tc\\x9b\\x7f"  # backslashes doubled once anything is escaped


def _no_raw_controls(text: str) -> None:
    assert not any(c in text for c in ("\x1b", "\r", "\x07", "\u202e")), repr(text)


def test_report_apply_similar_and_errors_show_a_hostile_name_escaped(db_dsn, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    root = tmp_path / "photos"
    save(photo(3), root / "original.jpg", quality=95)
    copy = save(resized(photo(3), 0.7), root / EVIL, quality=90)
    (root / BROKEN).write_bytes(b"\xff\xd8\xff\xe0 cut short")
    loaded = run("--db", db_dsn, "load", str(root))
    assert loaded.exit_code == 0, loaded.output
    _no_raw_controls(loaded.stderr)
    shown = printable(str(copy))

    report = run("--db", db_dsn, "report")
    assert report.exit_code == 0, report.output
    _no_raw_controls(report.stdout)
    rows = [line for line in report.stdout.splitlines() if line.startswith("dup")]
    assert len(rows) == 1 and shown in rows[0]  # the copy on one row of its own, whole
    assert not any(line.startswith("line.jpg") for line in report.stdout.splitlines())
    # data for tools keeps the name as it is
    members = [m["path"] for c in json.loads(run("--db", db_dsn, "report", "--format", "json").stdout)["clusters"]
               for m in c["members"]]
    assert str(copy) in members

    plan = run("--db", db_dsn, "apply", "--move-to", str(tmp_path / "removed"))
    assert plan.exit_code == 0, plan.output
    _no_raw_controls(plan.stdout)
    moves = [line for line in plan.stdout.splitlines() if line.startswith("move")]
    assert len(moves) == 1 and moves[0].startswith(f"move   {shown}  ->  ")
    assert copy.exists()  # (a dry run)

    similar = run("--db", db_dsn, "similar", str(root / "original.jpg"))
    assert similar.exit_code == 0, similar.output
    _no_raw_controls(similar.stdout)
    assert shown in similar.stdout

    errors = run("--db", db_dsn, "errors")
    assert errors.exit_code == 0, errors.output
    _no_raw_controls(errors.stdout)
    assert printable(str(root / BROKEN)) in errors.stdout
    # a user error naming such a file: one escaped line too
    missing = run("--db", db_dsn, "similar", str(root / ("gone\x1b[31m" + EVIL)))
    assert missing.exit_code == 1
    _no_raw_controls(missing.stderr)
    assert "gone\\x1b[31m" in missing.stderr


def test_the_html_sheet_and_the_review_page_show_a_hostile_name_escaped(db_dsn, tmp_path):
    # a right-to-left override in a name reorders what a browser shows after it, as a terminal does
    import html

    import psycopg

    from dbdedup import review as rv

    root = tmp_path / "photos"
    save(photo(3), root / "original.jpg", quality=95)
    copy = save(resized(photo(3), 0.7), root / EVIL, quality=90)
    assert run("--db", db_dsn, "load", str(root)).exit_code == 0
    assert run("--db", db_dsn, "report").exit_code == 0
    sheet = tmp_path / "sheet.html"
    assert run("--db", db_dsn, "export", str(sheet)).exit_code == 0
    with psycopg.connect(db_dsn) as conn:
        cluster = rv.first_cluster(conn)
        page = rv.create_app(conn, rv.ReviewSettings(token="tok")).test_client().get(f"/cluster/{cluster}?t=tok")
        assert page.status_code == 200
        shown = {"sheet": sheet.read_text(), "review": page.get_data(as_text=True)}
    for where, text in shown.items():
        assert "\u202e" not in text and "\x1b" not in text, where
        assert html.escape(printable(str(copy))) in text, where
