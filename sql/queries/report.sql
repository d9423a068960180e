-- Queries of the report helper (report, pairs, export, apply, calibrate).
-- They read the views of sql/clusters.sql (dbdedup.clusters, dbdedup.cluster_members)
-- and dbdedup.pairs, after dbdedup.clusters.ensure_clusters has made them current.

-- name: summary
SELECT
    (SELECT count(*) FROM dbdedup.images WHERE status = 'ok') AS images,
    (SELECT count(*) FROM dbdedup.exact_duplicates) AS exact_duplicate_groups,
    (SELECT coalesce(sum(copies - 1), 0)::bigint FROM dbdedup.exact_duplicates) AS exact_duplicate_copies,
    (SELECT count(*) FROM dbdedup.clusters) AS clusters,
    (SELECT count(*) FROM dbdedup.cluster_members) AS images_in_clusters,
    (SELECT count(*) FROM dbdedup.cluster_members WHERE NOT is_keeper AND NOT is_protected) AS removable_images,
    (SELECT count(*) FROM dbdedup.cluster_members WHERE NOT is_keeper AND is_protected) AS protected_images,
    (SELECT coalesce(sum(reclaimable_bytes), 0)::bigint FROM dbdedup.clusters) AS reclaimable_bytes,
    (SELECT count(*) FROM dbdedup.common_hash_images WHERE hash_kind = %(hash_kind)s) AS common_hash_images

-- name: cluster_members
-- Members of the clusters chosen by sort order and limit, keeper first, then by distance.
-- %(sort)s is one of members, bytes, distance, path; %(limit)s NULL means every cluster.
WITH ranked AS (
    SELECT c.cluster_id,
           row_number() OVER (
               ORDER BY
                   CASE WHEN %(sort)s::text = 'members' THEN c.member_count END DESC,
                   CASE WHEN %(sort)s::text = 'bytes' THEN c.reclaimable_bytes END DESC,
                   CASE WHEN %(sort)s::text = 'distance' THEN d.max_distance END DESC,
                   CASE WHEN %(sort)s::text = 'path' THEN c.keeper_path END,
                   c.member_count DESC, c.reclaimable_bytes DESC, c.keeper_path, c.cluster_id
           ) AS rank
    FROM dbdedup.clusters c
    JOIN (SELECT cluster_id, max(distance_to_keeper) AS max_distance
          FROM dbdedup.cluster_members GROUP BY cluster_id) d USING (cluster_id)
)
SELECT r.rank, m.cluster_id, m.image_id, m.path, m.path_bytes, m.is_keeper, m.distance_to_keeper,
       m.width, m.height, m.size_bytes, m.sha256, m.mtime_ns, m.is_exact_duplicate, m.is_protected,
       m.transform, m.similarity, m.is_same_file, m.verify_reason, m.verify_score
FROM ranked r
JOIN dbdedup.cluster_members m USING (cluster_id)
WHERE %(limit)s::bigint IS NULL OR r.rank <= %(limit)s::bigint
ORDER BY r.rank, m.is_keeper DESC, m.distance_to_keeper, m.path, m.image_id

-- name: nearest_neighbour_from_pairs
-- Each ok image's nearest-neighbour distance, as far as dbdedup.pairs knows (pairs are complete up to
-- match_state.max_distance); images with no pair that close are counted apart.
-- Pairs found only by the transform or embedding signals can be further apart: left out.
WITH known AS (
    SELECT p.image_a, p.image_b, p.distance
    FROM dbdedup.pairs p JOIN dbdedup.match_state s ON s.hash_kind = p.hash_kind
    WHERE p.hash_kind = %(hash_kind)s AND p.distance <= s.max_distance
), ends AS (
    SELECT image_a AS image_id, distance FROM known
    UNION ALL
    SELECT image_b, distance FROM known
), nearest AS (
    SELECT e.image_id, min(e.distance)::int AS distance
    FROM ends e
    JOIN dbdedup.images i ON i.id = e.image_id AND i.status = 'ok'
    GROUP BY e.image_id
)
SELECT distance, count(*) AS images FROM nearest GROUP BY distance ORDER BY distance

-- name: pairs_known_up_to
SELECT max_distance::int FROM dbdedup.match_state WHERE hash_kind = %(hash_kind)s

-- name: pairs
-- Every pair the clustering rule considers (pair_is_edge as if verified: pHash within the threshold,
-- a variant within the transform distance, an embedding neighbour above the similarity), most similar
-- first, with its verdict: verified, rejected (and why) or pending. Exact copies are stored as stars
-- (each copy paired with its group's representative only) and near pairs between representatives; the
-- listing gives every copy its representative's near pairs (a variant name seen from the other side is
-- the inverse rotation), and the exact groups as their star rows.
WITH near AS (
    SELECT p.image_a, p.image_b, p.distance, p.transform, p.transform_distance, p.similarity,
           p.verified, p.verify_reason, p.verify_score,
           CASE WHEN p.transform IN ('keypoints', 'linked', 'same_size', 'crop_window') THEN p.transform
                WHEN p.transform_distance <= %(transform_distance)s AND p.transform_distance < p.distance THEN 'variant'
                WHEN p.distance <= %(max_distance)s THEN 'hash'
                ELSE 'embedding' END AS matched_by
    FROM dbdedup.pairs p
    WHERE p.hash_kind = %(hash_kind)s AND NOT p.is_exact
      AND dbdedup.pair_is_edge(%(rule)s, %(max_distance)s, %(transform_distance)s, %(min_similarity)s::real,
                               %(confirm_distance)s, p.distance, p.transform_distance, p.similarity, true)
), copies AS (
    -- each representative of a near pair, with itself and its copies (the image_b of its exact pairs)
    SELECT r.id AS rep, r.id AS m FROM (SELECT image_a AS id FROM near UNION SELECT image_b FROM near) r
    UNION ALL
    SELECT x.image_a, x.image_b FROM dbdedup.pairs x
    WHERE x.hash_kind = %(hash_kind)s AND x.is_exact
      AND x.image_a IN (SELECT image_a FROM near UNION SELECT image_b FROM near)
), listed AS (
    SELECT least(a.m, b.m) AS image_a, greatest(a.m, b.m) AS image_b, n.distance, n.matched_by,
           CASE WHEN n.matched_by <> 'variant' THEN NULL
                WHEN a.m < b.m THEN n.transform ELSE dbdedup.inverse_transform(n.transform) END AS transform,
           n.transform_distance, n.similarity, n.verified, n.verify_reason, n.verify_score
    FROM near n
    JOIN copies a ON a.rep = n.image_a
    JOIN copies b ON b.rep = n.image_b
    UNION ALL
    SELECT p.image_a, p.image_b, p.distance, 'exact', NULL, NULL, NULL, p.verified, p.verify_reason, p.verify_score
    FROM dbdedup.pairs p
    WHERE p.hash_kind = %(hash_kind)s AND p.is_exact
), shown AS (
    -- the images of those pairs, read once (Citus joins no list with two copies of images)
    SELECT i.id, i.path, i.path_bytes, i.width, i.height, i.size_bytes, i.sha256
    FROM dbdedup.images i
    WHERE i.status = 'ok' AND i.id IN (SELECT image_a FROM listed UNION SELECT image_b FROM listed)
)
SELECT l.distance::int AS distance,
       a.id AS image_a, a.path AS path_a, a.path_bytes AS path_bytes_a,
       b.id AS image_b, b.path AS path_b, b.path_bytes AS path_bytes_b,
       a.width AS width_a, a.height AS height_a, a.size_bytes AS bytes_a,
       b.width AS width_b, b.height AS height_b, b.size_bytes AS bytes_b,
       a.sha256 = b.sha256 AS exact, l.matched_by,
       l.transform, l.transform_distance::int AS transform_distance, l.similarity,
       l.verified, l.verify_reason, l.verify_score
FROM listed l
JOIN shown a ON a.id = l.image_a
JOIN shown b ON b.id = l.image_b
ORDER BY l.verified IS NOT TRUE, CASE l.matched_by WHEN 'variant' THEN l.transform_distance ELSE l.distance END,
         l.similarity DESC NULLS LAST, a.path, b.path

-- name: ok_images
SELECT count(*) FROM dbdedup.images WHERE status = 'ok'
