"""How the keepers' crop windows (dbdedup/crop_windows.py) find cropped copies on the accuracy set, and at what cost.

Reads the database a `cli_score.py` run left (bench/out/accuracy/cli-pgdata). The windows are computed
again from the stored thumbnails (``images.structure``) with the product's code and compared with the
stored pHashes exactly (numpy). Prints:

- for each kind of copy, the share whose stored pHash is within 10 / 12 / 14 bits of a window of its
  group's original (the whole picture's pHash distance beside it);
- the keeper pairs the search proposes, as dbdedup.propose_keeper_pairs does on the run's final clusters
  (from every image outside the clusters of 4 or more, with a pHash of its own, to the keeper of such a
  cluster with the nearest window), at 10 / 12 / 14 bits: how many, how many join the same picture, by
  kind of copy;
- what the run left of the crops and framed copies: in their original's cluster or not, and the verdict
  of their pair with its keeper.

Usage:
    .venv/bin/python bench/accuracy/crop_study.py [--set bench/out/accuracy]
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np

from dbdedup.crop_windows import thumbnails_of, window_phashes

from structure_study import same_picture, study_rows

NEAR_CLUSTER = 4  # dbdedup.keeper_cluster_floor()
DISTANCES = (10, 12, 14)
CROPS = ("crop_90", "crop_75", "crop_50", "border", "border_wide")
QUERY = """
SELECT i.id, i.path, i.structure, i.phash, a.cluster_id, coalesce(a.is_keeper, false),
       (SELECT count(*) FROM dbdedup.cluster_assignments c WHERE c.cluster_id = a.cluster_id),
       NOT dbdedup.is_low_information(i.phash)
         AND i.phash NOT IN (SELECT h.value FROM dbdedup.hash_values h WHERE h.hash_kind = 'phash' AND h.is_common),
       (SELECT array_agg(ARRAY[p.image_a, p.image_b]::text[] || ARRAY[p.verified::text, p.verify_reason])
        FROM dbdedup.pairs p WHERE p.hash_kind = 'phash' AND (p.image_a = i.id OR p.image_b = i.id))
FROM dbdedup.images i
LEFT JOIN dbdedup.cluster_assignments a ON a.image_id = i.id
WHERE i.status = 'ok' AND i.phash IS NOT NULL
ORDER BY i.id
"""


def _bits(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.bitwise_count(np.bitwise_xor(x.astype(np.int64).view(np.uint64), y.astype(np.int64).view(np.uint64)))


def main(argv: list[str] | None = None) -> int:
    found = study_rows(argv, __doc__.split("\n\n")[0], QUERY)
    if found is None:
        return 2
    truth, rows = found
    files = [Path(r[1]).name for r in rows]
    kind = [truth.transform.get(f, "?") for f in files]
    phash = np.array([r[3] for r in rows], dtype=np.int64)
    position = {r[0]: n for n, r in enumerate(rows)}
    thumbnails, kept = thumbnails_of([r[2] for r in rows])
    windows = np.zeros((len(rows), window_phashes(thumbnails[:1]).shape[1]), dtype=np.int64)
    windows[kept] = window_phashes(thumbnails)
    has_windows = np.zeros(len(rows), dtype=bool)
    has_windows[kept] = True
    original = {truth.group.get(f): n for n, f in enumerate(files) if kind[n] == "original"}

    print("\nwithin d bits of a window of its original (share of each kind of copy), and of the whole picture:")
    print(f"{'copy':<16}" + "".join(f"{'window ' + str(d):>11}" for d in DISTANCES) + f"{'whole 12':>11}")
    for name in sorted(set(kind) - {"original", "distractor", "?"}):
        copies = [n for n in range(len(rows)) if kind[n] == name and original.get(truth.group.get(files[n])) is not None
                  and has_windows[original[truth.group.get(files[n])]]]
        if not copies:
            continue
        origins = [original[truth.group.get(files[n])] for n in copies]
        nearest = _bits(windows[origins], phash[copies][:, None]).min(axis=1)
        whole = _bits(phash[origins], phash[copies])
        print(f"{name:<16}" + "".join(f"{(nearest <= d).mean():>11.2f}" for d in DISTANCES) + f"{(whole <= 12).mean():>11.2f}")

    large = np.array([r[6] is not None and r[6] >= NEAR_CLUSTER for r in rows])
    keepers = [n for n, r in enumerate(rows) if r[5] and large[n] and has_windows[n]]
    probes = [n for n, r in enumerate(rows) if not large[n] and r[7]]
    distance = _bits(windows[keepers][None, :, :], phash[probes][:, None, None]).min(axis=2)  # (probes, keepers)
    best = distance.argmin(axis=1)
    paired = {(min(int(a), int(b)), max(int(a), int(b))) for r in rows for a, b, *_ in (r[8] or [])}
    print(f"\n{len(probes):,} probes, {len(keepers):,} keepers of clusters of {NEAR_CLUSTER} or more")
    for d in DISTANCES:
        proposed = [(p, keepers[best[i]]) for i, p in enumerate(probes) if distance[i, best[i]] <= d]
        new = [(p, k) for p, k in proposed if (min(rows[p][0], rows[k][0]), max(rows[p][0], rows[k][0])) not in paired]
        same = Counter(kind[p] for p, k in new if same_picture(truth, files[p], files[k]))
        print(f"{d} bits: {len(proposed):,} keeper pairs, {len(new):,} not stored by the run, {sum(same.values()):,} of "
              "those the same picture: " + ", ".join(f"{t} {c}" for t, c in same.most_common(6)))

    print("\nthe run's crops and framed copies: in their original's cluster, else their pair with its keeper")
    for name in CROPS:
        ended = Counter()
        for n in (n for n in range(len(rows)) if kind[n] == name):
            origin = original.get(truth.group.get(files[n]))
            if origin is None:
                continue
            if rows[n][4] is not None and rows[n][4] == rows[origin][4]:
                ended["joined"] += 1
                continue
            keeper = rows[origin][4] if rows[origin][4] is not None else rows[origin][0]
            verdict = next((f"{v} {reason}" for a, b, v, reason in (rows[n][8] or [])
                            if {int(a), int(b)} == {rows[n][0], keeper}), "no pair")
            ended[verdict] += 1
        print(f"{name:<12} " + ", ".join(f"{v} {c}" for v, c in ended.most_common()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
