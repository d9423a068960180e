-- Queries of `dbdedup calibrate`: each image's distance to its nearest neighbour.

-- name: distinct_hashes
-- How many images and distinct hash values there are (calibrate samples hash values when there are many).
SELECT count(*) AS images,
       count(DISTINCT CASE %(hash_kind)s::text WHEN 'phash' THEN phash WHEN 'dhash' THEN dhash ELSE ahash END)
           AS distinct_hashes
FROM dbdedup.images
WHERE status = 'ok'

-- name: nearest_neighbour_histogram
-- For a deterministic sample of hash values: the distance to the nearest other value
-- (0 when several images share the value), weighted by the images holding it.
-- Cost: sample x distinct values comparisons of bit_count on a bigint XOR (about 8 M a second).
WITH hashes AS MATERIALIZED (
    SELECT CASE %(hash_kind)s::text WHEN 'phash' THEN phash WHEN 'dhash' THEN dhash ELSE ahash END AS h,
           count(*) AS images
    FROM dbdedup.images
    WHERE status = 'ok'
    GROUP BY 1
), sample AS (
    SELECT h, images FROM hashes ORDER BY hashint8(h), h LIMIT %(sample)s
), nearest AS (
    SELECT s.images,
           CASE WHEN s.images > 1 THEN 0
                ELSE (SELECT min(bit_count((s.h # o.h)::bit(64))) FROM hashes o WHERE o.h <> s.h)
           END AS distance
    FROM sample s
)
SELECT distance::int AS distance, sum(images)::bigint AS images
FROM nearest
WHERE distance IS NOT NULL
GROUP BY distance
ORDER BY distance
