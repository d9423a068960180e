-- Queries of dbdedup/matching.py and dbdedup/clusters.py; the work itself is in the SQL
-- functions of sql/matching.sql, sql/signals.sql and sql/clusters.sql (dbdedup.match,
-- dbdedup.match_transforms, dbdedup.match_embeddings, dbdedup.build_clusters) and sql/api.sql.

-- name: match
SELECT * FROM dbdedup.match(%(max_distance)s, %(hash_kind)s, %(method)s, %(full)s, %(common_limit)s)

-- name: match_transforms
SELECT * FROM dbdedup.match_transforms(%(max_distance)s, %(method)s, %(full)s)

-- name: match_embeddings
SELECT * FROM dbdedup.match_embeddings(%(min_similarity)s::real, %(neighbours)s, %(full)s)

-- name: match_keypoints
SELECT * FROM dbdedup.match_keypoints(full_rematch => %(full)s)

-- name: match_same_size
SELECT dbdedup.match_same_size() AS pairs

-- name: verify_pairs
SELECT * FROM dbdedup.verify_pairs(%(hash_kind)s::text)

-- name: pending_pairs
SELECT count(*) FROM dbdedup.pairs WHERE verified IS NULL AND (%(hash_kind)s::text IS NULL OR hash_kind = %(hash_kind)s::text)

-- name: signals_current
-- The signals asked for were computed on the current pHash pairs (same mark, no full re-match since),
-- far enough: transforms up to the threshold, embeddings down to the similarity (a small tolerance:
-- the similarity is stored as real).
SELECT (NOT %(transforms)s OR EXISTS (
            SELECT 1 FROM dbdedup.signal_state s JOIN dbdedup.match_state m ON m.hash_kind = 'phash'
            WHERE s.signal = 'transforms' AND s.max_distance >= %(max_distance)s
              AND s.matched_seq = m.matched_seq AND s.base_full_match_at = m.full_match_at))
   AND (NOT %(embeddings)s OR EXISTS (
            SELECT 1 FROM dbdedup.signal_state s JOIN dbdedup.match_state m ON m.hash_kind = 'phash'
            WHERE s.signal = 'embeddings' AND s.min_similarity <= %(min_similarity)s + 1e-6
              AND s.matched_seq = m.matched_seq AND s.base_full_match_at = m.full_match_at))
   -- keypoint pairs go with the transforms, once a load stored keys
   AND (NOT %(transforms)s
        OR NOT EXISTS (SELECT 1 FROM dbdedup.load_runs r WHERE (r.parameters ->> 'keypoints') IS NOT NULL)
        OR EXISTS (
            SELECT 1 FROM dbdedup.signal_state s JOIN dbdedup.match_state m ON m.hash_kind = 'phash'
            WHERE s.signal = 'keypoints' AND s.matched_seq = m.matched_seq AND s.base_full_match_at = m.full_match_at))
       AS current

-- name: match_state
SELECT * FROM dbdedup.match_state WHERE hash_kind = %(hash_kind)s

-- name: pairs_current
-- Pairs are current when matching reached the distance and no image was written since
-- (the newest change_seq in a subquery of its own: Citus runs no correlated subquery here).
SELECT s.max_distance >= %(max_distance)s AND s.matched_seq >= coalesce(c.latest, 0) AS current
FROM dbdedup.match_state s, (SELECT max(i.change_seq) AS latest FROM dbdedup.images i) c
WHERE s.hash_kind = %(hash_kind)s

-- name: build_clusters
SELECT * FROM dbdedup.build_clusters(%(max_distance)s, %(hash_kind)s, %(keeper_rule)s, %(reference_paths)s::text[],
                                     %(rule)s, %(min_similarity)s::real, %(confirm_distance)s,
                                     %(transform_distance)s)

-- name: propose_keeper_pairs
SELECT dbdedup.propose_keeper_pairs(near_limit => %(near_limit)s::integer, crop_keepers => %(crop_keepers)s::bigint[],
                                    crop_windows => %(crop_windows)s::bigint[])

-- name: large_cluster_keeper_thumbnails
-- the keepers that draw keeper pairs, with their stored thumbnails (crop windows are cut from them)
SELECT i.id, i.structure FROM dbdedup.images i
WHERE i.id IN (SELECT a.cluster_id FROM dbdedup.cluster_assignments a
               GROUP BY a.cluster_id HAVING count(*) >= dbdedup.keeper_cluster_floor())
  AND i.structure IS NOT NULL
ORDER BY i.id

-- name: cluster_parameters
SELECT max_distance, hash_kind, keeper_rule, reference_paths, matched_seq, clusters, members, split_rounds,
       seconds, built_at, rule, min_similarity, confirm_distance, transform_distance, pending_at_build
FROM dbdedup.cluster_parameters

-- name: cluster_counts
SELECT count(DISTINCT cluster_id) AS clusters, count(*) AS members FROM dbdedup.cluster_assignments

-- name: common_hash_counts
SELECT count(*), coalesce(sum(images), 0) FROM dbdedup.common_hashes WHERE hash_kind = %(hash_kind)s
