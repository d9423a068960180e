-- Tables: the current definition of every table, sequence and index in schema dbdedup.
--
-- A new database is made from this file; an existing one reaches the same tables through the
-- versioned migrations in migrations/versions/ (a test dumps both and compares them). A table
-- change is therefore two edits: this file, and a new migration that does the same to an
-- existing database. Functions and views live in the other files of sql/ and are re-applied
-- whole whenever their text changes (dbdedup/schema.py).
--
-- dbdedup.image_embeddings is created by dbdedup.enable_embeddings() (sql/signals.sql), only on
-- servers that have pgvector: its vector column needs the extension's type.

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

CREATE SCHEMA IF NOT EXISTS dbdedup;
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
    message       text,
    linked_folders text[] NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE dbdedup.load_runs IS 'One row per `dbdedup load`: what was asked, library versions, counts and timing.';
COMMENT ON SEQUENCE dbdedup.load_runs_id_seq IS 'Numbers dbdedup.load_runs (its identity column id): one a load.';
COMMENT ON COLUMN dbdedup.load_runs.status IS 'running, completed, failed, or interrupted (killed; found by the next load).';
COMMENT ON COLUMN dbdedup.load_runs.parameters IS 'Options of the run (workers, max_pixels, recursive, ...).';
COMMENT ON COLUMN dbdedup.load_runs.versions IS 'Versions of dbdedup, Pillow, ImageHash and numpy that computed the hashes: a hash changes when resampling changes.';
COMMENT ON COLUMN dbdedup.load_runs.loaded IS 'Files hashed by this run (new or changed).';
COMMENT ON COLUMN dbdedup.load_runs.unchanged IS 'Files skipped because path, size and mtime matched the stored row.';
COMMENT ON COLUMN dbdedup.load_runs.errors IS 'Files that could not be loaded (see dbdedup.load_errors).';
COMMENT ON COLUMN dbdedup.load_runs.missing IS 'Stored files under the scanned roots that are gone from disk, marked missing.';
COMMENT ON COLUMN dbdedup.load_runs.ignored IS 'Files that are not images by name or content (text, sidecars), left alone.';
COMMENT ON COLUMN dbdedup.load_runs.linked_folders IS 'Symbolic links to folders, inside the roots, that the walk entered: the files there are recorded under the link''s path, so a reference path that the link leads into (or to) is stored with that path too.';

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
    phash_variants bigint[],
    quality       smallint,
    colour_signature real[],
    signature_error text,
    keypoint_keys integer[],
    structure     bytea,
    CONSTRAINT images_ok_has_hashes CHECK (
        status <> 'ok' OR (sha256 IS NOT NULL AND phash IS NOT NULL AND dhash IS NOT NULL AND ahash IS NOT NULL)
    ),
    CONSTRAINT images_error_has_reason CHECK (status <> 'error' OR error IS NOT NULL)
);
-- no query filters on these arrays' elements: their statistics were most of ANALYZE's time (0015)
ALTER TABLE dbdedup.images ALTER COLUMN colour_signature SET STATISTICS 0, ALTER COLUMN keypoint_keys SET STATISTICS 0,
    ALTER COLUMN structure SET STATISTICS 0;
-- the 4 kB thumbnail is stored as it is, out of line: pglz tried it on every row of the load's upserts, 60 us a
-- row of server CPU on photos, where it gave up, and 130-200 us on drawings, for half their size (0027)
ALTER TABLE dbdedup.images ALTER COLUMN structure SET STORAGE EXTERNAL;
COMMENT ON TABLE dbdedup.images IS 'One row per file dbdedup has seen: its hashes when it loaded, its error when it did not, or missing when it is gone.';
COMMENT ON SEQUENCE dbdedup.images_id_seq IS
    'Numbers dbdedup.images (its identity column id: the image id of the other tables, the functions and commands).';
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
COMMENT ON COLUMN dbdedup.images.phash_variants IS
    'pHash of the image under the 7 other orientations (flip_h, flip_v, rotate_90, rotate_180, rotate_270, transpose, '
    'transverse; see dbdedup.transform_name), then, when uniform borders were trimmed, the trimmed image''s pHash and its '
    '7 orientations (15 values in all). NULL when loaded with --no-orientations.';
COMMENT ON COLUMN dbdedup.images.quality IS 'PDQ-style hash quality 0-100 of the decoded image (dbdedup.verify.quality): the amount of gradient detail. Below the verification minimum an image has no hash signal of its own and matches only as an exact copy or as the same pixels at one size (dbdedup.match_same_size). NULL until computed.';
COMMENT ON COLUMN dbdedup.images.colour_signature IS 'The image''s colour layout (dbdedup.verify.colour_signature): CIE Lab lightness of a 16x16 grid, then the a and b chroma of an 8x8 grid, 384 values, row-major cells. Pairs are verified by comparing these in SQL (dbdedup.signature_distance). NULL until computed or when it could not be (see signature_error).';
COMMENT ON COLUMN dbdedup.images.signature_error IS 'Why the image has no colour signature (it then matches only as an exact copy); NULL when it has one or has not been tried.';
COMMENT ON COLUMN dbdedup.images.keypoint_keys IS 'Keypoint keys of the image (dbdedup.keypoints: ORB descriptors cut into 6 bands of 24 bits, each key its band number and bits), sorted and distinct, stored by `dbdedup load --keypoints`: images sharing many keys are candidate pairs for crops and rotations (dbdedup.match_keypoints). Empty when the image has no corners; NULL when not computed.';
COMMENT ON COLUMN dbdedup.images.structure IS 'The image''s luma box-averaged to 64x64 pixels (32x32 for images loaded before migration 0021), one byte each, row-major (dbdedup.verify.structure_thumbnail): the structure check compares signature-verified pairs window by window with it (dbdedup.verify.structure_agreement) at 32x32 (its 2x2 means) and at 64x64. NULL when the image has no colour signature or was loaded before dbdedup stored it.';

CREATE INDEX images_sha256_idx ON dbdedup.images (sha256) WHERE status = 'ok';
CREATE INDEX images_change_seq_idx ON dbdedup.images (change_seq);
CREATE INDEX images_phash_ok_idx ON dbdedup.images (phash) WHERE status = 'ok';
CREATE INDEX images_dhash_ok_idx ON dbdedup.images (dhash) WHERE status = 'ok';
CREATE INDEX images_ahash_ok_idx ON dbdedup.images (ahash) WHERE status = 'ok';
-- the images with no hash signal of their own (dbdedup.match_same_size pairs them by size): few, read
-- without a scan of the table; 10 is verify_settings().min_quality
CREATE INDEX images_low_signal_idx ON dbdedup.images (least(width, height), greatest(width, height))
    WHERE status = 'ok' AND quality < 10;

-- One-image lookups (dbdedup.lookup, similar, similar_to_hash; sql/api.sql): multi-index hashing.
-- The pHash's 4 interleaved 16-bit blocks (the masks are dbdedup.interleaved_mask(4, b)), each
-- indexed with the pHash beside it, so a candidate is re-checked from the index alone. PostgreSQL
-- keeps them current on every write of an image: the loader has nothing more to do.
CREATE INDEX images_phash_block0_idx ON dbdedup.images ((phash & -8608480569735442159), phash) WHERE status = 'ok';
CREATE INDEX images_phash_block1_idx ON dbdedup.images ((phash & 1229782938533634594), phash) WHERE status = 'ok';
CREATE INDEX images_phash_block2_idx ON dbdedup.images ((phash & 2459565877067269188), phash) WHERE status = 'ok';
CREATE INDEX images_phash_block3_idx ON dbdedup.images ((phash & 4919131754134538376), phash) WHERE status = 'ok';
-- the same for the border-trimmed pHash (phash_variants[8]), set only for images with a uniform border
CREATE INDEX images_trimmed_block0_idx ON dbdedup.images ((phash_variants[8] & -8608480569735442159), (phash_variants[8]))
    WHERE status = 'ok' AND phash_variants[8] IS NOT NULL;
CREATE INDEX images_trimmed_block1_idx ON dbdedup.images ((phash_variants[8] & 1229782938533634594), (phash_variants[8]))
    WHERE status = 'ok' AND phash_variants[8] IS NOT NULL;
CREATE INDEX images_trimmed_block2_idx ON dbdedup.images ((phash_variants[8] & 2459565877067269188), (phash_variants[8]))
    WHERE status = 'ok' AND phash_variants[8] IS NOT NULL;
CREATE INDEX images_trimmed_block3_idx ON dbdedup.images ((phash_variants[8] & 4919131754134538376), (phash_variants[8]))
    WHERE status = 'ok' AND phash_variants[8] IS NOT NULL;

CREATE TABLE dbdedup.lookup_flips (
    block  smallint NOT NULL,
    radius smallint NOT NULL,
    flips  bigint[] NOT NULL,
    PRIMARY KEY (block, radius)
);
COMMENT ON TABLE dbdedup.lookup_flips IS
    'Constants of the one-image lookups: the XOR masks of block 0-3''s Hamming ball of radius 0-3 '
    '(dbdedup.ball_masks(dbdedup.interleaved_mask(4, block), radius)), filled when the definitions are applied.';

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
COMMENT ON SEQUENCE dbdedup.load_errors_id_seq IS 'Numbers dbdedup.load_errors (its identity column id).';
COMMENT ON COLUMN dbdedup.load_errors.reason IS 'Short reason code, as in dbdedup.images.error.';
CREATE INDEX load_errors_run_idx ON dbdedup.load_errors (load_run_id);

-- ------------------------------------------------------------------ matching state

CREATE TABLE dbdedup.match_state (
    hash_kind     text PRIMARY KEY CHECK (hash_kind IN ('phash', 'dhash', 'ahash')),
    max_distance  smallint NOT NULL,
    common_limit  integer NOT NULL,
    matched_seq   bigint NOT NULL,
    method        text NOT NULL,
    mode          text NOT NULL,
    candidates    bigint NOT NULL DEFAULT 0,
    value_pairs   bigint NOT NULL DEFAULT 0,
    pairs         bigint NOT NULL DEFAULT 0,
    seconds       double precision,
    full_match_at timestamptz NOT NULL DEFAULT now(),
    matched_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE dbdedup.match_state IS
    'Per hash kind: pairs in dbdedup.pairs are complete up to max_distance for every image with change_seq <= matched_seq.';
COMMENT ON COLUMN dbdedup.match_state.max_distance IS 'The largest threshold asked so far: clustering at any smaller one needs no new matching.';
COMMENT ON COLUMN dbdedup.match_state.common_limit IS 'A hash value shared by more distinct files than this is over-common (see dbdedup.common_hashes).';
COMMENT ON COLUMN dbdedup.match_state.matched_seq IS 'The dbdedup.change_seq mark of the last match: later rows are matched by the next incremental run.';
COMMENT ON COLUMN dbdedup.match_state.method IS 'Method of the last run: scan, blocks or lsh.';
COMMENT ON COLUMN dbdedup.match_state.mode IS 'full (everything re-matched) or incremental (only changed images against all).';
COMMENT ON COLUMN dbdedup.match_state.candidates IS 'Value pairs the last run compared exactly.';

CREATE UNLOGGED TABLE dbdedup.hash_values (
    hash_kind      text NOT NULL,
    value          bigint NOT NULL,
    images         integer NOT NULL,
    distinct_files integer NOT NULL,
    is_common      boolean NOT NULL,
    common_reason  text,
    pending        boolean NOT NULL DEFAULT true,
    PRIMARY KEY (hash_kind, value)
);
COMMENT ON TABLE dbdedup.hash_values IS
    'Distinct hash values of the ok images, per hash kind: matching compares values, not images, so a thousand copies cost one comparison. '
    'Unlogged (derived data, written fast): after a crash it is empty and the next match is a full one.';
COMMENT ON COLUMN dbdedup.hash_values.distinct_files IS 'Distinct SHA-256 among the images with this value.';
COMMENT ON COLUMN dbdedup.hash_values.is_common IS 'Over-common or low-information value: kept out of near-duplicate pairs (exact copies still pair).';
COMMENT ON COLUMN dbdedup.hash_values.common_reason IS 'low_information (almost no bits set or cleared) or shared_by_many (more distinct files than the common limit).';
COMMENT ON COLUMN dbdedup.hash_values.pending IS 'Not yet matched against the others (new since the last match).';

CREATE UNLOGGED TABLE dbdedup.value_pairs (
    hash_kind text NOT NULL,
    value_a   bigint NOT NULL,
    value_b   bigint NOT NULL,
    distance  smallint NOT NULL,
    PRIMARY KEY (hash_kind, value_a, value_b),
    CHECK (value_a < value_b)
);
CREATE INDEX value_pairs_b_idx ON dbdedup.value_pairs (hash_kind, value_b);
COMMENT ON TABLE dbdedup.value_pairs IS 'Pairs of distinct hash values within match_state.max_distance (value_a < value_b). Unlogged, like hash_values.';

CREATE UNLOGGED TABLE dbdedup.match_work (
    value bigint NOT NULL
);
COMMENT ON TABLE dbdedup.match_work IS
    'Work table of a full lsh match (dbdedup.match_values_lsh): the distinct values being matched, one bigint a row, '
    'so that its hash joins scan a narrow table (unlogged: parallel workers can read it, unlike a temporary table). '
    'Filled and emptied within the match.';

CREATE TABLE dbdedup.pairs (
    image_a   bigint NOT NULL,
    image_b   bigint NOT NULL,
    hash_kind text NOT NULL,
    distance  smallint NOT NULL,
    is_exact  boolean NOT NULL,
    transform text,
    transform_distance smallint,
    similarity real,
    verified  boolean,
    verify_score real,
    verify_reason text,
    shared_keys smallint,
    structure real,
    tone_fit real,
    overlay_cells boolean,
    region    real,
    detail_gap real,
    PRIMARY KEY (hash_kind, image_a, image_b),
    CHECK (image_a < image_b)
);
CREATE INDEX pairs_b_idx ON dbdedup.pairs (hash_kind, image_b);
COMMENT ON TABLE dbdedup.pairs IS
    'Image pairs (image_a < image_b) found by matching. Exact copies are stored as stars: every ok image with the same '
    'SHA-256 as a smaller ok image is paired (is_exact, distance 0) with the smallest one, the representative of its '
    'group, and with nothing else; near-duplicate pairs (hashes of hash_kind within match_state.max_distance) are stored '
    'between representatives only, and every copy of a group has the pairs of its representative. Images with an '
    'over-common hash value pair only with their exact copies. The transform and embedding signals may add pairs of '
    'any two images (see pairs.transform, pairs.similarity).';
COMMENT ON COLUMN dbdedup.pairs.distance IS 'Hamming distance of the two hashes (0-64).';
COMMENT ON COLUMN dbdedup.pairs.is_exact IS
    'Same SHA-256: byte-identical files; image_a is the representative (smallest id) of the group, image_b a copy.';
COMMENT ON COLUMN dbdedup.pairs.transform IS
    'Which variant matched when the pair was found by transform matching: image_b looks like image_a after this '
    '(flip_h, rotate_90, ..., trim, trim+flip_h, ...); keypoints when only shared keypoint keys found it (a crop, a '
    'rotation: see shared_keys); linked when dbdedup.propose_keeper_pairs proposed it (a keeper and an image verified '
    'with one of its members, or whose pair with one only failed to align by keypoints, or an image in no cluster with '
    'one of its images among its nearest embedding neighbours); same_size when dbdedup.match_same_size paired two '
    'images with no hash signal of their own by their size (transform_distance 0); crop_window when dbdedup.match_embeddings '
    'found one image''s pHash near a window of the other, one of its nearest embedding neighbours '
    '(image_embeddings.crop_windows: a crop; transform_distance 0). NULL when no variant is closer than the stored hashes.';
COMMENT ON COLUMN dbdedup.pairs.transform_distance IS 'Hamming distance at that variant (smaller than distance); 0 for keypoints, linked, same_size and crop_window.';
COMMENT ON COLUMN dbdedup.pairs.similarity IS
    'Cosine similarity of the two images'' embedding vectors (1 = same direction) when the k-NN search found the pair; NULL otherwise.';
COMMENT ON COLUMN dbdedup.pairs.verified IS 'Whether verification found the two the same picture: only verified pairs link images in clusters. NULL until the pair is verified.';
COMMENT ON COLUMN dbdedup.pairs.verify_score IS 'How alike verification found the two, 0-1 (1 = identical by the measure named in verify_reason).';
COMMENT ON COLUMN dbdedup.pairs.verify_reason IS 'The measure that decided: exact, signature, geometry, dense (a flat picture aligned by its pixels), tone (one brightness or contrast edit maps the RGB pixels of one onto the other), overlay (one is the other under a see-through white or black overlay, a watermark), reencoded (one is a JPEG saved at a low quality, and the other compressed with its quantization tables comes out as its pixels), converted (one is greyscale, and the other''s greyscale conversion, each pixel''s Rec. 601 luma, comes out as its pixels), pixels (images with no hash signal of their own, the same pixels at one size up to re-encoding: dbdedup.match_same_size); or, for a rejection, why: low_quality, no_signature, colour (chroma or tone spread), detail, weak_embedding, no_geometry, no_overlap, structure (another drawing in a region, though the colour signatures agree), turned (the keypoints align the two only turned by a quarter or more while their pHashes agree unturned: another picture drawn turned), error: ... unchecked: not checked by its pixels because the clusters did not need it (verified false: it links nothing; a later report checks it when its clusters need it, dbdedup verify --unchecked checks it). NULL while the pair is pending.';
COMMENT ON COLUMN dbdedup.pairs.shared_keys IS 'Keypoint keys the two images share (images.keypoint_keys) when dbdedup.match_keypoints found the pair; NULL otherwise. A pair only the keys found has transform ''keypoints'' (transform_distance 0) and is verified by the geometric check alone.';
COMMENT ON COLUMN dbdedup.pairs.structure IS 'For a pair verified by its colour signatures: how alike the two are in local structure (dbdedup.verify.structure_agreement of images.structure at 32x32, 5th percentile of the windows'' correlation; about 1 for the same picture; or, when both images have the 64x64 thumbnail and its 10th percentile is below verify_settings().min_signature_fine_structure, that), measured by dbdedup.structure_check; below verify_settings().min_signature_structure the pair goes back to pending, and the geometric check rejects it (verify_reason structure) unless the two, aligned by their pixels, agree there. NaN when either image has no thumbnail; NULL until measured or for other pairs.';
COMMENT ON COLUMN dbdedup.pairs.region IS 'For a pair verified by its colour signatures in the orientation of a flip or a turn: how alike the two are in their least alike region (dbdedup.verify.region_agreements of images.structure at 64x64: the lowest mean agreement of 2x2 neighbouring windows where both pictures are drawn; about 1 for a flipped or turned copy, low for a picture and its mirror drawn again, its lettering left readable), measured by dbdedup.structure_check. Below verify_settings().min_oriented_region the pair goes back to pending, and the check by pixels measures the region again from the files (verify_reason structure when it differs there too, else the signatures'' verdict stands). NaN when the pair is compared unturned or either image has no 64x64 thumbnail; NULL until measured or for other pairs.';
COMMENT ON COLUMN dbdedup.pairs.detail_gap IS 'For a pair verified by its colour signatures unturned and whole: how far its two images.structure thumbnails (64x64 luma) stray from one brightness or contrast edit, in levels RMS (dbdedup.verify.detail_gaps_many, measured by dbdedup.structure_check). Above verify_settings().detail_gate the pair goes back to pending, and the check by pixels compares the two in colour at their own scale (up to 64 pixels): apart somewhere beyond what one tone edit explains (another suit on a card, other pips), neither one tone edit nor an overlay (see-through, or a mark painted in one colour), and aligned in place by their keypoints, it is refused (verify_reason detail); else the signatures'' verdict stands. NaN when the pair is compared turned or trimmed or an image has no 64x64 thumbnail; NULL until measured or for other pairs.';
COMMENT ON COLUMN dbdedup.pairs.tone_fit IS 'For an aligned pair rejected for colour by their signatures: the RMS difference (0-255 levels) of the 8x8 cells of their colour signatures in sRGB (dbdedup.verify.signature_colours) after one brightness or contrast edit, out = clip(gain * in + offset) for every channel, fitted either way (dbdedup.verify.tone_fits, measured by dbdedup.structure_check) when they are that close to one edit (dbdedup.verify.ToneFit.cells_agree), or whatever their distance when both pictures are greyscale (RMS chroma under dbdedup.verify_settings().grey_chroma: a clipped outline bends a drawing''s cells past any line): the pair then goes back to pending, and the geometric check fits the edit to the RGB pixels of the files (verify_reason tone when it explains them, else colour). NaN when no such edit explains the cells of two pictures not both greyscale, either picture has no signature, or the pair is not aligned; NULL until measured or for other pairs.';
COMMENT ON COLUMN dbdedup.pairs.overlay_cells IS 'For an aligned pair rejected for colour or layout by its colour signatures: whether their 16x16 lightness cells differ as one see-through white or black overlay would make them, a few cells changed and nearly all the same way (dbdedup.verify.overlay_cells_agree, measured by dbdedup.structure_check). True sends the pair back to pending, and the geometric check tries the overlay on the files'' pixels (verify_reason overlay when it explains them, else the refusal again). False when the cells do not agree, the pair is not aligned or an image has no signature, or the geometric check gave the refusal (it tries the overlay itself); NULL until measured or for other pairs.';
CREATE INDEX pairs_pending_idx ON dbdedup.pairs (hash_kind) WHERE verified IS NULL;
CREATE INDEX pairs_unchecked_idx ON dbdedup.pairs (hash_kind) WHERE verify_reason = 'unchecked';
-- the signature-verified pairs whose structure is not measured yet (dbdedup.structure_check): empty between runs
CREATE INDEX pairs_structure_unchecked_idx ON dbdedup.pairs (hash_kind)
    WHERE verified AND verify_reason = 'signature' AND structure IS NULL;
-- the pairs rejected for colour whose tone fit is not measured yet (dbdedup.structure_check): empty between runs
CREATE INDEX pairs_tone_unmeasured_idx ON dbdedup.pairs (hash_kind)
    WHERE verified = false AND verify_reason = 'colour' AND tone_fit IS NULL;
-- the pairs rejected for colour or layout whose overlay cells are not measured yet (dbdedup.structure_check)
CREATE INDEX pairs_overlay_unmeasured_idx ON dbdedup.pairs (hash_kind)
    WHERE verified = false AND verify_reason IN ('colour', 'layout') AND overlay_cells IS NULL;
CREATE INDEX pairs_similarity_idx ON dbdedup.pairs (similarity) WHERE similarity IS NOT NULL;

CREATE TABLE dbdedup.cluster_parameters (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    max_distance    smallint NOT NULL,
    hash_kind       text NOT NULL,
    keeper_rule     text NOT NULL CHECK (keeper_rule IN ('largest', 'newest', 'oldest')),
    reference_paths text[] NOT NULL DEFAULT '{}',
    matched_seq     bigint NOT NULL,
    clusters        bigint NOT NULL DEFAULT 0,
    members         bigint NOT NULL DEFAULT 0,
    split_rounds    integer NOT NULL DEFAULT 0,
    seconds         double precision,
    built_at        timestamptz NOT NULL DEFAULT now(),
    rule            text NOT NULL DEFAULT 'hash' CHECK (rule IN ('hash', 'transforms', 'embedding', 'fused')),
    min_similarity  real,
    confirm_distance smallint,
    transform_distance smallint,
    signals_seq     bigint,
    pending_at_build bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE dbdedup.cluster_parameters IS 'The parameters of the current clustering (one row), and what building it found.';
COMMENT ON COLUMN dbdedup.cluster_parameters.reference_paths IS 'Path prefixes whose files are preferred as keeper and never removable.';
COMMENT ON COLUMN dbdedup.cluster_parameters.matched_seq IS 'match_state.matched_seq of the pairs the clustering was built from.';
COMMENT ON COLUMN dbdedup.cluster_parameters.split_rounds IS 'Extra rounds of greedy star clustering: above 0 when chains of weak links were split (members too far from the best image).';
COMMENT ON COLUMN dbdedup.cluster_parameters.rule IS
    'Which pairs join images: hash (pHash within max_distance), transforms (also a flipped, rotated or trimmed variant '
    'within transform_distance), embedding (similarity >= min_similarity), fused (transforms, or similarity >= '
    'min_similarity confirmed by a pHash distance <= confirm_distance).';
COMMENT ON COLUMN dbdedup.cluster_parameters.transform_distance IS
    'Largest distance at which a flipped, rotated or trimmed variant links two images (tighter than max_distance: '
    '16 variants give 16 chances to match by accident).';
COMMENT ON COLUMN dbdedup.cluster_parameters.signals_seq IS 'signal_state matched_seq of the signals the clustering used.';
COMMENT ON COLUMN dbdedup.cluster_parameters.pending_at_build IS
    'Pairs of the clustering''s hash kind still pending (verified IS NULL, linking nothing) when it was built (a build from '
    'SQL, such as refresh(), leaves the ones the geometric check must decide), plus the pairs a plan of the checks by pixels '
    '(dbdedup/verify_plan.py) took from pending to unchecked since: above 0, the clusters are built again '
    'by the next command, since `dbdedup verify` may have given those pairs verdicts since, or the plan was stopped '
    'before its build.';

CREATE TABLE dbdedup.cluster_assignments (
    image_id           bigint PRIMARY KEY,
    cluster_id         bigint NOT NULL,
    is_keeper          boolean NOT NULL,
    distance_to_keeper integer NOT NULL,
    transform          text,
    similarity         real,
    verify_reason      text,
    verify_score       real
);
CREATE INDEX cluster_assignments_cluster_idx ON dbdedup.cluster_assignments (cluster_id);
COMMENT ON TABLE dbdedup.cluster_assignments IS 'Cluster of each clustered image (cluster_id is the keeper''s image id).';
COMMENT ON COLUMN dbdedup.cluster_assignments.distance_to_keeper IS
    'pHash distance to the keeper, at the matched variant when transform is set (0 for exact copies).';
COMMENT ON COLUMN dbdedup.cluster_assignments.transform IS
    'The variant that links the image to its keeper: the image looks like the keeper after this (flip_h, rotate_90, ...); '
    'trim: one of the two has a uniform border the other lacks. NULL when the plain pHash links them.';
COMMENT ON COLUMN dbdedup.cluster_assignments.similarity IS 'Embedding similarity to the keeper when known.';
COMMENT ON COLUMN dbdedup.cluster_assignments.verify_reason IS 'How the link between the member and its keeper was verified (pairs.verify_reason: exact, signature, geometry; reviewer for a pair a reviewer confirmed); NULL for the keeper.';
COMMENT ON COLUMN dbdedup.cluster_assignments.verify_score IS 'The verification score of that link, 0-1 (pairs.verify_score); NULL for the keeper.';

CREATE TABLE dbdedup.cluster_settings (
    singleton          boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    threshold          smallint NOT NULL CHECK (threshold BETWEEN 0 AND 64),
    hash_kind          text NOT NULL CHECK (hash_kind IN ('phash', 'dhash', 'ahash')),
    rule               text NOT NULL CHECK (rule IN ('hash', 'transforms', 'embedding', 'fused')),
    keeper_rule        text NOT NULL CHECK (keeper_rule IN ('largest', 'newest', 'oldest')),
    reference_paths    text[] NOT NULL DEFAULT '{}',
    min_similarity     real NOT NULL CHECK (min_similarity > 0 AND min_similarity <= 1),
    confirm_distance   smallint NOT NULL CHECK (confirm_distance BETWEEN 0 AND 64),
    transform_distance smallint NOT NULL CHECK (transform_distance BETWEEN 0 AND 32),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE dbdedup.cluster_settings IS
    'How the user asked images to be clustered (one row, written when a command is given clustering options): '
    'match, report, export and apply use it until changed. The clustering built from it is in cluster_parameters.';
COMMENT ON COLUMN dbdedup.cluster_settings.threshold IS 'Largest Hamming distance (bits of 64) between two near-duplicates.';
COMMENT ON COLUMN dbdedup.cluster_settings.rule IS
    'What links two images (see cluster_parameters.rule). Without embedding vectors, fused is applied as transforms.';
COMMENT ON COLUMN dbdedup.cluster_settings.reference_paths IS
    'Folders (or files) whose images are preferred as keepers and never moved or deleted. Paths are only added by '
    '`--reference`; `--clear-references` removes them.';

-- ------------------------------------------------------------------ signals

CREATE TABLE dbdedup.signal_state (
    signal             text PRIMARY KEY CHECK (signal IN ('transforms', 'embeddings', 'keypoints')),
    max_distance       smallint,
    min_similarity     real,
    neighbours         integer,
    matched_seq        bigint NOT NULL,
    base_full_match_at timestamptz NOT NULL,
    method             text,
    mode               text NOT NULL,
    candidates         bigint NOT NULL DEFAULT 0,
    pairs              bigint NOT NULL DEFAULT 0,
    seconds            double precision,
    matched_at         timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE dbdedup.signal_state IS
    'Per signal (transforms, embeddings, keypoints): pairs.transform_distance is complete up to max_distance, pairs.similarity down '
    'to min_similarity (k = neighbours), and pairs.shared_keys for the key setting named in method, for images with change_seq <= matched_seq. base_full_match_at is the pHash '
    'match_state.full_match_at the signal was computed on: a full pHash re-match clears the pairs, so the signal starts over.';

CREATE TABLE dbdedup.embedding_reductions (
    embedder     text PRIMARY KEY,
    raw_dim      integer NOT NULL,
    dim          integer NOT NULL,
    reduction    bytea NOT NULL,
    fitted_rows  bigint NOT NULL,
    fitted_at    timestamptz NOT NULL DEFAULT now(),
    index_method text NOT NULL DEFAULT 'hnsw' CHECK (index_method IN ('hnsw', 'ivfflat'))
);
COMMENT ON TABLE dbdedup.embedding_reductions IS
    'The PCA that reduces an embedder''s raw descriptors to the stored vectors, fitted once on the loaded corpus so later '
    'loads project the same way (`dbdedup embeddings refit` fits again and re-projects everything).';
COMMENT ON COLUMN dbdedup.embedding_reductions.embedder IS 'Embedder id: grey-v1 (the default, no weights) or onnx:<sha256 prefix of the model>.';
COMMENT ON COLUMN dbdedup.embedding_reductions.reduction IS 'Mean and components, as written by dbdedup.embedding.Reduction.to_bytes.';
COMMENT ON COLUMN dbdedup.embedding_reductions.index_method IS 'pgvector index on the vectors: hnsw (default) or ivfflat.';

-- ------------------------------------------------------------------ verdicts

CREATE TABLE dbdedup.verdicts (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('not_duplicate', 'not_in_cluster', 'keeper', 'duplicate')),
    sha256_a   bytea NOT NULL CHECK (length(sha256_a) = 32),
    sha256_b   bytea CHECK (length(sha256_b) = 32),
    decided_by text NOT NULL DEFAULT current_user,
    decided_at timestamptz NOT NULL DEFAULT now(),
    note       text,
    given_on   bytea[],
    CONSTRAINT verdicts_subject_check CHECK (
        CASE WHEN kind IN ('not_duplicate', 'duplicate') THEN sha256_b IS NOT NULL AND sha256_a < sha256_b
             ELSE sha256_b IS NULL END
    )
);
CREATE UNIQUE INDEX verdicts_subject_idx ON dbdedup.verdicts (sha256_a, coalesce(sha256_b, '\x'::bytea));
CREATE INDEX verdicts_sha256_b_idx ON dbdedup.verdicts (sha256_b) WHERE sha256_b IS NOT NULL;
COMMENT ON TABLE dbdedup.verdicts IS
    'What reviewers decided, keyed by content (SHA-256), so a decision survives moves, renames, reloads and a fresh '
    'database loaded from the same files. One verdict per image or pair (a new one replaces the old). build_clusters '
    'honours them; dbdedup.verdicts_current shows each with the images it names now.';
COMMENT ON SEQUENCE dbdedup.verdicts_id_seq IS
    'Numbers dbdedup.verdicts (its identity column id: the id `dbdedup verdicts list` shows and `remove` takes).';
COMMENT ON COLUMN dbdedup.verdicts.kind IS
    'not_duplicate (pair): the two never link; not_in_cluster (image): a duplicate of nothing its signals found, it '
    'links only by duplicate verdicts; keeper (image): ranks first as keeper of its cluster; duplicate (pair): the two '
    'link whatever their distance (a pair the signals missed).';
COMMENT ON COLUMN dbdedup.verdicts.sha256_a IS 'SHA-256 of the image (of a pair: the smaller of the two, byte order).';
COMMENT ON COLUMN dbdedup.verdicts.sha256_b IS 'SHA-256 of the second image of a pair (the larger); NULL for an image verdict.';
COMMENT ON COLUMN dbdedup.verdicts.decided_by IS 'Who decided: the user name the command line gives, else the database role.';
COMMENT ON COLUMN dbdedup.verdicts.decided_at IS 'When it was decided (kept from the file when verdicts are imported).';
COMMENT ON COLUMN dbdedup.verdicts.note IS 'Optional free text from the reviewer.';
COMMENT ON COLUMN dbdedup.verdicts.given_on IS
    'For a verdict given in `dbdedup review`: the SHA-256 of the members of the cluster(s) it was given on, as they '
    'were before it changed them (verdicts export writes them, import takes them back); NULL for one given elsewhere '
    '(verdicts add, or imported from a file without them). A cluster that holds nothing but these counts as reviewed '
    'by decided_by (so the rest of a cluster whose member was taken out does), until the verdict is replaced or '
    'forgotten.';

-- ------------------------------------------------------------------ bookkeeping of sql/

CREATE TABLE dbdedup.schema_definitions (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE dbdedup.schema_definitions IS
    'SHA-256 of the function and view definitions (sql/*.sql but tables.sql) this database runs: when dbdedup ships other '
    'text, every command re-applies them before it starts.';

-- ------------------------------------------------------------------ apply runs: what undo may reverse

CREATE TABLE dbdedup.apply_runs (
    id         uuid PRIMARY KEY,
    action     text NOT NULL CHECK (action IN ('move', 'delete', 'hardlink')),
    move_to    bytea,
    manifest   text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE dbdedup.apply_runs IS
    'One row per `dbdedup apply --yes`, committed before it touches a file. `dbdedup undo` reverses only the actions '
    'recorded here for the run its manifest names, and refuses a manifest that says anything else.';
COMMENT ON COLUMN dbdedup.apply_runs.id IS 'The run, named by run_id in the first line of its manifest.';
COMMENT ON COLUMN dbdedup.apply_runs.action IS 'move, delete or hardlink.';
COMMENT ON COLUMN dbdedup.apply_runs.move_to IS 'The --move-to folder (the exact bytes of its path); NULL for delete and hardlink.';
COMMENT ON COLUMN dbdedup.apply_runs.manifest IS 'Where the run''s manifest was written.';

CREATE TABLE dbdedup.apply_actions (
    run_id            uuid NOT NULL REFERENCES dbdedup.apply_runs (id) ON DELETE CASCADE,
    seq               integer NOT NULL,
    image_id          bigint NOT NULL,
    path_bytes        bytea NOT NULL,
    destination_bytes bytea,
    partial_bytes     bytea,
    size_bytes        bigint NOT NULL,
    mtime_ns          bigint NOT NULL,
    sha256            bytea NOT NULL,
    PRIMARY KEY (run_id, seq)
);
COMMENT ON TABLE dbdedup.apply_actions IS
    'Every file an apply run planned to act on, as the intent line with the same seq in its manifest must give it.';
COMMENT ON COLUMN dbdedup.apply_actions.seq IS 'The action''s number in the run (seq in the manifest).';
COMMENT ON COLUMN dbdedup.apply_actions.image_id IS 'The image (dbdedup.images.id) when the run was planned.';
COMMENT ON COLUMN dbdedup.apply_actions.path_bytes IS 'The file acted on (the exact bytes of its path).';
COMMENT ON COLUMN dbdedup.apply_actions.destination_bytes IS 'Where a move puts it (under the run''s move_to); NULL for delete and hardlink.';
COMMENT ON COLUMN dbdedup.apply_actions.partial_bytes IS
    'The temporary name of a copy across file systems or of a new hard link; undo removes one left behind.';
COMMENT ON COLUMN dbdedup.apply_actions.size_bytes IS 'The file''s size when planned.';
COMMENT ON COLUMN dbdedup.apply_actions.mtime_ns IS 'The file''s modification time (ns) when planned.';
COMMENT ON COLUMN dbdedup.apply_actions.sha256 IS 'The file''s content; undo puts back only a file with this content.';
