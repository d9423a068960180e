-- Queries of `dbdedup status` and `dbdedup errors`.

-- name: status_counts
SELECT
    count(*) FILTER (WHERE status = 'ok')      AS images,
    count(*) FILTER (WHERE status = 'error')   AS errors,
    count(*) FILTER (WHERE status = 'missing') AS missing,
    coalesce(sum(size_bytes) FILTER (WHERE status = 'ok'), 0) AS image_bytes,
    count(*) FILTER (WHERE status = 'ok' AND phash_variants IS NOT NULL) AS images_with_variants,
    (SELECT count(*) FROM dbdedup.exact_duplicates) AS exact_duplicate_groups,
    (SELECT coalesce(sum(copies - 1), 0) FROM dbdedup.exact_duplicates) AS exact_duplicate_extra_copies,
    (SELECT coalesce(sum(size_bytes * (copies - 1)), 0) FROM dbdedup.exact_duplicates) AS exact_duplicate_bytes,
    (SELECT count(*) FROM dbdedup.load_runs) AS load_runs
FROM dbdedup.images;

-- name: last_runs
SELECT id AS run, started_at, status, array_to_string(roots, ', ') AS roots,
       files_seen, loaded, unchanged, errors, missing, ignored,
       round(seconds::numeric, 1) AS seconds
FROM dbdedup.load_runs
ORDER BY id DESC
LIMIT %(limit)s;

-- name: current_errors
SELECT path, reason, detail, size_bytes, mtime, load_run_id, loaded_at
FROM dbdedup.errors
WHERE %(reason)s::text IS NULL OR reason = %(reason)s
ORDER BY reason, path;
