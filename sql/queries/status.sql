-- Queries of `dbdedup status` and `dbdedup errors`.

-- name: status_counts
-- (the three parts as derived tables: Citus runs no subquery in the target list over a distributed table)
SELECT c.images, c.errors, c.missing, c.image_bytes, c.images_with_variants,
       d.groups AS exact_duplicate_groups, d.extra_copies AS exact_duplicate_extra_copies,
       d.extra_bytes AS exact_duplicate_bytes, r.runs AS load_runs
FROM (SELECT count(*) FILTER (WHERE status = 'ok')      AS images,
             count(*) FILTER (WHERE status = 'error')   AS errors,
             count(*) FILTER (WHERE status = 'missing') AS missing,
             coalesce(sum(size_bytes) FILTER (WHERE status = 'ok'), 0) AS image_bytes,
             count(*) FILTER (WHERE status = 'ok' AND phash_variants IS NOT NULL) AS images_with_variants
      FROM dbdedup.images) c,
     (SELECT count(*) AS groups, coalesce(sum(copies - 1), 0) AS extra_copies,
             coalesce(sum(size_bytes * (copies - 1)), 0) AS extra_bytes
      FROM dbdedup.exact_duplicates) d,
     (SELECT count(*) AS runs FROM dbdedup.load_runs) r;

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
