-- The same candidate pairs as keypoint_join.sql, from one row per image holding its keys as an
-- integer array (kp_images): the postings are unnested at match time.
WITH postings AS (
    SELECT unnest(keys) AS key, image_id
    FROM kp_images
), usable AS (
    SELECT key
    FROM postings
    GROUP BY key
    HAVING count(*) BETWEEN 2 AND %(max_df)s
), kept AS (
    SELECT p.key, p.image_id
    FROM postings p
    JOIN usable USING (key)
), shared AS (
    SELECT a.image_id AS image_a, b.image_id AS image_b, count(*) AS shared
    FROM kept a
    JOIN kept b ON b.key = a.key AND b.image_id > a.image_id
    GROUP BY a.image_id, b.image_id
    HAVING count(*) >= %(min_shared)s
), ranked AS (
    SELECT image_a, image_b, shared,
           row_number() OVER (PARTITION BY image_a ORDER BY shared DESC, image_b) AS rank_a,
           row_number() OVER (PARTITION BY image_b ORDER BY shared DESC, image_a) AS rank_b
    FROM shared
)
SELECT image_a, image_b, shared
FROM ranked
WHERE rank_a <= %(top_k)s OR rank_b <= %(top_k)s
