-- Queries of dbdedup/review.py: the review page reads one cluster (or one page of clusters) at a
-- time, by keyset on cluster_id (the keeper's image id, indexed in dbdedup.cluster_assignments).

-- A cluster has one keeper row (is_keeper), so walking those rows in cluster_id order visits
-- each cluster once, from the index, without grouping the rest.

-- name: first_cluster
SELECT cluster_id FROM dbdedup.cluster_assignments WHERE is_keeper ORDER BY cluster_id LIMIT 1;

-- name: next_cluster
SELECT cluster_id FROM dbdedup.cluster_assignments WHERE cluster_id > %(after)s AND is_keeper
ORDER BY cluster_id LIMIT 1;

-- name: previous_cluster
SELECT cluster_id FROM dbdedup.cluster_assignments WHERE cluster_id < %(before)s AND is_keeper
ORDER BY cluster_id DESC LIMIT 1;

-- name: position
-- How many clusters come before this one, and how many there are.
SELECT (SELECT count(*) FROM dbdedup.cluster_assignments WHERE cluster_id < %(cluster_id)s AND is_keeper) AS before,
       (SELECT clusters FROM dbdedup.cluster_parameters) AS clusters;

-- name: cluster_of
SELECT cluster_id FROM dbdedup.cluster_assignments WHERE image_id = %(image_id)s;

-- name: members
-- One cluster, keeper first; with each member's plain hash distances to the keeper.
SELECT m.cluster_id, m.image_id, m.path, m.is_keeper, m.distance_to_keeper, m.width, m.height, m.size_bytes,
       m.sha256, m.is_exact_duplicate, m.is_protected, m.transform, m.similarity, m.is_same_file,
       m.verify_reason, m.verify_score, i.format, i.mtime,
       dbdedup.hamming(i.phash, k.phash) AS phash_distance, dbdedup.hamming(i.dhash, k.dhash) AS dhash_distance
FROM dbdedup.cluster_members m
JOIN dbdedup.images i ON i.id = m.image_id
JOIN dbdedup.images k ON k.id = m.cluster_id
WHERE m.cluster_id = %(cluster_id)s
ORDER BY m.is_keeper DESC, m.distance_to_keeper, m.path, m.image_id;

-- name: pair_with_keeper
-- The stored pair between a member and its keeper (any of their byte-identical copies: pairs are
-- stored between representatives), every column of it but the ids: the signals that found it.
SELECT to_jsonb(p) - 'image_a' - 'image_b' AS pair
FROM dbdedup.images x
JOIN dbdedup.images y ON y.sha256 = %(member_sha256)s AND y.status = 'ok'
JOIN dbdedup.pairs p ON p.image_a = least(x.id, y.id) AND p.image_b = greatest(x.id, y.id)
WHERE x.sha256 = %(keeper_sha256)s AND x.status = 'ok'
  AND p.hash_kind = (SELECT coalesce(max(hash_kind), 'phash') FROM dbdedup.cluster_parameters)
ORDER BY p.distance
LIMIT 1;

-- name: page
-- A page of clusters after a keyset mark: keeper, size, whether a verdict names a member.
WITH page AS (
    SELECT cluster_id FROM dbdedup.cluster_assignments
    WHERE cluster_id > %(after)s AND is_keeper ORDER BY cluster_id LIMIT %(limit)s
)
SELECT p.cluster_id, k.path AS keeper_path,
       (SELECT count(*) FROM dbdedup.cluster_assignments a WHERE a.cluster_id = p.cluster_id) AS members,
       EXISTS (SELECT 1 FROM dbdedup.cluster_assignments a
               JOIN dbdedup.images i ON i.id = a.image_id
               WHERE a.cluster_id = p.cluster_id
                 AND (EXISTS (SELECT 1 FROM dbdedup.verdicts v WHERE v.sha256_a = i.sha256)
                      OR EXISTS (SELECT 1 FROM dbdedup.verdicts v WHERE v.sha256_b = i.sha256))) AS reviewed
FROM page p
JOIN dbdedup.images k ON k.id = p.cluster_id
ORDER BY p.cluster_id;

-- name: page_before
-- The keyset mark of the page that ends before a cluster (for "previous page").
SELECT min(cluster_id) FROM (
    SELECT cluster_id FROM dbdedup.cluster_assignments
    WHERE cluster_id < %(before)s AND is_keeper ORDER BY cluster_id DESC LIMIT %(limit)s
) p;

-- name: reviewed_clusters
-- What "apply what I reviewed" acts on: the clusters with a member that a verdict by this reviewer
-- (decided_by) names, or that %(seen)s holds (the members of the clusters verdicts were given on in
-- this page, recorded before each verdict: so a cluster whose member was taken out still counts).
SELECT DISTINCT a.cluster_id
FROM (SELECT sha256_a AS sha256 FROM dbdedup.verdicts WHERE decided_by = %(user)s
      UNION SELECT sha256_b FROM dbdedup.verdicts WHERE decided_by = %(user)s AND sha256_b IS NOT NULL
      UNION SELECT unnest(%(seen)s::bytea[])) v
JOIN dbdedup.images i ON i.sha256 = v.sha256 AND i.status = 'ok'
JOIN dbdedup.cluster_assignments a ON a.image_id = i.id;

-- name: stored_verdicts
-- Which of these verdict ids are still stored (one forgotten since is not).
SELECT id FROM dbdedup.verdicts WHERE id = ANY (%(ids)s::bigint[]);

-- name: cluster_sha256s
-- The members of these clusters, by content.
SELECT i.sha256
FROM dbdedup.cluster_assignments a
JOIN dbdedup.images i ON i.id = a.image_id
WHERE a.cluster_id = ANY (%(cluster_ids)s::bigint[]);

-- name: image_path
SELECT path_bytes FROM dbdedup.images WHERE id = %(image_id)s AND status = 'ok';
