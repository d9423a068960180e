-- Queries of dbdedup/verdicts.py: reviewers' decisions (dbdedup.verdicts), keyed by SHA-256.

-- name: upsert
-- One verdict per image or pair: a new decision replaces the old one (and what it was given on, if anything).
INSERT INTO dbdedup.verdicts AS v (kind, sha256_a, sha256_b, decided_by, note, given_on)
VALUES (%(kind)s, %(sha256_a)s, %(sha256_b)s, coalesce(%(decided_by)s, current_user), %(note)s, %(given_on)s)
ON CONFLICT (sha256_a, coalesce(sha256_b, '\x'::bytea)) DO UPDATE SET
    kind = excluded.kind, decided_by = excluded.decided_by, decided_at = excluded.decided_at, note = excluded.note,
    given_on = excluded.given_on
RETURNING v.id;

-- name: import
-- An imported verdict replaces a stored one only when it is newer; no row back: the stored one was kept.
-- (given_on as the file has it: the members, by content, of the cluster it was given on in a review page, the
-- same images in any database; NULL from a file without them.)
INSERT INTO dbdedup.verdicts AS v (kind, sha256_a, sha256_b, decided_by, decided_at, note, given_on)
VALUES (%(kind)s, %(sha256_a)s, %(sha256_b)s, %(decided_by)s, %(decided_at)s, %(note)s, %(given_on)s)
ON CONFLICT (sha256_a, coalesce(sha256_b, '\x'::bytea)) DO UPDATE SET
    kind = excluded.kind, decided_by = excluded.decided_by, decided_at = excluded.decided_at, note = excluded.note,
    given_on = excluded.given_on
WHERE v.decided_at < excluded.decided_at
RETURNING (xmax = 0) AS inserted;

-- name: delete_ids
DELETE FROM dbdedup.verdicts WHERE id = ANY (%(ids)s::bigint[]) RETURNING id;

-- name: delete_naming
-- Every verdict that names an image (by its content).
DELETE FROM dbdedup.verdicts WHERE sha256_a = %(sha256)s OR sha256_b = %(sha256)s RETURNING id;

-- name: delete_other_keepers
-- A cluster has one chosen keeper: choosing one forgets the keeper verdicts of its other members.
-- (the members' files as a list: Citus deletes from a reference table with no join to distributed ones)
DELETE FROM dbdedup.verdicts v
WHERE v.kind = 'keeper' AND v.sha256_a <> %(sha256)s
  AND v.sha256_a IN (SELECT i.sha256 FROM dbdedup.cluster_assignments c JOIN dbdedup.images i ON i.id = c.image_id
                     WHERE c.cluster_id = %(cluster_id)s);

-- name: current
SELECT id, kind, sha256_a, sha256_b, decided_by, decided_at, note, given_on, image_ids_a, paths_a, image_ids_b,
       paths_b, cluster_id_a, cluster_id_b, stale
FROM dbdedup.verdicts_current
WHERE %(stale)s::boolean IS NULL OR stale = %(stale)s::boolean
ORDER BY decided_at, id;

-- name: naming
-- The verdicts that name any of these images (by content), with what they name now.
SELECT id, kind, sha256_a, sha256_b, decided_by, decided_at, note, given_on, image_ids_a, paths_a, image_ids_b,
       paths_b, cluster_id_a, cluster_id_b, stale
FROM dbdedup.verdicts_current
WHERE sha256_a = ANY (%(sha256s)s::bytea[]) OR sha256_b = ANY (%(sha256s)s::bytea[])
ORDER BY decided_at, id;

-- name: image_by_path
SELECT id, path, sha256 FROM dbdedup.images WHERE path_bytes = %(path_bytes)s AND status = 'ok';

-- name: image_by_id
SELECT id, path, sha256 FROM dbdedup.images WHERE id = %(id)s AND status = 'ok';

-- name: cluster_of
SELECT cluster_id FROM dbdedup.cluster_assignments WHERE image_id = %(image_id)s;
