-- Matching: pairs of near-duplicate images from their stored hashes.
--
-- Data flow: dbdedup.images -> dbdedup.hash_values (one row per distinct hash value: identical
-- values are collapsed before any method runs) -> dbdedup.value_pairs (pairs of values within
-- the largest threshold asked so far) -> dbdedup.pairs (image pairs; exact copies as stars).
-- Methods: scan (exact, small sets), blocks (exact, pigeonhole multi-index hashing, thresholds
-- 0-15), lsh (bit sampling, recall >= 0.99 by design for each pair at the threshold), lsh_adaptive
-- (the same tables, stopping once 0.99 of the pairs present are estimated found).
--
--   SELECT * FROM dbdedup.match(8);                  -- pairs up to distance 8 (incremental)

CREATE OR REPLACE FUNCTION dbdedup.hash_column(kind text) RETURNS text
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

CREATE OR REPLACE FUNCTION dbdedup.plan_blocks(values_total bigint, values_probed bigint, max_distance integer,
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

CREATE OR REPLACE FUNCTION dbdedup.lsh_mask(seed integer, bits integer) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
        SELECT coalesce(bit_or(1::bigint << b), 0)
        FROM (SELECT b FROM generate_series(0, 63) b ORDER BY hashint4(seed * 131 + b), b LIMIT least(bits, 64)) s
    $$;
COMMENT ON FUNCTION dbdedup.lsh_mask(integer, integer) IS
    'The key of table `seed` of the lsh methods: a pseudo-random but fixed set of `bits` of the 64, each set of that '
    'size as likely, so that every pair at distance d shares a table''s key with the same chance C(64-d, bits) / '
    'C(64, bits) (dbdedup.plan_lsh). The tables join on the masked value''s two halves, as bigint''s own hash '
    'folds bits j and j+32 together (keys differing in both would share a hash).';

CREATE OR REPLACE FUNCTION dbdedup.plan_lsh(values_total bigint, values_probed bigint, max_distance integer, target_recall double precision DEFAULT 0.99,
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
        -- a candidate (a pair sharing a key) costs about half a row: one round of 8 tables of 1M values
        -- (bench/match_bench.py's data, parallel workers) took 3.55 s at k=21 (2.0M candidates), 4.46 s
        -- at 20 (3.9M), 4.87 s at 19 (7.6M), 6.18 s at 18 (15.2M): 0.40 s a table plus 0.20 us a candidate
        cost := l * (values_total + values_probed + 0.5 * values_probed::double precision * values_total / 2 ^ k);
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

CREATE OR REPLACE FUNCTION dbdedup.choose_method(values_total bigint, values_probed bigint, max_distance integer) RETURNS text
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

CREATE OR REPLACE FUNCTION dbdedup.match_values_scan(kind text, max_distance integer, all_values boolean DEFAULT false) RETURNS bigint
    LANGUAGE plpgsql
    -- a parallel nested loop over sequential scans beats one index range scan per value
    SET enable_indexscan = off SET enable_bitmapscan = off
    AS $$
DECLARE
    n_candidates bigint;
    found bigint[];
BEGIN
    IF dbdedup.is_distributed() THEN
        RETURN dbdedup.match_values_scan_distributed(kind, max_distance, all_values);  -- sql/distributed.sql
    END IF;
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

CREATE OR REPLACE FUNCTION dbdedup.match_values_blocks(kind text, max_distance integer, all_values boolean DEFAULT false,
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
    IF dbdedup.is_distributed() THEN
        RETURN dbdedup.match_values_blocks_distributed(kind, max_distance, all_values, blocks, radii);  -- sql/distributed.sql
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

CREATE OR REPLACE FUNCTION dbdedup.lsh_estimated_recall(max_distance integer, key_bits integer, tables_done integer,
                                                    found_at integer[]) RETURNS double precision
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $$
DECLARE
    d integer;
    i integer;
    p double precision;
    q double precision;
    f double precision;
    s double precision;
    z constant double precision := 2;
    found_total double precision := 0;
    present double precision := 0;
BEGIN
    -- found_at[d] pairs at distance d were found by tables_done tables; each table finds a pair at
    -- distance d with p_d = C(64-d, k) / C(64, k), so by now with q_d = 1 - (1 - p_d)^tables_done.
    -- f_d ~ Binomial(n_d, q_d): the pairs present at d are at most the n with n q_d - z sqrt(n q_d (1 - q_d)) = f_d
    -- (z = 2, a one-sided bound per distance). The estimate is the found share of those upper bounds.
    FOR d IN 1 .. max_distance LOOP
        p := 1;
        FOR i IN 0 .. key_bits - 1 LOOP
            p := p * greatest(64 - d - i, 0)::double precision / (64 - i);
        END LOOP;
        q := 1 - (1 - p) ^ tables_done;
        f := coalesce(found_at[d], 0);
        IF q <= 0 THEN
            RETURN 0;
        END IF;
        s := (z * sqrt(q * (1 - q)) + sqrt(z * z * q * (1 - q) + 4 * q * f)) / (2 * q);
        found_total := found_total + f;
        present := present + greatest(s * s, f);
    END LOOP;
    RETURN CASE WHEN present = 0 THEN 1 ELSE found_total / present END;
END
$$;
COMMENT ON FUNCTION dbdedup.lsh_estimated_recall(integer, integer, integer, integer[]) IS
    'For the lsh_adaptive method: a lower estimate of the share of the value pairs within max_distance that the first '
    'tables_done tables of key_bits sampled bits found, from found_at[d] (distinct pairs found at each distance d) and '
    'each table''s known chance p_d to find a pair at distance d (the pairs present at d bounded above at z = 2).';

CREATE OR REPLACE FUNCTION dbdedup.match_values_lsh(kind text, max_distance integer, all_values boolean DEFAULT false,
                                         target_recall double precision DEFAULT 0.99,
                                         key_bits integer DEFAULT NULL, tables integer DEFAULT NULL,
                                         adaptive boolean DEFAULT false) RETURNS bigint
    LANGUAGE plpgsql
    SET work_mem = '256MB' SET enable_mergejoin = off
    AS $$
DECLARE
    n_total bigint;
    n_pending bigint;
    half boolean;
    plan record;
    t integer;
    i integer;
    last integer;
    mask bigint;
    parts text[];
    n_candidates bigint := 0;
    c bigint;
    found bigint[];
    found_at integer[];
    estimate double precision;
    started timestamptz := clock_timestamp();
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
    IF dbdedup.is_distributed() THEN
        -- (every table of the plan: lsh_adaptive runs as lsh on a cluster)
        RETURN dbdedup.match_values_lsh_distributed(kind, max_distance, all_values, key_bits, tables);  -- sql/distributed.sql
    END IF;

    IF half THEN
        -- Every value against every other (a full match): each table is a self hash join of all the
        -- values. Measured on 1M values (bench/match_bench.py), three things halve its cost: the values
        -- copied once into a one-column table (unlogged, so parallel workers scan it, unlike a temporary
        -- one); a small work_mem, so PostgreSQL splits each hash join into batches whose hash tables fit
        -- in the CPU cache (a 1M-key table does not); and 8 tables in one query (UNION ALL: one plan,
        -- the workers move from table to table). The join is on the key's two halves: bigint's hash folds
        -- bit j onto bit j+32, so one bigint key holding both would put 2 keys in one hash bucket for each
        -- such pair of bits (2x slower on 1M values). A pair found by several tables is kept once.
        TRUNCATE dbdedup.match_work;
        INSERT INTO dbdedup.match_work (value)
        SELECT v.value FROM dbdedup.hash_values v WHERE v.hash_kind = kind AND NOT v.is_common;
        ANALYZE dbdedup.match_work;
        CREATE TEMP TABLE lsh_found (value_a bigint, value_b bigint, distance smallint, PRIMARY KEY (value_a, value_b))
            ON COMMIT DROP;
        PERFORM set_config('work_mem', '1MB', true);
        t := 1;
        WHILE t <= tables LOOP
            last := least(t + 7, tables);
            parts := '{}';
            FOR i IN t .. last LOOP
                mask := dbdedup.lsh_mask(i, key_bits);
                parts := parts || format($q$
                    SELECT p.value AS pv, b.value AS bv
                    FROM dbdedup.match_work p
                    JOIN dbdedup.match_work b ON (b.value & %1$s) >> 32 = (p.value & %1$s) >> 32
                                             AND b.value & %1$s & 4294967295 = p.value & %1$s & 4294967295
                    WHERE p.value < b.value $q$, mask);
            END LOOP;
            EXECUTE format($q$
                SELECT count(*), array_agg(ARRAY[pv, bv, d]) FILTER (WHERE d <= %1$s)
                FROM (SELECT pv, bv, bit_count((pv # bv)::bit(64)) AS d FROM (%2$s) u) c $q$,
                max_distance, array_to_string(parts, ' UNION ALL '))
            INTO c, found;
            RAISE DEBUG 'dbdedup.match_values_lsh: tables % to % of % (% bits): % candidates, after % s',
                t, last, tables, key_bits, c, round(extract(epoch FROM clock_timestamp() - started)::numeric, 2);
            n_candidates := n_candidates + c;
            INSERT INTO pg_temp.lsh_found SELECT found[k.n][1], found[k.n][2], found[k.n][3]
            FROM generate_subscripts(found, 1) AS k(n)
            ON CONFLICT DO NOTHING;
            t := last + 1;
            IF adaptive AND t <= tables THEN
                SELECT array_agg(coalesce(f.n, 0) ORDER BY d.d) INTO found_at
                FROM generate_series(1, max_distance) AS d(d)
                LEFT JOIN (SELECT distance, count(*)::integer AS n FROM pg_temp.lsh_found GROUP BY distance) f
                  ON f.distance = d.d;
                estimate := dbdedup.lsh_estimated_recall(max_distance, key_bits, last, found_at);
                RAISE DEBUG 'dbdedup.match_values_lsh: after % tables, estimated recall %', last, round(estimate::numeric, 4);
                EXIT WHEN estimate >= target_recall;
            END IF;
        END LOOP;
        PERFORM set_config('work_mem', '256MB', true);
        INSERT INTO dbdedup.value_pairs (hash_kind, value_a, value_b, distance)
        SELECT kind, f.value_a, f.value_b, f.distance FROM pg_temp.lsh_found f
        ON CONFLICT DO NOTHING;
        DROP TABLE pg_temp.lsh_found;
        TRUNCATE dbdedup.match_work;
        RETURN n_candidates;
    END IF;

    -- the values changed since the last match against all: the probe side is small, one join a table
    FOR t IN 1 .. tables LOOP
        mask := dbdedup.lsh_mask(t, key_bits);
        EXECUTE format($q$
            SELECT count(*),
                   array_agg(ARRAY[least(pv, bv), greatest(pv, bv), d]) FILTER (WHERE d <= %1$s)
            FROM (
                SELECT p.value AS pv, b.value AS bv, bit_count((p.value # b.value)::bit(64)) AS d
                FROM dbdedup.hash_values p
                JOIN dbdedup.hash_values b
                  ON b.hash_kind = %3$L AND NOT b.is_common
                 AND (b.value & %2$s) >> 32 = (p.value & %2$s) >> 32
                 AND b.value & %2$s & 4294967295 = p.value & %2$s & 4294967295
                WHERE p.hash_kind = %3$L AND p.pending AND NOT p.is_common
                  AND b.value <> p.value AND (NOT b.pending OR p.value < b.value)
            ) c
            $q$,
            max_distance, mask, kind)
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
COMMENT ON FUNCTION dbdedup.match_values_lsh(text, integer, boolean, double precision, integer, integer, boolean) IS
    'Method lsh (approximate, for very large sets): bit-sampling LSH. Each of L tables is an equi-join on hash & mask '
    'for a fixed random mask of k bits (dbdedup.lsh_mask); every candidate is re-checked exactly, so no pair beyond the '
    'threshold is ever returned. k and L from dbdedup.plan_lsh reach target_recall for each pair at exactly the '
    'threshold (closer pairs: higher). A full run joins a one-column copy of the values (dbdedup.match_work), 8 tables '
    'a query, in cache-sized batches. adaptive (method lsh_adaptive; full runs on one server only, otherwise every '
    'table runs): stops after a round of 8 tables once dbdedup.lsh_estimated_recall says target_recall of the pairs '
    'present were found. That is not a per-pair promise: a rare pair at the threshold among many closer ones is found '
    'with a lower chance than with lsh.';

CREATE OR REPLACE FUNCTION dbdedup.match(max_distance integer, hash_kind text DEFAULT 'phash', method text DEFAULT 'auto',
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
    rebuild_key boolean;
    work_table text;
BEGIN
    IF max_distance IS NULL OR max_distance < 0 OR max_distance > 64 THEN
        RAISE EXCEPTION 'threshold must be a Hamming distance from 0 to 64, not %', max_distance;
    END IF;
    IF method NOT IN ('auto', 'scan', 'blocks', 'lsh', 'lsh_adaptive') THEN
        RAISE EXCEPTION 'unknown matching method %', method USING HINT = 'use auto, scan, blocks, lsh or lsh_adaptive';
    END IF;
    IF method = 'blocks' AND max_distance > 15 THEN
        RAISE EXCEPTION 'the blocks method is exact for thresholds 0 to 15, not %', max_distance
            USING HINT = 'use method scan (any threshold) or lsh';
    END IF;
    -- one matcher at a time (a full run may truncate the shared work tables); a load holds the
    -- same key for its whole run (dbdedup/load.py LOAD_LOCK_KEY), so the change_seq mark below
    -- cannot miss a load that commits later
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

    IF NOT is_full THEN
        -- the distinct values as they are now, in one pass: (value, file) groups, then values
        EXECUTE format($q$
            CREATE TEMP TABLE match_fresh ON COMMIT DROP AS
            SELECT x.value, sum(x.n)::integer AS images, count(*)::integer AS distinct_files,
                   CASE WHEN dbdedup.is_low_information(x.value) THEN 'low_information'
                        WHEN count(*) > %2$s THEN 'shared_by_many' END AS common_reason
            FROM (SELECT i.%1$I AS value, count(*) AS n FROM dbdedup.images i WHERE i.status = 'ok'
                  GROUP BY i.%1$I, i.sha256) x
            GROUP BY x.value $q$, kind, common_limit);
        RAISE DEBUG 'dbdedup.match: % after % s', 'distinct values counted', round(extract(epoch FROM clock_timestamp() - started)::numeric, 2);
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
            rebuild_key := false;
        ELSE
            -- internal tables nobody else reads: truncating is far cheaper than deleting a million
            -- rows, and building the primary key after the rows far cheaper than row by row
            TRUNCATE dbdedup.value_pairs, dbdedup.hash_values;
            ALTER TABLE dbdedup.hash_values DROP CONSTRAINT hash_values_pkey;
            rebuild_key := true;
        END IF;
        -- every value is probed (all_values below): no pending flags to write and clear
        EXECUTE format($q$
            INSERT INTO dbdedup.hash_values (hash_kind, value, images, distinct_files, is_common, common_reason, pending)
            SELECT %3$L, x.value, sum(x.n)::integer, count(*)::integer,
                   dbdedup.is_low_information(x.value) OR count(*) > %2$s,
                   CASE WHEN dbdedup.is_low_information(x.value) THEN 'low_information'
                        WHEN count(*) > %2$s THEN 'shared_by_many' END,
                   false
            FROM (SELECT i.%1$I AS value, count(*) AS n FROM dbdedup.images i WHERE i.status = 'ok'
                  GROUP BY i.%1$I, i.sha256) x
            GROUP BY x.value $q$, kind, common_limit, kind);
        RAISE DEBUG 'dbdedup.match: % after % s', 'distinct values counted', round(extract(epoch FROM clock_timestamp() - started)::numeric, 2);
        IF rebuild_key THEN
            ALTER TABLE dbdedup.hash_values ADD CONSTRAINT hash_values_pkey PRIMARY KEY (hash_kind, value);
        END IF;
        CREATE TEMP TABLE match_changed ON COMMIT DROP AS
        SELECT i.id FROM dbdedup.images i WHERE false;
    ELSE
        CREATE TEMP TABLE match_changed ON COMMIT DROP AS
        SELECT i.id FROM dbdedup.images i WHERE i.change_seq > st.matched_seq;
        ALTER TABLE match_changed ADD PRIMARY KEY (id);

        -- Exact groups that gained or lost a member: the current ok members of every group a
        -- changed image is in now or was in before (its exact pairs name the old group), with
        -- whether each is the representative now and was a copy before (the image_b of an exact pair).
        -- In steps over temporary tables, each joining one shared table: the same rows as one
        -- statement with correlated subqueries, in a form Citus also runs (dbdedup.is_distributed).
        CREATE TEMP TABLE match_group ON COMMIT DROP AS
        SELECT m.id FROM pg_temp.match_changed m
        UNION
        SELECT CASE WHEN e.image_a = m.id THEN e.image_b ELSE e.image_a END
        FROM pg_temp.match_changed m
        JOIN dbdedup.pairs e ON e.hash_kind = kind AND e.is_exact AND m.id IN (e.image_a, e.image_b);
        EXECUTE format($q$
            CREATE TEMP TABLE match_member_found ON COMMIT DROP AS
            SELECT i.id, i.sha256, i.%1$I AS value
            FROM dbdedup.images i
            WHERE i.status = 'ok' AND i.sha256 IN (
                SELECT x.sha256 FROM dbdedup.images x
                WHERE x.id IN (SELECT g.id FROM pg_temp.match_group g) AND x.sha256 IS NOT NULL) $q$, kind);
        CREATE TEMP TABLE match_member ON COMMIT DROP AS
        SELECT f.id, f.sha256, f.value,
               f.id = min(f.id) OVER (PARTITION BY f.sha256) AS is_rep,
               f.id IN (SELECT c.id FROM pg_temp.match_changed c) AS changed,
               f.id IN (SELECT e.image_b FROM dbdedup.pairs e
                        WHERE e.hash_kind = kind AND e.is_exact AND e.image_b IN (SELECT o.id FROM pg_temp.match_member_found o)) AS was_copy
        FROM pg_temp.match_member_found f;

        -- pairs of changed, missing or failed images go; changed ok images are paired again below
        DELETE FROM dbdedup.pairs p USING match_changed c WHERE p.hash_kind = kind AND p.image_a = c.id;
        DELETE FROM dbdedup.pairs p USING match_changed c WHERE p.hash_kind = kind AND p.image_b = c.id;
        -- an unchanged representative that became a copy loses its star and its near pairs (those
        -- the transform or embedding signals found stay, as after a full match and the signals)
        DELETE FROM dbdedup.pairs p USING match_member m
        WHERE p.hash_kind = kind AND NOT m.changed AND NOT m.is_rep AND NOT m.was_copy
          AND (p.image_a = m.id OR p.image_b = m.id)
          AND (p.is_exact OR (p.transform_distance IS NULL AND p.similarity IS NULL));

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
        WHEN 'lsh_adaptive' THEN dbdedup.match_values_lsh(kind, keep_distance, is_full, adaptive => true)
        ELSE dbdedup.match_values_lsh(kind, keep_distance, is_full) END;
    RAISE DEBUG 'dbdedup.match: % after % s', 'method done', round(extract(epoch FROM clock_timestamp() - started)::numeric, 2);
    IF NOT is_full THEN
        UPDATE dbdedup.hash_values v SET pending = false WHERE v.hash_kind = kind AND v.pending;
    END IF;

    -- image pairs: exact groups as stars (each copy with its representative, the smallest id),
    -- then near pairs between representatives: same value (different files), and the value pairs expanded
    IF is_full THEN
        -- (a plain INSERT, no ON CONFLICT: the kind's pairs were all deleted above, and the three parts
        -- give disjoint pairs, each once: stars join files of one SHA-256, the others files of two;
        -- a representative has one value, so an image pair comes from one value or one value pair)
        -- one representative per value and file, for the values that can pair: never a copy, so
        -- a thousand copies on both sides of a value pair cost one image pair, not a million
        EXECUTE format($q$
            CREATE TEMP TABLE match_rep ON COMMIT DROP AS
            SELECT DISTINCT ON (x.value, i.sha256) x.value, i.id, i.sha256
            FROM (SELECT vp.value_a AS value FROM dbdedup.value_pairs vp WHERE vp.hash_kind = %1$L
                  UNION SELECT vp.value_b FROM dbdedup.value_pairs vp WHERE vp.hash_kind = %1$L
                  UNION SELECT v.value FROM dbdedup.hash_values v
                        WHERE v.hash_kind = %1$L AND v.distinct_files > 1 AND NOT v.is_common) x
            JOIN dbdedup.images i ON i.status = 'ok' AND i.%2$I = x.value
            ORDER BY x.value, i.sha256, i.id $q$, kind, kind);
        -- a file stored under two hash values (loaded by two hashing versions) has one representative
        -- (the first id of each file in a subquery of its own: a correlated one joins the temporary
        -- table with images, which Citus cannot run on the shards)
        DELETE FROM match_rep r
        USING (SELECT o.sha256, min(o.id) AS first_id FROM dbdedup.images o
               WHERE o.status = 'ok' AND o.sha256 IN (SELECT m.sha256 FROM match_rep m) GROUP BY o.sha256) g
        WHERE g.sha256 = r.sha256 AND g.first_id < r.id;
        EXECUTE format($q$
            INSERT INTO dbdedup.pairs (hash_kind, image_a, image_b, distance, is_exact)
            SELECT %1$L, g.rep, i.id, 0, true
            FROM (SELECT x.sha256, min(x.id) AS rep
                  FROM dbdedup.images x JOIN dbdedup.hash_values v ON v.hash_kind = %1$L AND v.value = x.%2$I
                  WHERE x.status = 'ok' AND v.images > v.distinct_files
                  GROUP BY x.sha256 HAVING count(*) > 1) g
            JOIN dbdedup.images i ON i.status = 'ok' AND i.sha256 = g.sha256 AND i.id > g.rep
            UNION ALL
            SELECT %1$L, a.id, b.id, 0, false
            FROM dbdedup.hash_values v
            JOIN pg_temp.match_rep a ON a.value = v.value
            JOIN pg_temp.match_rep b ON b.value = v.value AND a.id < b.id
            WHERE v.hash_kind = %1$L AND v.distinct_files > 1 AND NOT v.is_common
            UNION ALL
            SELECT %1$L, least(a.id, b.id), greatest(a.id, b.id), vp.distance, false
            FROM dbdedup.value_pairs vp
            JOIN pg_temp.match_rep a ON a.value = vp.value_a
            JOIN pg_temp.match_rep b ON b.value = vp.value_b AND a.sha256 <> b.sha256
            WHERE vp.hash_kind = %1$L
            $q$, kind, kind);
    ELSE
        -- stars of the groups that changed, then the near pairs of every representative that is
        -- new or changed, or was a copy before (it inherits nothing: its pairs are computed)
        INSERT INTO dbdedup.pairs (hash_kind, image_a, image_b, distance, is_exact)
        SELECT kind, r.id, m.id, 0, true
        FROM match_member m JOIN match_member r ON r.sha256 = m.sha256 AND r.is_rep
        WHERE NOT m.is_rep
        ON CONFLICT DO NOTHING;
        -- the values each such representative pairs with: its own (other files with the same
        -- value), and the other side of its value pairs; then the images with those values whose
        -- file is not a copy (the first ok image of its SHA-256)
        CREATE TEMP TABLE match_probe ON COMMIT DROP AS
        SELECT x.id, x.sha256, v.value AS other, 0 AS distance
        FROM pg_temp.match_member x
        JOIN dbdedup.hash_values v ON v.hash_kind = kind AND v.value = x.value AND NOT v.is_common
        WHERE x.is_rep AND (x.changed OR x.was_copy)
        UNION ALL
        SELECT x.id, x.sha256, vp.value_b, vp.distance
        FROM pg_temp.match_member x
        JOIN dbdedup.value_pairs vp ON vp.hash_kind = kind AND vp.value_a = x.value
        WHERE x.is_rep AND (x.changed OR x.was_copy)
        UNION ALL
        SELECT x.id, x.sha256, vp.value_a, vp.distance
        FROM pg_temp.match_member x
        JOIN dbdedup.value_pairs vp ON vp.hash_kind = kind AND vp.value_b = x.value
        WHERE x.is_rep AND (x.changed OR x.was_copy);
        EXECUTE format($q$
            CREATE TEMP TABLE match_near ON COMMIT DROP AS
            SELECT x.id AS x_id, y.id AS y_id, y.sha256, x.distance
            FROM pg_temp.match_probe x
            JOIN dbdedup.images y ON y.status = 'ok' AND y.%1$I = x.other AND y.sha256 <> x.sha256 $q$, kind);
        INSERT INTO dbdedup.pairs (hash_kind, image_a, image_b, distance, is_exact)
        SELECT kind, least(n.x_id, n.y_id), greatest(n.x_id, n.y_id), n.distance, false
        FROM pg_temp.match_near n
        JOIN (SELECT r.sha256, min(r.id) AS first_id FROM dbdedup.images r
              WHERE r.status = 'ok' AND r.sha256 IN (SELECT n2.sha256 FROM pg_temp.match_near n2)
              GROUP BY r.sha256) f ON f.sha256 = n.sha256 AND f.first_id = n.y_id
        ON CONFLICT DO NOTHING;
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
    -- the work tables (which ones depends on the mode) go now, so that another call in the same
    -- transaction can make them again; checked first, as DROP ... IF EXISTS would say NOTICE
    DROP TABLE match_changed;
    FOREACH work_table IN ARRAY ARRAY['match_fresh', 'match_diff', 'match_group', 'match_member_found', 'match_member',
                                        'match_probe', 'match_near', 'match_rep'] LOOP
        IF to_regclass('pg_temp.' || work_table) IS NOT NULL THEN
            EXECUTE format('DROP TABLE pg_temp.%I', work_table);
        END IF;
    END LOOP;
    RETURN QUERY SELECT chosen, CASE WHEN is_full THEN 'full' ELSE 'incremental' END, keep_distance, n_total, n_pending,
                        n_candidates, n_value_pairs, n_pairs, extract(epoch FROM clock_timestamp() - started)::double precision;
END
$$;
COMMENT ON FUNCTION dbdedup.match(integer, text, text, boolean, integer) IS
    'Find every pair of ok images within max_distance for one hash kind and store it in dbdedup.pairs, exact copies as '
    'stars (see the table''s comment). Incremental: only images changed since the last match are compared (against '
    'all), and the stars of the exact groups they join or leave are redrawn; a larger threshold than before, a new '
    'common_limit or full_rematch re-matches everything. method: auto, scan, blocks (exact, 0-15), lsh (approximate: '
    'recall >= 0.99 for each pair at the threshold) or lsh_adaptive (recall >= 0.99 of the pairs present, estimated). '
    'Pairs are kept up to the largest threshold asked so far. Waits for a running load (same advisory lock).';
