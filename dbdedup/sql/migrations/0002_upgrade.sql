-- 0002: matching. Pairs of near-duplicate images, clusters with one keeper, and the psql API.
--
-- Data flow: dbdedup.images -> dbdedup.hash_values (one row per distinct hash value: identical
-- values are collapsed before any method runs) -> dbdedup.value_pairs (pairs of values within
-- the largest threshold asked so far) -> dbdedup.pairs (image pairs) -> dbdedup.cluster_assignments
-- -> the views dbdedup.cluster_members and dbdedup.clusters.
--
-- Everything can be run from psql or pg_cron:
--   SELECT * FROM dbdedup.match(8);                  -- pairs up to distance 8 (incremental)
--   SELECT * FROM dbdedup.build_clusters(8);         -- clusters at 8, largest image kept
--   CALL dbdedup.refresh();                          -- both, with the stored parameters

-- ------------------------------------------------------------------ distances and masks

CREATE FUNCTION dbdedup.hamming(a bigint, b bigint) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT bit_count((a # b)::bit(64))::integer $$;
COMMENT ON FUNCTION dbdedup.hamming(bigint, bigint) IS
    'Hamming distance of two 64-bit hashes stored as bigint (0 = identical, 64 = every bit differs).';

CREATE FUNCTION dbdedup.is_low_information(value bigint) RETURNS boolean
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT bit_count(value::bit(64)) <= 3 OR bit_count(value::bit(64)) >= 61 $$;
COMMENT ON FUNCTION dbdedup.is_low_information(bigint) IS
    'True for hashes with 3 or fewer bits set (or cleared): what blank, single-colour and flat images hash to. '
    'They match each other whatever the picture, so matching keeps them out of near-duplicate pairs.';

CREATE FUNCTION dbdedup.interleaved_mask(blocks integer, block integer) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
        SELECT coalesce(bit_or(1::bigint << b), 0)
        FROM generate_series(0, 63) b
        WHERE (b + CASE WHEN b < 32 THEN 0 WHEN 33 % blocks <> 0 THEN 1 ELSE 2 END) % blocks = block
    $$;
COMMENT ON FUNCTION dbdedup.interleaved_mask(integer, integer) IS
    'The block-th of `blocks` interleaved bit blocks of a 64-bit hash (bit j goes to block j mod blocks, the upper half '
    'shifted by one). Interleaving spreads the correlated low-frequency bits of pHash over all blocks; the shift keeps '
    'bits j and j+32 apart, which PostgreSQL''s bigint hash folds together (a block holding both makes hash joins '
    'collide badly).';

CREATE FUNCTION dbdedup.sampled_mask(seed integer, bits integer) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
        SELECT coalesce(bit_or(1::bigint << (c + 32 * (hashint4(seed * 97 + c) & 1))), 0)
        FROM (SELECT c FROM generate_series(0, 31) c ORDER BY hashint4(seed * 64 + c), c LIMIT least(bits, 32)) s
    $$;
COMMENT ON FUNCTION dbdedup.sampled_mask(integer, integer) IS
    'A pseudo-random but fixed set of `bits` (at most 32) of the 64, never both j and j+32 (see interleaved_mask): '
    'the key of one table of the lsh method.';

CREATE FUNCTION dbdedup.ball_masks(block_mask bigint, radius integer) RETURNS bigint[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
        WITH bits AS (
            SELECT b, 1::bigint << b AS m FROM generate_series(0, 63) b WHERE block_mask & (1::bigint << b) <> 0
        )
        SELECT array_agg(f ORDER BY f) FROM (
            SELECT 0::bigint AS f
            UNION ALL SELECT b1.m FROM bits b1 WHERE radius >= 1
            UNION ALL SELECT b1.m | b2.m FROM bits b1 JOIN bits b2 ON b1.b < b2.b WHERE radius >= 2
            UNION ALL SELECT b1.m | b2.m | b3.m
                      FROM bits b1 JOIN bits b2 ON b1.b < b2.b JOIN bits b3 ON b2.b < b3.b WHERE radius >= 3
        ) s
    $$;
COMMENT ON FUNCTION dbdedup.ball_masks(bigint, integer) IS
    'Every XOR mask inside block_mask with at most `radius` bits set (radius 0-3): the Hamming ball probed by the blocks method.';

CREATE FUNCTION dbdedup.ball_size(bits integer, radius integer) RETURNS double precision
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
DECLARE
    total double precision := 0;
    c double precision := 1;
    k integer;
BEGIN
    FOR k IN 0 .. least(radius, bits) LOOP
        total := total + c;
        c := c * (bits - k) / (k + 1);
    END LOOP;
    RETURN total;
END
$$;
COMMENT ON FUNCTION dbdedup.ball_size(integer, integer) IS 'Number of bit strings of length `bits` within `radius` of one string.';

-- ------------------------------------------------------------------ state tables

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

CREATE TABLE dbdedup.pairs (
    image_a   bigint NOT NULL,
    image_b   bigint NOT NULL,
    hash_kind text NOT NULL,
    distance  smallint NOT NULL,
    is_exact  boolean NOT NULL,
    PRIMARY KEY (hash_kind, image_a, image_b),
    CHECK (image_a < image_b)
);
CREATE INDEX pairs_b_idx ON dbdedup.pairs (hash_kind, image_b);
COMMENT ON TABLE dbdedup.pairs IS
    'Every pair of ok images (image_a < image_b) whose hashes of hash_kind are within match_state.max_distance. '
    'Images with an over-common hash value pair only with their exact copies.';
COMMENT ON COLUMN dbdedup.pairs.distance IS 'Hamming distance of the two hashes (0-64).';
COMMENT ON COLUMN dbdedup.pairs.is_exact IS 'Same SHA-256: byte-identical files.';

CREATE INDEX images_phash_ok_idx ON dbdedup.images (phash) WHERE status = 'ok';
CREATE INDEX images_dhash_ok_idx ON dbdedup.images (dhash) WHERE status = 'ok';
CREATE INDEX images_ahash_ok_idx ON dbdedup.images (ahash) WHERE status = 'ok';

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
    built_at        timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE dbdedup.cluster_parameters IS 'The parameters of the current clustering (one row), and what building it found.';
COMMENT ON COLUMN dbdedup.cluster_parameters.reference_paths IS 'Path prefixes whose files are preferred as keeper and never removable.';
COMMENT ON COLUMN dbdedup.cluster_parameters.matched_seq IS 'match_state.matched_seq of the pairs the clustering was built from.';
COMMENT ON COLUMN dbdedup.cluster_parameters.split_rounds IS 'Extra rounds of greedy star clustering: above 0 when chains of weak links were split (members too far from the best image).';

CREATE TABLE dbdedup.cluster_assignments (
    image_id           bigint PRIMARY KEY,
    cluster_id         bigint NOT NULL,
    is_keeper          boolean NOT NULL,
    distance_to_keeper integer NOT NULL
);
CREATE INDEX cluster_assignments_cluster_idx ON dbdedup.cluster_assignments (cluster_id);
COMMENT ON TABLE dbdedup.cluster_assignments IS 'Cluster of each clustered image (cluster_id is the keeper''s image id).';

-- ------------------------------------------------------------------ views

CREATE FUNCTION dbdedup.is_under(path text, prefixes text[]) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT coalesce(bool_or(path = rtrim(p, '/') OR starts_with(path, rtrim(p, '/') || '/')), false)
        FROM unnest(prefixes) p
    $$;
COMMENT ON FUNCTION dbdedup.is_under(text, text[]) IS 'True when path is one of the prefixes or lies under one of them (whole path components).';

CREATE VIEW dbdedup.cluster_members AS
    SELECT a.cluster_id,
           i.id AS image_id,
           i.path,
           i.path_bytes,
           a.is_keeper,
           a.distance_to_keeper,
           i.width,
           i.height,
           i.size_bytes,
           i.sha256,
           i.mtime_ns,
           (NOT a.is_keeper AND i.sha256 = k.sha256) AS is_exact_duplicate,
           dbdedup.is_under(i.path, p.reference_paths) AS is_protected
    FROM dbdedup.cluster_assignments a
    JOIN dbdedup.images i ON i.id = a.image_id
    JOIN dbdedup.images k ON k.id = a.cluster_id
    CROSS JOIN dbdedup.cluster_parameters p;
COMMENT ON VIEW dbdedup.cluster_members IS
    'Members of the current clustering, keeper included (distance 0); only clusters of 2+ images. '
    'is_exact_duplicate: same SHA-256 as the keeper (false for the keeper itself); is_protected: under a reference path.';

CREATE VIEW dbdedup.clusters AS
    SELECT cluster_id,
           cluster_id AS keeper_image_id,
           min(path) FILTER (WHERE is_keeper) AS keeper_path,
           count(*)::integer AS member_count,
           coalesce(sum(size_bytes) FILTER (WHERE NOT is_keeper AND NOT is_protected), 0)::bigint AS reclaimable_bytes
    FROM dbdedup.cluster_members
    GROUP BY cluster_id;
COMMENT ON VIEW dbdedup.clusters IS
    'One row per cluster: its keeper and the bytes freed by removing the other, unprotected members.';

CREATE VIEW dbdedup.common_hashes AS
    SELECT v.hash_kind, v.value, v.images, v.distinct_files, v.common_reason,
           lpad(to_hex(v.value), 16, '0') AS hex
    FROM dbdedup.hash_values v
    WHERE v.is_common;
COMMENT ON VIEW dbdedup.common_hashes IS
    'Over-common hash values (blank, flat or tiny images, or one value shared by many different files): '
    'reported apart and kept out of near-duplicate pairs so they cannot chain unrelated images together.';

CREATE VIEW dbdedup.common_hash_images AS
    SELECT v.hash_kind, v.value, v.common_reason, i.id AS image_id, i.path, i.width, i.height, i.size_bytes
    FROM dbdedup.hash_values v
    JOIN dbdedup.images i ON i.status = 'ok'
         AND CASE v.hash_kind WHEN 'phash' THEN i.phash WHEN 'dhash' THEN i.dhash ELSE i.ahash END = v.value
    WHERE v.is_common;
COMMENT ON VIEW dbdedup.common_hash_images IS 'The images whose hash value is over-common (see dbdedup.common_hashes).';

-- ------------------------------------------------------------------ planning

CREATE FUNCTION dbdedup.plan_blocks(values_total bigint, values_probed bigint, max_distance integer,
                                    OUT blocks integer, OUT radii integer[], OUT estimated_cost double precision)
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $$
DECLARE
    m integer;
    i integer;
    w integer;
    r integer;
    q integer;
    cost double precision;
    rs integer[];
    full_ball boolean := values_probed < values_total;
    vol double precision;
BEGIN
    -- Pigeonhole: split the 64 bits into m blocks and give block i a radius r_i with
    -- sum(r_i + 1) = max_distance + 1. Two hashes within max_distance then differ in at most r_i
    -- bits in some block i, so probing every block's Hamming ball of radius r_i finds every pair.
    -- Cost: hashing the build side, probing (ball size per probed value), and candidates
    -- (probed * total * ball / 2^width, halved for a self-join).
    estimated_cost := 'Infinity';
    IF max_distance < 0 THEN
        RETURN;
    END IF;
    FOR m IN 1 .. least(max_distance + 1, 16) LOOP
        cost := 0;
        rs := '{}';
        FOR i IN 0 .. m - 1 LOOP
            w := 64 / m + CASE WHEN i < 64 % m THEN 1 ELSE 0 END;
            q := (max_distance + 1) / m + CASE WHEN i < (max_distance + 1) % m THEN 1 ELSE 0 END;
            r := q - 1;
            rs := rs || r;
            IF r > 3 THEN
                cost := 'Infinity';
                EXIT;
            END IF;
            vol := dbdedup.ball_size(w, r);
            cost := cost + values_total
                 + values_probed * vol * CASE WHEN full_ball THEN 1.0 ELSE 0.5 END
                 + 0.2 * values_probed * vol
                 + values_probed::double precision * values_total * vol / 2 ^ w
                   * CASE WHEN full_ball THEN 1.0 ELSE 0.5 END;
        END LOOP;
        IF cost < estimated_cost THEN
            estimated_cost := cost;
            blocks := m;
            radii := rs;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION dbdedup.plan_blocks(bigint, bigint, integer) IS
    'The cheapest exact multi-index plan for the blocks method: number of interleaved blocks and the radius probed in each '
    '(sum of radius+1 = max_distance+1, radius <= 3), with its estimated cost in row operations.';

CREATE FUNCTION dbdedup.plan_lsh(values_total bigint, values_probed bigint, max_distance integer, target_recall double precision DEFAULT 0.99,
                                 OUT key_bits integer, OUT tables integer, OUT estimated_cost double precision)
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $$
DECLARE
    k integer;
    i integer;
    p double precision;
    l integer;
    cost double precision;
BEGIN
    -- Bit sampling: a table keys each hash by k fixed random bits. A pair at distance d shares
    -- the key with p = C(64-d, k) / C(64, k); L tables miss it with (1-p)^L. Pick k and L that
    -- reach target_recall at d = max_distance (closer pairs are found more often) at least cost.
    estimated_cost := 'Infinity';
    FOR k IN 8 .. 32 LOOP
        p := 1;
        FOR i IN 0 .. k - 1 LOOP
            p := p * greatest(64 - max_distance - i, 0)::double precision / (64 - i);
        END LOOP;
        IF p <= 0 THEN
            EXIT;
        END IF;
        IF p >= 1 THEN
            l := 1;
        ELSE
            l := ceil(ln(1 - target_recall) / ln(1 - p));
        END IF;
        cost := l * (values_total + values_probed + values_probed::double precision * values_total / 2 ^ k);
        IF cost < estimated_cost THEN
            estimated_cost := cost;
            key_bits := k;
            tables := l;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION dbdedup.plan_lsh(bigint, bigint, integer, double precision) IS
    'Key size and number of tables for the sampled-bits (LSH) method to reach target_recall for pairs at exactly max_distance.';

-- ------------------------------------------------------------------ pair-finding methods
-- Each method compares the pending values of dbdedup.hash_values with all (non-common) values
-- of the kind, re-checks every candidate exactly, inserts the value pairs within max_distance
-- into dbdedup.value_pairs and returns the number of candidates it compared.

CREATE FUNCTION dbdedup.match_values_scan(kind text, max_distance integer, all_values boolean DEFAULT false) RETURNS bigint
    LANGUAGE plpgsql
    -- a parallel nested loop over sequential scans beats one index range scan per value
    SET enable_indexscan = off SET enable_bitmapscan = off
    AS $$
DECLARE
    n_candidates bigint;
    found bigint[];
BEGIN
    SELECT count(*),
           array_agg(ARRAY[least(pv, bv), greatest(pv, bv), d]) FILTER (WHERE d <= max_distance)
      INTO n_candidates, found
    FROM (
        SELECT p.value AS pv, b.value AS bv, bit_count((p.value # b.value)::bit(64)) AS d
        FROM dbdedup.hash_values p
        JOIN dbdedup.hash_values b
          ON b.hash_kind = kind AND NOT b.is_common
         AND b.value <> p.value AND (p.value < b.value OR (NOT all_values AND NOT b.pending))
        WHERE p.hash_kind = kind AND (all_values OR p.pending) AND NOT p.is_common
    ) c;
    INSERT INTO dbdedup.value_pairs (hash_kind, value_a, value_b, distance)
    SELECT kind, found[k.n][1], found[k.n][2], found[k.n][3] FROM generate_subscripts(found, 1) AS k(n)
    ON CONFLICT DO NOTHING;
    RETURN n_candidates;
END
$$;
COMMENT ON FUNCTION dbdedup.match_values_scan(text, integer, boolean) IS
    'Method scan: compares every pending value with every other value (bit_count on bigint XOR). Exact for any threshold; '
    'quadratic, so for small sets (about 8 M comparisons a second).';

CREATE FUNCTION dbdedup.match_values_blocks(kind text, max_distance integer, all_values boolean DEFAULT false,
                                            blocks integer DEFAULT NULL, radii integer[] DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql
    -- hash tables of up to a few million keys in memory; sorts of probe rows lose to hash joins here
    SET work_mem = '256MB' SET enable_mergejoin = off
    AS $$
DECLARE
    n_total bigint;
    n_pending bigint;
    half boolean;
    plan record;
    i integer;
    j integer;
    mask bigint;
    flips bigint[];
    disjoint text;
    sql text;
    n_candidates bigint := 0;
    c bigint;
    found bigint[];
BEGIN
    IF max_distance < 0 OR max_distance > 15 THEN
        RAISE EXCEPTION 'the blocks method is exact for thresholds 0 to 15, not %', max_distance
            USING HINT = 'use method scan (any threshold) or lsh';
    END IF;
    IF blocks IS NOT NULL AND (radii IS NULL OR array_length(radii, 1) <> blocks
                               OR (SELECT sum(r + 1) FROM unnest(radii) r) <= max_distance) THEN
        RAISE EXCEPTION 'blocks % with radii % cannot find every pair within %', blocks, radii, max_distance
            USING HINT = 'give one radius per block with sum(radius + 1) > max_distance';
    END IF;
    SELECT count(*), count(*) FILTER (WHERE pending OR all_values) INTO n_total, n_pending
    FROM dbdedup.hash_values WHERE hash_kind = kind AND NOT is_common;
    IF n_pending = 0 THEN
        RETURN 0;
    END IF;
    half := n_pending = n_total;
    IF blocks IS NULL THEN
        SELECT * INTO plan FROM dbdedup.plan_blocks(n_total, n_pending, max_distance);
        blocks := plan.blocks;
        radii := plan.radii;
    END IF;
    disjoint := '';
    FOR i IN 0 .. blocks - 1 LOOP
        mask := dbdedup.interleaved_mask(blocks, i);
        flips := dbdedup.ball_masks(mask, radii[i + 1]);
        -- Half ball on a self-join: a pair whose block keys differ is probed only from the
        -- smaller key; equal keys pair once (smaller value first).
        sql := format($q$
            SELECT count(*),
                   array_agg(ARRAY[least(pv, bv), greatest(pv, bv), d]) FILTER (WHERE d <= %1$s)
            FROM (
                SELECT p.value AS pv, b.value AS bv, bit_count((p.value # b.value)::bit(64)) AS d
                FROM (SELECT v.value, v.value & %2$s AS key, f, (v.value & %2$s) # f AS probe
                      FROM dbdedup.hash_values v, unnest(%3$L::bigint[]) AS f
                      WHERE v.hash_kind = %4$L AND %8$s AND NOT v.is_common %5$s) p
                JOIN dbdedup.hash_values b
                  ON b.hash_kind = %4$L AND NOT b.is_common AND (b.value & %2$s) = p.probe
                WHERE %6$s %7$s
            ) c
            $q$,
            max_distance, mask, flips, kind,
            CASE WHEN half THEN 'AND (f = 0 OR ((v.value & ' || mask || ') # f) > (v.value & ' || mask || '))' ELSE '' END,
            CASE WHEN half THEN '(p.f <> 0 OR p.value < b.value)'
                 ELSE '(b.value <> p.value AND (NOT b.pending OR p.value < b.value))' END,
            disjoint,
            CASE WHEN half THEN 'true' ELSE 'v.pending' END);
        EXECUTE sql INTO c, found;
        RAISE DEBUG 'dbdedup.match_values_blocks: block % of % (radius %): % candidates', i + 1, blocks, radii[i + 1], c;
        n_candidates := n_candidates + c;
        INSERT INTO dbdedup.value_pairs (hash_kind, value_a, value_b, distance)
        SELECT kind, found[k.n][1], found[k.n][2], found[k.n][3] FROM generate_subscripts(found, 1) AS k(n)
        ON CONFLICT DO NOTHING;
        -- later blocks skip pairs this block already found (keeps candidates disjoint)
        disjoint := disjoint || format(' AND bit_count(((p.value # b.value) & %s)::bit(64)) > %s', mask, radii[i + 1]);
    END LOOP;
    RETURN n_candidates;
END
$$;
COMMENT ON FUNCTION dbdedup.match_values_blocks(text, integer, boolean, integer, integer[]) IS
    'Method blocks: exact multi-index hashing for thresholds 0-15. The hash is split into interleaved blocks; by '
    'pigeonhole a pair within the threshold is within radius r_i in some block i, so each block is an equi-join of '
    'each value''s Hamming ball (radius 0-3) against the block keys, then an exact re-check. Plan from dbdedup.plan_blocks.';

CREATE FUNCTION dbdedup.match_values_lsh(kind text, max_distance integer, all_values boolean DEFAULT false,
                                         target_recall double precision DEFAULT 0.99,
                                         key_bits integer DEFAULT NULL, tables integer DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql
    -- hash tables of up to a few million keys in memory; sorts of probe rows lose to hash joins here
    SET work_mem = '256MB' SET enable_mergejoin = off
    AS $$
DECLARE
    n_total bigint;
    n_pending bigint;
    half boolean;
    plan record;
    t integer;
    mask bigint;
    n_candidates bigint := 0;
    c bigint;
    found bigint[];
BEGIN
    SELECT count(*), count(*) FILTER (WHERE pending OR all_values) INTO n_total, n_pending
    FROM dbdedup.hash_values WHERE hash_kind = kind AND NOT is_common;
    IF n_pending = 0 THEN
        RETURN 0;
    END IF;
    half := n_pending = n_total;
    IF key_bits IS NULL OR tables IS NULL THEN
        SELECT * INTO plan FROM dbdedup.plan_lsh(n_total, n_pending, max_distance, target_recall);
        key_bits := coalesce(key_bits, plan.key_bits);
        tables := coalesce(tables, plan.tables);
    END IF;
    FOR t IN 1 .. tables LOOP
        mask := dbdedup.sampled_mask(t, key_bits);
        EXECUTE format($q$
            SELECT count(*),
                   array_agg(ARRAY[least(pv, bv), greatest(pv, bv), d]) FILTER (WHERE d <= %1$s)
            FROM (
                SELECT p.value AS pv, b.value AS bv, bit_count((p.value # b.value)::bit(64)) AS d
                FROM dbdedup.hash_values p
                JOIN dbdedup.hash_values b
                  ON b.hash_kind = %3$L AND NOT b.is_common AND (b.value & %2$s) = (p.value & %2$s)
                WHERE p.hash_kind = %3$L AND %5$s AND NOT p.is_common AND %4$s
            ) c
            $q$,
            max_distance, mask, kind,
            CASE WHEN half THEN 'p.value < b.value'
                 ELSE '(b.value <> p.value AND (NOT b.pending OR p.value < b.value))' END,
            CASE WHEN half THEN 'true' ELSE 'p.pending' END)
        INTO c, found;
        RAISE DEBUG 'dbdedup.match_values_lsh: table % of % (% bits): % candidates', t, tables, key_bits, c;
        n_candidates := n_candidates + c;
        INSERT INTO dbdedup.value_pairs (hash_kind, value_a, value_b, distance)
        SELECT kind, found[k.n][1], found[k.n][2], found[k.n][3] FROM generate_subscripts(found, 1) AS k(n)
        ON CONFLICT DO NOTHING;
    END LOOP;
    RETURN n_candidates;
END
$$;
COMMENT ON FUNCTION dbdedup.match_values_lsh(text, integer, boolean, double precision, integer, integer) IS
    'Method lsh (approximate, for very large sets): bit-sampling LSH. Each of L tables is an equi-join on hash & mask '
    'for a fixed random mask of k bits; every candidate is re-checked exactly, so no pair beyond the threshold is ever '
    'returned. k and L from dbdedup.plan_lsh reach target_recall for pairs at exactly the threshold (closer pairs: higher).';

-- ------------------------------------------------------------------ matching

CREATE FUNCTION dbdedup.choose_method(values_total bigint, values_probed bigint, max_distance integer) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT CASE
            WHEN values_probed::double precision * values_total <= 2e6 OR max_distance > 15 AND values_total <= 5000 THEN 'scan'
            WHEN max_distance <= 15 AND (SELECT estimated_cost FROM dbdedup.plan_blocks(values_total, values_probed, max_distance))
                 <= greatest(1.5e8, 1.5 * (SELECT estimated_cost FROM dbdedup.plan_lsh(values_total, values_probed, max_distance))) THEN 'blocks'
            WHEN (SELECT estimated_cost FROM dbdedup.plan_lsh(values_total, values_probed, max_distance))
                 < values_probed::double precision * values_total / 4 THEN 'lsh'
            ELSE 'scan'
        END
    $$;
COMMENT ON FUNCTION dbdedup.choose_method(bigint, bigint, integer) IS
    'The method auto picks: scan while probed x total values <= 2e6 (about a second); blocks (exact) while its estimated '
    'cost is under 1.5e8 row operations (about a minute on 2 cores) or within 1.5x of lsh''s; else lsh (approximate).';

CREATE FUNCTION dbdedup.hash_column(kind text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $$
BEGIN
    IF kind NOT IN ('phash', 'dhash', 'ahash') THEN
        RAISE EXCEPTION 'unknown hash kind %', kind USING HINT = 'use phash, dhash or ahash';
    END IF;
    RETURN kind;
END
$$;
COMMENT ON FUNCTION dbdedup.hash_column(text) IS 'Checks a hash kind name (phash, dhash, ahash) and returns its images column.';

CREATE FUNCTION dbdedup.match(max_distance integer, hash_kind text DEFAULT 'phash', method text DEFAULT 'auto',
                              full_rematch boolean DEFAULT false, common_limit integer DEFAULT 50)
    RETURNS TABLE (method_used text, mode text, max_distance_kept integer, values_total bigint, values_matched bigint,
                   candidates bigint, value_pairs bigint, pairs bigint, seconds double precision)
    LANGUAGE plpgsql
    SET work_mem = '256MB'
    AS $$
DECLARE
    kind text := dbdedup.hash_column(hash_kind);
    started timestamptz := clock_timestamp();
    st dbdedup.match_state;
    mark bigint;
    is_full boolean;
    keep_distance integer;
    n_total bigint;
    n_pending bigint;
    chosen text;
    n_candidates bigint;
    n_value_pairs bigint;
    n_pairs bigint;
    flipped bigint;
BEGIN
    IF max_distance IS NULL OR max_distance < 0 OR max_distance > 64 THEN
        RAISE EXCEPTION 'threshold must be a Hamming distance from 0 to 64, not %', max_distance;
    END IF;
    IF method NOT IN ('auto', 'scan', 'blocks', 'lsh') THEN
        RAISE EXCEPTION 'unknown matching method %', method USING HINT = 'use auto, scan, blocks or lsh';
    END IF;
    IF method = 'blocks' AND max_distance > 15 THEN
        RAISE EXCEPTION 'the blocks method is exact for thresholds 0 to 15, not %', max_distance
            USING HINT = 'use method scan (any threshold) or lsh';
    END IF;
    -- one matcher at a time (a full run may truncate the shared work tables)
    PERFORM pg_advisory_xact_lock(7220002);
    SELECT * INTO st FROM dbdedup.match_state s WHERE s.hash_kind = kind;
    mark := coalesce((SELECT max(change_seq) FROM dbdedup.images), 0);
    is_full := full_rematch OR st IS NULL OR st.hash_kind IS NULL OR max_distance > st.max_distance
               OR common_limit <> st.common_limit
               -- the unlogged tables are empty after a crash
               OR NOT EXISTS (SELECT 1 FROM dbdedup.hash_values v WHERE v.hash_kind = kind);
    keep_distance := CASE WHEN is_full THEN greatest(max_distance, coalesce(st.max_distance, 0))
                          ELSE st.max_distance END;
    IF full_rematch THEN
        keep_distance := max_distance;
    END IF;

    -- the distinct values as they are now; distinct files are counted only where a value has 2+ images
    CREATE TEMP TABLE match_fresh ON COMMIT DROP AS
    SELECT x.value, count(*)::integer AS images, count(*)::integer AS distinct_files, NULL::text AS common_reason
    FROM (SELECT CASE kind WHEN 'phash' THEN i.phash WHEN 'dhash' THEN i.dhash ELSE i.ahash END AS value
          FROM dbdedup.images i WHERE i.status = 'ok') x
    GROUP BY x.value;
    EXECUTE format($q$
        UPDATE pg_temp.match_fresh f SET distinct_files = (SELECT count(DISTINCT i.sha256) FROM dbdedup.images i
                                                           WHERE i.status = 'ok' AND i.%1$I = f.value)
        WHERE f.images > 1 $q$, kind);
    UPDATE match_fresh f SET common_reason = CASE WHEN dbdedup.is_low_information(f.value) THEN 'low_information'
                                                  ELSE 'shared_by_many' END
    WHERE dbdedup.is_low_information(f.value) OR f.distinct_files > common_limit;
    RAISE DEBUG 'dbdedup.match: % after % s', 'distinct values counted', round(extract(epoch FROM clock_timestamp() - started)::numeric, 2);
    IF NOT is_full THEN
        -- what changed among the values, in one pass (a full join of the counts now and then)
        CREATE TEMP TABLE match_diff ON COMMIT DROP AS
        SELECT coalesce(f.value, v.value) AS value, f.images, f.distinct_files, f.common_reason,
               CASE WHEN v.value IS NULL THEN 'new' WHEN f.value IS NULL THEN 'gone'
                    WHEN v.is_common <> (f.common_reason IS NOT NULL) THEN 'flipped' ELSE 'counts' END AS change
        FROM match_fresh f
        FULL JOIN (SELECT h.value, h.images, h.distinct_files, h.is_common
                   FROM dbdedup.hash_values h WHERE h.hash_kind = kind) v ON v.value = f.value
        WHERE v.value IS NULL OR f.value IS NULL
           OR (v.images, v.distinct_files, v.is_common) IS DISTINCT FROM (f.images, f.distinct_files, f.common_reason IS NOT NULL);
        -- a value that became (or stopped being) over-common changes pairs of unchanged images
        IF EXISTS (SELECT 1 FROM match_diff d WHERE d.change = 'flipped') THEN
            is_full := true;
            keep_distance := greatest(max_distance, st.max_distance);
        END IF;
    END IF;

    IF is_full THEN
        DELETE FROM dbdedup.pairs p WHERE p.hash_kind = kind;
        IF EXISTS (SELECT 1 FROM dbdedup.hash_values v WHERE v.hash_kind <> kind) THEN
            DELETE FROM dbdedup.value_pairs p WHERE p.hash_kind = kind;
            DELETE FROM dbdedup.hash_values v WHERE v.hash_kind = kind;
        ELSE
            -- internal tables nobody else reads: truncating is far cheaper than deleting a million rows
            TRUNCATE dbdedup.value_pairs, dbdedup.hash_values;
        END IF;
        -- every value is probed (all_values below): no pending flags to write and clear
        INSERT INTO dbdedup.hash_values (hash_kind, value, images, distinct_files, is_common, common_reason, pending)
        SELECT kind, f.value, f.images, f.distinct_files, f.common_reason IS NOT NULL, f.common_reason, false
        FROM match_fresh f;
        CREATE TEMP TABLE match_changed ON COMMIT DROP AS
        SELECT i.id FROM dbdedup.images i WHERE false;
    ELSE
        CREATE TEMP TABLE match_changed ON COMMIT DROP AS
        SELECT i.id FROM dbdedup.images i WHERE i.change_seq > st.matched_seq;
        ALTER TABLE match_changed ADD PRIMARY KEY (id);
        -- pairs of changed, missing or failed images go; changed ok images are paired again below
        DELETE FROM dbdedup.pairs p USING match_changed c WHERE p.hash_kind = kind AND p.image_a = c.id;
        DELETE FROM dbdedup.pairs p USING match_changed c WHERE p.hash_kind = kind AND p.image_b = c.id;
        DELETE FROM dbdedup.value_pairs p USING match_diff d
        WHERE p.hash_kind = kind AND d.change = 'gone' AND p.value_a = d.value;
        DELETE FROM dbdedup.value_pairs p USING match_diff d
        WHERE p.hash_kind = kind AND d.change = 'gone' AND p.value_b = d.value;
        DELETE FROM dbdedup.hash_values v USING match_diff d
        WHERE v.hash_kind = kind AND d.change = 'gone' AND v.value = d.value;
        UPDATE dbdedup.hash_values v SET images = d.images, distinct_files = d.distinct_files
        FROM match_diff d WHERE v.hash_kind = kind AND d.change = 'counts' AND v.value = d.value;
        INSERT INTO dbdedup.hash_values (hash_kind, value, images, distinct_files, is_common, common_reason, pending)
        SELECT kind, d.value, d.images, d.distinct_files, d.common_reason IS NOT NULL, d.common_reason, true
        FROM match_diff d WHERE d.change = 'new';
    END IF;
    ANALYZE dbdedup.hash_values;

    RAISE DEBUG 'dbdedup.match: % after % s', 'hash_values written', round(extract(epoch FROM clock_timestamp() - started)::numeric, 2);
    SELECT count(*), count(*) FILTER (WHERE v.pending OR is_full) INTO n_total, n_pending
    FROM dbdedup.hash_values v WHERE v.hash_kind = kind AND NOT v.is_common;
    chosen := CASE WHEN method = 'auto' THEN dbdedup.choose_method(n_total, n_pending, keep_distance) ELSE method END;
    IF chosen = 'blocks' AND keep_distance > 15 THEN
        chosen := 'scan';
    END IF;
    n_candidates := CASE chosen
        WHEN 'scan' THEN dbdedup.match_values_scan(kind, keep_distance, is_full)
        WHEN 'blocks' THEN dbdedup.match_values_blocks(kind, keep_distance, is_full)
        ELSE dbdedup.match_values_lsh(kind, keep_distance, is_full) END;
    RAISE DEBUG 'dbdedup.match: % after % s', 'method done', round(extract(epoch FROM clock_timestamp() - started)::numeric, 2);
    IF NOT is_full THEN
        UPDATE dbdedup.hash_values v SET pending = false WHERE v.hash_kind = kind AND v.pending;
    END IF;

    -- image pairs: same value (exact copies first: same SHA-256), then the value pairs expanded
    IF is_full THEN
        EXECUTE format($q$
            INSERT INTO dbdedup.pairs (hash_kind, image_a, image_b, distance, is_exact)
            SELECT %1$L, a.id, b.id, 0, a.sha256 = b.sha256
            FROM dbdedup.hash_values v
            JOIN dbdedup.images a ON a.status = 'ok' AND a.%2$I = v.value
            JOIN dbdedup.images b ON b.status = 'ok' AND b.%2$I = v.value AND a.id < b.id
            WHERE v.hash_kind = %1$L AND v.images > 1 AND (NOT v.is_common OR a.sha256 = b.sha256)
            UNION ALL
            SELECT %1$L, least(a.id, b.id), greatest(a.id, b.id), vp.distance, false
            FROM dbdedup.value_pairs vp
            JOIN dbdedup.images a ON a.status = 'ok' AND a.%2$I = vp.value_a
            JOIN dbdedup.images b ON b.status = 'ok' AND b.%2$I = vp.value_b
            WHERE vp.hash_kind = %1$L
            $q$, kind, kind);
    ELSE
        EXECUTE format($q$
            INSERT INTO dbdedup.pairs (hash_kind, image_a, image_b, distance, is_exact)
            SELECT %1$L, least(x.id, y.id), greatest(x.id, y.id), 0, x.sha256 = y.sha256
            FROM match_changed c
            JOIN dbdedup.images x ON x.id = c.id AND x.status = 'ok'
            JOIN dbdedup.images y ON y.status = 'ok' AND y.%2$I = x.%2$I AND y.id <> x.id
            JOIN dbdedup.hash_values v ON v.hash_kind = %1$L AND v.value = x.%2$I
            WHERE NOT v.is_common OR x.sha256 = y.sha256
            UNION ALL
            SELECT %1$L, least(x.id, y.id), greatest(x.id, y.id), vp.distance, false
            FROM match_changed c
            JOIN dbdedup.images x ON x.id = c.id AND x.status = 'ok'
            JOIN dbdedup.value_pairs vp ON vp.hash_kind = %1$L AND vp.value_a = x.%2$I
            JOIN dbdedup.images y ON y.status = 'ok' AND y.%2$I = vp.value_b
            UNION ALL
            SELECT %1$L, least(x.id, y.id), greatest(x.id, y.id), vp.distance, false
            FROM match_changed c
            JOIN dbdedup.images x ON x.id = c.id AND x.status = 'ok'
            JOIN dbdedup.value_pairs vp ON vp.hash_kind = %1$L AND vp.value_b = x.%2$I
            JOIN dbdedup.images y ON y.status = 'ok' AND y.%2$I = vp.value_a
            ON CONFLICT DO NOTHING
            $q$, kind, kind);
    END IF;

    RAISE DEBUG 'dbdedup.match: % after % s', 'image pairs written', round(extract(epoch FROM clock_timestamp() - started)::numeric, 2);
    SELECT count(*) INTO n_value_pairs FROM dbdedup.value_pairs p WHERE p.hash_kind = kind;
    SELECT count(*) INTO n_pairs FROM dbdedup.pairs p WHERE p.hash_kind = kind;
    INSERT INTO dbdedup.match_state AS s (hash_kind, max_distance, common_limit, matched_seq, method, mode,
                                          candidates, value_pairs, pairs, seconds, full_match_at, matched_at)
    VALUES (kind, keep_distance, common_limit, mark, chosen, CASE WHEN is_full THEN 'full' ELSE 'incremental' END,
            n_candidates, n_value_pairs, n_pairs, extract(epoch FROM clock_timestamp() - started), now(), now())
    ON CONFLICT ON CONSTRAINT match_state_pkey DO UPDATE SET
        max_distance = excluded.max_distance, common_limit = excluded.common_limit,
        matched_seq = excluded.matched_seq, method = excluded.method, mode = excluded.mode,
        candidates = excluded.candidates, value_pairs = excluded.value_pairs, pairs = excluded.pairs,
        seconds = excluded.seconds, matched_at = excluded.matched_at,
        full_match_at = CASE WHEN excluded.mode = 'full' THEN excluded.full_match_at ELSE s.full_match_at END;
    DROP TABLE match_fresh;
    DROP TABLE match_changed;
    DROP TABLE IF EXISTS match_diff;
    RETURN QUERY SELECT chosen, CASE WHEN is_full THEN 'full' ELSE 'incremental' END, keep_distance, n_total, n_pending,
                        n_candidates, n_value_pairs, n_pairs, extract(epoch FROM clock_timestamp() - started)::double precision;
END
$$;
COMMENT ON FUNCTION dbdedup.match(integer, text, text, boolean, integer) IS
    'Find every pair of ok images within max_distance for one hash kind and store it in dbdedup.pairs. Incremental: only '
    'images changed since the last match are compared (against all); a larger threshold than before, a new common_limit '
    'or full_rematch re-matches everything. method: auto, scan, blocks (exact, 0-15) or lsh (approximate). '
    'Pairs are kept up to the largest threshold asked so far.';

-- ------------------------------------------------------------------ clusters

CREATE FUNCTION dbdedup.build_clusters(max_distance integer, hash_kind text DEFAULT 'phash', keeper_rule text DEFAULT 'largest',
                                       reference_paths text[] DEFAULT '{}')
    RETURNS TABLE (clusters bigint, members bigint, split_rounds integer, seconds double precision)
    LANGUAGE plpgsql
    SET work_mem = '256MB'
    AS $$
DECLARE
    kind text := dbdedup.hash_column(hash_kind);
    started timestamptz := clock_timestamp();
    st dbdedup.match_state;
    changed bigint;
    rounds integer := 0;
    n_clusters bigint;
    n_members bigint;
BEGIN
    IF keeper_rule NOT IN ('largest', 'newest', 'oldest') THEN
        RAISE EXCEPTION 'unknown keeper rule %', keeper_rule USING HINT = 'use largest, newest or oldest';
    END IF;
    SELECT * INTO st FROM dbdedup.match_state s WHERE s.hash_kind = kind;
    IF st.hash_kind IS NULL OR st.max_distance < max_distance THEN
        PERFORM dbdedup.match(max_distance, kind);
        SELECT * INTO st FROM dbdedup.match_state s WHERE s.hash_kind = kind;
    END IF;
    PERFORM pg_advisory_xact_lock(7220003);

    CREATE TEMP TABLE cc_member (image_id bigint PRIMARY KEY, hash bigint NOT NULL, sha256 bytea, rank_key bigint NOT NULL UNIQUE,
                                 done boolean NOT NULL DEFAULT false) ON COMMIT DROP;
    EXECUTE format($q$
        INSERT INTO pg_temp.cc_member (image_id, hash, sha256, rank_key)
        SELECT i.id, i.%1$I, i.sha256,
               row_number() OVER (ORDER BY dbdedup.is_under(i.path, %2$L) DESC,
                   CASE %3$L WHEN 'newest' THEN -i.mtime_ns WHEN 'oldest' THEN i.mtime_ns END,
                   CASE %3$L WHEN 'largest' THEN -coalesce(i.width::bigint * i.height, 0) END,
                   CASE %3$L WHEN 'largest' THEN -i.size_bytes END,
                   i.mtime_ns, i.id)
        FROM dbdedup.images i
        WHERE i.status = 'ok' AND i.id IN (SELECT p.image_a FROM dbdedup.pairs p WHERE p.hash_kind = %4$L AND p.distance <= %5$s
                                           UNION SELECT p.image_b FROM dbdedup.pairs p WHERE p.hash_kind = %4$L AND p.distance <= %5$s)
        $q$, kind, reference_paths, keeper_rule, kind, max_distance);
    -- images are known by their keeper rank from here on: a smaller rank is a better keeper
    CREATE TEMP TABLE cc_edge ON COMMIT DROP AS
    SELECT ma.rank_key AS a, mb.rank_key AS b
    FROM dbdedup.pairs p
    JOIN cc_member ma ON ma.image_id = p.image_a
    JOIN cc_member mb ON mb.image_id = p.image_b
    WHERE p.hash_kind = kind AND p.distance <= max_distance;
    INSERT INTO cc_edge SELECT b, a FROM cc_edge;
    CREATE INDEX ON cc_edge (a);
    CREATE TEMP TABLE cc_keeper (node bigint PRIMARY KEY) ON COMMIT DROP;
    DELETE FROM dbdedup.cluster_assignments;

    -- Greedy stars, set-based: the best remaining image (smallest rank) keeps every remaining
    -- image it is paired with; repeated on what is left. In each round every image with no
    -- better remaining neighbour is a keeper (keepers are never neighbours of each other), and
    -- each neighbour joins its best keeper: the same clusters as the sequential greedy pass, in
    -- few rounds. A component whose best image is within the threshold of all the others is one
    -- cluster; a chain of weak links is split, so every member is within the threshold of its keeper.
    LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM cc_edge);
        rounds := rounds + 1;
        TRUNCATE cc_keeper;
        INSERT INTO cc_keeper SELECT e.a FROM cc_edge e GROUP BY e.a HAVING min(e.b) > e.a;
        INSERT INTO dbdedup.cluster_assignments (image_id, cluster_id, is_keeper, distance_to_keeper)
        SELECT m.image_id, m.image_id, true, 0
        FROM cc_keeper k JOIN cc_member m ON m.rank_key = k.node
        UNION ALL
        SELECT m.image_id, km.image_id, false,
               CASE WHEN m.sha256 = km.sha256 THEN 0 ELSE bit_count((m.hash # km.hash)::bit(64))::integer END
        FROM (SELECT e.b AS node, min(e.a) AS keeper
              FROM cc_edge e JOIN cc_keeper k ON k.node = e.a
              GROUP BY e.b) j
        JOIN cc_member m ON m.rank_key = j.node
        JOIN cc_member km ON km.rank_key = j.keeper;
        -- a keeper whose neighbours all joined better keepers is no cluster
        DELETE FROM dbdedup.cluster_assignments a
        USING cc_keeper k JOIN cc_member m ON m.rank_key = k.node
        WHERE a.image_id = m.image_id
          AND NOT EXISTS (SELECT 1 FROM dbdedup.cluster_assignments o WHERE o.cluster_id = a.image_id AND NOT o.is_keeper);
        UPDATE cc_member m SET done = true
        FROM dbdedup.cluster_assignments a WHERE a.image_id = m.image_id AND NOT m.done;
        DELETE FROM cc_edge e USING cc_member m WHERE m.done AND m.rank_key = e.a;
        DELETE FROM cc_edge e USING cc_member m WHERE m.done AND m.rank_key = e.b;
    END LOOP;

    SELECT count(DISTINCT a.cluster_id), count(*) INTO n_clusters, n_members FROM dbdedup.cluster_assignments a;
    INSERT INTO dbdedup.cluster_parameters AS p (singleton, max_distance, hash_kind, keeper_rule, reference_paths, matched_seq,
                                                 clusters, members, split_rounds, seconds, built_at)
    VALUES (true, max_distance, kind, keeper_rule, reference_paths, st.matched_seq, n_clusters, n_members, greatest(rounds - 1, 0),
            extract(epoch FROM clock_timestamp() - started), now())
    ON CONFLICT (singleton) DO UPDATE SET
        max_distance = excluded.max_distance, hash_kind = excluded.hash_kind, keeper_rule = excluded.keeper_rule,
        reference_paths = excluded.reference_paths, matched_seq = excluded.matched_seq, clusters = excluded.clusters,
        members = excluded.members, split_rounds = excluded.split_rounds, seconds = excluded.seconds, built_at = excluded.built_at;
    DROP TABLE cc_member;
    DROP TABLE cc_edge;
    DROP TABLE cc_keeper;
    RETURN QUERY SELECT n_clusters, n_members, greatest(rounds - 1, 0), extract(epoch FROM clock_timestamp() - started)::double precision;
END
$$;
COMMENT ON FUNCTION dbdedup.build_clusters(integer, text, text, text[]) IS
    'Cluster the pairs within max_distance (matching first if needed). Keeper order: reference paths first, then the keeper '
    'rule (largest = most pixels, then largest file, then oldest; newest; oldest). Greedy stars: the best image keeps every '
    'image paired with it, repeated on the rest (set-based rounds). A connected component whose best image is within '
    'max_distance of all others is one cluster; chains of weak links are split, so every member is within max_distance of '
    'its keeper. Replaces the current clustering.';

CREATE PROCEDURE dbdedup.refresh(max_distance integer DEFAULT NULL, hash_kind text DEFAULT NULL)
    LANGUAGE plpgsql
    AS $$
DECLARE
    cp dbdedup.cluster_parameters;
    kind text;
    threshold integer;
BEGIN
    SELECT * INTO cp FROM dbdedup.cluster_parameters WHERE singleton;
    kind := coalesce(hash_kind, cp.hash_kind, 'phash');
    threshold := coalesce(max_distance, cp.max_distance, 6);
    PERFORM dbdedup.match(threshold, kind);
    PERFORM dbdedup.build_clusters(threshold, kind, coalesce(cp.keeper_rule, 'largest'), coalesce(cp.reference_paths, '{}'));
END
$$;
COMMENT ON PROCEDURE dbdedup.refresh(integer, text) IS
    'Incremental matching of new and changed images, then the clusters rebuilt with the stored parameters. '
    'For pg_cron: SELECT cron.schedule(''dbdedup'', ''*/15 * * * *'', ''CALL dbdedup.refresh()'').';

-- ------------------------------------------------------------------ queries for psql users

CREATE FUNCTION dbdedup.similar_to_hash(hash bigint, max_distance integer DEFAULT 6, hash_kind text DEFAULT 'phash')
    RETURNS TABLE (image_id bigint, path text, distance integer, width integer, height integer, size_bytes bigint)
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    RETURN QUERY EXECUTE format($q$
        SELECT i.id, i.path, bit_count((i.%1$I # $1)::bit(64))::integer AS distance, i.width, i.height, i.size_bytes
        FROM dbdedup.images i
        WHERE i.status = 'ok' AND bit_count((i.%1$I # $1)::bit(64)) <= $2
        ORDER BY 3, i.path
        $q$, dbdedup.hash_column(hash_kind))
    USING hash, max_distance;
END
$$;
COMMENT ON FUNCTION dbdedup.similar_to_hash(bigint, integer, text) IS
    'The ok images whose hash is within max_distance of a hash value, closest first (a scan: about 10 M images a second).';

CREATE FUNCTION dbdedup.similar(image_id bigint, max_distance integer DEFAULT 6, hash_kind text DEFAULT 'phash')
    RETURNS TABLE (image_id bigint, path text, distance integer, width integer, height integer, size_bytes bigint)
    LANGUAGE sql STABLE
    AS $$
        SELECT s.* FROM dbdedup.images i,
             dbdedup.similar_to_hash(CASE $3 WHEN 'phash' THEN i.phash WHEN 'dhash' THEN i.dhash ELSE i.ahash END, $2, $3) s
        WHERE i.id = $1 AND s.image_id <> $1
    $$;
COMMENT ON FUNCTION dbdedup.similar(bigint, integer, text) IS
    'The images within max_distance of one image (itself excluded), closest first. Example: SELECT * FROM dbdedup.similar(42, 6).';

CREATE FUNCTION dbdedup.similar(path text, max_distance integer DEFAULT 6, hash_kind text DEFAULT 'phash')
    RETURNS TABLE (image_id bigint, path text, distance integer, width integer, height integer, size_bytes bigint)
    LANGUAGE sql STABLE
    AS $$
        SELECT s.* FROM dbdedup.images i,
             dbdedup.similar(i.id, $2, $3) s
        WHERE i.path = $1
    $$;
COMMENT ON FUNCTION dbdedup.similar(text, integer, text) IS
    'The images within max_distance of the image stored at this path. Example: SELECT * FROM dbdedup.similar(''/photos/a.jpg'').';

CREATE FUNCTION dbdedup.grant_read_access(role_name text) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA dbdedup TO %I', role_name);
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA dbdedup TO %I', role_name);
    EXECUTE format('GRANT EXECUTE ON FUNCTION dbdedup.hamming(bigint, bigint), dbdedup.similar(bigint, integer, text), '
                   'dbdedup.similar(text, integer, text), dbdedup.similar_to_hash(bigint, integer, text), '
                   'dbdedup.is_under(text, text[]), dbdedup.hash_column(text) TO %I', role_name);
END
$$;
COMMENT ON FUNCTION dbdedup.grant_read_access(text) IS
    'Let an existing role read every dbdedup table and view and call hamming() and similar(), without write rights. '
    'Example: CREATE ROLE analyst LOGIN; SELECT dbdedup.grant_read_access(''analyst'');';
