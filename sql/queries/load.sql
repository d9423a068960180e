-- Queries of the loader (dbdedup/load.py). Temporary tables live in the session's
-- pg_temp schema and vanish with the connection.

-- name: first_load
-- No load ran on this database yet: notes that matter once (hash-only mode) are said then.
SELECT NOT EXISTS (SELECT 1 FROM dbdedup.load_runs);

-- name: mark_interrupted
-- A run still 'running' whose loader no longer holds its run lock (%(live)s: the runs whose lock is
-- held, dbdedup.locks.live_runs) was killed.
-- (now() from a subquery: Citus allows no STABLE function inside COALESCE in an UPDATE)
UPDATE dbdedup.load_runs
SET status = 'interrupted',
    finished_at = coalesce(finished_at, t.now),
    message = 'stopped before it finished (killed or lost its connection); found by load run ' || %(run_id)s
FROM (SELECT now() AS now) t
WHERE status = 'running' AND id <> %(run_id)s AND id <> ALL (%(live)s::bigint[])
RETURNING id;

-- name: change_mark
-- The last change_seq handed out when a run starts: a row with a later one was written after it
-- started (by this run, or by another load of an overlapping folder), so mark_missing leaves it.
SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM dbdedup.change_seq;

-- name: start_lock
-- Loads start one at a time (until the transaction that starts the run ends): on Citus two that
-- insert their run row, then mark killed runs, would deadlock on the reference table's lock.
SELECT pg_advisory_xact_lock(7220007);

-- name: start_run
INSERT INTO dbdedup.load_runs (roots, parameters, versions)
VALUES (%(roots)s, %(parameters)s, %(versions)s)
RETURNING id;

-- name: create_scan_batch
CREATE TEMP TABLE IF NOT EXISTS dbdedup_scan_batch (
    path_bytes bytea NOT NULL,
    size_bytes bigint NOT NULL,
    mtime_ns   bigint NOT NULL,
    inode      bigint
);

-- name: create_seen
CREATE TEMP TABLE IF NOT EXISTS dbdedup_seen (
    path_bytes bytea PRIMARY KEY
);

-- name: create_stage
CREATE TEMP TABLE IF NOT EXISTS dbdedup_stage (
    path         text NOT NULL,
    path_bytes   bytea NOT NULL,
    size_bytes   bigint NOT NULL,
    mtime_ns     bigint NOT NULL,
    device       bigint,
    inode        bigint,
    status       text NOT NULL,
    sha256       bytea,
    format       text,
    width        integer,
    height       integer,
    frames       integer,
    phash        bigint,
    dhash        bigint,
    ahash        bigint,
    phash_variants bigint[],
    embedder     text,
    raw          bytea,
    error        text,
    error_detail text,
    quality      smallint,
    colour_signature real[],
    signature_error text,
    keypoint_keys integer[],
    structure    bytea,
    turn_signature real[],
    crop_windows bigint[]
);
-- The wide columns uncompressed (SET STORAGE: PostgreSQL 14's syntax; CREATE TABLE takes it only from 16):
-- a staged row is read once, by the upsert into images, which compresses what it keeps; compressed here
-- as well, the load of 10,000 small images took about 0.4 s longer.
ALTER TABLE dbdedup_stage ALTER COLUMN raw SET STORAGE EXTERNAL, ALTER COLUMN colour_signature SET STORAGE EXTERNAL,
    ALTER COLUMN keypoint_keys SET STORAGE EXTERNAL, ALTER COLUMN structure SET STORAGE EXTERNAL,
    ALTER COLUMN turn_signature SET STORAGE EXTERNAL;

-- name: clear_temp_tables
TRUNCATE dbdedup_scan_batch, dbdedup_seen, dbdedup_stage;

-- name: copy_scan_batch
COPY dbdedup_scan_batch (path_bytes, size_bytes, mtime_ns, inode) FROM STDIN (FORMAT BINARY);

-- name: files_to_hash
-- The scanned files that are new, changed (size or mtime, or another file now: its inode, as when a
-- file is replaced by a copy with the same size and time, which apply would then refuse), back after being
-- missing, failed last time for a reason that may have gone away (permissions,
-- links), refused for more pixels than a limit this load raised, or loaded without the
-- orientation variants or keypoint keys this load computes.
-- Everything else in the batch is unchanged.
SELECT s.path_bytes
FROM dbdedup_scan_batch s
LEFT JOIN dbdedup.images i ON i.path_bytes = s.path_bytes
WHERE i.id IS NULL
   OR i.status = 'missing'
   OR i.size_bytes <> s.size_bytes
   OR i.mtime_ns <> s.mtime_ns
   OR (i.status = 'ok' AND i.inode <> s.inode)
   OR (i.status = 'error' AND i.error = ANY(%(retry_reasons)s))
   OR (i.status = 'error' AND i.error = 'too_many_pixels'
       AND %(max_pixels)s::bigint > coalesce((SELECT (r.parameters ->> 'max_pixels')::bigint
                                              FROM dbdedup.load_runs r WHERE r.id = i.load_run_id), 0))
   OR (%(orientations)s AND i.status = 'ok' AND i.phash_variants IS NULL)
   OR (%(keypoints)s AND i.status = 'ok' AND i.keypoint_keys IS NULL)
   -- loaded before the structure thumbnail was stored (0019): fingerprinted again, once
   OR (%(signals)s AND i.status = 'ok' AND i.structure IS NULL AND i.colour_signature IS NOT NULL);

-- name: files_to_describe
-- With embeddings on: also the ok files with no descriptor from this load's embedder.
SELECT s.path_bytes
FROM dbdedup_scan_batch s
JOIN dbdedup.images i ON i.path_bytes = s.path_bytes
WHERE i.status = 'ok'
  AND NOT EXISTS (SELECT 1 FROM dbdedup.image_embeddings e WHERE e.image_id = i.id AND e.embedder = %(embedder)s);

-- name: remember_scan_batch
INSERT INTO dbdedup_seen (path_bytes)
SELECT path_bytes FROM dbdedup_scan_batch
ON CONFLICT DO NOTHING;

-- name: empty_scan_batch
TRUNCATE dbdedup_scan_batch;

-- name: copy_stage
COPY dbdedup_stage (path, path_bytes, size_bytes, mtime_ns, device, inode, status, sha256, format,
                    width, height, frames, phash, dhash, ahash, phash_variants, embedder, raw, error, error_detail,
                    quality, colour_signature, signature_error, keypoint_keys, structure, turn_signature,
                    crop_windows)
FROM STDIN (FORMAT BINARY);

-- name: upsert_stage
-- One row per path; a changed file keeps its id and gets a new change_seq, and its verification
-- signals are those of its new content (NULL for a file that failed).
INSERT INTO dbdedup.images AS i
    (path, path_bytes, size_bytes, mtime_ns, device, inode, status, sha256, format,
     width, height, frames, phash, dhash, ahash, phash_variants, error, error_detail, load_run_id,
     quality, colour_signature, signature_error, keypoint_keys, structure)
SELECT DISTINCT ON (path_bytes)
       path, path_bytes, size_bytes, mtime_ns, device, inode, status, sha256, format,
       width, height, frames, phash, dhash, ahash, phash_variants, error, error_detail, %(run_id)s,
       quality, colour_signature, signature_error, keypoint_keys, structure
FROM dbdedup_stage
ORDER BY path_bytes
ON CONFLICT (path_bytes) DO UPDATE SET
    path = EXCLUDED.path,
    size_bytes = EXCLUDED.size_bytes,
    mtime_ns = EXCLUDED.mtime_ns,
    device = EXCLUDED.device,
    inode = EXCLUDED.inode,
    status = EXCLUDED.status,
    sha256 = EXCLUDED.sha256,
    format = EXCLUDED.format,
    width = EXCLUDED.width,
    height = EXCLUDED.height,
    frames = EXCLUDED.frames,
    phash = EXCLUDED.phash,
    dhash = EXCLUDED.dhash,
    ahash = EXCLUDED.ahash,
    phash_variants = EXCLUDED.phash_variants,
    error = EXCLUDED.error,
    error_detail = EXCLUDED.error_detail,
    load_run_id = EXCLUDED.load_run_id,
    quality = EXCLUDED.quality,
    colour_signature = EXCLUDED.colour_signature,
    signature_error = EXCLUDED.signature_error,
    keypoint_keys = EXCLUDED.keypoint_keys,
    structure = EXCLUDED.structure,
    loaded_at = now(),
    missing_since = NULL,
    change_seq = nextval('dbdedup.change_seq');

-- name: upsert_stage_embeddings
-- The raw descriptors of the batch; vectors are projected after the load (embedding NULL until then).
-- A file re-loaded without a descriptor (failed, or embeddings off) loses its stale one.
WITH gone AS (
    DELETE FROM dbdedup.image_embeddings e
    USING dbdedup_stage s JOIN dbdedup.images i ON i.path_bytes = s.path_bytes
    WHERE e.image_id = i.id AND s.raw IS NULL
)
INSERT INTO dbdedup.image_embeddings AS e (image_id, embedder, raw, embedding, turn_signature, crop_windows)
-- (real[] to vector: pgvector's assignment cast)
SELECT DISTINCT ON (i.id) i.id, s.embedder, s.raw, NULL, s.turn_signature, s.crop_windows
FROM dbdedup_stage s
JOIN dbdedup.images i ON i.path_bytes = s.path_bytes
WHERE s.raw IS NOT NULL
ORDER BY i.id
ON CONFLICT (image_id) DO UPDATE SET embedder = EXCLUDED.embedder, raw = EXCLUDED.raw, embedding = NULL,
    turn_signature = EXCLUDED.turn_signature, crop_windows = EXCLUDED.crop_windows;

-- name: record_stage_errors
INSERT INTO dbdedup.load_errors (load_run_id, path, path_bytes, reason, detail)
SELECT %(run_id)s, path, path_bytes, error, error_detail
FROM dbdedup_stage
WHERE status = 'error';

-- name: empty_stage
TRUNCATE dbdedup_stage;

-- name: update_run_counts
-- loaded and errors are added, not set: the rows stored by this transaction (a batch's; none elsewhere), so that
-- the run's count of them commits with them and a signal between a batch's commit and the loader's own count
-- cannot make the run under-report (finish_run does not write them)
UPDATE dbdedup.load_runs
SET files_seen = %(files_seen)s,
    loaded = loaded + %(loaded)s,
    unchanged = %(unchanged)s,
    errors = errors + %(errors)s,
    ignored = %(ignored)s,
    missing = %(missing)s,
    seconds = %(seconds)s,
    linked_folders = %(linked_folders)s
WHERE id = %(run_id)s;

-- name: forget_folders
-- The rows of folders that could not be read (their path ends in '/': load.py's folder_row_path) under a
-- scanned root, other than those this walk still could not read (each is under its own path in
-- %(skip_prefixes)s): the walk read them this time, or they are gone. A folder is not an image, so its row
-- is deleted rather than marked missing. Rows written before folder rows ended in '/' are known by
-- their detail (dbdedup.scan's words for a folder). Rows written since the run started are left, as
-- in mark_missing. Run before it, with the same parameters.
DELETE FROM dbdedup.images AS i
WHERE i.status <> 'ok' AND i.change_seq <= %(start_seq)s
  AND (substr(i.path_bytes, length(i.path_bytes), 1) = '\x2f'::bytea
       OR i.error_detail LIKE 'no permission to read this directory:%%'
       OR i.error_detail LIKE 'cannot read this directory:%%')
  AND (i.path_bytes = %(root)s
       OR (substr(i.path_bytes, 1, length(%(prefix)s)) = %(prefix)s
           -- not recursive: the root's own row only (the walk did not try the folders in it)
           AND (%(recursive)s OR length(i.path_bytes) = length(%(prefix)s))))
  AND NOT EXISTS (SELECT 1 FROM unnest(%(skip_prefixes)s::bytea[]) AS p(prefix)
                  WHERE substr(i.path_bytes, 1, length(p.prefix)) = p.prefix);

-- name: mark_missing
-- Rows under a scanned root that this run did not see. Only called after a
-- complete walk; directories that could not be listed or entered are skipped, so their
-- files are not called missing just because they were unreadable this time.
-- Rows written since the run started (%(start_seq)s) are left: another load may have
-- loaded a file that appeared after this run walked past its folder.
UPDATE dbdedup.images AS i
SET status = 'missing',
    missing_since = now(),
    load_run_id = %(run_id)s,
    change_seq = nextval('dbdedup.change_seq')
WHERE i.status <> 'missing' AND i.change_seq <= %(start_seq)s
  AND (i.path_bytes = %(root)s
       OR (substr(i.path_bytes, 1, length(%(prefix)s)) = %(prefix)s
           AND (%(recursive)s
                OR position('\x2f'::bytea IN substr(i.path_bytes, length(%(prefix)s) + 1)) = 0)))
  AND NOT EXISTS (SELECT 1 FROM dbdedup_seen s WHERE s.path_bytes = i.path_bytes)
  AND NOT EXISTS (SELECT 1 FROM unnest(%(skip_prefixes)s::bytea[]) AS p(prefix)
                  WHERE substr(i.path_bytes, 1, length(p.prefix)) = p.prefix);

-- name: exact_duplicate_groups
SELECT count(*) FROM dbdedup.exact_duplicates;

-- name: finish_run
UPDATE dbdedup.load_runs
SET status = %(status)s,
    finished_at = now(),
    files_seen = %(files_seen)s,
    unchanged = %(unchanged)s,
    ignored = %(ignored)s,
    missing = %(missing)s,
    seconds = %(seconds)s,
    linked_folders = %(linked_folders)s,
    message = %(message)s
WHERE id = %(run_id)s;

-- name: vectors_by_embedder
-- The embedders whose vectors are stored, with how many: vectors of two embedders do not compare.
SELECT embedder, count(*) FROM dbdedup.image_embeddings WHERE embedding IS NOT NULL GROUP BY embedder ORDER BY 2 DESC, 1;
