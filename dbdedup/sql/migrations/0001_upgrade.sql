-- 0001: the loader's tables. Everything lives in schema dbdedup.

-- pgvector when the server offers it; without it dbdedup runs in hash-only mode.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS vector;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'pgvector is available but this user may not create it: %', SQLERRM;
        END;
    END IF;
END
$$;

COMMENT ON SCHEMA dbdedup IS 'dbdedup: image deduplication. Tables, views and functions managed by `dbdedup migrate`.';

CREATE SEQUENCE dbdedup.change_seq;
COMMENT ON SEQUENCE dbdedup.change_seq IS
    'Stamps every write to dbdedup.images, so incremental matching can find the rows changed since it last ran.';

CREATE TABLE dbdedup.load_runs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    status        text NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'completed', 'failed', 'interrupted')),
    roots         text[] NOT NULL,
    parameters    jsonb NOT NULL DEFAULT '{}',
    versions      jsonb NOT NULL DEFAULT '{}',
    files_seen    bigint NOT NULL DEFAULT 0,
    loaded        bigint NOT NULL DEFAULT 0,
    unchanged     bigint NOT NULL DEFAULT 0,
    errors        bigint NOT NULL DEFAULT 0,
    missing       bigint NOT NULL DEFAULT 0,
    ignored       bigint NOT NULL DEFAULT 0,
    seconds       double precision,
    message       text
);
COMMENT ON TABLE dbdedup.load_runs IS 'One row per `dbdedup load`: what was asked, library versions, counts and timing.';
COMMENT ON COLUMN dbdedup.load_runs.status IS 'running, completed, failed, or interrupted (killed; found by the next load).';
COMMENT ON COLUMN dbdedup.load_runs.parameters IS 'Options of the run (workers, max_pixels, recursive, ...).';
COMMENT ON COLUMN dbdedup.load_runs.versions IS 'Versions of dbdedup, Pillow, ImageHash and numpy that computed the hashes: a hash changes when resampling changes.';
COMMENT ON COLUMN dbdedup.load_runs.loaded IS 'Files hashed by this run (new or changed).';
COMMENT ON COLUMN dbdedup.load_runs.unchanged IS 'Files skipped because path, size and mtime matched the stored row.';
COMMENT ON COLUMN dbdedup.load_runs.errors IS 'Files that could not be loaded (see dbdedup.load_errors).';
COMMENT ON COLUMN dbdedup.load_runs.missing IS 'Stored files under the scanned roots that are gone from disk, marked missing.';
COMMENT ON COLUMN dbdedup.load_runs.ignored IS 'Files that are not images by name or content (text, sidecars), left alone.';

CREATE TABLE dbdedup.images (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    path          text NOT NULL,
    path_bytes    bytea NOT NULL UNIQUE,
    size_bytes    bigint NOT NULL,
    mtime_ns      bigint NOT NULL,
    device        bigint,
    inode         bigint,
    mtime         timestamptz GENERATED ALWAYS AS (to_timestamp(mtime_ns / 1e9)) STORED,
    status        text NOT NULL CHECK (status IN ('ok', 'error', 'missing')),
    sha256        bytea,
    format        text,
    width         integer,
    height        integer,
    frames        integer,
    phash         bigint,
    dhash         bigint,
    ahash         bigint,
    error         text,
    error_detail  text,
    load_run_id   bigint REFERENCES dbdedup.load_runs (id),
    loaded_at     timestamptz NOT NULL DEFAULT now(),
    missing_since timestamptz,
    change_seq    bigint NOT NULL DEFAULT nextval('dbdedup.change_seq'),
    CONSTRAINT images_ok_has_hashes CHECK (
        status <> 'ok' OR (sha256 IS NOT NULL AND phash IS NOT NULL AND dhash IS NOT NULL AND ahash IS NOT NULL)
    ),
    CONSTRAINT images_error_has_reason CHECK (status <> 'error' OR error IS NOT NULL)
);
COMMENT ON TABLE dbdedup.images IS 'One row per file dbdedup has seen: its hashes when it loaded, its error when it did not, or missing when it is gone.';
COMMENT ON COLUMN dbdedup.images.path IS 'The file path for display: the exact path when it is valid UTF-8, else with undecodable bytes as \xNN escapes.';
COMMENT ON COLUMN dbdedup.images.path_bytes IS 'The exact path bytes as the file system has them (lossless, also for names that are not UTF-8).';
COMMENT ON COLUMN dbdedup.images.mtime_ns IS 'Modification time in nanoseconds since the epoch; with path and size it decides whether a file changed.';
COMMENT ON COLUMN dbdedup.images.device IS 'st_dev of the file: with inode, rows with equal values are one file reached by two paths (hard link or symlink), not copies.';
COMMENT ON COLUMN dbdedup.images.inode IS 'st_ino of the file (see device).';
COMMENT ON COLUMN dbdedup.images.status IS 'ok (hashed), error (could not be loaded, see error), or missing (gone from disk since missing_since).';
COMMENT ON COLUMN dbdedup.images.sha256 IS 'SHA-256 of the file bytes: equal values are exact duplicates.';
COMMENT ON COLUMN dbdedup.images.format IS 'Image format detected from the content (JPEG, PNG, GIF, WEBP, BMP, TIFF, HEIF, AVIF).';
COMMENT ON COLUMN dbdedup.images.width IS 'Width in pixels after applying the EXIF orientation.';
COMMENT ON COLUMN dbdedup.images.height IS 'Height in pixels after applying the EXIF orientation.';
COMMENT ON COLUMN dbdedup.images.frames IS 'Number of frames (animated images are hashed on their first frame).';
COMMENT ON COLUMN dbdedup.images.phash IS '64-bit perceptual hash (imagehash.phash), as a signed bigint with the same bits; Hamming distance: bit_count((a # b)::bit(64)).';
COMMENT ON COLUMN dbdedup.images.dhash IS '64-bit difference hash (imagehash.dhash), same encoding as phash.';
COMMENT ON COLUMN dbdedup.images.ahash IS '64-bit average hash (imagehash.average_hash), same encoding as phash.';
COMMENT ON COLUMN dbdedup.images.error IS 'Why the file could not be loaded: a short reason code (truncated, not_an_image, too_many_pixels, ...).';
COMMENT ON COLUMN dbdedup.images.error_detail IS 'A readable sentence about the error.';
COMMENT ON COLUMN dbdedup.images.change_seq IS 'Taken from dbdedup.change_seq on every write; incremental matching compares it with its last mark.';

CREATE INDEX images_sha256_idx ON dbdedup.images (sha256) WHERE status = 'ok';
CREATE INDEX images_change_seq_idx ON dbdedup.images (change_seq);

CREATE TABLE dbdedup.load_errors (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    load_run_id   bigint NOT NULL REFERENCES dbdedup.load_runs (id) ON DELETE CASCADE,
    path          text NOT NULL,
    path_bytes    bytea NOT NULL,
    reason        text NOT NULL,
    detail        text,
    at            timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE dbdedup.load_errors IS 'Every failure to load a file, per run (the history; dbdedup.errors shows the current ones).';
COMMENT ON COLUMN dbdedup.load_errors.reason IS 'Short reason code, as in dbdedup.images.error.';
CREATE INDEX load_errors_run_idx ON dbdedup.load_errors (load_run_id);

CREATE VIEW dbdedup.errors AS
    SELECT path, error AS reason, error_detail AS detail, size_bytes, mtime, load_run_id, loaded_at
    FROM dbdedup.images
    WHERE status = 'error';
COMMENT ON VIEW dbdedup.errors IS 'Files that currently cannot be loaded, with the reason.';

CREATE VIEW dbdedup.exact_duplicates AS
    SELECT sha256,
           count(*) AS copies,
           max(size_bytes) AS size_bytes,
           array_agg(path ORDER BY mtime_ns, path) AS paths
    FROM dbdedup.images
    WHERE status = 'ok'
    GROUP BY sha256
    HAVING count(*) > 1;
COMMENT ON VIEW dbdedup.exact_duplicates IS 'Groups of byte-identical files (same SHA-256), oldest first.';
