-- Matching on a Citus cluster: the value-pair methods as joins that run shard by shard.
--
-- On one server the blocks and lsh methods (sql/matching.sql) are hash joins on an expression of
-- the hash value (value & mask, or a probe of its Hamming ball); a hash join on an expression cannot
-- run where the rows are when dbdedup.hash_values is spread over workers by value. Here each step
-- first writes its keys to dbdedup.match_keys, distributed by key (sql/queries/distributed.sql):
-- part 0 holds every value under its block or LSH key, part 1 the probes (the keys of a value's
-- Hamming ball, blocks only). Citus moves the rows to the shard of their key (a repartitioned
-- INSERT ... SELECT, worker to worker), and the self-join on key then runs as one task per shard.
-- The candidates and the exact re-check are those of the single-server methods, so the value
-- pairs are the same; the single-server functions hand over to these when the schema is
-- distributed (dbdedup.is_distributed()), and are unchanged otherwise. These functions exist on
-- every server, so that one set of definitions serves both.

CREATE OR REPLACE FUNCTION dbdedup.is_distributed() RETURNS boolean
    LANGUAGE sql STABLE
    AS $$ SELECT to_regclass('dbdedup.image_paths') IS NOT NULL AND to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL $$;
COMMENT ON FUNCTION dbdedup.is_distributed() IS
    'True when the dbdedup tables are spread over a Citus cluster (dbdedup.image_paths exists only there).';

CREATE OR REPLACE FUNCTION dbdedup.insert_value_pairs(kind text, found bigint[]) RETURNS void
    LANGUAGE sql
    AS $$
        INSERT INTO dbdedup.value_pairs (hash_kind, value_a, value_b, distance)
        SELECT kind, found[k.n][1], found[k.n][2], found[k.n][3] FROM generate_subscripts(found, 1) AS k(n)
        ON CONFLICT DO NOTHING
    $$;
COMMENT ON FUNCTION dbdedup.insert_value_pairs(text, bigint[]) IS
    'Store value pairs given as an array of [value_a, value_b, distance] (value_a < value_b); pairs already there are kept.';

CREATE OR REPLACE FUNCTION dbdedup.match_values_scan_distributed(kind text, max_distance integer, all_values boolean DEFAULT false)
    RETURNS bigint
    LANGUAGE plpgsql
    AS $$
DECLARE
    n_candidates bigint;
    found bigint[];
BEGIN
    -- the scan is for small sets (dbdedup.choose_method): the values come to the coordinator
    CREATE TEMP TABLE scan_values ON COMMIT DROP AS
    SELECT v.value, v.pending FROM dbdedup.hash_values v WHERE v.hash_kind = kind AND NOT v.is_common;
    SELECT count(*),
           array_agg(ARRAY[least(pv, bv), greatest(pv, bv), d]) FILTER (WHERE d <= max_distance)
      INTO n_candidates, found
    FROM (
        SELECT p.value AS pv, b.value AS bv, bit_count((p.value # b.value)::bit(64)) AS d
        FROM pg_temp.scan_values p
        JOIN pg_temp.scan_values b
          ON b.value <> p.value AND (p.value < b.value OR (NOT all_values AND NOT b.pending))
        WHERE all_values OR p.pending
    ) c;
    PERFORM dbdedup.insert_value_pairs(kind, found);
    DROP TABLE pg_temp.scan_values;
    RETURN n_candidates;
END
$$;
COMMENT ON FUNCTION dbdedup.match_values_scan_distributed(text, integer, boolean) IS
    'Method scan on a Citus cluster: the non-common values are copied to the coordinator and compared there, as '
    'dbdedup.match_values_scan does (the scan is only chosen for small sets).';

CREATE OR REPLACE FUNCTION dbdedup.match_keys_add_values(kind text, mask bigint, all_values boolean) RETURNS void
    LANGUAGE sql
    AS $$
        -- Citus sends each row to the shard of its key (a repartitioned INSERT ... SELECT)
        INSERT INTO dbdedup.match_keys (part, key, value, pending, probed)
        SELECT 0, v.value & mask, v.value, v.pending OR all_values, false
        FROM dbdedup.hash_values v WHERE v.hash_kind = kind AND NOT v.is_common
    $$;
COMMENT ON FUNCTION dbdedup.match_keys_add_values(text, bigint, boolean) IS
    'Part 0 of dbdedup.match_keys: every non-common value of a hash kind under its key (value & mask); pending when '
    'all_values (a full match) or not matched yet.';

CREATE OR REPLACE FUNCTION dbdedup.match_keys_join(kind text, max_distance integer, half boolean, extra text DEFAULT '')
    RETURNS TABLE (candidates bigint, found bigint[])
    LANGUAGE plpgsql
    AS $$
BEGIN
    -- part 1 probes part 0 on the same key, so the join runs on each shard; the pairs found come
    -- back to the coordinator (few, next to the candidates) and are stored from there
    RETURN QUERY EXECUTE format($q$
        SELECT count(*),
               array_agg(ARRAY[least(pv, bv), greatest(pv, bv), d]) FILTER (WHERE d <= %1$s)
        FROM (
            SELECT p.value AS pv, b.value AS bv, bit_count((p.value # b.value)::bit(64)) AS d
            FROM dbdedup.match_keys p
            JOIN dbdedup.match_keys b ON b.key = p.key AND b.part = 0
            WHERE p.part = 1 AND %2$s %3$s
        ) c $q$,
        max_distance,
        CASE WHEN half THEN '(p.probed OR p.value < b.value)'
             ELSE '(b.value <> p.value AND (NOT b.pending OR p.value < b.value))' END,
        extra);
END
$$;
COMMENT ON FUNCTION dbdedup.match_keys_join(text, integer, boolean, text) IS
    'One step of a matching method on a Citus cluster: the self-join of dbdedup.match_keys on key (probes of part 1 '
    'against the values of part 0), with the exact re-check; returns the candidates compared and the pairs within '
    'max_distance. half: a full match (each pair once); else probes are pending values against all.';

CREATE OR REPLACE FUNCTION dbdedup.match_values_blocks_distributed(kind text, max_distance integer, all_values boolean,
                                                      blocks integer, radii integer[])
    RETURNS bigint
    LANGUAGE plpgsql
    SET work_mem = '256MB' SET enable_mergejoin = off
    AS $$
DECLARE
    half boolean;
    i integer;
    mask bigint;
    flips bigint[];
    disjoint text := '';
    n_candidates bigint := 0;
    r record;
BEGIN
    SELECT count(*) FILTER (WHERE pending OR all_values) = count(*) INTO half
    FROM dbdedup.hash_values WHERE hash_kind = kind AND NOT is_common;
    FOR i IN 0 .. blocks - 1 LOOP
        mask := dbdedup.interleaved_mask(blocks, i);
        flips := dbdedup.ball_masks(mask, radii[i + 1]);
        TRUNCATE dbdedup.match_keys;
        -- part 0: every value under its block key; part 1: the keys of its Hamming ball (a full
        -- match probes half the ball: a pair whose block keys differ only from the smaller key)
        PERFORM dbdedup.match_keys_add_values(kind, mask, all_values);
        INSERT INTO dbdedup.match_keys (part, key, value, pending, probed)
        SELECT 1, (v.value & mask) # f, v.value, true, f <> 0
        FROM dbdedup.hash_values v, unnest(flips) AS f
        WHERE v.hash_kind = kind AND NOT v.is_common AND (all_values OR v.pending)
          AND (NOT half OR f = 0 OR ((v.value & mask) # f) > (v.value & mask));
        -- statistics of what was just written: without them each shard's planner takes the
        -- table for empty and joins by a nested loop
        ANALYZE dbdedup.match_keys;
        SELECT * INTO r FROM dbdedup.match_keys_join(kind, max_distance, half, disjoint);
        RAISE DEBUG 'dbdedup.match_values_blocks_distributed: block % of % (radius %): % candidates',
            i + 1, blocks, radii[i + 1], r.candidates;
        n_candidates := n_candidates + r.candidates;
        PERFORM dbdedup.insert_value_pairs(kind, r.found);
        -- later blocks skip pairs this block already found (keeps candidates disjoint)
        disjoint := disjoint || format(' AND bit_count(((p.value # b.value) & %s)::bit(64)) > %s', mask, radii[i + 1]);
    END LOOP;
    TRUNCATE dbdedup.match_keys;
    RETURN n_candidates;
END
$$;
COMMENT ON FUNCTION dbdedup.match_values_blocks_distributed(text, integer, boolean, integer, integer[]) IS
    'Method blocks on a Citus cluster (called by dbdedup.match_values_blocks with its plan): per block, the block keys '
    'and the probes of each value''s Hamming ball are written to dbdedup.match_keys (distributed by key) and joined '
    'shard by shard. Same candidates and pairs as on one server.';

CREATE OR REPLACE FUNCTION dbdedup.match_values_lsh_distributed(kind text, max_distance integer, all_values boolean,
                                                   key_bits integer, tables integer)
    RETURNS bigint
    LANGUAGE plpgsql
    SET work_mem = '256MB' SET enable_mergejoin = off
    AS $$
DECLARE
    half boolean;
    t integer;
    mask bigint;
    n_candidates bigint := 0;
    r record;
BEGIN
    SELECT count(*) FILTER (WHERE pending OR all_values) = count(*) INTO half
    FROM dbdedup.hash_values WHERE hash_kind = kind AND NOT is_common;
    FOR t IN 1 .. tables LOOP
        mask := dbdedup.lsh_mask(t, key_bits);
        TRUNCATE dbdedup.match_keys;
        PERFORM dbdedup.match_keys_add_values(kind, mask, all_values);
        -- the probes are the values themselves (pending ones only in an incremental match)
        INSERT INTO dbdedup.match_keys (part, key, value, pending, probed)
        SELECT 1, k.key, k.value, true, false FROM dbdedup.match_keys k WHERE k.part = 0 AND k.pending;
        ANALYZE dbdedup.match_keys;  -- (see match_values_blocks_distributed)
        SELECT * INTO r FROM dbdedup.match_keys_join(kind, max_distance, half);
        RAISE DEBUG 'dbdedup.match_values_lsh_distributed: table % of % (% bits): % candidates', t, tables, key_bits, r.candidates;
        n_candidates := n_candidates + r.candidates;
        PERFORM dbdedup.insert_value_pairs(kind, r.found);
    END LOOP;
    TRUNCATE dbdedup.match_keys;
    RETURN n_candidates;
END
$$;
COMMENT ON FUNCTION dbdedup.match_values_lsh_distributed(text, integer, boolean, integer, integer) IS
    'Method lsh on a Citus cluster (called by dbdedup.match_values_lsh with its plan): per table, every value under its '
    'sampled key in dbdedup.match_keys (distributed by key), joined shard by shard. Same candidates and pairs as on one server.';

CREATE OR REPLACE FUNCTION dbdedup.embedding_neighbours_distributed(neighbours integer, vector_column name DEFAULT 'embedding')
    RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    s name := dbdedup.vector_schema();
    p record;
BEGIN
    -- the copies the searches skip (not the first ok image of their file), in a work table
    -- distributed like image_embeddings, so that each shard filters its own rows during its search
    TRUNCATE dbdedup.match_copies;
    INSERT INTO dbdedup.match_copies (image_id)
    SELECT c.id
    FROM dbdedup.images c
    JOIN (SELECT j.sha256, min(j.id) AS first_id FROM dbdedup.images j
          WHERE j.status = 'ok' GROUP BY j.sha256) g ON g.sha256 = c.sha256
    WHERE c.id > g.first_id;
    -- the search settings of dbdedup.match_embeddings, for the workers' sessions too
    SET LOCAL citus.propagate_set_commands = 'local';
    EXECUTE format('SET LOCAL hnsw.ef_search = %s', coalesce(current_setting('hnsw.ef_search', true), '40'));
    SET LOCAL hnsw.iterative_scan = 'relaxed_order';
    SET LOCAL ivfflat.iterative_scan = 'relaxed_order';
    EXECUTE format('SET LOCAL ivfflat.probes = %s', coalesce(current_setting('ivfflat.probes', true), '1'));
    -- a k-NN query on a distributed table runs on every shard (each through its own index) and
    -- the coordinator keeps the nearest: one such query per probe
    FOR p IN SELECT e.image_id, e.embedding FROM pg_temp.em_probe e LOOP
        EXECUTE format($q$
            INSERT INTO pg_temp.em_found
            SELECT $1, n.image_id, n.similarity
            FROM (SELECT e.image_id, (1 - (e.%3$I OPERATOR(%1$I.<=>) $2))::real AS similarity
                  FROM dbdedup.image_embeddings e
                  WHERE e.%3$I IS NOT NULL
                    AND NOT EXISTS (SELECT 1 FROM dbdedup.match_copies c WHERE c.image_id = e.image_id)
                  ORDER BY e.%3$I OPERATOR(%1$I.<=>) $2
                  LIMIT %2$s) n
            WHERE n.image_id <> $1 $q$, s, neighbours, vector_column)
        USING p.image_id, p.embedding;
    END LOOP;
    TRUNCATE dbdedup.match_copies;
END
$$;
COMMENT ON FUNCTION dbdedup.embedding_neighbours_distributed(integer, name) IS
    'The k-NN step of dbdedup.embedding_neighbours on a Citus cluster: for each row of pg_temp.em_probe, its `neighbours` '
    'nearest vectors of image_embeddings.vector_column (copies of a file skipped), one query per probe fanned out to the '
    'shards'' pgvector indexes; '
    'written to pg_temp.em_found.';
