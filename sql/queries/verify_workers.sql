-- Queries of the geometric verification workers (dbdedup/verify_workers.py). Temporary tables
-- live in the session's pg_temp schema and vanish with the connection.

-- name: count_pending
SELECT count(*) FROM dbdedup.pairs WHERE verified IS NULL;

-- name: pending_edges
-- Which images each pending pair joins (once per two images, whatever the hash kinds): the graph the
-- worker order is planned on (dbdedup.verify_workers.locality_order).
SELECT DISTINCT p.image_a, p.image_b FROM dbdedup.pairs p WHERE p.verified IS NULL;

-- name: create_order
CREATE TEMP TABLE IF NOT EXISTS dbdedup_verify_order (
    image_id bigint PRIMARY KEY,
    position integer NOT NULL
);

-- name: clear_order
TRUNCATE dbdedup_verify_order;

-- name: copy_order
COPY dbdedup_verify_order (image_id, position) FROM STDIN;

-- name: analyze_order
ANALYZE dbdedup_verify_order;

-- name: pending_pairs
-- Every pair verification left pending, with what a worker needs of its two images: the path the
-- loader recorded (and the size and mtime it had then), the stored quality and signature (in the array's
-- binary form, which dbdedup.pg_binary reads without a Python float a value), its width and height, its
-- format, and whether the loader trimmed a uniform border off it (the trimmed pHash, phash_variants[8]; NULL
-- when loaded without variants); last, the pair's region measure (pairs.region), whether one of the two
-- may be the other in a frame (dbdedup.one_in_frame, as dbdedup.verify_pairs asks it) and its detail gap
-- (pairs.detail_gap). Ordered
-- by the positions dbdedup_verify_order gives the images (the pairs of one look-alike family come
-- together, so a worker decodes each image and finds its keypoints about once); a pair that became
-- pending after the order was planned comes last. (The pending rows are gathered first: on Citus a
-- join of the distributed tables with a temporary table in one step is refused.)
WITH pending AS MATERIALIZED (
    SELECT p.hash_kind, p.image_a, p.image_b, p.distance, p.is_exact, p.transform, p.transform_distance,
           p.similarity,
           a.status AS a_status, a.path_bytes AS a_path_bytes, a.size_bytes AS a_size_bytes,
           a.mtime_ns AS a_mtime_ns, a.quality AS a_quality, array_send(a.colour_signature) AS a_colour_signature,
           a.signature_error AS a_signature_error,
           b.status AS b_status, b.path_bytes AS b_path_bytes, b.size_bytes AS b_size_bytes,
           b.mtime_ns AS b_mtime_ns, b.quality AS b_quality, array_send(b.colour_signature) AS b_colour_signature,
           b.signature_error AS b_signature_error,
           p.structure, p.tone_fit, a.width AS a_width, a.height AS a_height, b.width AS b_width, b.height AS b_height,
           a.format AS a_format, b.format AS b_format,
           CASE WHEN a.phash_variants IS NOT NULL THEN a.phash_variants[8] IS NOT NULL END AS a_bordered,
           CASE WHEN b.phash_variants IS NOT NULL THEN b.phash_variants[8] IS NOT NULL END AS b_bordered,
           p.region,
           dbdedup.one_in_frame(a.phash, a.phash_variants, b.phash, b.phash_variants,
                                (dbdedup.verify_settings()).aligned_distance) AS one_framed,
           p.detail_gap
    FROM dbdedup.pairs p
    JOIN dbdedup.images a ON a.id = p.image_a
    JOIN dbdedup.images b ON b.id = p.image_b
    WHERE p.verified IS NULL
)
SELECT pending.*
FROM pending
LEFT JOIN dbdedup_verify_order oa ON oa.image_id = pending.image_a
LEFT JOIN dbdedup_verify_order ob ON ob.image_id = pending.image_b
ORDER BY least(oa.position, ob.position) NULLS LAST, greatest(oa.position, ob.position), pending.image_a,
         pending.image_b, pending.hash_kind;

-- name: create_results
CREATE TEMP TABLE IF NOT EXISTS dbdedup_verify_results (
    hash_kind     text NOT NULL,
    image_a       bigint NOT NULL,
    image_b       bigint NOT NULL,
    verified      boolean NOT NULL,
    verify_score  real NOT NULL,
    verify_reason text NOT NULL
);

-- name: create_features
CREATE TEMP TABLE IF NOT EXISTS dbdedup_verify_features (
    image_id         bigint NOT NULL,
    size_bytes       bigint NOT NULL,
    mtime_ns         bigint NOT NULL,
    quality          smallint,
    colour_signature real[],
    signature_error  text
);

-- name: clear_temp_tables
TRUNCATE dbdedup_verify_results, dbdedup_verify_features;

-- name: copy_results
COPY dbdedup_verify_results (hash_kind, image_a, image_b, verified, verify_score, verify_reason) FROM STDIN;

-- name: copy_features
COPY dbdedup_verify_features (image_id, size_bytes, mtime_ns, quality, colour_signature, signature_error)
FROM STDIN;

-- name: apply_results
-- Only pairs still pending: a pair that matching has since verified (or found again) keeps that.
UPDATE dbdedup.pairs p
SET verified = r.verified, verify_score = r.verify_score, verify_reason = r.verify_reason,
    -- (a signature verdict waits for its structure check; a failed one stays on record, and so does the
    -- structure check of a pair pending for its region, whose region the check by pixels measured again, or for
    -- its detail gap, whose pixels it compared: dbdedup.left_to_pixels with the structure left out)
    structure = CASE WHEN r.verify_reason = 'signature' AND NOT dbdedup.left_to_pixels(NULL, p.region, p.detail_gap)
                     THEN NULL ELSE p.structure END,
    -- (a refusal here had the overlay check already, where it could apply: no second look)
    overlay_cells = CASE WHEN r.verified THEN p.overlay_cells ELSE coalesce(p.overlay_cells, false) END
FROM dbdedup_verify_results r
WHERE p.hash_kind = r.hash_kind AND p.image_a = r.image_a AND p.image_b = r.image_b AND p.verified IS NULL;

-- name: apply_features
-- The quality and colour signature of images loaded before the loader computed them, from the file
-- as it was recorded (same size and mtime): a load of a changed file in between keeps its own.
UPDATE dbdedup.images i
SET quality = coalesce(i.quality, f.quality),
    colour_signature = f.colour_signature,
    signature_error = f.signature_error
FROM (SELECT DISTINCT ON (image_id) * FROM dbdedup_verify_features ORDER BY image_id) f
WHERE i.id = f.image_id AND i.colour_signature IS NULL AND i.signature_error IS NULL
  AND i.size_bytes = f.size_bytes AND i.mtime_ns = f.mtime_ns;
