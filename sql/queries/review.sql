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
-- One cluster, keeper first; with each member's plain hash distances to the keeper. The keeper's
-- hashes come from the keeper's own row (a window over the one cluster), as cluster_members reads
-- its file: joining images a second time on cluster_id is a join Citus cannot plan.
SELECT m.cluster_id, m.image_id, m.path, m.is_keeper, m.distance_to_keeper, m.width, m.height, m.size_bytes,
       m.sha256, m.is_exact_duplicate, m.is_protected, m.transform, m.similarity, m.is_same_file,
       m.verify_reason, m.verify_score, m.format, m.mtime,
       dbdedup.hamming(m.phash, first_value(m.phash) OVER keeper_first) AS phash_distance,
       dbdedup.hamming(m.dhash, first_value(m.dhash) OVER keeper_first) AS dhash_distance
FROM (SELECT m.cluster_id, m.image_id, m.path, m.is_keeper, m.distance_to_keeper, m.width, m.height, m.size_bytes,
             m.sha256, m.is_exact_duplicate, m.is_protected, m.transform, m.similarity, m.is_same_file,
             m.verify_reason, m.verify_score, i.format, i.mtime, i.phash, i.dhash
      FROM dbdedup.cluster_members m
      JOIN dbdedup.images i ON i.id = m.image_id
      WHERE m.cluster_id = %(cluster_id)s) m
WINDOW keeper_first AS (ORDER BY m.is_keeper DESC)
ORDER BY m.is_keeper DESC, m.distance_to_keeper, m.path, m.image_id;

-- name: pair_with_keeper
-- The stored pair between a member and its keeper (any of their byte-identical copies: pairs are
-- stored between representatives), every column of it but the ids: the signals that found it.
-- (The copies of each are read first: on Citus, two reads of images joined on sha256 are a join
-- it cannot plan; each CTE is read on its own there, and inlined on one server.)
WITH x AS (SELECT id FROM dbdedup.images WHERE sha256 = %(keeper_sha256)s AND status = 'ok'),
     y AS (SELECT id FROM dbdedup.images WHERE sha256 = %(member_sha256)s AND status = 'ok')
SELECT to_jsonb(p) - 'image_a' - 'image_b' AS pair
FROM x
CROSS JOIN y
JOIN dbdedup.pairs p ON p.image_a = least(x.id, y.id) AND p.image_b = greatest(x.id, y.id)
WHERE p.hash_kind = (SELECT coalesce(max(hash_kind), 'phash') FROM dbdedup.cluster_parameters)
ORDER BY p.distance
LIMIT 1;

-- name: page
-- A page of clusters after a keyset mark: keeper, size, whether a verdict (anyone's) names a member
-- ("reviewed", as the JSON report says it; whether this reviewer reviewed it is reviewed_clusters' rule). Grouped
-- over the page's members rather than by a subquery per cluster, the keeper's path from its own
-- row (cluster_id is its image id): on Citus the members are read first, and the verdicts (a
-- reference table) looked up by index for them alone, as on one server.
WITH page AS (
    SELECT cluster_id FROM dbdedup.cluster_assignments
    WHERE cluster_id > %(after)s AND is_keeper ORDER BY cluster_id LIMIT %(limit)s
), members AS (
    SELECT p.cluster_id, a.is_keeper, i.path, i.sha256
    FROM page p
    JOIN dbdedup.cluster_assignments a ON a.cluster_id = p.cluster_id
    JOIN dbdedup.images i ON i.id = a.image_id
)
SELECT m.cluster_id, min(m.path) FILTER (WHERE m.is_keeper) AS keeper_path, count(*) AS members,
       bool_or(EXISTS (SELECT 1 FROM dbdedup.verdicts v WHERE v.sha256_a = m.sha256)
               OR EXISTS (SELECT 1 FROM dbdedup.verdicts v WHERE v.sha256_b = m.sha256)) AS reviewed
FROM members m
GROUP BY m.cluster_id
ORDER BY m.cluster_id;

-- name: page_before
-- The keyset mark of the page that ends before a cluster (for "previous page").
SELECT min(cluster_id) FROM (
    SELECT cluster_id FROM dbdedup.cluster_assignments
    WHERE cluster_id < %(before)s AND is_keeper ORDER BY cluster_id DESC LIMIT %(limit)s
) p;

-- name: reviewed_clusters
-- The one rule of "reviewed by you": what "apply what I reviewed" acts on, and what the cluster list
-- marks (of the clusters in %(among)s, a list page; NULL: every cluster). A cluster counts when
--   a member is named by a verdict of this reviewer (decided_by), or
--   every member of it was in the cluster(s) a verdict of theirs was given on in the review page
--   (given_on, recorded before the verdict changed them): the rest of a cluster whose member was taken
--   out (not_in_cluster names that member only) counts while the verdict is stored, after the page
--   restarts too, and stops counting once an image the reviewer did not see there joins it.
-- (No correlated subquery and no outer join: on Citus the verdicts, a reference table, are read
-- first, and the members grouped once.)
WITH mine AS (
    SELECT id, sha256_a, sha256_b, given_on FROM dbdedup.verdicts WHERE decided_by = %(user)s
), named AS (
    SELECT a.cluster_id
    FROM (SELECT sha256_a AS sha256 FROM mine
          UNION SELECT sha256_b FROM mine WHERE sha256_b IS NOT NULL) v
    JOIN dbdedup.images i ON i.sha256 = v.sha256 AND i.status = 'ok'
    JOIN dbdedup.cluster_assignments a ON a.image_id = i.id
    WHERE %(among)s::bigint[] IS NULL OR a.cluster_id = ANY (%(among)s::bigint[])
), touched AS (
    -- each verdict given on a cluster, with the clusters now holding a member of that cluster
    SELECT DISTINCT m.id, m.given_on, a.cluster_id
    FROM mine m
    CROSS JOIN LATERAL unnest(m.given_on) g(sha256)
    JOIN dbdedup.images i ON i.sha256 = g.sha256 AND i.status = 'ok'
    JOIN dbdedup.cluster_assignments a ON a.image_id = i.id
    WHERE m.given_on IS NOT NULL
      AND (%(among)s::bigint[] IS NULL OR a.cluster_id = ANY (%(among)s::bigint[]))
)
SELECT cluster_id FROM named
UNION
SELECT t.cluster_id
FROM touched t
JOIN dbdedup.cluster_assignments a ON a.cluster_id = t.cluster_id
JOIN dbdedup.images i ON i.id = a.image_id
GROUP BY t.id, t.cluster_id
HAVING bool_and(i.sha256 = ANY (t.given_on));

-- name: cluster_sha256s
-- The members of these clusters, by content.
SELECT i.sha256
FROM dbdedup.cluster_assignments a
JOIN dbdedup.images i ON i.id = a.image_id
WHERE a.cluster_id = ANY (%(cluster_ids)s::bigint[]);

-- name: image_path
SELECT path_bytes FROM dbdedup.images WHERE id = %(image_id)s AND status = 'ok';
