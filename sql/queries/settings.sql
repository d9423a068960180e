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

-- name: loaded_entries
-- the roots loads were given, as they were given (a path through a symbolic link stays one), and the links to
-- folders their walks entered: the paths by which loaded files may name folders elsewhere
SELECT DISTINCT entry FROM dbdedup.load_runs r, unnest(r.roots || r.linked_folders) entry ORDER BY entry;

-- name: holds_images
-- whether any loaded image lies at or under the path (a range of the unique index on path_bytes; the folder's
-- bytes without a trailing slash)
SELECT EXISTS (
    SELECT 1 FROM dbdedup.images i
    WHERE i.status = 'ok'
      AND (i.path_bytes = %(folder)s
           OR (i.path_bytes > %(folder)s || '\x2f'::bytea AND i.path_bytes < %(folder)s || '\x30'::bytea))
);
