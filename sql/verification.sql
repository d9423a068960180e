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
-- worker processes (dbdedup.verify_workers). The pairs verified here by their signatures are then
-- compared by their stored 32x32 thumbnails (dbdedup.structure_check, in Python: pairs.structure);
-- those apart in a region go back to pending, and are routed to the geometric check from then on.
-- Clusters link verified pairs only.
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
        OUT near_distance integer, OUT max_detail_far double precision, OUT hopeless_gain double precision,
        OUT hopeless_grey_light double precision, OUT max_chroma_same_hue double precision,
        OUT same_hue_light double precision, OUT max_hue_shift double precision, OUT max_hue_spread double precision,
        OUT converted_grey_light double precision, OUT max_gain_converted double precision,
        OUT min_structure double precision, OUT min_structure_realigned double precision,
        OUT min_signature_structure double precision, OUT min_signature_fine_structure double precision,
        OUT min_oriented_region double precision, OUT detail_gate double precision)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT 10 AS min_quality,           -- below it an image has no hash signal of its own
               0.30 AS max_light,           -- lightness-layout distance of an aligned pair
               0.30 AS max_chroma,          -- chroma-layout distance of an aligned pair, both in colour
               1.3 AS max_gain,             -- lightness spread ratio of a greyscale image and a colour one
               1.6 AS max_gain_colour,      -- the same when neither is greyscale (brightness -30% is about 1.4), and their chroma ratio
               0.8 AS max_detail,           -- 16x16 detail of an aligned pair
               12 AS aligned_distance,      -- a pHash pair this close has one framing: the signature judges it
               8 AS aligned_variant,        -- the same for an orientation variant (closer than the plain pHash)
               6 AS same_framing,           -- below this an aligned pair apart in colour is settled
               0.30 AS settled,             -- an aligned pair whose worse distance is within this needs no geometry
               0.60 AS hopeless,            -- an aligned pair apart in colour whose worse distance passes this is rejected outright
               0.70 AS geometry_min_similarity,  -- an embedding-only pair below this is not worth a geometric check
               6.0 AS min_chroma,           -- RMS chroma (Lab units) under which an image counts as greyscale
               2.0 AS light_spread_floor,   -- Lab L units: a flatter lightness layout is not stretched further
               6 AS detail_rank,            -- the detail measure is this largest cell difference
               2.0 AS max_grey_light,       -- Lab L units: a greyscale image against the greyscale conversion of a colour one
               2.0 AS grey_chroma,          -- RMS chroma under which an image is a greyscale picture (a conversion's is about 0)
               1.5 AS max_gain_grey,        -- the spread ratio of other pairs with a greyscale image
               2 AS near_distance,          -- an aligned pair this close may differ in detail up to max_detail
               0.65 AS max_detail_far,      -- the 16x16 detail of an aligned pair farther apart, also after the geometric check
               1.7 AS hopeless_gain,        -- an aligned pair apart in colour by a larger spread or chroma ratio: no crop or turn explains it
               10.0 AS hopeless_grey_light, -- the same for a greyscale picture this far (L* units) from a colour one's greyscale conversion
               0.45 AS max_chroma_same_hue, -- chroma-layout distance of an aligned pair whose hues agree cell by cell
               0.15 AS same_hue_light,      -- ... when its lightness layouts are this close
               12.0 AS max_hue_shift,       -- degrees: the chroma-weighted mean hue turn between two pictures' cells
               20.0 AS max_hue_spread,      -- degrees: the chroma-weighted RMS of each cell's hue turn about that mean
               1.0 AS converted_grey_light, -- L* units: a greyscale picture this close to a colour one's conversion is that conversion
               1.45 AS max_gain_converted,  -- ... and may be this far from it in lightness spread (max_gain otherwise)
               0.40 AS min_structure,       -- local structure agreement (dbdedup.verify.structure_agreement) of the aligned overlap below which the geometric check does not verify a pair
               0.70 AS min_structure_realigned,  -- ... of the aligned overlap of a pair whose structure check failed: the alignment must explain it
               0.70 AS min_signature_structure,  -- the structure check of a signature-verified pair (32x32): below it, the geometric check decides
               0.30 AS min_signature_fine_structure,  -- ... the same at 64x64 (10th percentile), where both images have that thumbnail
               0.82 AS min_oriented_region,  -- ... of a pair compared under a flip or a turn: its least alike region at 64x64 (dbdedup.verify.region_agreements)
               7.0 AS detail_gate  -- ... of a pair compared unturned: above it its 64x64 luma thumbnails stray from one tone edit (dbdedup.verify.detail_gaps_many)
    $$;
COMMENT ON FUNCTION dbdedup.verify_settings() IS
    'The thresholds of verification (one row): quality minimum, signature limits (light, chroma, gain, detail), the '
    'routing of pairs (aligned_distance, aligned_variant, same_framing, settled, hopeless, hopeless_gain, hopeless_grey_light, geometry_min_similarity), '
    'max_chroma_same_hue, same_hue_light, max_hue_shift and max_hue_spread (an aligned pair whose chroma layouts differ in strength but not '
    'in hue: dbdedup.hue_agreement), converted_grey_light and max_gain_converted (a greyscale picture that is a colour one''s '
    'conversion: the spread ratio L* and luma give such a pair), min_signature_structure and min_signature_fine_structure (the '
    'structure check of signature-verified pairs, dbdedup.structure_check, at 32x32 and 64x64), min_oriented_region (the same '
    'check''s least alike region of a pair compared under a flip or a turn), detail_gate (the same check''s detail gap of a '
    'pair compared unturned, pairs.detail_gap), min_structure (the geometric '
    'check''s aligned overlap) and min_structure_realigned (the same for a pair the structure check failed), '
    'max_grey_light, grey_chroma and max_gain_grey (a greyscale image against a colour one, and other pairs with a '
    'greyscale image), near_distance and max_detail_far (the detail limit of aligned pairs farther apart than '
    'near_distance, also of the overlap when the geometric check aligns such a pair again) and the constants of the signature measure. dbdedup.verify (Python) reads the same values from this definition.';

-- One threshold of verify_settings() by name, for expressions: called with a constant name it is computed once when
-- the query is planned (an IMMUTABLE function of constants returning a scalar), where a field of
-- (dbdedup.verify_settings()).name would be computed again for each row (PostgreSQL does not fold a call that
-- returns a record). A name verify_settings() does not have raises an error.
CREATE OR REPLACE FUNCTION dbdedup.verify_setting(name text) RETURNS double precision
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $$
DECLARE
    value double precision;
BEGIN
    EXECUTE format('SELECT s.%I FROM dbdedup.verify_settings() s', name) INTO STRICT value;
    RETURN value;
END
$$;
COMMENT ON FUNCTION dbdedup.verify_setting(text) IS
    'The value of one column of dbdedup.verify_settings(), by name (an error for a name it does not have); called with '
    'a constant name, a constant of the query''s plan.';

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

-- The same for a layout (dbdedup.signature_layout): its 16x16 part, 8x8 parts (lightness layout,
-- a, b, greyscale lightness) and two numbers. Turning a layout costs less than making it again
-- from the turned signature and gives the same values up to float rounding (each is computed
-- from the same cells, summed in another order).
CREATE OR REPLACE FUNCTION dbdedup.layout_cells(orientation text) RETURNS integer[]
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $$
BEGIN
    RETURN (
        SELECT c.cells[1:320]
               || (SELECT array_agg(k + 64 ORDER BY n) FROM unnest(c.cells[257:384]) WITH ORDINALITY AS u(k, n))
               || ARRAY[449, 450]
               || (SELECT array_agg(k + 194 ORDER BY n) FROM unnest(c.cells[257:320]) WITH ORDINALITY AS u(k, n))
        FROM (SELECT dbdedup.signature_cells(orientation) AS cells OFFSET 0) c);  -- OFFSET 0: once, not once per reference
END
    $$;
COMMENT ON FUNCTION dbdedup.layout_cells(text) IS
    'The cell permutation of a layout (dbdedup.signature_layout, 514 values) under an orientation (identity for NULL): '
    'cell k of the turned layout is cell cells[k] of the original, as dbdedup.signature_cells for a signature. An unknown '
    'name is an error.';

-- A greyscale copy keeps the luma of each pixel (Rec. 601, as Pillow's convert("L"), libjpeg and
-- most editors compute it), not its Lab lightness: a saturated red turns into a darker grey than
-- its L* says. To compare a greyscale image with a colour one, each colour cell is turned into the
-- lightness its greyscale conversion would have. All the cells of a layout are converted in one
-- query; each step's values are computed once (OFFSET 0 keeps the planner from pasting a step's
-- expression into the next one, where a value used twice would be computed twice).
CREATE OR REPLACE FUNCTION dbdedup.grey_lightness(light double precision[], a double precision[], b double precision[])
    RETURNS double precision[]
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $$
BEGIN
    RETURN (
        SELECT array_agg(CASE WHEN g.v > 216 / 24389.0 THEN 116 * cbrt(g.v) - 16 ELSE 24389 / 27.0 * g.v END ORDER BY g.k)
        FROM (SELECT y.k, CASE WHEN y.luma <= 0.04045 THEN y.luma / 12.92 ELSE ((y.luma + 0.055) / 1.055) ^ 2.4 END AS v
              FROM (-- linear sRGB, clipped, gamma-encoded, weighted into luma
                    SELECT c.k, 0.299 * CASE WHEN c.r <= 0.0031308 THEN 12.92 * c.r ELSE 1.055 * c.r ^ (1 / 2.4) - 0.055 END
                                + 0.587 * CASE WHEN c.g <= 0.0031308 THEN 12.92 * c.g ELSE 1.055 * c.g ^ (1 / 2.4) - 0.055 END
                                + 0.114 * CASE WHEN c.b <= 0.0031308 THEN 12.92 * c.b ELSE 1.055 * c.b ^ (1 / 2.4) - 0.055 END AS luma
                    FROM (SELECT x.k, greatest(0, least(1, 3.240454836 * x.x - 1.5371388501 * x.y - 0.4985315469 * x.z)) AS r,
                                 greatest(0, least(1, -0.9692663899 * x.x + 1.8760109288 * x.y + 0.0415560823 * x.z)) AS g,
                                 greatest(0, least(1, 0.0556434196 * x.x - 0.2040258543 * x.y + 1.0572251625 * x.z)) AS b
                          FROM (-- Lab to XYZ (D65)
                                SELECT t.k,
                                       0.95047 * CASE WHEN t.x > 6 / 29.0 THEN t.x ^ 3 ELSE 3 * (6 / 29.0) ^ 2 * (t.x - 4 / 29.0) END AS x,
                                       1.0 * CASE WHEN t.y > 6 / 29.0 THEN t.y ^ 3 ELSE 3 * (6 / 29.0) ^ 2 * (t.y - 4 / 29.0) END AS y,
                                       1.08883 * CASE WHEN t.z > 6 / 29.0 THEN t.z ^ 3 ELSE 3 * (6 / 29.0) ^ 2 * (t.z - 4 / 29.0) END AS z
                                FROM (SELECT u.k, (u.l + 16) / 116 + u.a / 500 AS x, (u.l + 16) / 116 AS y,
                                             (u.l + 16) / 116 - u.b / 200 AS z
                                      FROM unnest(light, a, b) WITH ORDINALITY AS u(l, a, b, k)) t
                                OFFSET 0) x
                          OFFSET 0) c
                    OFFSET 0) y
              OFFSET 0) g);
END
    $$;
COMMENT ON FUNCTION dbdedup.grey_lightness(double precision[], double precision[], double precision[]) IS
    'The CIE L* of the grey that each colour of Lab (light[k], a[k], b[k]) becomes in a greyscale conversion (Rec. 601 luma '
    'of its sRGB values): dbdedup.verify.grey_lightness. Arrays of one length; NULL for empty ones.';

CREATE OR REPLACE FUNCTION dbdedup.grey_lightness(light double precision, a double precision, b double precision)
    RETURNS double precision
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT (dbdedup.grey_lightness(ARRAY[light], ARRAY[a], ARRAY[b]))[1] $$;
COMMENT ON FUNCTION dbdedup.grey_lightness(double precision, double precision, double precision) IS
    'The CIE L* of the grey that a colour of Lab (light, a, b) becomes in a greyscale conversion (Rec. 601 luma of its '
    'sRGB values): dbdedup.verify.grey_lightness. One cell of dbdedup.grey_lightness(double precision[], ...).';

-- Comparing two signatures is done in two steps, so that a pair costs a few passes over zipped
-- arrays: each image's signature is first normalised (dbdedup.signature_layout, once per image
-- and orientation), then two layouts are compared (dbdedup.signature_compare). Both are set
-- operations on arrays (unnest, aggregates): per cell, SQL's executor costs less than a plpgsql
-- loop. signature_layout, grey_lightness and layout_cells are plpgsql functions that return one
-- query: plpgsql keeps the query's plan from call to call, where a SQL function called from
-- another one is planned again at every call before PostgreSQL 18. A layout is 514 float8 (4 kB):
-- a table that holds layouts must keep them uncompressed and in line (STORAGE PLAIN), or every
-- subscript of one fetches and decompresses it again.
CREATE OR REPLACE FUNCTION dbdedup.signature_layout(signature real[], orientation text DEFAULT NULL) RETURNS double precision[]
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $$
BEGIN
    RETURN (
        -- the layout of the signature as it is, turned (OFFSET 0: made once, not once per cell); each
        -- orientation's permutation is a constant of the plan (an immutable function of a literal is
        -- evaluated when the query is planned, and plpgsql keeps the plan)
        SELECT CASE WHEN orientation IS NULL OR orientation = 'identity' THEN l.layout
                    ELSE (SELECT array_agg(l.layout[c.k] ORDER BY c.n)
                          FROM unnest(CASE orientation
                                          WHEN 'flip_h' THEN dbdedup.layout_cells('flip_h')
                                          WHEN 'flip_v' THEN dbdedup.layout_cells('flip_v')
                                          WHEN 'rotate_90' THEN dbdedup.layout_cells('rotate_90')
                                          WHEN 'rotate_180' THEN dbdedup.layout_cells('rotate_180')
                                          WHEN 'rotate_270' THEN dbdedup.layout_cells('rotate_270')
                                          WHEN 'transpose' THEN dbdedup.layout_cells('transpose')
                                          WHEN 'transverse' THEN dbdedup.layout_cells('transverse')
                                          ELSE dbdedup.layout_cells(orientation) END) WITH ORDINALITY AS c(k, n)) END
        FROM (
        SELECT fine.cells || coarse.cells || chroma.cells || ARRAY[coarse.spread, chroma.rms]
               || CASE WHEN chroma.rms >= v.min_chroma
                       -- the lightness of each 8x8 cell after a greyscale conversion (a greyscale image's own)
                       THEN dbdedup.grey_lightness(block.cells, o.s[257:320], o.s[321:384])
                       ELSE block.cells END AS layout
        FROM (SELECT signature::double precision[] AS s WHERE cardinality(signature) = 384 OFFSET 0) o
        CROSS JOIN dbdedup.verify_settings() v
        -- the 16x16 lightness cells normalised to zero mean and unit spread
        CROSS JOIN LATERAL (SELECT array_agg((c.x - t.m) / t.spread ORDER BY c.k) AS cells
                            FROM (SELECT avg(x) AS m, greatest(stddev_pop(x), v.light_spread_floor) AS spread
                                  FROM unnest(o.s[1:256]) AS x) t,
                                 unnest(o.s[1:256]) WITH ORDINALITY AS c(x, k)) fine
        -- the 8x8 lightness layout: the means of 2x2 blocks (block b's first cell is a)
        CROSS JOIN LATERAL (SELECT array_agg((o.s[a] + o.s[a + 1] + o.s[a + 16] + o.s[a + 17]) / 4 ORDER BY b) AS cells
                            FROM generate_series(0, 63) AS b, LATERAL (SELECT (b / 8) * 32 + (b % 8) * 2 + 1 AS a) f) block
        CROSS JOIN LATERAL (SELECT array_agg((c.x - t.m) / t.spread ORDER BY c.k) AS cells, min(t.spread) AS spread
                            FROM (SELECT avg(x) AS m, greatest(stddev_pop(x), v.light_spread_floor) AS spread
                                  FROM unnest(block.cells) AS x) t,
                                 unnest(block.cells) WITH ORDINALITY AS c(x, k)) coarse
        -- the a and b cells scaled to unit RMS chroma
        CROSS JOIN LATERAL (SELECT array_agg(CASE WHEN t.rms > 0 THEN c.x / t.rms ELSE 0 END ORDER BY c.k) AS cells,
                                   min(t.rms) AS rms
                            FROM (SELECT sqrt(sum(x * x) / 64) AS rms FROM unnest(o.s[257:384]) AS x) t,
                                 unnest(o.s[257:384]) WITH ORDINALITY AS c(x, k)) chroma
        OFFSET 0) l);
END
    $$;
COMMENT ON FUNCTION dbdedup.signature_layout(real[], text) IS
    'A colour signature (images.colour_signature) made ready for comparison, turned by an orientation (identity for '
    'NULL): 514 values, the 16x16 lightness cells normalised to zero mean and unit spread, the 8x8 lightness layout '
    '(means of 2x2 blocks) normalised the same way, the a and b cells scaled to unit RMS chroma, then the 8x8 layout''s '
    'spread and the RMS chroma, then the 8x8 cells'' lightness after a greyscale conversion (dbdedup.grey_lightness; a '
    'greyscale image''s own). Turned by dbdedup.layout_cells. NULL for a NULL signature or one not of 384 values; an '
    'unknown orientation is an error.';

-- Heavy JPEG (chroma quantised in 8x8 blocks, subsampled) and contrast edits move a picture's
-- chroma layout as far as another palette does (0.30-0.55 against 0.30 allowed), but turn no
-- cell's hue: another palette turns every hue by about the same angle (a close hue: carmine
-- against deep orange) or by different angles in different places (another suit, another flag).
-- Measured on the accuracy set's aligned pairs rejected for their chroma layout alone at lightness
-- layouts within 0.15: mean turn <= 12 and spread <= 20 degrees kept 264 true pairs and 2 look-alikes.
CREATE OR REPLACE FUNCTION dbdedup.hue_agreement(x double precision[], y double precision[])
    RETURNS TABLE (shift double precision, spread double precision)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE ROWS 1
    AS $$
        SELECT abs(degrees(t.turn)),
               degrees(sqrt(sum(c.w * power(atan2(sin(c.angle - t.turn), cos(c.angle - t.turn)), 2)) / nullif(sum(c.w), 0)))
        FROM (SELECT unnest(x[321:384]) AS a1, unnest(x[385:448]) AS b1, unnest(y[321:384]) AS a2, unnest(y[385:448]) AS b2) u
        CROSS JOIN LATERAL (SELECT atan2(u.a1 * u.b2 - u.b1 * u.a2, u.a1 * u.a2 + u.b1 * u.b2) AS angle,
                                   sqrt((u.a1 * u.a1 + u.b1 * u.b1) * (u.a2 * u.a2 + u.b2 * u.b2)) AS w) c
        CROSS JOIN (SELECT atan2(sum(v.a1 * v.b2 - v.b1 * v.a2), sum(v.a1 * v.a2 + v.b1 * v.b2)) AS turn
                    FROM (SELECT unnest(x[321:384]) AS a1, unnest(x[385:448]) AS b1,
                                 unnest(y[321:384]) AS a2, unnest(y[385:448]) AS b2) v) t
        WHERE cardinality(x) = 514 AND cardinality(y) = 514
        GROUP BY t.turn
    $$;
COMMENT ON FUNCTION dbdedup.hue_agreement(double precision[], double precision[]) IS
    'How two layouts made by dbdedup.signature_layout (both in colour) differ in hue, in degrees: shift, the chroma-weighted mean '
    'turn of hue from x''s 8x8 chroma cells to y''s (absolute), and spread, the chroma-weighted RMS of each cell''s turn about that mean. '
    'A re-encode or a contrast edit turns no hue (both small); another palette turns them all (shift) or some (spread). '
    'The numbers of dbdedup.verify.compare_signatures'' hue_shift and hue_spread.';

-- Each measure is its own subquery, and the function is inlined into the query that calls it
-- (LANGUAGE sql, RETURNS TABLE, not STRICT): a query that reads only some of the measures computes
-- only those (dbdedup.verify_pairs reads the detail only of pairs whose other measures pass).
-- Inlining puts each argument wherever the body uses it: pass columns, not expressions to compute.
-- Each zips its part of the two layouts with unnest in the select list (no tuplestore); squares
-- are products (^ calls pow()), means are sums over the known count (avg() also sums squares);
-- the detail keeps only the largest differences (a top-N heap, not a sort of all 256).
CREATE OR REPLACE FUNCTION dbdedup.signature_compare(x double precision[], y double precision[])
    RETURNS TABLE (light double precision, chroma double precision, gain double precision, detail double precision,
                   grey_light double precision, gain_limit double precision, hue_shift double precision,
                   hue_spread double precision)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE ROWS 1
    AS $$
        SELECT (SELECT sqrt(sum((u.p - u.q) * (u.p - u.q)) / 64)
                FROM (SELECT unnest(x[257:320]) AS p, unnest(y[257:320]) AS q) u),
               CASE WHEN least(x[450], y[450]) >= s.min_chroma
                    THEN (SELECT sqrt(sum((u.p - u.q) * (u.p - u.q)) / 64)
                          FROM (SELECT unnest(x[321:448]) AS p, unnest(y[321:448]) AS q) u) END,
               -- the spread ratio; of two colour pictures, the chroma ratio if larger (a close hue in
               -- another palette: an edit scales the chroma about as much as the spread)
               greatest(greatest(x[449], y[449]) / least(x[449], y[449]),
                        CASE WHEN least(x[450], y[450]) >= s.min_chroma
                             THEN greatest(x[450], y[450]) / least(x[450], y[450]) ELSE 1 END),
               (SELECT min(e.d)
                FROM (SELECT abs(u.p - u.q) AS d FROM (SELECT unnest(x[1:256]) AS p, unnest(y[1:256]) AS q) u
                      ORDER BY 1 DESC LIMIT s.detail_rank) e),
               CASE WHEN least(x[450], y[450]) < s.grey_chroma AND greatest(x[450], y[450]) >= s.min_chroma
                    THEN (SELECT sum(abs(u.p - u.q)) / 64 FROM (SELECT unnest(x[451:514]) AS p, unnest(y[451:514]) AS q) u) END,
               CASE WHEN least(x[450], y[450]) >= s.grey_chroma THEN s.max_gain_colour
                    WHEN greatest(x[450], y[450]) >= s.min_chroma
                    -- (the grey_light above: a greyscale picture that is the colour one's conversion
                    -- keeps its lightness cell by cell, though L* spreads its tones otherwise)
                    THEN CASE WHEN (SELECT sum(abs(u.p - u.q)) / 64 FROM (SELECT unnest(x[451:514]) AS p, unnest(y[451:514]) AS q) u)
                                   <= s.converted_grey_light
                              THEN s.max_gain_converted ELSE s.max_gain END
                    ELSE s.max_gain_grey END,
               CASE WHEN least(x[450], y[450]) >= s.min_chroma THEN (SELECT h.shift FROM dbdedup.hue_agreement(x, y) h) END,
               CASE WHEN least(x[450], y[450]) >= s.min_chroma THEN (SELECT h.spread FROM dbdedup.hue_agreement(x, y) h) END
        FROM dbdedup.verify_settings() s
        WHERE cardinality(x) = 514 AND cardinality(y) = 514
    $$;
COMMENT ON FUNCTION dbdedup.signature_compare(double precision[], double precision[]) IS
    'dbdedup.signature_distance of two layouts made by dbdedup.signature_layout: light, chroma, gain, detail, grey_light, '
    'gain_limit, hue_shift, hue_spread (one row; none when either layout is NULL or not of 514 values).';

CREATE OR REPLACE FUNCTION dbdedup.signature_distance(a real[], b real[], orientation text DEFAULT NULL,
        OUT light double precision, OUT chroma double precision, OUT gain double precision, OUT detail double precision,
        OUT grey_light double precision, OUT gain_limit double precision, OUT hue_shift double precision,
        OUT hue_spread double precision)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        -- the layouts made once (OFFSET 0): signature_compare is inlined, and an argument expression
        -- would be computed again wherever its body uses the argument
        SELECT d.*
        FROM (SELECT dbdedup.signature_layout(a, orientation) AS x, dbdedup.signature_layout(b) AS y OFFSET 0) l,
             dbdedup.signature_compare(l.x, l.y) d
    $$;
COMMENT ON FUNCTION dbdedup.signature_distance(real[], real[], text) IS
    'How far two colour signatures (images.colour_signature) are, the first turned by an orientation (identity for NULL): '
    'light (RMS difference of the 8x8 lightness layouts, each normalised to zero mean and unit spread; 0 same, about 1 '
    'unrelated), chroma (RMS difference of the chroma layouts scaled to unit strength; NULL when either image is '
    'greyscale), gain (ratio of the lightness spreads, >= 1; of two colour pictures the ratio of their RMS chromas if '
    'larger), detail (the 6th largest difference of the normalised 16x16 '
    'lightness cells), grey_light (a greyscale picture, RMS chroma under grey_chroma, against a colour one: the mean '
    'difference, in L* units, between the greyscale one''s 8x8 lightness and the colour one''s after a greyscale '
    'conversion; NULL otherwise), gain_limit (the largest gain an edit explains for this kind of pair: max_gain for a '
    'greyscale picture against a colour one, max_gain_converted when its grey_light is within converted_grey_light, '
    'max_gain_grey for other pairs with a greyscale picture, else max_gain_colour), hue_shift and hue_spread (both in colour: dbdedup.hue_agreement; NULL otherwise). The numbers of '
    'dbdedup.verify.compare_signatures. NULL when either signature is NULL.';

-- The orientation in which verify_pairs compares a pair's signatures (image_a turned, image_b as it
-- is), and the structure check (dbdedup.structure_check) its thumbnails.
-- (One expression, not STRICT: inlined into the queries that call it.)
CREATE OR REPLACE FUNCTION dbdedup.aligned_orientation(transform text, transform_distance integer, distance integer,
                                                       aligned_variant integer) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT CASE WHEN transform IN ('flip_h', 'flip_v', 'rotate_90', 'rotate_180', 'rotate_270', 'transpose', 'transverse')
                         AND transform_distance <= aligned_variant AND transform_distance < distance
                    THEN transform
                    WHEN transform LIKE 'trim+%' THEN substr(transform, 6)
                    ELSE 'identity' END
    $$;
COMMENT ON FUNCTION dbdedup.aligned_orientation(text, integer, integer, integer) IS
    'The orientation (dbdedup.transform_name) under which image_a of a pair is compared with image_b by its colour '
    'signature and structure thumbnail: the pair''s orientation variant when it is within aligned_variant and closer '
    'than the plain pHash, the orientation of a trimmed variant, else identity.';

-- Whether one picture of a pair may be the other in a frame, by what the loader recorded: it trimmed a
-- uniform border off exactly one of the two, or off both and one of them, so trimmed, has a pHash within
-- aligned_distance of the other whole (a drawing on a white margin in a black frame: the loader cuts the
-- frame and keeps the margin, which the other picture has too). A frame moves the whole colour signatures
-- apart however alike what it holds is; the check by pixels then aligns the inside with the other picture.
-- (One expression, not STRICT: inlined into the queries that call it.)
CREATE OR REPLACE FUNCTION dbdedup.one_in_frame(phash_a bigint, variants_a bigint[], phash_b bigint,
                                                variants_b bigint[], aligned_distance integer) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT CASE WHEN variants_a IS NULL OR variants_b IS NULL THEN false
                    WHEN (variants_a[8] IS NULL) <> (variants_b[8] IS NULL) THEN true
                    WHEN variants_a[8] IS NULL THEN false
                    ELSE least(bit_count((variants_a[8] # phash_b)::bit(64)), bit_count((variants_b[8] # phash_a)::bit(64)))
                         <= aligned_distance END
    $$;
COMMENT ON FUNCTION dbdedup.one_in_frame(bigint, bigint[], bigint, bigint[], integer) IS
    'Whether one of two pictures may be the other in a frame (from their pHashes and pHash variants, variants[8] '
    'being the pHash with a uniform border trimmed off): exactly one of the two was trimmed, or both were and one '
    'trimmed is within aligned_distance (verify_settings) of the other whole. False when either has no variants '
    'recorded. dbdedup.verify_pairs leaves such an aligned pair apart in colour to the check by pixels.';

-- Whether a pair verified by its colour signatures is left to the check by pixels by what the structure check
-- (dbdedup.structure_check) measured on the stored thumbnails: the one rule of dbdedup.verify_pairs (which routes
-- such a pair to pending), dbdedup.structure_check (which takes the verdict back) and the geometric check's workers
-- (dbdedup.verify_workers, in Python: PendingPair.structure_failed, region_failed and detail_failed). Apart in a
-- region though their signatures agree (pairs.structure): the geometric check aligns the two by their pixels and
-- measures the aligned overlap's structure (a copy cropped or turned a little at a close pHash passes there; another
-- glyph does not). Compared under a flip or a turn, a region where both are drawn but disagree (pairs.region): the
-- check by pixels measures that region again (a mirror drawn again is apart there; a flipped copy is not). Compared
-- unturned, luma thumbnails that stray from one tone edit (pairs.detail_gap): the check by pixels compares the two in
-- colour at their own scale, looking for a place where they differ in place (a card of another suit is apart there,
-- a brightened copy is not). NaN, a measure that could not be taken (no thumbnail; a region of an unturned pair, a
-- detail gap of a turned one), sends no pair: NaN is greater than any number in PostgreSQL, which keeps it off the
-- two minimums but not off the gate, so the detail gap's NaN is excluded by name. NULL (not measured; or left out
-- by the caller: dbdedup.verify_workers asks for the region and the detail gap alone) sends none either.
-- (One expression, not STRICT: inlined into the queries that call it, its thresholds constants of their plans:
-- dbdedup.verify_setting.)
CREATE OR REPLACE FUNCTION dbdedup.left_to_pixels(structure real, region real, detail_gap real) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT coalesce(structure < dbdedup.verify_setting('min_signature_structure')
                        OR region < dbdedup.verify_setting('min_oriented_region')
                        OR (detail_gap > dbdedup.verify_setting('detail_gate') AND detail_gap <> 'NaN'::real), false)
    $$;
COMMENT ON FUNCTION dbdedup.left_to_pixels(real, real, real) IS
    'Whether a pair verified by its colour signatures is left to the check by pixels by its structure check '
    '(dbdedup.structure_check): pairs.structure below verify_settings().min_signature_structure, or pairs.region below '
    'min_oriented_region (compared under a flip or a turn), or pairs.detail_gap above detail_gate (compared unturned). '
    'A NaN measure (not measurable) or a NULL one (not measured, or left out) sends no pair. The rule of '
    'dbdedup.verify_pairs, dbdedup.structure_check and dbdedup.verify_workers alike.';

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
    SELECT p.hash_kind, p.image_a, p.image_b, p.distance, p.is_exact, p.transform, p.transform_distance, p.similarity,
           p.structure, p.region, p.tone_fit, p.overlay_cells, p.detail_gap
    FROM dbdedup.pairs p
    WHERE p.verified IS NULL AND (verify_pairs.hash_kind IS NULL OR p.hash_kind = verify_pairs.hash_kind);
    CREATE TEMP TABLE vp_image ON COMMIT DROP AS
    SELECT i.id, i.sha256, i.quality, i.colour_signature, i.signature_error, i.width, i.height,
           i.phash, i.phash_variants
    FROM dbdedup.images i
    WHERE i.id IN (SELECT v.image_a FROM pg_temp.vp_pair v UNION SELECT v.image_b FROM pg_temp.vp_pair v);
    CREATE INDEX ON vp_image (id);
    ANALYZE vp_image (id);

    -- the route of each pair (as bench/accuracy/verify_study.py routes them): exact copies;
    -- images with no hash signal of their own or no signature; aligned pairs (a close pHash, or
    -- an orientation variant closer than it), judged by their signatures in the orientation that
    -- aligns them; the rest waits for the geometric check, except weak embedding neighbours
    CREATE TEMP TABLE vp_route ON COMMIT DROP AS
    SELECT p.hash_kind, p.image_a, p.image_b,
           -- (a keeper pair through a member, a keypoints or a crop window pair, has a transform_distance of 0
           -- that measures nothing: its closest is its pHash distance, not one framing)
           least(p.distance, CASE WHEN p.transform IN ('linked', 'keypoints', 'same_size', 'crop_window') THEN 64
                                  ELSE coalesce(p.transform_distance, 64) END) AS closest,
           CASE WHEN p.is_exact OR a.sha256 = b.sha256 THEN 'exact'
                -- no hash signal of its own (flat, one colour): only the same pixels match it, so a pair
                -- of one size (or that size turned by a quarter) goes to the check by pixels
                WHEN least(a.quality, b.quality) < s.min_quality
                    THEN CASE WHEN (a.width = b.width AND a.height = b.height) OR (a.width = b.height AND a.height = b.width)
                              THEN 'pending' ELSE 'low_quality' END
                WHEN a.signature_error IS NOT NULL OR b.signature_error IS NOT NULL THEN 'no_signature'
                WHEN a.quality IS NULL OR b.quality IS NULL OR a.colour_signature IS NULL OR b.colour_signature IS NULL
                    THEN 'pending'
                -- keypoint pairs (dbdedup.match_keypoints) and crop window pairs (dbdedup.match_embeddings: a crop
                -- and the picture it may be cut from) are decided by the geometric check only
                WHEN p.transform IN ('keypoints', 'crop_window') THEN 'pending'
                -- the structure check (dbdedup.structure_check) found the two apart though their signatures
                -- agree: in structure, in a region (compared under a flip or a turn), or in detail (compared unturned)
                WHEN dbdedup.left_to_pixels(p.structure, p.region, p.detail_gap) THEN 'pending'
                -- rejected for colour once, but their signatures' cells are close to one brightness or
                -- contrast edit (dbdedup.structure_check, pairs.tone_fit): the geometric check fits it to
                -- the files' RGB pixels
                WHEN p.tone_fit <> 'NaN'::real THEN 'pending'
                -- rejected for colour or layout once, but their signatures' cells differ as one see-through
                -- overlay would make them (a watermark; dbdedup.structure_check, pairs.overlay_cells): the
                -- geometric check tries the overlay on the files' pixels
                WHEN p.overlay_cells THEN 'pending'
                -- found through a border-trimmed variant: verified when the whole pictures already agree in
                -- the variant's orientation (an upscaled copy's soft border trims differently), else pending
                -- (never rejected by the whole signatures, even at a close pHash: a frame is not one framing);
                -- under a flip or a turn always pending: the check by pixels asks its least alike region too, of
                -- the pictures trimmed (a mirror drawn again), which no stored thumbnail frames as the variant does
                WHEN p.transform = 'trim' THEN 'trimmed'
                WHEN p.transform LIKE 'trim+%' THEN 'pending'
                WHEN p.transform IN ('flip_h', 'flip_v', 'rotate_90', 'rotate_180', 'rotate_270', 'transpose', 'transverse')
                     AND p.transform_distance <= s.aligned_variant AND p.transform_distance < p.distance THEN 'aligned'
                WHEN p.distance <= s.aligned_distance THEN 'aligned'
                WHEN p.similarity IS NOT NULL AND p.similarity < s.geometry_min_similarity THEN 'weak_embedding'
                ELSE 'pending' END AS route,
           dbdedup.aligned_orientation(p.transform, p.transform_distance, p.distance, s.aligned_variant) AS orientation,
           -- perhaps one is the other in a frame, which moves the whole signatures apart (the check by pixels
           -- aligns what it held)
           dbdedup.one_in_frame(a.phash, a.phash_variants, b.phash, b.phash_variants, s.aligned_distance) AS one_framed
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
    -- each image's signature made ready for comparison once (dbdedup.signature_layout), then turned
    -- for the orientations its pairs need (dbdedup.layout_cells: one permutation per orientation).
    -- STORAGE PLAIN: a layout (4 kB) kept in line and uncompressed; a toasted one would be fetched
    -- and decompressed again at every subscript of the comparison.
    CREATE TEMP TABLE vp_layout (id bigint, orientation text, layout double precision[]) ON COMMIT DROP;
    ALTER TABLE vp_layout ALTER COLUMN layout SET STORAGE PLAIN;
    INSERT INTO vp_layout (id, orientation, layout)
    SELECT i.id, 'identity', dbdedup.signature_layout(i.colour_signature)
    FROM vp_image i
    WHERE i.id IN (SELECT r.image_a FROM vp_route r WHERE r.route IN ('aligned', 'trimmed')
                   UNION SELECT r.image_b FROM vp_route r WHERE r.route IN ('aligned', 'trimmed'));
    INSERT INTO vp_layout (id, orientation, layout)
    SELECT n.id, n.orientation,
           CASE WHEN l.layout IS NOT NULL
                THEN (SELECT array_agg(l.layout[c.k] ORDER BY c.n) FROM unnest(t.cells) WITH ORDINALITY AS c(k, n)) END
    FROM (SELECT DISTINCT r.image_a AS id, r.orientation FROM vp_route r
          WHERE r.route IN ('aligned', 'trimmed') AND r.orientation <> 'identity') n
    JOIN (SELECT o.orientation, dbdedup.layout_cells(o.orientation) AS cells
          FROM (SELECT DISTINCT r.orientation FROM vp_route r WHERE r.orientation <> 'identity') o
          OFFSET 0) t ON t.orientation = n.orientation
    JOIN vp_layout l ON l.id = n.id AND l.orientation = 'identity';
    CREATE INDEX ON vp_layout (id, orientation);
    ANALYZE vp_layout (id, orientation);
    -- aligned pairs: verified when every signature measure is within its limit; otherwise
    -- rejected when settled (one framing, or colours far apart), left pending when geometry could
    -- still find them the same picture. Trimmed-variant pairs: verified the same way, else pending.
    -- dbdedup.signature_compare is inlined here: the inner query computes the measures every pair
    -- needs (each once: OFFSET 0), the detail (the costliest) is computed only for the pairs whose
    -- other measures pass (AND stops at the first false one).
    INSERT INTO vp_verdict (hash_kind, image_a, image_b, verified, score, reason)
    SELECT m.hash_kind, m.image_a, m.image_b, m.ok, greatest(0, 1 - m.worst)::real,
           CASE WHEN m.ok THEN 'signature' ELSE 'colour' END
    FROM (SELECT d.hash_kind, d.image_a, d.image_b, d.route, d.closest, d.one_framed, d.light, d.gain, d.grey_light,
                 greatest(d.light, coalesce(d.chroma, 0)) AS worst,
                 NOT d.chroma_agrees OR coalesce(d.grey_light > s.max_grey_light, false)
                 OR d.gain > d.gain_limit AS apart_in_colour,
                 -- a greyscale picture and a colour one, perhaps its greyscale conversion, which the signatures
                 -- (colours averaged by cells, then converted) can put apart: their converted lightness agrees,
                 -- or their lightness layouts and detail do (dbdedup.verify.converted_verdict compares each
                 -- pixel's luma; a saturated picture's L* layout is not its conversion's)
                 d.grey_light IS NOT NULL
                 AND (d.grey_light <= s.max_grey_light
                      OR d.light <= s.max_light
                         AND (SELECT e.detail FROM dbdedup.signature_compare(d.layout_a, d.layout_b) e)
                             <= CASE WHEN d.closest <= s.near_distance THEN s.max_detail ELSE s.max_detail_far END)
                     AS converted_candidate,
                 d.light <= s.max_light AND d.chroma_agrees AND d.gain <= d.gain_limit
                 AND coalesce(d.grey_light <= s.max_grey_light, true)
                 AND (SELECT e.detail FROM dbdedup.signature_compare(d.layout_a, d.layout_b) e)
                     <= CASE WHEN d.closest <= s.near_distance THEN s.max_detail ELSE s.max_detail_far END AS ok
          FROM (SELECT r.hash_kind, r.image_a, r.image_b, r.route, r.closest, r.one_framed, a.layout AS layout_a, b.layout AS layout_b,
                       c.light, c.chroma, c.gain, c.grey_light, c.gain_limit,
                       -- the chroma layouts agree, or differ in strength only (dbdedup.hue_agreement,
                       -- computed for the few pairs it can settle)
                       CASE WHEN c.chroma IS NULL OR c.chroma <= s.max_chroma THEN true
                            WHEN c.chroma > s.max_chroma_same_hue OR c.light > s.same_hue_light THEN false
                            ELSE (SELECT h.shift <= s.max_hue_shift AND h.spread <= s.max_hue_spread
                                  FROM dbdedup.hue_agreement(a.layout, b.layout) h) END AS chroma_agrees
                FROM vp_route r
                JOIN vp_layout a ON a.id = r.image_a AND a.orientation = r.orientation
                JOIN vp_layout b ON b.id = r.image_b AND b.orientation = 'identity'
                LEFT JOIN LATERAL dbdedup.signature_compare(a.layout, b.layout) c ON true
                WHERE r.route IN ('aligned', 'trimmed')
                OFFSET 0) d
          OFFSET 0) m
    -- rejected here: aligned pairs apart in colour when one framing or colours too far for an edit
    -- (layouts beyond hopeless, tones whose spread or chroma ratio passes hopeless_gain, a greyscale
    -- picture beyond hopeless_grey_light from a colour one's conversion: a crop or a small turn moves
    -- these little, and the geometric check would hold the aligned overlap to the same limits as an
    -- aligned pair); never for the layout or the detail alone: a copy turned by a few degrees or
    -- cropped a little moves its lightness layout however far (its new corners, its cut edges), and
    -- the geometric check aligns it and compares the overlap (session 27, bench/accuracy/layout_study.py
    -- --replay: of a cli_score run's 613 aligned pairs that were rejected here for their layout, it
    -- verifies 133 of the 180 copy pairs and none of the 433 look-alike pairs); never a greyscale picture
    -- that may be the colour one's conversion (converted_candidate above: the check by pixels decides); never
    -- a pair of which one picture may be the other in a frame (one_framed, dbdedup.one_in_frame: the check by
    -- pixels tries the framed one's inside against the other, verify_workers.framed_verdict; session 36, on
    -- two cli_score runs' 809 such aligned pairs refused for colour with exactly one picture bordered, it
    -- verified 82 of the 130 copy pairs and none of the 679 look-alike pairs; session 37, with both bordered
    -- and one trimmed within aligned_distance of the other whole, 29 of the 80 copy pairs and none of the 275
    -- look-alike pairs of seed 6's run)
    WHERE m.ok OR (m.route = 'aligned' AND m.apart_in_colour AND NOT m.converted_candidate AND NOT m.one_framed
                   AND (m.closest < s.same_framing OR NOT (m.worst > s.settled AND m.worst <= s.hopeless)
                        OR m.gain > s.hopeless_gain OR coalesce(m.grey_light > s.hopeless_grey_light, false)));

    -- (a signature verdict waits for its structure check: dbdedup.structure_check measures it again)
    UPDATE dbdedup.pairs p
    SET verified = v.verified, verify_score = v.score, verify_reason = v.reason, structure = NULL, region = NULL
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
    'rejects the pair (low_quality) unless the two have one size (or that size turned by a quarter): the check by '
    'pixels then verifies it only as the same pixels (pixels); an image whose signature could not be computed too (no_signature); aligned pairs '
    '(pHash within aligned_distance, or an orientation variant within aligned_variant and closer) are verified by their '
    'colour signatures in that orientation (signature) or rejected when settled: colours apart (colour) with one framing '
    '(distance below same_framing), beyond the geometric range (settled to hopeless) or by a gain ratio above hopeless_gain or a grey lightness above hopeless_grey_light, '
    'except a greyscale picture and a colour one whose converted lightness, or lightness layouts and detail, agree (left pending: the check by pixels compares the '
    'greyscale one with the other''s conversion, converted), and a pair of which exactly one picture has a uniform border (left pending: the check by pixels '
    'aligns the framed one''s inside with the other), '
    'never for the layout or the detail alone (a copy turned or cropped a little: the geometric check compares the aligned overlap); embedding-only pairs below '
    'geometry_min_similarity are rejected (weak_embedding); pairs found through an unturned trimmed variant are verified when the '
    'whole signatures agree (one under a flip or a turn is left to the check by pixels, which asks its least alike region too); pairs whose structure check failed '
    '(dbdedup.left_to_pixels: pairs.structure below min_signature_structure, '
    'or pairs.region below min_oriented_region, or pairs.detail_gap above detail_gate) '
    'are left to the geometric check, and so are pairs rejected for colour that one tone edit explains (pairs.tone_fit not NaN) and pairs rejected for colour or layout whose cells one overlay may explain (pairs.overlay_cells). Everything else stays pending (verified NULL) for the geometric '
    'check (other trimmed-variant pairs, embedding neighbours, aligned pairs the signatures could not settle, images with no '
    'signature yet). Thresholds: dbdedup.verify_settings(). Returns the pairs looked at and how many were verified, '
    'rejected and left pending.';
