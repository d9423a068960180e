"""How the turn signatures (dbdedup/turn_signature.py) find turned copies on the accuracy set, and at what cost.

Reads the database a `cli_score.py` run left (bench/out/accuracy/cli-pgdata). The signatures are computed
again from the stored thumbnails (``images.structure``) and searched exactly (numpy, every image against
every other), so the figures do not depend on the pgvector index. Prints:

- for each kind of copy, how often one of an image's 5 nearest signatures (at 0.90 / 0.95 or more) is
  the same picture, and the same for the embedding stored by the run (its 5 nearest at 0.6: what
  dbdedup.propose_keeper_pairs searched before);
- the keeper pairs the search proposes, as propose_keeper_pairs does on the run's final clusters (from
  every image in no cluster of 4 or more to the keeper of each such cluster among its 5 nearest
  signatures at the floor): how many, how many join the same picture, by kind of copy;
- what the run did with the pairs it proposed (transform 'linked'): verified or not, same picture or not.

Usage:
    .venv/bin/python bench/accuracy/turn_study.py [--set bench/out/accuracy]
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np

from dbdedup.turn_signature import turn_signatures_of_thumbnails

from structure_study import same_picture, study_rows

NEAR = 5  # propose_keeper_pairs' near_neighbours
NEAR_CLUSTER = 4  # ... and near_cluster
QUERY = """
SELECT i.id, i.path, i.structure, e.embedding::text, a.cluster_id,
       (SELECT count(*) FROM dbdedup.cluster_assignments c WHERE c.cluster_id = a.cluster_id),
       (SELECT array_agg(ARRAY[p.image_a, p.image_b, p.verified::int])
        FROM dbdedup.pairs p WHERE p.image_a = i.id AND p.transform = 'linked')
FROM dbdedup.images i
LEFT JOIN dbdedup.image_embeddings e ON e.image_id = i.id
LEFT JOIN dbdedup.cluster_assignments a ON a.image_id = i.id
WHERE i.status = 'ok' AND i.structure IS NOT NULL
ORDER BY i.id
"""


def _nearest(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k nearest other rows by cosine (vectors are unit rows): (indices, similarities)."""
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -2.0)
    order = np.argsort(-similarity, axis=1)[:, :k]
    return order, np.take_along_axis(similarity, order, axis=1)


def main(argv: list[str] | None = None) -> int:
    found = study_rows(argv, __doc__.split("\n\n")[0], QUERY)
    if found is None:
        return 2
    truth, rows = found
    ids = np.array([r[0] for r in rows])
    files = [Path(r[1]).name for r in rows]
    kind = [truth.transform.get(f, "?") for f in files]
    cluster = [r[4] for r in rows]
    large = np.array([r[5] is not None and r[5] >= NEAR_CLUSTER for r in rows])
    turn = np.stack(turn_signatures_of_thumbnails([bytes(r[2]) for r in rows]))
    position = {int(i): n for n, i in enumerate(ids)}
    print(f"{len(rows):,} images, {int(large.sum()):,} in clusters of {NEAR_CLUSTER} or more", file=sys.stderr)

    turn_near, turn_sim = _nearest(turn, NEAR)
    with_embedding = [n for n, r in enumerate(rows) if r[3] is not None]
    embedding = np.zeros((len(rows), 64), dtype=np.float32)
    for n in with_embedding:
        embedding[n] = np.array(rows[n][3].strip("[]").split(","), dtype=np.float32)
    emb_near, emb_sim = _nearest(embedding, NEAR)

    def reaches(near, sim, floor) -> Counter:
        hits = Counter()
        for n in range(len(rows)):
            if any(sim[n, j] >= floor and same_picture(truth, files[n], files[m]) for j, m in enumerate(near[n])):
                hits[kind[n]] += 1
        return hits

    totals = Counter(kind)
    columns = [("turn 0.90", reaches(turn_near, turn_sim, 0.90)), ("turn 0.95", reaches(turn_near, turn_sim, 0.95)),
               ("embedding 0.6", reaches(emb_near, emb_sim, 0.6))]
    print(f"\none of the {NEAR} nearest is the same picture (share of each kind of copy):")
    print(f"{'copy':<16}" + "".join(f"{name:>15}" for name, _ in columns))
    for name in sorted(t for t in totals if t not in ("original", "distractor", "?")):
        print(f"{name:<16}" + "".join(f"{hits[name] / totals[name]:>15.2f}" for _, hits in columns))

    for floor in (0.90, 0.95):
        proposed = set()
        for n in np.flatnonzero(~large):
            for j, m in enumerate(turn_near[n]):
                if turn_sim[n, j] >= floor and large[m] and cluster[m] != cluster[n]:
                    proposed.add((n, position[int(cluster[m])]))
        same = Counter(kind[n] for n, k in proposed if same_picture(truth, files[n], files[k]))
        print(f"\nturn floor {floor:.2f}: {len(proposed):,} keeper pairs proposed from the final clusters, "
              f"{sum(same.values()):,} of them the same picture: " + ", ".join(f"{t} {c}" for t, c in same.most_common(8)))

    ended = Counter()
    for n, r in enumerate(rows):
        for a, b, verified in r[6] or []:
            other = files[position[b]] if a == ids[n] else files[position[a]]
            ended[(bool(verified), same_picture(truth, files[n], other))] += 1
    print("\nthe run's proposed keeper pairs (transform linked, all routes): "
          + ", ".join(f"{'verified' if v else 'rejected'} {'same picture' if s else 'look-alike'} {c:,}"
                      for (v, s), c in sorted(ended.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
