-- Candidate pairs from keypoint keys: two images sharing at least %(min_shared)s keys, over keys
-- held by 2 to %(max_df)s images (commoner keys are stop words), kept when the pair is among the
-- %(top_k)s partners of either image with the most shared keys (ties: the lower image id first).
WITH usable AS (
    SELECT key
    FROM kp_keys
    GROUP BY key
    HAVING count(*) BETWEEN 2 AND %(max_df)s
), postings AS (
    SELECT k.key, k.image_id
    FROM kp_keys k
    JOIN usable USING (key)
), shared AS (
    SELECT a.image_id AS image_a, b.image_id AS image_b, count(*) AS shared
    FROM postings a
    JOIN postings b ON b.key = a.key AND b.image_id > a.image_id
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
