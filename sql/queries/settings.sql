-- Queries of dbdedup/clusters.py: the clustering settings the user chose (one row).

-- name: load
SELECT threshold, hash_kind, rule, keeper_rule, reference_paths, min_similarity, confirm_distance, transform_distance
FROM dbdedup.cluster_settings
WHERE singleton;

-- name: save
INSERT INTO dbdedup.cluster_settings AS s
    (singleton, threshold, hash_kind, rule, keeper_rule, reference_paths, min_similarity, confirm_distance,
     transform_distance, updated_at)
VALUES (true, %(threshold)s, %(hash_kind)s, %(rule)s, %(keeper_rule)s, %(reference_paths)s::text[],
        %(min_similarity)s::real, %(confirm_distance)s, %(transform_distance)s, now())
ON CONFLICT (singleton) DO UPDATE SET
    threshold = EXCLUDED.threshold, hash_kind = EXCLUDED.hash_kind, rule = EXCLUDED.rule,
    keeper_rule = EXCLUDED.keeper_rule, reference_paths = EXCLUDED.reference_paths,
    min_similarity = EXCLUDED.min_similarity, confirm_distance = EXCLUDED.confirm_distance,
    transform_distance = EXCLUDED.transform_distance, updated_at = EXCLUDED.updated_at;
