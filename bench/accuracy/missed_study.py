"""What the last run left out of its original's cluster, by kind of copy, and why.

Reads the database a `cli_score.py` run left (bench/out/accuracy/cli-pgdata). For every copy in the set
(every file with an original but the original itself) whose cluster is not its original's, it looks up
the copy's pair with the keeper of its original's cluster (the original itself when that is in no cluster)
and with the original, and prints, per kind of copy (``--edits`` to pick some), how many joined, and how
the others' pairs ended: the verdict and reason (``verified reason``), ``unchecked`` (a pair left unchecked:
not needed by the clusters), or ``no pair``. With ``--list N`` it prints up to N left-out copies of each
kind with their original, keeper and both verdicts, to read their pixels.

Usage:
    .venv/bin/python bench/accuracy/missed_study.py [--set bench/out/accuracy] [--edits brightness_up,watermark] [--list 10]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from score import SET_DIR
from structure_study import last_run_rows

QUERY = """
SELECT i.id, i.path, a.cluster_id,
       (SELECT array_agg(ARRAY[p.image_a, p.image_b]::text[]
                         || ARRAY[coalesce(p.verified::text, 'unchecked'), coalesce(p.verify_reason, ''),
                                  p.transform, p.distance::text, coalesce(p.similarity::text, '')])
        FROM dbdedup.pairs p WHERE p.image_a = i.id OR p.image_b = i.id)
FROM dbdedup.images i
LEFT JOIN dbdedup.cluster_assignments a ON a.image_id = i.id
WHERE i.status = 'ok'
"""


def _verdict(pairs: list, one: int, other: int) -> str:
    """How the pair of images ``one`` and ``other`` ended (the strongest of its rows: verified, then refused)."""
    found = [(v, reason, transform) for a, b, v, reason, transform, *_ in pairs if {int(a), int(b)} == {one, other}]
    if not found:
        return "no pair"
    for wanted in ("true", "false", "unchecked"):
        for v, reason, transform in found:
            if v == wanted:
                return {"true": f"verified {reason}", "false": f"refused {reason}", "unchecked": "unchecked"}[v]
    return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", dest="set_dir", type=Path, default=SET_DIR)
    parser.add_argument("--edits", default="", help="kinds of copy, comma-separated (default: every kind)")
    parser.add_argument("--list", type=int, default=0, help="list up to N left-out copies of each kind")
    args = parser.parse_args(argv)
    found = last_run_rows(args.set_dir, QUERY)
    if found is None:
        return 2
    truth, rows = found
    by_file = {Path(r[1]).name: r for r in rows}
    wanted = [e for e in args.edits.split(",") if e] or sorted(
        {t for t in truth.transform.values() if t not in ("original", "distractor")})
    print(f"{'copy':<16}{'copies':>8}{'joined':>8}  left out: the pair with the keeper (with the original)")
    for edit in wanted:
        ended, listed, joined, total = Counter(), [], 0, 0
        for name, transform in truth.transform.items():
            if transform != edit or name not in by_file:
                continue
            original = by_file.get(truth.original_of.get(truth.group.get(name)))
            if original is None:
                continue
            total += 1
            copy = by_file[name]
            if copy[2] is not None and copy[2] == original[2]:
                joined += 1
                continue
            keeper = original[2] if original[2] is not None else original[0]
            pairs = copy[3] or []
            with_keeper = "keeper itself" if keeper == copy[0] else _verdict(pairs, copy[0], keeper)
            with_original = _verdict(pairs, copy[0], original[0]) if keeper != original[0] else "(the keeper)"
            ended[with_keeper] += 1
            if len(listed) < args.list:
                listed.append(f"    {name}  original {Path(original[1]).name}  keeper id {keeper}: {with_keeper}; "
                              f"original: {with_original}")
        print(f"{edit:<16}{total:>8}{joined:>8}  " + ", ".join(f"{v} {c}" for v, c in ended.most_common()))
        for line in listed:
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
