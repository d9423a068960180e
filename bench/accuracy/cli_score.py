"""Score what a user gets: `dbdedup load` and `dbdedup report` at their defaults on the accuracy set.

score.py matches once at its largest thresholds (pHash 12, similarity 0.79) and clusters many settings
from those pairs, and rescore.py re-judges that run's pairs: both see candidate pairs the command line's
defaults never make. This script runs the command line itself, as a user would, on a fresh embedded
data dir (bench/out/accuracy/cli-pgdata): `dbdedup --data-dir D load IMAGES`, then `dbdedup --data-dir D
report --format json`, each timed, then reads `dbdedup.cluster_members` and prints score.py's tables for
that one clustering: precision, recall, F1, recall per edit, precision per kind of hard negative, and
the issue's targets.

With --rebuild (after a change to clustering or to the keeper pairs only), the data dir of an earlier
run is kept: the keeper pairs it proposed are deleted and the clusters are built again at the defaults
(clusters.build_clusters, then clusters.link_keepers, as `report` does), which takes about a minute
instead of the three of a full run. With --recheck as well, every verdict is cleared first and given
again by today's `verify_pairs` and geometric check (after a change to verification).

With --lone-copies, the set is cut down to what most collections look like: the originals and the
distractors (every hard negative kept), and one copy of each original, not 25. The copy is drawn round
robin from --edits (default: every edit), starting at --draw, so each edit gets about 300 / len(edits)
copies a draw and different draws give different originals each edit. In the full set an original and its
25 copies make a large cluster, and some signals (the keepers' crop windows, the turn signatures, the
near neighbours of dbdedup.propose_keeper_pairs) propose pairs only to the keepers of clusters of 4 or more:
a lone copy, as a user's photo and its one crop, is found by the other signals alone. The subset is made of
hard links in bench/out/accuracy/lone-copies-DRAW (its own data dir beside it), and scored over its files.

Usage:
    .venv/bin/python bench/accuracy/cli_score.py [--set bench/out/accuracy] [--rebuild [--recheck]]
    .venv/bin/python bench/accuracy/cli_score.py --lone-copies --edits crop_75,crop_50,rotate_10 --draw 1
    .venv/bin/python bench/accuracy/cli_score.py --lone-copies --load-option=--keypoints
    .venv/bin/python bench/accuracy/cli_score.py --peers imagehash,czkawka,imagededup

With --peers, the peers named (score.py's, from bench/out/peers-venv) run on the same files after dbdedup, in the
same run, and their rows and the issue's "F1 vs peers" targets are printed beside dbdedup's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from dbdedup.clusters import ClusterSettings, build_clusters, link_keepers
from dbdedup.db import connect, stop_embedded
from dbdedup.verify_workers import verify_pending_pairs

from score import (SET_DIR, Truth, hard_negative_table, peer_scores, run_peer, score_clusters, score_table,
                   target_lines, transform_table)

PEER_THRESHOLDS = [4, 6, 8, 10, 12]  # as score.py's: the pHash distances the peers' pairs are cut at

DBDEDUP = Path(sys.executable).parent / "dbdedup"


def run_cli(data_dir: Path, images: Path, load_options: list[str] = ()) -> dict[str, float]:
    """`dbdedup load [load_options]` then `dbdedup report` on a fresh data dir; seconds of each."""
    if data_dir.exists():
        stop_embedded(data_dir)
        shutil.rmtree(data_dir)
    seconds = {}
    for name, args in (("load", ["load", *load_options, str(images)]), ("report", ["report", "--format", "json"])):
        started = time.perf_counter()
        subprocess.run([str(DBDEDUP), "--data-dir", str(data_dir), "-q", *args], check=True,
                       stdout=subprocess.DEVNULL)
        seconds[name] = round(time.perf_counter() - started, 1)
    return seconds


def lone_copies(truth: Truth, images: Path, folder: Path, edits: list[str], draw: int) -> set[str]:
    """``folder`` filled with hard links to the originals, the distractors and one copy of each original
    (its edits among ``edits``, taken round robin from ``draw``); returns the files."""
    copies: dict[str, dict[str, str]] = {}
    for file in truth.files:
        if truth.transform[file] in edits:
            copies.setdefault(truth.group[file], {})[truth.transform[file]] = file
    chosen = {f for f in truth.files if truth.transform[f] in ("original", "distractor")}
    for n, group in enumerate(sorted(copies)):
        available = [e for e in edits if e in copies[group]]
        chosen.add(copies[group][available[(n + draw) % len(available)]])
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for file in sorted(chosen):
        try:
            os.link(images / file, folder / file)
        except OSError:  # another file system
            shutil.copy2(images / file, folder / file)
    return chosen


def rebuild(conn, recheck: bool) -> dict[str, float]:
    """The clusters built again at the defaults from the stored pairs (their verdicts given again first
    with ``recheck``), the keeper pairs proposed anew, as on a fresh database."""
    seconds = {}
    started = time.perf_counter()
    conn.execute("DELETE FROM dbdedup.pairs WHERE transform = 'linked'")
    if recheck:
        conn.execute("UPDATE dbdedup.pairs SET verified = NULL, verify_score = NULL, verify_reason = NULL "
                     "WHERE verified IS NOT NULL")
        conn.execute("SELECT * FROM dbdedup.verify_pairs()")
        conn.commit()
        verify_pending_pairs(conn, workers=2)
        seconds["recheck"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
    conn.commit()
    result = link_keepers(conn, build_clusters(conn, ClusterSettings()), verify_workers=2)
    conn.commit()
    seconds["clusters"] = round(time.perf_counter() - started, 1)
    print(f"  keeper pairs proposed: {result.keeper_pairs}"
          + (f" ({result.keeper_check.as_dict()})" if result.keeper_check else ""), file=sys.stderr)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", dest="set_dir", type=Path, default=SET_DIR)
    parser.add_argument("--rebuild", action="store_true", help="keep the data dir of an earlier run, build the clusters again")
    parser.add_argument("--recheck", action="store_true", help="with --rebuild: every verdict given again first")
    parser.add_argument("--lone-copies", action="store_true",
                        help="one copy of each original (with the originals and distractors), not every edit")
    parser.add_argument("--edits", default="", help="with --lone-copies: the edits copies are drawn from (comma-separated)")
    parser.add_argument("--draw", type=int, default=0, help="with --lone-copies: where the round robin starts")
    parser.add_argument("--load-option", action="append", default=[],
                        help="an option given to `dbdedup load` (repeat it for more), e.g. --load-option=--keypoints")
    parser.add_argument("--peers", default="", help="peers run on the same files after dbdedup (comma-separated: "
                        "imagehash, czkawka, imagededup)")
    parser.add_argument("--peer-timeout", type=int, default=1800, help="seconds allowed to each peer")
    args = parser.parse_args(argv)
    truth = Truth.read(args.set_dir / "truth.csv")
    data_dir = (args.set_dir / "cli-pgdata").resolve()
    images = args.set_dir / "images"
    universe = set(truth.files)
    if args.lone_copies:
        edits = args.edits.split(",") if args.edits else truth.transforms
        unknown = [e for e in edits if e not in truth.transforms]
        if unknown:
            parser.error(f"no such edit in the set: {', '.join(unknown)}")
        images = (args.set_dir / f"lone-copies-{args.draw}").resolve()
        data_dir = (args.set_dir / f"lone-copies-{args.draw}-pgdata").resolve()
        if not args.rebuild:
            universe = lone_copies(truth, args.set_dir / "images", images, edits, args.draw)
        else:
            universe = set(os.listdir(images))
        copies = Counter(truth.transform[f] for f in universe if truth.transform[f] in edits)
        print(f"lone copies, draw {args.draw}: {len(universe):,} files; copies per edit: "
              + ", ".join(f"{e} {copies[e]}" for e in edits), file=sys.stderr)
    if args.load_option:
        data_dir = data_dir.with_name(data_dir.name + "-" + "".join(o.strip("-") for o in args.load_option))
    if args.recheck and not args.rebuild:
        parser.error("--recheck goes with --rebuild")
    if args.rebuild and not data_dir.exists():
        print(f"no {data_dir}: run without --rebuild first", file=sys.stderr)
        return 2
    if not args.rebuild:
        seconds = run_cli(data_dir, images, args.load_option)
    try:
        with connect(None, data_dir) as conn:
            if args.rebuild:
                seconds = rebuild(conn, args.recheck)
            rows = conn.execute("SELECT cluster_id, path FROM dbdedup.cluster_members").fetchall()
    finally:
        stop_embedded(data_dir)
    print(f"seconds: {seconds}", file=sys.stderr)
    labels = {os.path.basename(path): cluster for cluster, path in rows}
    setting = " ".join(["defaults" if not args.load_option else "load " + " ".join(args.load_option)]
                       + (["lone copies"] if args.lone_copies else []))
    score = score_clusters("dbdedup load + report", setting,
                           labels, truth, universe, sum(seconds.values()))
    peers, notes = [], []
    for peer in filter(None, args.peers.split(",")):
        print(f"  peers: {peer} on the same {len(universe):,} files ...", file=sys.stderr)
        result = run_peer(peer, images, args.set_dir / f"peer-{peer}.json", PEER_THRESHOLDS, args.peer_timeout,
                          os.cpu_count() or 1)
        if isinstance(result, str):
            notes.append(result)
        else:
            peers += peer_scores(result, truth, universe)
    lines = score_table([score, *peers]) + [""] + transform_table([score], truth.transforms) + [""]
    lines += hard_negative_table([score, *peers], truth) + [""] + target_lines(score, None, peers, [])
    lines += [f"- {note}" for note in notes]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
