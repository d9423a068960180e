-- Queries of dbdedup/lookup.py; the work itself is in the SQL functions of sql/api.sql
-- (dbdedup.lookup, dbdedup.similar, dbdedup.similar_to_hash).

-- name: lookup
SELECT * FROM dbdedup.lookup(%(hash)s::bigint, %(variants)s::bigint[], %(embedding)s::real[], %(max_distance)s,
                             %(transform_distance)s, %(min_similarity)s::real, %(confirm_distance)s, %(neighbours)s)

-- name: similar_to_image
SELECT * FROM dbdedup.similar(%(image_id)s::bigint, %(max_distance)s, %(hash_kind)s, %(transform_distance)s,
                              %(min_similarity)s::real, %(confirm_distance)s, %(neighbours)s)

-- name: similar_to_hash
SELECT s.*, 'hash' AS matched_by, NULL::text AS transform, NULL::integer AS transform_distance, NULL::real AS similarity
FROM dbdedup.similar_to_hash(%(hash)s::bigint, %(max_distance)s, %(hash_kind)s) s

-- name: image_by_path_bytes
SELECT id FROM dbdedup.images WHERE path_bytes = %(path_bytes)s AND status = 'ok'

-- name: image_by_path
-- A displayed path (\xNN escapes for bytes that are not UTF-8): no index, a scan.
SELECT id FROM dbdedup.images WHERE path = %(path)s AND status = 'ok'

-- name: latest_reduction
-- The reduction the stored vectors were projected with (the newest fit), to project a file's descriptor the same way.
SELECT embedder, reduction FROM dbdedup.embedding_reductions ORDER BY fitted_at DESC LIMIT 1
