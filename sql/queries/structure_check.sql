-- Queries of dbdedup/structure_check.py: the structure check of signature-verified pairs.

-- name: collect_unchecked
-- The signature-verified pairs not measured yet (pairs_structure_unchecked_idx), read once (on
-- Citus: the distributed pairs gathered here before the orientation is worked out locally).
CREATE TEMP TABLE dbdedup_structure_pairs ON COMMIT DROP AS
SELECT p.hash_kind, p.image_a, p.image_b, p.transform, p.transform_distance, p.distance
FROM dbdedup.pairs p
WHERE p.verified AND p.verify_reason = 'signature' AND p.structure IS NULL;

-- name: unchecked_pairs
-- Each pair with the orientation its signatures were compared in (dbdedup.aligned_orientation); a pair
-- found through a border-trimmed variant is not measured (its whole thumbnails are framed otherwise).
SELECT t.hash_kind, t.image_a, t.image_b,
       dbdedup.aligned_orientation(t.transform, t.transform_distance, t.distance, s.aligned_variant) AS orientation,
       coalesce(t.transform LIKE 'trim%%', false) AS trimmed
FROM dbdedup_structure_pairs t, dbdedup.verify_settings() s
ORDER BY t.image_a, t.image_b;

-- name: thumbnails
SELECT i.id, i.structure FROM dbdedup.images i WHERE i.id = ANY(%(ids)s) AND i.structure IS NOT NULL;

-- name: create_results
CREATE TEMP TABLE dbdedup_structure_results (
    hash_kind   text NOT NULL,
    image_a     bigint NOT NULL,
    image_b     bigint NOT NULL,
    structure   real NOT NULL,
    region      real NOT NULL,
    tones_apart boolean NOT NULL,
    detail_gap  real NOT NULL
) ON COMMIT DROP;

-- name: copy_results
COPY dbdedup_structure_results (hash_kind, image_a, image_b, structure, region, tones_apart, detail_gap) FROM STDIN;

-- name: apply_results
-- Each measure kept. Colours that no tone edit explains (verify.tones_apart_many), or a greyscale picture that is a
-- flat colour drawing's grey variant or another inking of it rather than its conversion (verify.grey_variant,
-- verify.ink_variant): refused for colour, as the signatures refuse colours further apart (the second looks may
-- still send the pair to the geometric check, as one overlay). Else a pair apart in structure, in a region or in
-- detail (dbdedup.left_to_pixels, which says why each sends it) has its verdict taken back: pending (verified
-- NULL) for the check by pixels; a measure that could not be taken (NaN) leaves the verdict standing. Only pairs
-- still verified by signature and unmeasured: a pair found or judged again meanwhile keeps that. One row a pair:
-- whether it was refused, and whether it was left to the check by pixels.
WITH r AS (
    SELECT r.*, dbdedup.left_to_pixels(r.structure, r.region, r.detail_gap) AS pixels_decide
    FROM dbdedup_structure_results r
)
UPDATE dbdedup.pairs p
SET structure = r.structure,
    region = r.region,
    detail_gap = r.detail_gap,
    verified = CASE WHEN r.tones_apart THEN false WHEN r.pixels_decide THEN NULL ELSE p.verified END,
    verify_reason = CASE WHEN r.tones_apart THEN 'colour' WHEN r.pixels_decide THEN NULL ELSE p.verify_reason END,
    verify_score = CASE WHEN r.tones_apart THEN p.verify_score WHEN r.pixels_decide THEN NULL ELSE p.verify_score END
FROM r
WHERE p.hash_kind = r.hash_kind AND p.image_a = r.image_a AND p.image_b = r.image_b
  AND p.verified AND p.verify_reason = 'signature' AND p.structure IS NULL
RETURNING r.tones_apart, r.pixels_decide;

-- name: drop_temp_tables
DROP TABLE IF EXISTS dbdedup_structure_pairs, dbdedup_structure_results;

-- name: any_unchecked
SELECT EXISTS (SELECT 1 FROM dbdedup.pairs p
               WHERE p.verified AND p.verify_reason = 'signature' AND p.structure IS NULL);

-- name: any_look_unmeasured
-- The queries *look* are those of the second looks at aligned pairs the signatures rejected
-- (structure_check.SECOND_LOOKS), composed with {measure}, the pairs column a look fills (tone_fit,
-- overlay_cells), {reasons}, the refusals it looks at, {kind}, the column's type, and {candidate}, whether a
-- measured value r.value sends the pair back to pending.
SELECT EXISTS (SELECT 1 FROM dbdedup.pairs p
               WHERE p.verified = false AND p.verify_reason = ANY({reasons}) AND p.{measure} IS NULL);

-- name: look_pairs
-- The rejected pairs whose measure is not taken yet (their partial index: pairs_tone_unmeasured_idx,
-- pairs_overlay_unmeasured_idx), with the orientation their signatures were compared in (NULL when not
-- aligned: a trimmed variant, an embedding neighbour).
-- (Gathered first: on Citus a join of the distributed tables in one step with this order is refused.)
WITH rejected AS MATERIALIZED (
    SELECT p.hash_kind, p.image_a, p.image_b, p.transform, p.transform_distance, p.distance
    FROM dbdedup.pairs p
    WHERE p.verified = false AND p.verify_reason = ANY({reasons}) AND p.{measure} IS NULL
)
SELECT r.hash_kind, r.image_a, r.image_b,
       CASE WHEN coalesce(r.transform LIKE 'trim%', false) THEN NULL
            WHEN r.distance <= s.aligned_distance
                 OR dbdedup.aligned_orientation(r.transform, r.transform_distance, r.distance, s.aligned_variant)
                    <> 'identity'
            THEN dbdedup.aligned_orientation(r.transform, r.transform_distance, r.distance, s.aligned_variant) END
FROM rejected r, dbdedup.verify_settings() s
ORDER BY r.image_a, r.image_b;

-- name: signatures
-- (in the array's binary form: dbdedup.pg_binary reads it as numpy does, without a Python float a value)
SELECT i.id, array_send(i.colour_signature) FROM dbdedup.images i WHERE i.id = ANY(%(ids)s);

-- name: create_look_results
CREATE TEMP TABLE dbdedup_look_results (
    hash_kind text NOT NULL,
    image_a   bigint NOT NULL,
    image_b   bigint NOT NULL,
    value     {kind} NOT NULL
) ON COMMIT DROP;

-- name: copy_look_results
COPY dbdedup_look_results (hash_kind, image_a, image_b, value) FROM STDIN;

-- name: apply_look_results
-- Each measure kept; a candidate goes back to pending for the geometric check, which looks at the files'
-- pixels (the tone edit fitted to them, the overlay tried on them). Only pairs still rejected and unmeasured.
-- One row per pair measured: whether it went back to pending ({candidate} is decided here only).
UPDATE dbdedup.pairs p
SET {measure} = r.value,
    verified = CASE WHEN {candidate} THEN NULL ELSE p.verified END,
    verify_reason = CASE WHEN {candidate} THEN NULL ELSE p.verify_reason END,
    verify_score = CASE WHEN {candidate} THEN NULL ELSE p.verify_score END
FROM dbdedup_look_results r
WHERE p.hash_kind = r.hash_kind AND p.image_a = r.image_a AND p.image_b = r.image_b
  AND p.verified = false AND p.verify_reason = ANY({reasons}) AND p.{measure} IS NULL
RETURNING p.verified IS NULL;

-- name: drop_look_tables
DROP TABLE IF EXISTS dbdedup_look_results;
