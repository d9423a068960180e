"""A small photo collection with planted duplicates, loaded into a real database: shared by the
report, export, apply and calibrate tests (this module has no tests of its own)."""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import psycopg
from click.testing import CliRunner

from images import brighter, photo, reencoded, resized, save

ORIGINAL_SEEDS = range(101, 113)  # 12 unrelated originals


@dataclass
class Collection:
    root: Path
    originals: dict[str, Path]
    near: dict[str, tuple[str, Path]]  # copy name -> (original name, path)


def make_collection(root: Path) -> Collection:
    """Twelve unrelated originals; five edited copies of three of them, one exact copy."""
    originals = {}
    for seed in ORIGINAL_SEEDS:
        originals[f"o{seed}"] = save(photo(seed), root / "originals" / f"o{seed}.jpg", quality=92)
    base = {name: photo(seed) for name, seed in (("o101", 101), ("o102", 102), ("o103", 103))}
    copies = root / "copies"
    copies.mkdir(parents=True)
    near = {
        "o101_copy.jpg": ("o101", Path(shutil.copy2(originals["o101"], copies / "o101_copy.jpg"))),
        "o101_small.jpg": ("o101", save(resized(base["o101"], 0.5), copies / "o101_small.jpg", quality=90)),
        "o102_lowq.jpg": ("o102", save(reencoded(base["o102"], 35), copies / "o102_lowq.jpg", quality=60)),
        "o102_bright.jpg": ("o102", save(brighter(base["o102"], 1.15), copies / "o102_bright.jpg", quality=90)),
        "o103_large.png": ("o103", save(resized(base["o103"], 1.5), copies / "o103_large.png")),
    }
    return Collection(root=root, originals=originals, near=near)


def load(dsn: str, *roots: Path) -> None:
    from dbdedup.load import load_paths

    with psycopg.connect(dsn) as conn:
        load_paths(conn, list(roots), workers=1)


def run_cli(dsn: str, *args: str, ok: bool = True):
    from dbdedup.cli.main import cli

    result = CliRunner().invoke(cli, ["--db", dsn, *args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def members(dsn: str) -> list[dict]:
    """The current clustering as the view has it."""
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(
            "SELECT cluster_id, path, path_bytes, is_keeper, distance_to_keeper, width, height, size_bytes, "
            "is_exact_duplicate, is_protected FROM dbdedup.cluster_members ORDER BY cluster_id, path"
        ).fetchall()


def tree_state(root: Path) -> dict[bytes, tuple[str, int, int]]:
    """Every file under root: (sha256, size, mtime_ns); symlinks as ('link', target)."""
    state = {}
    for dirpath, _dirs, files in os.walk(os.fsencode(root)):
        for name in files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if os.path.islink(p):
                state[p] = ("link:" + os.fsdecode(os.readlink(p)), 0, 0)
            else:
                with open(p, "rb") as f:
                    state[p] = (hashlib.sha256(f.read()).hexdigest(), st.st_size, st.st_mtime_ns)
    return state
