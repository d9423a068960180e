"""`dbdedup match` and `dbdedup similar` through click, on real images loaded by the loader."""

from __future__ import annotations

import json
import struct
import zlib

import psycopg
from PIL import Image
from click.testing import CliRunner

from dbdedup.cli.main import cli
from images import brighter, photo, reencoded, resized, save


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _library(root):
    """Six unrelated photos, three of them with an edited copy."""
    for seed in range(6):
        save(photo(seed), root / f"p{seed}.jpg", quality=92)
    save(resized(photo(0), 0.6), root / "copies" / "p0_small.jpg", quality=90)
    save(reencoded(photo(1), 40), root / "copies" / "p1_lowq.jpg", quality=40)
    save(brighter(photo(2), 1.15), root / "copies" / "p2_bright.png")
    return root


def test_match_then_similar(db_dsn, tmp_path):
    root = _library(tmp_path / "lib")
    assert run("--db", db_dsn, "load", str(root)).exit_code == 0
    result = run("--db", db_dsn, "match", "--threshold", "8")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "method scan" in result.stderr and "candidates compared" in result.stderr
    assert "3 clusters with 6 images at threshold 8" in result.stderr

    with psycopg.connect(db_dsn) as conn:
        rows = conn.execute(
            "SELECT m.path, k.path FROM dbdedup.cluster_members m "
            "JOIN dbdedup.cluster_members k ON k.cluster_id = m.cluster_id AND k.is_keeper WHERE NOT m.is_keeper"
        ).fetchall()
    # the keeper is the larger original for the resized copy
    assert {(m.rsplit("/", 1)[1], k.rsplit("/", 1)[1]) for m, k in rows} >= {("p0_small.jpg", "p0.jpg")}

    again = run("--db", db_dsn, "match", "--threshold", "4")
    assert "no matching needed" in again.stderr

    similar = run("--db", db_dsn, "similar", str(root / "p1.jpg"), "--format", "json")
    assert similar.exit_code == 0, similar.output
    found = json.loads(similar.stdout)
    assert [r["path"].rsplit("/", 1)[1] for r in found] == ["p1_lowq.jpg"]
    assert found[0]["distance"] <= 8

    # a file that was never loaded is hashed on the fly
    save(resized(photo(3), 0.5), tmp_path / "outside.jpg", quality=85)
    outside = run("--db", db_dsn, "similar", str(tmp_path / "outside.jpg"), "--format", "csv")
    assert outside.exit_code == 0, outside.output
    assert "p3.jpg" in outside.stdout


def test_similar_in_a_terminal_shows_each_path_whole_however_narrow(db_dsn, tmp_path, monkeypatch):
    # ten columns beside a long path used to fold every cell into 5-character slivers ("dista / nce",
    # "/work / /main / ..."): too wide a table is shown a block per row, as psql's expanded display
    root = _library(tmp_path / "a folder [with brackets] and a name long enough to matter")
    assert run("--db", db_dsn, "load", str(root)).exit_code == 0
    copy = str(root / "copies" / "p1_lowq.jpg")
    monkeypatch.setenv("COLUMNS", "80")
    narrow = run("--db", db_dsn, "similar", str(root / "p1.jpg"))
    assert narrow.exit_code == 0, narrow.output
    lines = narrow.stdout.splitlines()
    assert lines[0] == f"within 8 of {root / 'p1.jpg'}" and lines[1].startswith("[1] ")
    shown = {line[:18].strip(): line[20:] for line in lines[2:]}
    assert list(shown) == ["distance", "matched by", "transform", "transform distance", "similarity", "path",
                           "width", "height", "size bytes", "image id"]
    assert shown["path"] == copy  # brackets and all, on one line (the terminal wraps it; copied whole)
    assert shown["matched by"] == "hash" and int(shown["distance"]) <= 8
    similarity = json.loads(run("--db", db_dsn, "similar", str(root / "p1.jpg"), "--format", "json").stdout)[0]["similarity"]
    assert shown["similarity"] == f"{similarity:.3f}"  # the terminal rounds; json keeps every digit
    assert all(len(line) <= 80 for line in lines if copy not in line and "p1.jpg" not in line)
    # wide enough: one table, a line a row, the whole path in it
    monkeypatch.setenv("COLUMNS", "400")
    wide = run("--db", db_dsn, "similar", str(root / "p1.jpg")).stdout.splitlines()
    assert wide[0] == f"within 8 of {root / 'p1.jpg'}" and "distance" in wide[2] and "matched by" in wide[2]
    assert sum(copy in line for line in wide) == 1
    # nothing near: said, not an empty frame of headers
    save(photo(40), tmp_path / "alone.jpg", quality=90)
    monkeypatch.setenv("COLUMNS", "80")
    alone = run("--db", db_dsn, "similar", str(tmp_path / "alone.jpg"), "--threshold", "2")
    assert alone.stdout.splitlines() == [f"within 2 of {tmp_path / 'alone.jpg'}", "(none)"]


def test_match_reports_user_errors(db_dsn, tmp_path):
    bad = run("--db", db_dsn, "match", "--threshold", "20", "--method", "blocks")
    assert bad.exit_code == 1
    assert "blocks method is exact for thresholds 0 to 15" in bad.stderr and "hint:" in bad.stderr
    missing = run("--db", db_dsn, "similar", str(tmp_path / "nope.jpg"))
    assert missing.exit_code == 1 and "neither a loaded image nor a file" in missing.stderr


def _png_header_bomb(path, side: int) -> None:
    """A greyscale PNG of side x side black pixels: a few hundred kB on disk, side**2 bytes decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte + pixels
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def test_similar_on_a_file_not_loaded_keeps_to_max_pixels(db_dsn, tmp_path, monkeypatch):
    # similar sets Pillow's process-wide limit aside, as the loader's workers do: put it back after the test
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    root = _library(tmp_path / "lib")
    assert run("--db", db_dsn, "load", str(root)).exit_code == 0
    # past Pillow's own hard limit (2 x 89,478,485 pixels), which named no option the user can set
    _png_header_bomb(tmp_path / "bomb.png", 13_400)
    bomb = run("--db", db_dsn, "similar", str(tmp_path / "bomb.png"))
    assert bomb.exit_code == 1 and "Traceback" not in bomb.output
    assert ("PNG header says 13400x13400 = 179,560,000 pixels, above the limit of 89,478,485 (--max-pixels)"
            in bomb.stderr), bomb.stderr
    assert "hint: raise --max-pixels if you trust this file" in bomb.stderr

    save(resized(photo(3), 0.5), tmp_path / "outside.jpg", quality=85)  # 128 x 96 pixels
    refused = run("--db", db_dsn, "similar", "--max-pixels", "10000", str(tmp_path / "outside.jpg"))
    assert refused.exit_code == 1
    assert "above the limit of 10,000 (--max-pixels)" in refused.stderr, refused.stderr
    allowed = run("--db", db_dsn, "similar", "--max-pixels", "12288", str(tmp_path / "outside.jpg"),
                  "--format", "json")
    assert allowed.exit_code == 0, allowed.output
    assert [r["path"].rsplit("/", 1)[1] for r in json.loads(allowed.stdout)] == ["p3.jpg"]


def test_match_quiet_prints_nothing(db_dsn, tmp_path):
    root = _library(tmp_path / "lib")
    run("--db", db_dsn, "load", str(root))
    result = run("--db", db_dsn, "--quiet", "match")
    assert result.exit_code == 0 and result.stderr == "" and result.stdout == ""
