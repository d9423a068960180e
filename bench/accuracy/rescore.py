"""Re-judge the pairs of a finished score.py run with today's verification, and score the defaults again.

score.py spends most of its half hour loading the set and checking pairs geometrically. A change
to the signature rules (sql/verification.sql) or to clustering (sql/clusters.sql) needs neither:
this script reopens the data dir score.py left (bench/out/accuracy/pgdata), keeps every verdict
the geometric check gave (a copy is kept in table bench_geometry_verdicts on first use), clears
the others, runs dbdedup.verify_pairs with the definitions of this checkout, gives back the stored
geometric verdict to a pair verify_pairs leaves pending (pairs never checked are checked now by
dbdedup.verify_workers), clusters with the library's defaults and prints the same tables as
score.py for the defaults: precision, recall, F1, recall per edit, precision per kind of hard
negative.

With --recheck (after a change to the geometric check itself), every pair verify_pairs leaves
pending is checked again by today's workers, and their verdicts replace the stored ones.

Usage:
    .venv/bin/python bench/accuracy/rescore.py [--set bench/out/accuracy] [--workers 2] [--recheck] [--fresh]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dbdedup.db import connect, stop_embedded
from dbdedup.verify_workers import verify_pending_pairs

from score import (SET_DIR, Config, Truth, hard_negative_table, run_configs, score_table, target_lines,
                   transform_table)

GEOMETRY_REASONS = ("geometry", "no_geometry", "dense")


def keep_geometry_verdicts(conn) -> int:
    """Copy the geometric check's verdicts once, so that later runs can give them back."""
    conn.execute("CREATE TABLE IF NOT EXISTS bench_geometry_verdicts AS SELECT hash_kind, image_a, image_b, verified, "
                 "verify_score, verify_reason FROM dbdedup.pairs WHERE verify_reason = ANY(%s)", (list(GEOMETRY_REASONS),))
    return conn.execute("SELECT count(*) FROM bench_geometry_verdicts").fetchone()[0]


def rejudge(conn, workers: int, recheck: bool = False, fresh: bool = False) -> dict:
    """Clear the verdicts, re-run verify_pairs, restore stored geometric verdicts (none with
    ``recheck``), check the rest; with ``recheck``, store the new verdicts of every pair that was pending.
    With ``fresh``, the keeper pairs earlier runs proposed are deleted first, as on a fresh database."""
    started = time.perf_counter()
    if fresh:
        conn.execute("DELETE FROM dbdedup.pairs WHERE transform = 'linked'")
    conn.execute("UPDATE dbdedup.pairs SET verified = NULL, verify_score = NULL, verify_reason = NULL "
                 "WHERE verified IS NOT NULL")
    conn.execute("SELECT * FROM dbdedup.verify_pairs()")
    conn.execute("CREATE TEMP TABLE bench_pending AS SELECT hash_kind, image_a, image_b FROM dbdedup.pairs "
                 "WHERE verified IS NULL")
    restored = 0 if recheck else conn.execute(
        "UPDATE dbdedup.pairs p SET verified = g.verified, verify_score = g.verify_score, "
        "verify_reason = g.verify_reason FROM bench_geometry_verdicts g WHERE p.verified IS NULL "
        "AND (p.hash_kind, p.image_a, p.image_b) = (g.hash_kind, g.image_a, g.image_b)").rowcount
    conn.commit()
    sql_seconds = time.perf_counter() - started
    started = time.perf_counter()
    checked = verify_pending_pairs(conn, workers=workers)
    if recheck:
        conn.execute("DROP TABLE bench_geometry_verdicts")
        conn.execute("CREATE TABLE bench_geometry_verdicts AS SELECT p.hash_kind, p.image_a, p.image_b, p.verified, "
                     "p.verify_score, p.verify_reason FROM dbdedup.pairs p JOIN bench_pending USING "
                     "(hash_kind, image_a, image_b)")
    verdicts = dict(conn.execute("SELECT coalesce(verify_reason, 'pending'), count(*) FROM dbdedup.pairs "
                                 "GROUP BY 1 ORDER BY 2 DESC").fetchall())
    conn.execute("DROP TABLE bench_pending")
    conn.commit()
    return {"sql_seconds": round(sql_seconds, 1), "restored": restored, "checked": checked.done,
            "geometry_seconds": round(time.perf_counter() - started, 1), "verdicts": verdicts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", dest="set_dir", type=Path, default=SET_DIR)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--recheck", action="store_true",
                        help="check every pending pair again with today's geometric check (and keep those verdicts)")
    parser.add_argument("--fresh", action="store_true",
                        help="delete the keeper pairs earlier runs proposed first, as on a fresh database")
    args = parser.parse_args(argv)
    truth = Truth.read(args.set_dir / "truth.csv")
    universe = set(truth.files)
    data_dir = args.set_dir / "pgdata"
    if not data_dir.exists():
        print(f"no {data_dir}: run score.py first", file=sys.stderr)
        return 2
    try:
        with connect(None, data_dir) as conn:
            kept = keep_geometry_verdicts(conn)
            conn.commit()
            info = rejudge(conn, args.workers, args.recheck, args.fresh)
            print(f"geometric verdicts kept: {kept}; {info}", file=sys.stderr)
            default = Config("dbdedup fused", "defaults", "phash", "fused", 8, default=True)
            scores, _ = run_configs(conn, [default], truth, universe, 0.0, 1800)
    finally:
        stop_embedded(data_dir)
    lines = score_table(scores) + [""] + transform_table(scores, truth.transforms) + [""]
    lines += hard_negative_table(scores, truth) + [""] + target_lines(scores[0], None, [], [])
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
