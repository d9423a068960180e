-- Queries of `dbdedup calibrate`: each image's distance to its nearest neighbour.
-- Up to the distance matching stored (match_state.max_distance) the distances come exactly from
-- dbdedup.pairs (see nearest_neighbour_from_pairs in report.sql); beyond it, from a sample.

-- name: beyond_counts
-- The images with no pair in dbdedup.pairs (their nearest neighbour is further than the pairs reach),
-- and their distinct hash values.
-- (the paired images as a list joined against: Citus runs no correlated subquery on pairs by image_b)
WITH paired AS (
    SELECT p.image_a AS id FROM dbdedup.pairs p JOIN dbdedup.match_state s ON s.hash_kind = p.hash_kind
    WHERE p.hash_kind = %(hash_kind)s AND p.distance <= s.max_distance
    UNION
    SELECT p.image_b FROM dbdedup.pairs p JOIN dbdedup.match_state s ON s.hash_kind = p.hash_kind
    WHERE p.hash_kind = %(hash_kind)s AND p.distance <= s.max_distance
)
SELECT count(*) AS images,
       count(DISTINCT CASE %(hash_kind)s::text WHEN 'phash' THEN i.phash WHEN 'dhash' THEN i.dhash ELSE i.ahash END)
           AS distinct_hashes
FROM dbdedup.images i
LEFT JOIN paired x ON x.id = i.id
WHERE i.status = 'ok' AND x.id IS NULL

-- name: beyond_sample_histogram
-- For a deterministic sample of those images' hash values: the distance to the nearest other value
-- among all ok images (0 when the value is shared), weighted by the images holding the value.
-- Cost: sample x distinct values comparisons of bit_count on a bigint XOR (about 7 M a second).
WITH hashes AS MATERIALIZED (
    SELECT CASE %(hash_kind)s::text WHEN 'phash' THEN phash WHEN 'dhash' THEN dhash ELSE ahash END AS h,
           count(*) AS images
    FROM dbdedup.images
    WHERE status = 'ok'
    GROUP BY 1
), paired AS (
    SELECT p.image_a AS id FROM dbdedup.pairs p JOIN dbdedup.match_state s ON s.hash_kind = p.hash_kind
    WHERE p.hash_kind = %(hash_kind)s AND p.distance <= s.max_distance
    UNION
    SELECT p.image_b FROM dbdedup.pairs p JOIN dbdedup.match_state s ON s.hash_kind = p.hash_kind
    WHERE p.hash_kind = %(hash_kind)s AND p.distance <= s.max_distance
), beyond AS (
    SELECT CASE %(hash_kind)s::text WHEN 'phash' THEN i.phash WHEN 'dhash' THEN i.dhash ELSE i.ahash END AS h,
           count(*) AS images
    FROM dbdedup.images i
    LEFT JOIN paired x ON x.id = i.id
    WHERE i.status = 'ok' AND x.id IS NULL
    GROUP BY 1
), sample AS (
    SELECT b.h, b.images, hv.images AS sharing
    FROM beyond b JOIN hashes hv ON hv.h = b.h
    ORDER BY hashint8(b.h), b.h
    LIMIT %(sample)s
), nearest AS (
    SELECT s.images,
           CASE WHEN s.sharing > 1 THEN 0
                ELSE (SELECT min(bit_count((s.h # o.h)::bit(64))) FROM hashes o WHERE o.h <> s.h)
           END AS distance
    FROM sample s
)
SELECT distance::int AS distance, sum(images)::bigint AS images
FROM nearest
WHERE distance IS NOT NULL
GROUP BY distance
ORDER BY distance

-- name: distinct_values
SELECT count(DISTINCT CASE %(hash_kind)s::text WHEN 'phash' THEN phash WHEN 'dhash' THEN dhash ELSE ahash END)
FROM dbdedup.images
WHERE status = 'ok'

-- name: ok_images
SELECT count(*) FROM dbdedup.images WHERE status = 'ok'
