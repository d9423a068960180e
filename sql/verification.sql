-- Verification: every candidate pair gets a verdict before it may link two images.
--
-- Hashes and embeddings propose pairs from greyscale structure; look-alikes (one drawing in
-- several colours, flags with the same stripes, cards of one rank) sit a few bits apart. Each
-- image stores a small colour signature (images.colour_signature: Lab lightness on 16x16 cells,
-- then a and b chroma on 8x8 cells, dbdedup.verify.colour_signature) and a hash quality; pairs
-- whose two images are aligned (a close pHash, or an orientation variant) are judged here from
-- those, the way dbdedup.verify.signature_verdict judges them. The pairs they cannot settle
-- (trimmed variants, embedding neighbours, aligned pairs whose colours neither clearly agree
-- nor clearly differ) stay pending (verified IS NULL) for the geometric check that runs in
-- worker processes (dbdedup.verify_workers). Clusters link verified pairs only.
--
--   SELECT * FROM dbdedup.verify_pairs();                     -- verdicts for every pair without one
--   SELECT * FROM dbdedup.signature_distance(a.colour_signature, b.colour_signature, 'flip_h')
--   FROM dbdedup.images a, dbdedup.images b WHERE a.id = 1 AND b.id = 2;

-- The one place the verification thresholds are set: dbdedup/verify.py reads its constants from
-- this function's text (each value as "<number> AS <name>"), so Python and SQL judge alike.
-- Chosen on the tuning split of bench/accuracy by bench/accuracy/verify_study.py.
CREATE OR REPLACE FUNCTION dbdedup.verify_settings(
        OUT min_quality integer, OUT max_light double precision, OUT max_chroma double precision,
        OUT max_gain double precision, OUT max_gain_colour double precision, OUT max_detail double precision,
        OUT aligned_distance integer, OUT aligned_variant integer, OUT same_framing integer,
        OUT settled double precision, OUT hopeless double precision, OUT geometry_min_similarity double precision,
        OUT min_chroma double precision, OUT light_spread_floor double precision, OUT detail_rank integer,
        OUT max_grey_light double precision, OUT grey_chroma double precision, OUT max_gain_grey double precision,
        OUT near_distance integer, OUT max_detail_far double precision)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT 10 AS min_quality,           -- below it an image has no hash signal of its own
               0.30 AS max_light,           -- lightness-layout distance of an aligned pair
               0.30 AS max_chroma,          -- chroma-layout distance of an aligned pair, both in colour
               1.3 AS max_gain,             -- lightness spread ratio of a greyscale image and a colour one
               1.6 AS max_gain_colour,      -- the same when neither is greyscale (brightness -30% is about 1.4)
               0.8 AS max_detail,           -- 16x16 detail of an aligned pair
               12 AS aligned_distance,      -- a pHash pair this close has one framing: the signature judges it
               8 AS aligned_variant,        -- the same for an orientation variant (closer than the plain pHash)
               6 AS same_framing,           -- below this an aligned pair the signature rejects is settled
               0.30 AS settled,             -- an aligned pair whose worse distance is within this needs no geometry
               0.60 AS hopeless,            -- an aligned pair whose worse distance passes this is rejected outright
               0.70 AS geometry_min_similarity,  -- an embedding-only pair below this is not worth a geometric check
               6.0 AS min_chroma,           -- RMS chroma (Lab units) under which an image counts as greyscale
               2.0 AS light_spread_floor,   -- Lab L units: a flatter lightness layout is not stretched further
               6 AS detail_rank,            -- the detail measure is this largest cell difference
               2.0 AS max_grey_light,       -- Lab L units: a greyscale image against the greyscale conversion of a colour one
               2.0 AS grey_chroma,          -- RMS chroma under which an image is a greyscale picture (a conversion's is about 0)
               1.5 AS max_gain_grey,        -- the spread ratio of other pairs with a greyscale image
               2 AS near_distance,          -- an aligned pair this close may differ in detail up to max_detail
               0.65 AS max_detail_far       -- the 16x16 detail of an aligned pair farther apart (another emblem on one folder)
    $$;
COMMENT ON FUNCTION dbdedup.verify_settings() IS
    'The thresholds of verification (one row): quality minimum, signature limits (light, chroma, gain, detail), the '
    'routing of pairs (aligned_distance, aligned_variant, same_framing, settled, hopeless, geometry_min_similarity), '
    'max_grey_light, grey_chroma and max_gain_grey (a greyscale image against a colour one, and other pairs with a '
    'greyscale image), near_distance and max_detail_far (the detail limit of aligned pairs farther apart than '
    'near_distance) and the constants of the signature measure. dbdedup.verify (Python) reads the same values from this definition.';

-- Orientation as a reindexing of the signature's cells: the 16x16 lightness grid (cells 1-256) and
-- the two 8x8 chroma grids (257-320, 321-384) are each turned as the picture is. Named as
-- dbdedup.transform_name and dbdedup.verify.ORIENTATIONS.
-- (Not STRICT, one expression: inlined into the queries that call it.)
CREATE OR REPLACE FUNCTION dbdedup.grid_cell(orientation text, n integer, i integer, j integer) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT CASE coalesce(orientation, 'identity')
                   WHEN 'identity' THEN i * n + j
                   WHEN 'flip_h' THEN i * n + (n - 1 - j)
                   WHEN 'flip_v' THEN (n - 1 - i) * n + j
                   WHEN 'rotate_90' THEN j * n + (n - 1 - i)
                   WHEN 'rotate_180' THEN (n - 1 - i) * n + (n - 1 - j)
                   WHEN 'rotate_270' THEN (n - 1 - j) * n + i
                   WHEN 'transpose' THEN j * n + i
                   WHEN 'transverse' THEN (n - 1 - j) * n + (n - 1 - i) END
    $$;
COMMENT ON FUNCTION dbdedup.grid_cell(text, integer, integer, integer) IS
    'Which cell (0-based, row-major) of an n x n grid comes to row i, column j (0-based) when the grid is turned by an '
    'orientation (identity for NULL; NULL for a name that is not one of the 8 orientations).';

CREATE OR REPLACE FUNCTION dbdedup.signature_cells(orientation text) RETURNS integer[]
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $$
BEGIN
    IF coalesce(orientation, 'identity') NOT IN ('identity', 'flip_h', 'flip_v', 'rotate_90', 'rotate_180',
                                                 'rotate_270', 'transpose', 'transverse') THEN
        RAISE EXCEPTION 'unknown orientation %', orientation
            USING HINT = 'use identity, flip_h, flip_v, rotate_90, rotate_180, rotate_270, transpose or transverse';
    END IF;
    RETURN (SELECT array_agg(g.base + 1 + dbdedup.grid_cell(orientation, g.n, c / g.n, c % g.n) ORDER BY g.base, c)
            FROM (VALUES (0, 16), (256, 8), (320, 8)) g(base, n), generate_series(0, g.n * g.n - 1) c);
END
$$;
COMMENT ON FUNCTION dbdedup.signature_cells(text) IS
    'The cell permutation of a colour signature under an orientation (identity for NULL): cell k of the oriented '
    'signature is cell cells[k] of the original (see dbdedup.grid_cell). An unknown name is an error.';

-- A greyscale copy keeps the luma of each pixel (Rec. 601, as Pillow's convert("L"), libjpeg and
-- most editors compute it), not its Lab lightness: a saturated red turns into a darker grey than
-- its L* says. To compare a greyscale image with a colour one, each colour cell is turned into the
-- lightness its greyscale conversion would have. (plpgsql: a SQL function of this size is not
-- inlined and costs about 100 times more a call.)
CREATE OR REPLACE FUNCTION dbdedup.grey_lightness(light double precision, a double precision, b double precision)
    RETURNS double precision
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
DECLARE
    f double precision := (light + 16) / 116;
    t double precision[] := ARRAY[f + a / 500, f, f - b / 200];
    white double precision[] := ARRAY[0.95047, 1.0, 1.08883];
    xyz double precision[] := '{0,0,0}';
    weight double precision[] := ARRAY[0.299, 0.587, 0.114];
    luma double precision := 0;
    v double precision;
BEGIN
    FOR i IN 1..3 LOOP  -- Lab to XYZ (D65)
        xyz[i] := white[i] * CASE WHEN t[i] > 6 / 29.0 THEN t[i] ^ 3 ELSE 3 * (6 / 29.0) ^ 2 * (t[i] - 4 / 29.0) END;
    END LOOP;
    FOR i IN 1..3 LOOP  -- XYZ to linear sRGB, clipped, gamma-encoded, weighted into luma
        v := CASE i WHEN 1 THEN 3.240454836 * xyz[1] - 1.5371388501 * xyz[2] - 0.4985315469 * xyz[3]
                    WHEN 2 THEN -0.9692663899 * xyz[1] + 1.8760109288 * xyz[2] + 0.0415560823 * xyz[3]
                    ELSE 0.0556434196 * xyz[1] - 0.2040258543 * xyz[2] + 1.0572251625 * xyz[3] END;
        v := greatest(0, least(1, v));
        luma := luma + weight[i] * CASE WHEN v <= 0.0031308 THEN 12.92 * v ELSE 1.055 * v ^ (1 / 2.4) - 0.055 END;
    END LOOP;
    v := CASE WHEN luma <= 0.04045 THEN luma / 12.92 ELSE ((luma + 0.055) / 1.055) ^ 2.4 END;
    RETURN CASE WHEN v > 216 / 24389.0 THEN 116 * cbrt(v) - 16 ELSE 24389 / 27.0 * v END;
END
$$;
COMMENT ON FUNCTION dbdedup.grey_lightness(double precision, double precision, double precision) IS
    'The CIE L* of the grey that a colour of Lab (light, a, b) becomes in a greyscale conversion (Rec. 601 luma of its '
    'sRGB values): dbdedup.verify.grey_lightness.';

-- Comparing two signatures is done in two steps, so that a pair costs one pass over two zipped
-- arrays: each image's signature is first normalised (dbdedup.signature_layout, once per image
-- and orientation), then two layouts are compared (dbdedup.signature_compare). The orientation
-- sends each cell where it goes (the inverse orientation's cell map) instead of fetching cells by
-- subscript, which costs more.
CREATE OR REPLACE FUNCTION dbdedup.signature_layout(signature real[], orientation text DEFAULT NULL) RETURNS double precision[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        WITH s AS (SELECT v.light_spread_floor AS floor, v.min_chroma FROM dbdedup.verify_settings() v),
        cell AS MATERIALIZED (  -- the oriented signature: each cell sent where the orientation puts it
            SELECT CASE WHEN orientation IS NULL OR orientation = 'identity' THEN c.i::integer
                        ELSE p.base + 1 + dbdedup.grid_cell(dbdedup.inverse_transform(orientation), p.n,
                                                            ((c.i - 1 - p.base) / p.n)::integer,
                                                            ((c.i - 1 - p.base) % p.n)::integer) END AS k,
                   c.x::double precision AS x
            FROM unnest(signature) WITH ORDINALITY AS c(x, i)
            CROSS JOIN LATERAL (SELECT CASE WHEN c.i <= 256 THEN 0 WHEN c.i <= 320 THEN 256 ELSE 320 END AS base,
                                       CASE WHEN c.i <= 256 THEN 16 ELSE 8 END AS n) p
            WHERE cardinality(signature) = 384
        ),
        fine AS (SELECT avg(x) AS m, greatest(stddev_pop(x), s.floor) AS spread FROM cell, s WHERE k <= 256 GROUP BY s.floor),
        coarse AS (SELECT ((k - 1) / 32) * 8 + ((k - 1) % 16) / 2 AS c, avg(x) AS x FROM cell WHERE k <= 256 GROUP BY 1),
        coarse_spread AS (SELECT avg(x) AS m, greatest(stddev_pop(x), s.floor) AS spread FROM coarse, s GROUP BY s.floor),
        strength AS (SELECT sqrt(sum(x * x) / 64) AS rms FROM cell WHERE k > 256),
        -- the lightness of each 8x8 cell after a greyscale conversion (a greyscale image's own)
        grey AS (SELECT c.c, CASE WHEN h.rms >= s.min_chroma THEN dbdedup.grey_lightness(c.x, a.x, b.x) ELSE c.x END AS g
                 FROM coarse c JOIN cell a ON a.k = 257 + c.c JOIN cell b ON b.k = 321 + c.c CROSS JOIN strength h CROSS JOIN s)
        SELECT (SELECT array_agg((c.x - f.m) / f.spread ORDER BY c.k) FROM cell c, fine f WHERE c.k <= 256)
               || (SELECT array_agg((c.x - t.m) / t.spread ORDER BY c.c) FROM coarse c, coarse_spread t)
               || (SELECT array_agg(CASE WHEN h.rms > 0 THEN c.x / h.rms ELSE 0 END ORDER BY c.k) FROM cell c, strength h
                   WHERE c.k > 256)
               || ARRAY[(SELECT t.spread FROM coarse_spread t), (SELECT h.rms FROM strength h)]
               || (SELECT array_agg(g.g ORDER BY g.c) FROM grey g)
        WHERE signature IS NOT NULL AND cardinality(signature) = 384
          -- an unknown orientation is an error (signature_cells raises it), not a silent NULL
          AND (orientation IS NULL OR dbdedup.grid_cell(orientation, 1, 0, 0) IS NOT NULL
               OR dbdedup.signature_cells(orientation) IS NULL)
    $$;
COMMENT ON FUNCTION dbdedup.signature_layout(real[], text) IS
    'A colour signature (images.colour_signature) made ready for comparison, turned by an orientation (identity for '
    'NULL): 514 values, the 16x16 lightness cells normalised to zero mean and unit spread, the 8x8 lightness layout '
    '(means of 2x2 blocks) normalised the same way, the a and b cells scaled to unit RMS chroma, then the 8x8 layout''s '
    'spread and the RMS chroma, then the 8x8 cells'' lightness after a greyscale conversion (dbdedup.grey_lightness; a '
    'greyscale image''s own). NULL for a NULL signature or one not of 384 values.';

CREATE OR REPLACE FUNCTION dbdedup.signature_compare(x double precision[], y double precision[],
        OUT light double precision, OUT chroma double precision, OUT gain double precision, OUT detail double precision,
        OUT grey_light double precision, OUT gain_limit double precision)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        -- each part zipped on its own (no FILTER over one long pass), the detail by a top-N sort
        SELECT (SELECT sqrt(avg((u.p - u.q) ^ 2)) FROM unnest(x[257:320], y[257:320]) AS u(p, q)),
               CASE WHEN least(x[450], y[450]) >= s.min_chroma
                    THEN (SELECT sqrt(sum((u.p - u.q) ^ 2) / 64) FROM unnest(x[321:448], y[321:448]) AS u(p, q)) END,
               greatest(x[449], y[449]) / least(x[449], y[449]),
               (SELECT e.d FROM (SELECT abs(u.p - u.q) AS d FROM unnest(x[1:256], y[1:256]) AS u(p, q)) e
                ORDER BY e.d DESC OFFSET s.detail_rank - 1 LIMIT 1),
               CASE WHEN least(x[450], y[450]) < s.grey_chroma AND greatest(x[450], y[450]) >= s.min_chroma
                    THEN (SELECT avg(abs(u.p - u.q)) FROM unnest(x[451:514], y[451:514]) AS u(p, q)) END,
               CASE WHEN least(x[450], y[450]) >= s.grey_chroma THEN s.max_gain_colour
                    WHEN greatest(x[450], y[450]) >= s.min_chroma THEN s.max_gain
                    ELSE s.max_gain_grey END
        FROM dbdedup.verify_settings() s
        WHERE cardinality(x) = 514 AND cardinality(y) = 514
    $$;
COMMENT ON FUNCTION dbdedup.signature_compare(double precision[], double precision[]) IS
    'dbdedup.signature_distance of two layouts made by dbdedup.signature_layout: light, chroma, gain, detail, grey_light, '
    'gain_limit.';

CREATE OR REPLACE FUNCTION dbdedup.signature_distance(a real[], b real[], orientation text DEFAULT NULL,
        OUT light double precision, OUT chroma double precision, OUT gain double precision, OUT detail double precision,
        OUT grey_light double precision, OUT gain_limit double precision)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT * FROM dbdedup.signature_compare(dbdedup.signature_layout(a, orientation), dbdedup.signature_layout(b))
    $$;
COMMENT ON FUNCTION dbdedup.signature_distance(real[], real[], text) IS
    'How far two colour signatures (images.colour_signature) are, the first turned by an orientation (identity for NULL): '
    'light (RMS difference of the 8x8 lightness layouts, each normalised to zero mean and unit spread; 0 same, about 1 '
    'unrelated), chroma (RMS difference of the chroma layouts scaled to unit strength; NULL when either image is '
    'greyscale), gain (ratio of the lightness spreads, >= 1), detail (the 6th largest difference of the normalised 16x16 '
    'lightness cells), grey_light (a greyscale picture, RMS chroma under grey_chroma, against a colour one: the mean '
    'difference, in L* units, between the greyscale one''s 8x8 lightness and the colour one''s after a greyscale '
    'conversion; NULL otherwise), gain_limit (the largest gain an edit explains for this kind of pair: max_gain for a '
    'greyscale picture against a colour one, max_gain_grey for other pairs with a greyscale picture, else '
    'max_gain_colour). The numbers of '
    'dbdedup.verify.compare_signatures. NULL when either signature is NULL.';

CREATE OR REPLACE FUNCTION dbdedup.verify_pairs(hash_kind text DEFAULT NULL)
    RETURNS TABLE (pairs bigint, verified bigint, rejected bigint, pending bigint, seconds double precision)
    LANGUAGE plpgsql
    SET work_mem = '256MB'
    AS $$
DECLARE
    started timestamptz := clock_timestamp();
    s record;
    n_pairs bigint;
    n_verified bigint;
    n_rejected bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7220008);
    SELECT * INTO s FROM dbdedup.verify_settings();
    -- the pairs without a verdict and their images, read once (on Citus: pairs are spread by
    -- image_a, so the images of both sides are gathered here rather than joined shard by shard)
    CREATE TEMP TABLE vp_pair ON COMMIT DROP AS
    SELECT p.hash_kind, p.image_a, p.image_b, p.distance, p.is_exact, p.transform, p.transform_distance, p.similarity
    FROM dbdedup.pairs p
    WHERE p.verified IS NULL AND (verify_pairs.hash_kind IS NULL OR p.hash_kind = verify_pairs.hash_kind);
    CREATE TEMP TABLE vp_image ON COMMIT DROP AS
    SELECT i.id, i.sha256, i.quality, i.colour_signature, i.signature_error
    FROM dbdedup.images i
    WHERE i.id IN (SELECT v.image_a FROM pg_temp.vp_pair v UNION SELECT v.image_b FROM pg_temp.vp_pair v);
    CREATE INDEX ON vp_image (id);
    ANALYZE vp_image;

    -- the route of each pair (as bench/accuracy/verify_study.py routes them): exact copies;
    -- images with no hash signal of their own or no signature; aligned pairs (a close pHash, or
    -- an orientation variant closer than it), judged by their signatures in the orientation that
    -- aligns them; the rest waits for the geometric check, except weak embedding neighbours
    CREATE TEMP TABLE vp_route ON COMMIT DROP AS
    SELECT p.hash_kind, p.image_a, p.image_b,
           least(p.distance, coalesce(p.transform_distance, 64)) AS closest,
           CASE WHEN p.is_exact OR a.sha256 = b.sha256 THEN 'exact'
                WHEN least(a.quality, b.quality) < s.min_quality THEN 'low_quality'
                WHEN a.signature_error IS NOT NULL OR b.signature_error IS NOT NULL THEN 'no_signature'
                WHEN a.quality IS NULL OR b.quality IS NULL OR a.colour_signature IS NULL OR b.colour_signature IS NULL
                    THEN 'pending'
                -- keypoint pairs (dbdedup.match_keypoints) are decided by the geometric check only
                WHEN p.transform = 'keypoints' THEN 'pending'
                -- found through a border-trimmed variant: verified when the whole pictures already agree in
                -- the variant's orientation (an upscaled copy's soft border trims differently), else pending
                -- (never rejected by the whole signatures, even at a close pHash: a frame is not one framing)
                WHEN p.transform LIKE 'trim%' THEN 'trimmed'
                WHEN p.transform IN ('flip_h', 'flip_v', 'rotate_90', 'rotate_180', 'rotate_270', 'transpose', 'transverse')
                     AND p.transform_distance <= s.aligned_variant AND p.transform_distance < p.distance THEN 'aligned'
                WHEN p.distance <= s.aligned_distance THEN 'aligned'
                WHEN p.similarity IS NOT NULL AND p.similarity < s.geometry_min_similarity THEN 'weak_embedding'
                ELSE 'pending' END AS route,
           CASE WHEN p.transform IN ('flip_h', 'flip_v', 'rotate_90', 'rotate_180', 'rotate_270', 'transpose', 'transverse')
                     AND p.transform_distance <= s.aligned_variant AND p.transform_distance < p.distance
                THEN p.transform
                WHEN p.transform LIKE 'trim+%' THEN substr(p.transform, 6)
                ELSE 'identity' END AS orientation
    FROM vp_pair p
    JOIN vp_image a ON a.id = p.image_a
    JOIN vp_image b ON b.id = p.image_b;

    CREATE TEMP TABLE vp_verdict ON COMMIT DROP AS
    SELECT r.hash_kind, r.image_a, r.image_b,
           CASE r.route WHEN 'exact' THEN true ELSE false END AS verified,
           CASE r.route WHEN 'exact' THEN 1 ELSE 0 END::real AS score,
           r.route AS reason
    FROM vp_route r
    WHERE r.route IN ('exact', 'low_quality', 'no_signature', 'weak_embedding');
    -- each image's signature made ready for comparison once, in each orientation its pairs need
    CREATE TEMP TABLE vp_layout ON COMMIT DROP AS
    SELECT l.id, l.orientation, dbdedup.signature_layout(i.colour_signature, nullif(l.orientation, 'identity')) AS layout
    FROM (SELECT r.image_a AS id, r.orientation FROM vp_route r WHERE r.route IN ('aligned', 'trimmed')
          UNION SELECT r.image_b, 'identity' FROM vp_route r WHERE r.route IN ('aligned', 'trimmed')) l
    JOIN vp_image i ON i.id = l.id;
    CREATE INDEX ON vp_layout (id, orientation);
    ANALYZE vp_layout;
    -- aligned pairs: verified when every signature measure is within its limit; otherwise
    -- rejected when settled (one framing, or colours far apart), left pending when geometry could
    -- still find them the same picture. Trimmed-variant pairs: verified the same way, else pending.
    INSERT INTO vp_verdict (hash_kind, image_a, image_b, verified, score, reason)
    SELECT m.hash_kind, m.image_a, m.image_b, m.ok, greatest(0, 1 - m.worst)::real,
           CASE WHEN m.ok THEN 'signature'
                WHEN coalesce(m.chroma > s.max_chroma, false) OR coalesce(m.grey_light > s.max_grey_light, false)
                     OR m.gain > m.gain_limit THEN 'colour'
                WHEN m.light > s.max_light THEN 'layout'
                ELSE 'detail' END
    FROM (SELECT r.hash_kind, r.image_a, r.image_b, r.route, r.closest, d.light, d.chroma, d.gain, d.detail, d.grey_light, d.gain_limit,
                 greatest(d.light, coalesce(d.chroma, 0)) AS worst,
                 d.light <= s.max_light AND coalesce(d.chroma <= s.max_chroma, true)
                 AND d.gain <= d.gain_limit
                 AND d.detail <= CASE WHEN r.closest <= s.near_distance THEN s.max_detail ELSE s.max_detail_far END
                 AND coalesce(d.grey_light <= s.max_grey_light, true) AS ok
          FROM vp_route r
          JOIN vp_layout a ON a.id = r.image_a AND a.orientation = r.orientation
          JOIN vp_layout b ON b.id = r.image_b AND b.orientation = 'identity'
          CROSS JOIN LATERAL dbdedup.signature_compare(a.layout, b.layout) d
          WHERE r.route IN ('aligned', 'trimmed')) m
    WHERE m.ok OR (m.route = 'aligned' AND (m.closest < s.same_framing OR NOT (m.worst > s.settled AND m.worst <= s.hopeless)));

    UPDATE dbdedup.pairs p
    SET verified = v.verified, verify_score = v.score, verify_reason = v.reason
    FROM vp_verdict v
    WHERE p.hash_kind = v.hash_kind AND p.image_a = v.image_a AND p.image_b = v.image_b AND p.verified IS NULL;

    SELECT count(*) INTO n_pairs FROM vp_pair;
    SELECT count(*) FILTER (WHERE v.verified), count(*) FILTER (WHERE NOT v.verified) INTO n_verified, n_rejected FROM vp_verdict v;
    DROP TABLE vp_pair, vp_image, vp_route, vp_layout, vp_verdict;
    RETURN QUERY SELECT n_pairs, n_verified, n_rejected, n_pairs - n_verified - n_rejected,
                        extract(epoch FROM clock_timestamp() - started)::double precision;
END
$$;
COMMENT ON FUNCTION dbdedup.verify_pairs(text) IS
    'Give a verdict (pairs.verified, verify_score, verify_reason) to every pair of a hash kind (all kinds for NULL) that has '
    'none, from the stored signals: exact copies (same SHA-256) are verified (exact); an image below the quality minimum '
    'rejects the pair (low_quality), an image whose signature could not be computed too (no_signature); aligned pairs '
    '(pHash within aligned_distance, or an orientation variant within aligned_variant and closer) are verified by their '
    'colour signatures in that orientation (signature) or rejected (colour, layout, detail) when settled: one framing '
    '(distance below same_framing) or colours beyond the geometric range (settled to hopeless); embedding-only pairs below '
    'geometry_min_similarity are rejected (weak_embedding); pairs found through a trimmed variant are verified when the '
    'whole signatures agree in the variant''s orientation. Everything else stays pending (verified NULL) for the geometric '
    'check (other trimmed-variant pairs, embedding neighbours, aligned pairs the signatures could not settle, images with no '
    'signature yet). Thresholds: dbdedup.verify_settings(). Returns the pairs looked at and how many were verified, '
    'rejected and left pending.';
