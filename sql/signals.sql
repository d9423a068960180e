-- Signals beside the stored hashes, written to dbdedup.pairs:
--   transform_distance / transform   the pHash of one image under another orientation, or with its
--                                    uniform borders trimmed, against the other's (dbdedup.match_transforms)
--   similarity                       cosine similarity of the reduced embedding vectors, from a k-NN
--                                    search through a pgvector index (dbdedup.match_embeddings)
-- and the pgvector side: dbdedup.image_embeddings exists only where pgvector does (enable_embeddings).

CREATE OR REPLACE FUNCTION dbdedup.vector_schema() RETURNS name
    LANGUAGE sql STABLE
    AS $$ SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector' $$;
COMMENT ON FUNCTION dbdedup.vector_schema() IS 'The schema pgvector is installed in, or NULL when the server has no pgvector (hash-only mode).';

CREATE OR REPLACE FUNCTION dbdedup.enable_embeddings() RETURNS boolean
    LANGUAGE plpgsql
    AS $$
DECLARE
    s name;
BEGIN
    IF to_regclass('dbdedup.image_embeddings') IS NOT NULL THEN
        RETURN true;
    END IF;
    IF dbdedup.vector_schema() IS NULL AND EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS vector;
        EXCEPTION WHEN insufficient_privilege THEN
            RETURN false;
        END;
    END IF;
    s := dbdedup.vector_schema();
    IF s IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE format($q$
        CREATE TABLE dbdedup.image_embeddings (
            image_id  bigint PRIMARY KEY REFERENCES dbdedup.images (id) ON DELETE CASCADE,
            embedder  text NOT NULL,
            raw       bytea NOT NULL,
            embedding %I.vector(64),
            turn_signature %I.vector(132),
            crop_windows bigint[]
        ) $q$, s, s);
    COMMENT ON TABLE dbdedup.image_embeddings IS
        'One embedding per ok image: the embedder''s raw descriptor (kept so a refit can re-project) and the reduced, '
        'unit-length vector searched through a pgvector index (cosine). Exists only on servers with pgvector.';
    COMMENT ON COLUMN dbdedup.image_embeddings.raw IS 'Raw descriptor, float16 little-endian (dbdedup.embedding.raw_to_bytes).';
    COMMENT ON COLUMN dbdedup.image_embeddings.embedding IS 'Reduced vector (64 dimensions, L2-normalised); NULL until projected after the load.';
    COMMENT ON COLUMN dbdedup.image_embeddings.turn_signature IS
        'The picture''s layout as a turn about its centre leaves it (dbdedup.turn_signature: rings of the stored luma '
        'thumbnail, their means and Fourier magnitudes; 132 dimensions, L2-normalised), searched by '
        'dbdedup.propose_keeper_pairs; NULL until written with the embedding after the load.';
    COMMENT ON COLUMN dbdedup.image_embeddings.crop_windows IS
        'The pHashes of the picture''s windows (dbdedup/crop_windows.py: squares of half and three quarters of the stored '
        '64x64 luma thumbnail, 34 of them, signed as images.phash): a copy cropped so is within a few bits of one, and '
        'dbdedup.match_embeddings compares each image''s pHash with the windows of its nearest embedding neighbours. '
        'Empty when the image has no 64x64 thumbnail; NULL until written with the embedding after the load.';
    CREATE INDEX image_embeddings_pending_idx ON dbdedup.image_embeddings (image_id) WHERE embedding IS NULL;
    RETURN true;
END
$$;
COMMENT ON FUNCTION dbdedup.enable_embeddings() IS
    'Create dbdedup.image_embeddings when pgvector is available (creating the extension if allowed); false in hash-only mode.';

-- 1.5 sqrt(rows) lists, searched 4 at a time (dbdedup.match_embeddings): the near neighbours of a
-- near-duplicate search lie in the probe's own list or the next ones, so more and smaller lists than
-- pgvector's general advice (rows / 1000, probes sqrt(lists)) find the same pairs for less work
-- (bench/embedding_index_bench.py: on bench/accuracy's images and 10 rotated copies of them, recall
-- 1.0 and 0.9997 of the pairs of an exact search). At most 1,000: k-means on 50 samples a list keeps
-- a bound per sample and list, 200 MB at 1,000 lists.
CREATE OR REPLACE FUNCTION dbdedup.ivfflat_lists(vectors bigint) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT least(1000, greatest(10, round(1.5 * sqrt(vectors))))::integer $$;
COMMENT ON FUNCTION dbdedup.ivfflat_lists(bigint) IS
    'The lists of an ivfflat index of dbdedup.image_embeddings for that many vectors: 1.5 sqrt(vectors), 10 to 1,000.';

-- Both pgvector indexes of dbdedup.image_embeddings (the embeddings', the turn signatures') are made here.
CREATE OR REPLACE FUNCTION dbdedup.create_cosine_index(index_name text, vector_column text, lists integer DEFAULT NULL)
    RETURNS text
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF lists IS NULL THEN
        EXECUTE format('CREATE INDEX %I ON dbdedup.image_embeddings USING hnsw (%I %I.vector_cosine_ops)',
                       index_name, vector_column, dbdedup.vector_schema());
        RETURN 'hnsw';
    END IF;
    EXECUTE format('CREATE INDEX %I ON dbdedup.image_embeddings USING ivfflat (%I %I.vector_cosine_ops) WITH (lists = %s)',
                   index_name, vector_column, dbdedup.vector_schema(), lists);
    RETURN 'ivfflat (' || lists || ' lists)';
END
$$;
COMMENT ON FUNCTION dbdedup.create_cosine_index(text, text, integer) IS
    'Create the pgvector index index_name (cosine) on the vector column of dbdedup.image_embeddings: ivfflat with that many '
    'lists, hnsw when lists is NULL; returns which. Used by dbdedup.build_embedding_index and dbdedup.ensure_turn_index.';

CREATE OR REPLACE FUNCTION dbdedup.build_embedding_index(method text DEFAULT 'ivfflat', lists integer DEFAULT NULL) RETURNS text
    LANGUAGE plpgsql
    SET maintenance_work_mem = '256MB'
    AS $$
DECLARE
    n bigint;
BEGIN
    IF to_regclass('dbdedup.image_embeddings') IS NULL THEN
        RETURN 'none';
    END IF;
    IF method NOT IN ('hnsw', 'ivfflat') THEN
        RAISE EXCEPTION 'unknown embedding index method %', method USING HINT = 'use hnsw or ivfflat';
    END IF;
    DROP INDEX IF EXISTS dbdedup.image_embeddings_vector_idx;
    -- the turn signatures' index is built again when a report needs it (dbdedup.ensure_turn_index):
    -- most loads make no cluster it searches from, and it was a fifth of a small collection's load
    DROP INDEX IF EXISTS dbdedup.image_embeddings_turn_idx;
    IF method = 'hnsw' THEN
        RETURN dbdedup.create_cosine_index('image_embeddings_vector_idx', 'embedding');
    END IF;
    SELECT count(*) INTO n FROM dbdedup.image_embeddings WHERE embedding IS NOT NULL;
    IF n < 1000 AND lists IS NULL THEN
        -- IVFFlat trains its lists on the rows there are; a few hundred (or two opposite vectors,
        -- whose mean is zero) make a useless or failing index. HNSW needs no training.
        PERFORM dbdedup.create_cosine_index('image_embeddings_vector_idx', 'embedding');
        RETURN 'hnsw (ivfflat needs 1,000 vectors to train its lists: built when there are)';
    END IF;
    RETURN dbdedup.create_cosine_index('image_embeddings_vector_idx', 'embedding', coalesce(lists, dbdedup.ivfflat_lists(n)));
END
$$;
COMMENT ON FUNCTION dbdedup.build_embedding_index(text, integer) IS
    'Build (or rebuild) the pgvector index of the embeddings on dbdedup.image_embeddings (cosine): ivfflat (the default) '
    'with 1.5 sqrt(rows) lists, 10 to 1,000, unless given (hnsw stands in below 1,000 rows, too few to train the lists), '
    'or hnsw. Called after bulk loads, not row by row. Drops the turn signatures'' index, which '
    'dbdedup.ensure_turn_index builds again when a report needs it.';

CREATE OR REPLACE FUNCTION dbdedup.ensure_turn_index() RETURNS text
    LANGUAGE plpgsql
    SET maintenance_work_mem = '256MB'
    AS $$
DECLARE
    n bigint;
BEGIN
    IF to_regclass('dbdedup.image_embeddings') IS NULL OR to_regclass('dbdedup.image_embeddings_turn_idx') IS NOT NULL THEN
        RETURN 'none needed';
    END IF;
    SELECT count(*) INTO n FROM dbdedup.image_embeddings WHERE turn_signature IS NOT NULL;
    -- the kind of the embeddings' index (ivfflat, unless a user chose hnsw), with as many lists
    IF n < 1000 OR coalesce(pg_get_indexdef(to_regclass('dbdedup.image_embeddings_vector_idx')) LIKE '%USING hnsw%', false) THEN
        RETURN dbdedup.create_cosine_index('image_embeddings_turn_idx', 'turn_signature');
    END IF;
    RETURN dbdedup.create_cosine_index('image_embeddings_turn_idx', 'turn_signature', dbdedup.ivfflat_lists(n));
END
$$;
COMMENT ON FUNCTION dbdedup.ensure_turn_index() IS
    'Build the pgvector index of the turn signatures (dbdedup.image_embeddings.turn_signature, cosine) unless it exists: '
    'of the kind of the embeddings'' index, with as many lists (hnsw below 1,000 rows). Called by '
    'dbdedup.propose_keeper_pairs before it searches them; dbdedup.build_embedding_index drops it after a bulk load.';

-- Not STRICT (a NULL argument still gives NULL, by the first WHEN): PostgreSQL inlines a SQL
-- function only when it is not STRICT or its body is strict, and a CASE is not. Called instead of
-- inlined, it was a third of match_transforms' time on bench/accuracy's images.
CREATE OR REPLACE FUNCTION dbdedup.transform_name(variant integer, inverse boolean DEFAULT false) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT CASE WHEN variant IS NULL OR inverse IS NULL THEN NULL
                    ELSE CASE WHEN variant >= 8 THEN 'trim' || CASE WHEN variant > 8 THEN '+' ELSE '' END ELSE '' END
                         || CASE (CASE WHEN variant > 8 THEN variant - 8 ELSE variant END)
                                WHEN 1 THEN 'flip_h' WHEN 2 THEN 'flip_v'
                                WHEN 3 THEN CASE WHEN inverse THEN 'rotate_270' ELSE 'rotate_90' END
                                WHEN 4 THEN 'rotate_180'
                                WHEN 5 THEN CASE WHEN inverse THEN 'rotate_90' ELSE 'rotate_270' END
                                WHEN 6 THEN 'transpose' WHEN 7 THEN 'transverse' ELSE '' END END
    $$;
COMMENT ON FUNCTION dbdedup.transform_name(integer, boolean) IS
    'Name of position 1-15 of images.phash_variants (1-7 orientations, 8 trimmed, 9-15 trimmed and oriented); inverse '
    'names the opposite rotation (the variant was of image_b, not image_a).';

CREATE OR REPLACE FUNCTION dbdedup.inverse_transform(transform text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT replace(replace(replace(transform, 'rotate_90', '#'), 'rotate_270', 'rotate_90'), '#', 'rotate_270') $$;
COMMENT ON FUNCTION dbdedup.inverse_transform(text) IS
    'The variant name seen from the other image of a pair (rotate_90 and rotate_270 swap; flips, transposes and trims are their own inverse).';

CREATE OR REPLACE FUNCTION dbdedup.best_transform(hash_a bigint, variants_a bigint[], hash_b bigint, variants_b bigint[],
                                       OUT distance integer, OUT transform text)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT d, name FROM (
            SELECT bit_count((v.value # t.value)::bit(64))::integer AS d,
                   dbdedup.transform_name(v.pos::integer, false) AS name, v.pos AS pos
            FROM unnest(variants_a) WITH ORDINALITY v(value, pos),
                 (SELECT hash_b AS value UNION ALL SELECT variants_b[8]) t
            WHERE t.value IS NOT NULL
            UNION ALL
            SELECT bit_count((v.value # t.value)::bit(64))::integer,
                   dbdedup.transform_name(v.pos::integer, true), v.pos + 100
            FROM unnest(variants_b) WITH ORDINALITY v(value, pos),
                 (SELECT hash_a AS value UNION ALL SELECT variants_a[8]) t
            WHERE t.value IS NOT NULL
        ) c
        ORDER BY d, pos
        LIMIT 1
    $$;
COMMENT ON FUNCTION dbdedup.best_transform(bigint, bigint[], bigint, bigint[]) IS
    'The smallest Hamming distance between a variant of one image (images.phash_variants) and the other''s pHash or '
    'trimmed pHash, and which variant gives it. Example: SELECT * FROM dbdedup.best_transform(a.phash, a.phash_variants, '
    'b.phash, b.phash_variants) FROM dbdedup.images a, dbdedup.images b WHERE a.id = 1 AND b.id = 2.';

CREATE OR REPLACE FUNCTION dbdedup.signal_is_full(st dbdedup.signal_state, full_rematch boolean) RETURNS boolean
    LANGUAGE sql STABLE
    AS $$
        SELECT full_rematch OR st.signal IS NULL
            OR st.base_full_match_at IS DISTINCT FROM (SELECT m.full_match_at FROM dbdedup.match_state m WHERE m.hash_kind = 'phash')
    $$;
COMMENT ON FUNCTION dbdedup.signal_is_full(dbdedup.signal_state, boolean) IS
    'Whether a signal must be recomputed for every image: asked to, never computed, or the pHash pairs were rebuilt since.';

CREATE OR REPLACE FUNCTION dbdedup.match_transforms(max_distance integer, method text DEFAULT 'auto', full_rematch boolean DEFAULT false)
    RETURNS TABLE (method_used text, mode text, max_distance_kept integer, probes bigint, targets bigint,
                   candidates bigint, pairs bigint, seconds double precision)
    LANGUAGE plpgsql
    SET work_mem = '256MB' SET enable_mergejoin = off
    AS $$
DECLARE
    started timestamptz := clock_timestamp();
    st dbdedup.signal_state;
    ms dbdedup.match_state;
    is_full boolean;
    keep_distance integer;
    mark bigint;
    n_probe bigint;
    n_target bigint;
    chosen text := method;
    plan record;
    block integer;
    mask bigint;
    flips bigint[];
    n_candidates bigint := 0;
    c bigint;
    n_pairs bigint;
BEGIN
    IF max_distance IS NULL OR max_distance < 0 OR max_distance > 32 THEN
        RAISE EXCEPTION 'transform threshold must be a Hamming distance from 0 to 32, not %', max_distance;
    END IF;
    IF method NOT IN ('auto', 'scan', 'blocks', 'lsh') THEN
        RAISE EXCEPTION 'unknown matching method %', method USING HINT = 'use auto, scan, blocks or lsh';
    END IF;
    PERFORM pg_advisory_xact_lock(7220002);
    SELECT * INTO ms FROM dbdedup.match_state m WHERE m.hash_kind = 'phash';
    IF ms.hash_kind IS NULL THEN
        RAISE EXCEPTION 'pHash pairs are not matched yet' USING HINT = 'run SELECT * FROM dbdedup.match(8) first';
    END IF;
    SELECT * INTO st FROM dbdedup.signal_state s WHERE s.signal = 'transforms';
    mark := ms.matched_seq;
    is_full := dbdedup.signal_is_full(st, full_rematch) OR max_distance > st.max_distance;
    keep_distance := CASE WHEN full_rematch OR st.signal IS NULL THEN max_distance
                          WHEN is_full THEN greatest(max_distance, st.max_distance) ELSE st.max_distance END;

    IF is_full THEN
        -- (the variants and their verdicts are kept aside: a pair found again with the same variant
        -- keeps its verdict, below)
        CREATE TEMP TABLE tf_before ON COMMIT DROP AS
        SELECT p.image_a, p.image_b, p.transform, p.transform_distance, p.verified, p.verify_score, p.verify_reason
        FROM dbdedup.pairs p WHERE p.hash_kind = 'phash' AND p.transform_distance IS NOT NULL AND NOT p.is_exact;
        DELETE FROM dbdedup.pairs p
        WHERE p.hash_kind = 'phash' AND p.transform_distance IS NOT NULL AND p.distance > ms.max_distance AND p.similarity IS NULL;
        UPDATE dbdedup.pairs p SET transform = NULL, transform_distance = NULL
        WHERE p.hash_kind = 'phash' AND p.transform_distance IS NOT NULL;
    END IF;

    -- probes: every variant of the images to match (and their own pHash, against trimmed targets only);
    -- targets: the pHash and trimmed pHash of every image. Over-common and flat values stay out.
    -- (the over-common values as an uncorrelated list: Citus runs no correlated subquery on images)
    CREATE TEMP TABLE tf_probe ON COMMIT DROP AS
    SELECT i.id AS image_id, (v.pos - 1)::smallint AS pos, v.value  -- 0 = the pHash itself, 1-15 = phash_variants
    FROM dbdedup.images i
    CROSS JOIN LATERAL unnest(i.phash || i.phash_variants) WITH ORDINALITY v(value, pos)
    WHERE i.status = 'ok' AND i.phash_variants IS NOT NULL
      AND (is_full OR i.change_seq > st.matched_seq) AND i.change_seq <= mark
      AND NOT dbdedup.is_low_information(v.value)
      AND i.phash NOT IN (SELECT h.value FROM dbdedup.hash_values h WHERE h.hash_kind = 'phash' AND h.is_common);
    CREATE TEMP TABLE tf_target ON COMMIT DROP AS
    SELECT i.id AS image_id, t.pos::smallint AS pos, t.value
    FROM dbdedup.images i
    CROSS JOIN LATERAL (VALUES (0, i.phash), (8, i.phash_variants[8])) t(pos, value)
    WHERE i.status = 'ok' AND t.value IS NOT NULL AND NOT dbdedup.is_low_information(t.value)
      AND i.phash NOT IN (SELECT h.value FROM dbdedup.hash_values h WHERE h.hash_kind = 'phash' AND h.is_common);
    CREATE INDEX ON tf_probe (value);
    CREATE INDEX ON tf_target (value);
    -- (the counts from the statements themselves: counting the tables again cost as much as a block's join)
    CREATE TEMP TABLE tf_probe_values ON COMMIT DROP AS SELECT DISTINCT value FROM tf_probe;
    GET DIAGNOSTICS n_probe = ROW_COUNT;
    CREATE TEMP TABLE tf_target_values ON COMMIT DROP AS SELECT DISTINCT value FROM tf_target;
    GET DIAGNOSTICS n_target = ROW_COUNT;
    CREATE TEMP TABLE tf_value_pairs (probe bigint, target bigint, distance smallint) ON COMMIT DROP;
    ANALYZE tf_probe_values;
    ANALYZE tf_target_values;

    IF chosen = 'auto' THEN
        chosen := CASE WHEN max_distance > 15 THEN 'lsh' ELSE dbdedup.choose_method(n_target, n_probe, max_distance) END;
    END IF;
    IF chosen = 'blocks' AND max_distance > 15 THEN
        RAISE EXCEPTION 'the blocks method is exact for thresholds 0 to 15, not %', max_distance;
    END IF;

    IF n_probe > 0 AND n_target > 0 THEN
        IF chosen = 'scan' THEN
            INSERT INTO tf_value_pairs
            SELECT p.value, t.value, bit_count((p.value # t.value)::bit(64))
            FROM tf_probe_values p, tf_target_values t
            WHERE bit_count((p.value # t.value)::bit(64)) <= max_distance;
            n_candidates := n_probe * n_target;
        ELSIF chosen = 'blocks' THEN
            SELECT * INTO plan FROM dbdedup.plan_blocks(n_target, n_probe, max_distance);
            FOR block IN 0 .. plan.blocks - 1 LOOP
                mask := dbdedup.interleaved_mask(plan.blocks, block);
                flips := dbdedup.ball_masks(mask, plan.radii[block + 1]);
                EXECUTE format($q$
                    WITH c AS (
                        SELECT p.value AS pv, t.value AS tv, bit_count((p.value # t.value)::bit(64)) AS d
                        FROM pg_temp.tf_probe_values p
                        CROSS JOIN unnest(%1$L::bigint[]) AS f
                        JOIN pg_temp.tf_target_values t ON (t.value & %2$s) = ((p.value & %2$s) # f)
                    ), ins AS (
                        INSERT INTO pg_temp.tf_value_pairs SELECT pv, tv, d FROM c WHERE d <= %3$s
                    )
                    SELECT count(*) FROM c $q$, flips, mask, max_distance) INTO c;
                n_candidates := n_candidates + c;
            END LOOP;
        ELSE
            -- the keys of dbdedup.match's lsh method (dbdedup.lsh_mask, joined on the two halves), so that
            -- each pair at distance d shares a table's key with the chance plan_lsh assumes
            SELECT * INTO plan FROM dbdedup.plan_lsh(n_target, n_probe, max_distance, 0.99);
            FOR block IN 1 .. plan.tables LOOP
                mask := dbdedup.lsh_mask(block, plan.key_bits);
                EXECUTE format($q$
                    WITH c AS (
                        SELECT p.value AS pv, t.value AS tv, bit_count((p.value # t.value)::bit(64)) AS d
                        FROM pg_temp.tf_probe_values p
                        JOIN pg_temp.tf_target_values t ON (t.value & %1$s) >> 32 = (p.value & %1$s) >> 32
                                                       AND t.value & %1$s & 4294967295 = p.value & %1$s & 4294967295
                    ), ins AS (
                        INSERT INTO pg_temp.tf_value_pairs SELECT pv, tv, d FROM c WHERE d <= %2$s
                    )
                    SELECT count(*) FROM c $q$, mask, max_distance) INTO c;
                n_candidates := n_candidates + c;
            END LOOP;
        END IF;
    END IF;

    -- value pairs -> image pairs: the closest variant per pair, kept when it beats the stored hashes
    -- (the pair's images are read once, into tf_image: Citus joins no temporary table with two
    -- copies of images)
    CREATE TEMP TABLE tf_best ON COMMIT DROP AS
    SELECT c.a, c.b, c.d,
           -- name the variant as applied to image_a; a variant of image_b is the inverse rotation
           -- (named once per pair kept, not per candidate)
           CASE WHEN c.probe_pos = 0 THEN 'trim'
                WHEN c.target_pos = 8 AND c.probe_pos < 8 THEN 'trim+' || dbdedup.transform_name(c.probe_pos, c.inverse)
                ELSE dbdedup.transform_name(c.probe_pos, c.inverse) END AS name
    FROM (
        SELECT DISTINCT ON (least(pr.image_id, tg.image_id), greatest(pr.image_id, tg.image_id))
               least(pr.image_id, tg.image_id) AS a, greatest(pr.image_id, tg.image_id) AS b,
               vp.distance AS d, pr.pos AS probe_pos, tg.pos AS target_pos, pr.image_id > tg.image_id AS inverse
        FROM tf_value_pairs vp
        JOIN tf_probe pr ON pr.value = vp.probe
        JOIN tf_target tg ON tg.value = vp.target AND tg.image_id <> pr.image_id
        WHERE NOT (pr.pos = 0 AND tg.pos = 0)
        ORDER BY least(pr.image_id, tg.image_id), greatest(pr.image_id, tg.image_id), vp.distance, pr.pos, tg.pos
    ) c;
    CREATE TEMP TABLE tf_image ON COMMIT DROP AS
    SELECT i.id, i.phash, i.sha256 FROM dbdedup.images i
    WHERE i.id IN (SELECT f.a FROM pg_temp.tf_best f UNION SELECT f.b FROM pg_temp.tf_best f);
    INSERT INTO dbdedup.pairs AS p (hash_kind, image_a, image_b, distance, is_exact, transform, transform_distance)
    SELECT 'phash', a, b, plain, exact, name, d
    FROM (
        SELECT f.a, f.b, f.d, f.name,
               bit_count((ia.phash # ib.phash)::bit(64))::smallint AS plain,
               ia.sha256 = ib.sha256 AS exact
        FROM tf_best f
        JOIN tf_image ia ON ia.id = f.a
        JOIN tf_image ib ON ib.id = f.b
    ) x
    WHERE d < plain AND NOT exact
    ON CONFLICT ON CONSTRAINT pairs_pkey DO UPDATE
        SET transform = excluded.transform, transform_distance = excluded.transform_distance,
            -- another variant aligns them: verified again (in a full run, only when it changed: see tf_before)
            verified = NULL, verify_score = NULL, verify_reason = NULL
        WHERE p.transform_distance IS NULL OR excluded.transform_distance < p.transform_distance;

    IF is_full THEN
        -- a verdict was given knowing the pair's variant: kept when the variant is the same, else the
        -- pair is verified again (also when no variant was found this time)
        UPDATE dbdedup.pairs p SET verified = b.verified, verify_score = b.verify_score, verify_reason = b.verify_reason
        FROM tf_before b
        WHERE p.hash_kind = 'phash' AND p.image_a = b.image_a AND p.image_b = b.image_b
          AND p.transform = b.transform AND p.transform_distance = b.transform_distance;
        UPDATE dbdedup.pairs p SET verified = NULL, verify_score = NULL, verify_reason = NULL
        FROM tf_before b
        WHERE p.hash_kind = 'phash' AND p.image_a = b.image_a AND p.image_b = b.image_b AND p.transform IS NULL;
        DROP TABLE tf_before;
    END IF;
    SELECT count(*) INTO n_pairs FROM dbdedup.pairs p WHERE p.hash_kind = 'phash' AND p.transform_distance IS NOT NULL;
    INSERT INTO dbdedup.signal_state AS s (signal, max_distance, matched_seq, base_full_match_at, method, mode,
                                           candidates, pairs, seconds, matched_at)
    VALUES ('transforms', keep_distance, mark, ms.full_match_at, chosen, CASE WHEN is_full THEN 'full' ELSE 'incremental' END,
            n_candidates, n_pairs, extract(epoch FROM clock_timestamp() - started), now())
    ON CONFLICT (signal) DO UPDATE SET
        max_distance = excluded.max_distance, matched_seq = excluded.matched_seq,
        base_full_match_at = excluded.base_full_match_at, method = excluded.method, mode = excluded.mode,
        candidates = excluded.candidates, pairs = excluded.pairs, seconds = excluded.seconds, matched_at = excluded.matched_at;
    DROP TABLE tf_probe, tf_target, tf_probe_values, tf_target_values, tf_value_pairs, tf_best, tf_image;
    RETURN QUERY SELECT chosen, CASE WHEN is_full THEN 'full' ELSE 'incremental' END, keep_distance, n_probe, n_target,
                        n_candidates, n_pairs, extract(epoch FROM clock_timestamp() - started)::double precision;
END
$$;
COMMENT ON FUNCTION dbdedup.match_transforms(integer, text, boolean) IS
    'Find the image pairs where a variant of one image (another orientation, or trimmed borders: images.phash_variants) '
    'is within max_distance of the other''s pHash or trimmed pHash, closer than their stored pHashes, and record the '
    'variant in pairs.transform / transform_distance. Incremental after dbdedup.match (changed images against all). '
    'Methods as in dbdedup.match: scan, blocks (exact, 0-15) or lsh (recall >= 0.99 at the threshold).';

CREATE OR REPLACE FUNCTION dbdedup.embedding_neighbours(neighbours integer, lists_probed integer DEFAULT 4,
                                                        vector_column name DEFAULT 'embedding') RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    s name := dbdedup.vector_schema();
    lists integer;
    index_name text := CASE vector_column WHEN 'embedding' THEN 'dbdedup.image_embeddings_vector_idx'
                                          WHEN 'turn_signature' THEN 'dbdedup.image_embeddings_turn_idx' END;
BEGIN
    IF index_name IS NULL THEN
        RAISE EXCEPTION 'no vector column % in dbdedup.image_embeddings', vector_column USING HINT = 'use embedding or turn_signature';
    END IF;
    -- the index returns ef_search (hnsw) or the probed lists' (ivfflat) candidates per probe
    PERFORM set_config('hnsw.ef_search', greatest(40, (neighbours - 1) * 2)::text, true);
    -- copies are filtered out of each search; pgvector 0.8 keeps scanning until k rows pass the filter
    -- (older pgvector returns fewer: a little recall lost where many byte-identical copies exist)
    PERFORM set_config('hnsw.iterative_scan', 'relaxed_order', true);
    PERFORM set_config('ivfflat.iterative_scan', 'relaxed_order', true);
    SELECT (regexp_match(pg_get_indexdef(x.indexrelid), 'lists=''?(\d+)'))[1]::integer INTO lists
    FROM pg_index x WHERE x.indexrelid = to_regclass(index_name);
    IF lists IS NOT NULL THEN
        -- 4 lists of 1.5 sqrt(rows) (dbdedup.build_embedding_index) find the near-duplicates
        -- match_embeddings pairs: recall 1.0 / 0.9997 at 10k / 108k vectors. Neighbours far below
        -- the pairing floor (dbdedup.propose_keeper_pairs) often sit in lists farther off: callers
        -- that want them probe more lists.
        PERFORM set_config('ivfflat.probes', least(lists, greatest(lists_probed, 1))::text, true);
    END IF;
    IF dbdedup.is_distributed() THEN
        -- one search per probe, fanned out to every shard's index (sql/distributed.sql)
        PERFORM dbdedup.embedding_neighbours_distributed(neighbours, vector_column);
        RETURN;
    END IF;
    -- the copies (an image with an ok image of the same SHA-256 and a smaller id), listed once
    -- instead of two index probes per candidate; no filter at all when there are none
    CREATE TEMP TABLE em_copy ON COMMIT DROP AS
    SELECT c.id
    FROM dbdedup.images c
    JOIN (SELECT j.sha256, min(j.id) FILTER (WHERE j.status = 'ok') AS first_id
          FROM dbdedup.images j GROUP BY j.sha256 HAVING count(*) > 1) f
      ON f.sha256 = c.sha256 AND c.id > f.first_id;
    EXECUTE format($q$
        INSERT INTO pg_temp.em_found
        SELECT p.image_id, n.image_id, n.similarity
        FROM pg_temp.em_probe p
        CROSS JOIN LATERAL (
            SELECT e.image_id, (1 - (e.%4$I OPERATOR(%1$I.<=>) p.embedding))::real AS similarity
            FROM dbdedup.image_embeddings e
            WHERE e.%4$I IS NOT NULL %3$s
            ORDER BY e.%4$I OPERATOR(%1$I.<=>) p.embedding
            LIMIT %2$s
        ) n
        WHERE n.image_id <> p.image_id $q$, s, neighbours,
        CASE WHEN EXISTS (SELECT 1 FROM pg_temp.em_copy)
             THEN 'AND e.image_id NOT IN (SELECT x.id FROM pg_temp.em_copy x)' ELSE '' END, vector_column);
    DROP TABLE em_copy;
END
$$;
COMMENT ON FUNCTION dbdedup.embedding_neighbours(integer, integer, name) IS
    'The k-NN step of dbdedup.match_embeddings and dbdedup.propose_keeper_pairs: for each row of pg_temp.em_probe '
    '(image_id, embedding: a vector of image_embeddings.vector_column, the embedding or the turn signature), its '
    '`neighbours` nearest vectors of that column by cosine through its pgvector index (copies of a file '
    'skipped), written to pg_temp.em_found (a, b, similarity); an ivfflat index is searched in lists_probed of its lists '
    '(4 find near-duplicates; more find farther neighbours, at a cost about proportional); '
    'on Citus through dbdedup.embedding_neighbours_distributed.';

CREATE OR REPLACE FUNCTION dbdedup.match_embeddings(min_similarity real, neighbours integer DEFAULT 10, full_rematch boolean DEFAULT false)
    RETURNS TABLE (mode text, min_similarity_kept real, probes bigint, candidates bigint, pairs bigint, seconds double precision)
    LANGUAGE plpgsql
    AS $$
DECLARE
    started timestamptz := clock_timestamp();
    st dbdedup.signal_state;
    ms dbdedup.match_state;
    is_full boolean;
    keep_similarity real;
    keep_neighbours integer;
    mark bigint;
    n_probe bigint;
    n_candidates bigint;
    n_pairs bigint;
    index_kind text;
    -- the crop windows' search: each probe's nearest neighbours compared, and the bits a window may differ by
    -- (of a nearest neighbour, more: a crop cut between two windows' places)
    window_neighbours constant integer := 3;
    window_distance constant integer := 8;
    nearest_window_distance constant integer := 10;
BEGIN
    IF to_regclass('dbdedup.image_embeddings') IS NULL THEN
        RAISE NOTICE 'no embeddings: this server has no pgvector (hash-only mode)';
        RETURN QUERY SELECT 'none'::text, min_similarity, 0::bigint, 0::bigint, 0::bigint, 0::double precision;
        RETURN;
    END IF;
    IF min_similarity IS NULL OR min_similarity <= 0 OR min_similarity > 1 THEN
        RAISE EXCEPTION 'minimum similarity must be in (0, 1], not %', min_similarity;
    END IF;
    IF neighbours IS NULL OR neighbours < 1 OR neighbours > 1000 THEN
        RAISE EXCEPTION 'neighbours must be from 1 to 1000, not %', neighbours;
    END IF;
    PERFORM pg_advisory_xact_lock(7220002);
    SELECT * INTO ms FROM dbdedup.match_state m WHERE m.hash_kind = 'phash';
    IF ms.hash_kind IS NULL THEN
        RAISE EXCEPTION 'pHash pairs are not matched yet' USING HINT = 'run SELECT * FROM dbdedup.match(8) first';
    END IF;
    SELECT * INTO st FROM dbdedup.signal_state x WHERE x.signal = 'embeddings';
    mark := ms.matched_seq;
    is_full := dbdedup.signal_is_full(st, full_rematch) OR min_similarity < st.min_similarity OR neighbours > st.neighbours;
    keep_similarity := CASE WHEN full_rematch OR st.signal IS NULL THEN min_similarity
                            WHEN is_full THEN least(min_similarity, st.min_similarity) ELSE st.min_similarity END;
    keep_neighbours := CASE WHEN full_rematch OR st.signal IS NULL THEN neighbours
                            WHEN is_full THEN greatest(neighbours, st.neighbours) ELSE st.neighbours END;
    IF is_full THEN
        -- (the verdicts of the pairs only the neighbour search found are kept aside: such a pair found
        -- again keeps its verdict, which its pixels gave, not its vectors; below)
        CREATE TEMP TABLE em_before ON COMMIT DROP AS
        SELECT p.image_a, p.image_b, p.verified, p.verify_score, p.verify_reason
        FROM dbdedup.pairs p
        WHERE p.hash_kind = 'phash' AND p.similarity IS NOT NULL AND p.distance > ms.max_distance AND p.transform_distance IS NULL
          AND p.verified IS NOT NULL AND p.verify_reason <> 'weak_embedding';
        DELETE FROM dbdedup.pairs p
        WHERE p.hash_kind = 'phash' AND p.similarity IS NOT NULL AND p.distance > ms.max_distance AND p.transform_distance IS NULL;
        UPDATE dbdedup.pairs p SET similarity = NULL WHERE p.hash_kind = 'phash' AND p.similarity IS NOT NULL;
    END IF;

    -- (no correlated subquery on images here and below: Citus cannot run one; same rows)
    CREATE TEMP TABLE em_probe ON COMMIT DROP AS
    SELECT e.image_id, e.embedding, i.sha256
    FROM dbdedup.image_embeddings e
    JOIN dbdedup.images i ON i.id = e.image_id
    WHERE e.embedding IS NOT NULL AND i.status = 'ok'
      AND (is_full OR i.change_seq > st.matched_seq) AND i.change_seq <= mark
      AND NOT dbdedup.is_low_information(i.phash)
      AND i.phash NOT IN (SELECT h.value FROM dbdedup.hash_values h WHERE h.hash_kind = 'phash' AND h.is_common);
    -- one image per group of byte-identical files (the smallest id): copies share its pairs
    DELETE FROM em_probe p
    USING (SELECT j.sha256, min(j.id) AS first_id FROM dbdedup.images j
           WHERE j.status = 'ok' AND j.sha256 IN (SELECT q.sha256 FROM pg_temp.em_probe q) GROUP BY j.sha256) f
    WHERE f.sha256 = p.sha256 AND f.first_id < p.image_id;
    SELECT count(*) INTO n_probe FROM em_probe;

    CREATE TEMP TABLE em_found (a bigint, b bigint, similarity real) ON COMMIT DROP;
    PERFORM dbdedup.embedding_neighbours(keep_neighbours + 1);
    SELECT count(*) INTO n_candidates FROM em_found;

    -- the images of the pairs found that may pair (ok, neither flat nor over-common), read once
    CREATE TEMP TABLE em_image ON COMMIT DROP AS
    SELECT i.id, i.phash, i.sha256 FROM dbdedup.images i
    WHERE i.status = 'ok' AND NOT dbdedup.is_low_information(i.phash)
      AND i.id IN (SELECT f.a FROM pg_temp.em_found f WHERE f.similarity >= keep_similarity
                   UNION SELECT f.b FROM pg_temp.em_found f WHERE f.similarity >= keep_similarity)
      AND i.phash NOT IN (SELECT h.value FROM dbdedup.hash_values h WHERE h.hash_kind = 'phash' AND h.is_common);
    INSERT INTO dbdedup.pairs AS p (hash_kind, image_a, image_b, distance, is_exact, similarity)
    SELECT 'phash', f.a, f.b, bit_count((ia.phash # ib.phash)::bit(64)), ia.sha256 = ib.sha256, f.similarity
    FROM (SELECT least(a, b) AS a, greatest(a, b) AS b, max(similarity) AS similarity
          FROM em_found WHERE similarity >= keep_similarity GROUP BY 1, 2) f
    JOIN em_image ia ON ia.id = f.a
    JOIN em_image ib ON ib.id = f.b
    ON CONFLICT ON CONSTRAINT pairs_pkey DO UPDATE
        SET similarity = greatest(p.similarity, excluded.similarity),
            -- a pair rejected as a weak embedding neighbour is verified again (the similarity routes it)
            verified = CASE WHEN p.verify_reason = 'weak_embedding' THEN NULL ELSE p.verified END,
            verify_score = CASE WHEN p.verify_reason = 'weak_embedding' THEN NULL ELSE p.verify_score END,
            verify_reason = CASE WHEN p.verify_reason = 'weak_embedding' THEN NULL ELSE p.verify_reason END;

    -- A copy cropped to three quarters or half of the picture is far from it by every whole-frame hash, yet
    -- often among its nearest embedding neighbours, and its pHash within a few bits of the window of the picture
    -- it was cut from (image_embeddings.crop_windows, dbdedup/crop_windows.py). Each probe and its
    -- window_neighbours nearest neighbours are compared both ways (either may be the crop); a pair found so
    -- (transform crop_window) links nothing until its pixels verify it. Measured with exact neighbours
    -- (bench/RESULTS.md, session 46): 3 neighbours within 8 bits propose no pair among 10,000 unrelated small
    -- photos, and on the accuracy set cut to one copy an original 93-103 pairs, 14-17 of them a copy with its
    -- original that no other signal paired (crops of 25% and 50% of the area, 11-12 of them).
    -- A window is up to 2.5 thumbnail pixels off the place a crop was cut from: such a crop, its pHash 9-10 bits
    -- from the nearest window, is paired when one of the two is the other's nearest neighbour (session 47, the two
    -- lone-copies draws' stored vectors, exact neighbours: 21 and 16 pairs no signal had stored, 4 and 0 of them a
    -- copy and its original; at 10 bits for the 3 nearest, 62 and 55 pairs, 5 and 2 copies).
    CREATE TEMP TABLE em_near ON COMMIT DROP AS
    SELECT least(n.a, n.b) AS a, greatest(n.a, n.b) AS b,
           CASE WHEN min(n.r) = 1 THEN nearest_window_distance ELSE window_distance END AS bits
    FROM (SELECT f.a, f.b, row_number() OVER (PARTITION BY f.a ORDER BY f.similarity DESC, f.b) AS r FROM em_found f) n
    WHERE n.r <= window_neighbours
    GROUP BY 1, 2;
    CREATE TEMP TABLE em_window ON COMMIT DROP AS
    SELECT e.image_id, i.phash, e.crop_windows
    FROM dbdedup.image_embeddings e
    JOIN dbdedup.images i ON i.id = e.image_id
    WHERE e.image_id IN (SELECT n.a FROM pg_temp.em_near n UNION SELECT n.b FROM pg_temp.em_near n)
      AND i.status = 'ok' AND NOT dbdedup.is_low_information(i.phash)
      AND i.phash NOT IN (SELECT h.value FROM dbdedup.hash_values h WHERE h.hash_kind = 'phash' AND h.is_common);
    -- A pair already stored is left as it is, unless the pHash alone found it (no variant, no embedding similarity)
    -- farther apart than a window is from it: only a threshold raised past the default finds such a pair, and it was
    -- then checked as two whole frames and refused, the copy lost at every threshold after (a half crop is about 30
    -- bits from its original). Such a pair is a crop window; unless verified already, it is checked again as one.
    INSERT INTO dbdedup.pairs AS p (hash_kind, image_a, image_b, distance, is_exact, transform, transform_distance)
    SELECT 'phash', n.a, n.b, bit_count((x.phash # y.phash)::bit(64)), false, 'crop_window', 0
    FROM em_near n
    JOIN em_window x ON x.image_id = n.a
    JOIN em_window y ON y.image_id = n.b
    WHERE EXISTS (SELECT 1 FROM unnest(y.crop_windows) w (phash) WHERE bit_count((x.phash # w.phash)::bit(64)) <= n.bits)
       OR EXISTS (SELECT 1 FROM unnest(x.crop_windows) w (phash) WHERE bit_count((y.phash # w.phash)::bit(64)) <= n.bits)
    ON CONFLICT ON CONSTRAINT pairs_pkey DO UPDATE
        SET transform = excluded.transform, transform_distance = excluded.transform_distance,
            verified = CASE WHEN p.verified THEN true END,
            verify_score = CASE WHEN p.verified THEN p.verify_score END,
            verify_reason = CASE WHEN p.verified THEN p.verify_reason END
        -- (10: nearest_window_distance written out; a variable here reaches Citus's shards as a parameter whose type
        -- they cannot tell, typed or not, and every report on Citus failed)
        WHERE p.transform IS NULL AND p.similarity IS NULL AND p.distance > 10;
    DROP TABLE em_near, em_window;

    IF is_full THEN
        -- (not a pair that is a crop window now: its check as a crop is still to come)
        UPDATE dbdedup.pairs p SET verified = b.verified, verify_score = b.verify_score, verify_reason = b.verify_reason
        FROM em_before b
        WHERE p.hash_kind = 'phash' AND p.image_a = b.image_a AND p.image_b = b.image_b AND p.verified IS NULL
          AND p.transform IS NULL;
        DROP TABLE em_before;
    END IF;
    SELECT count(*) INTO n_pairs FROM dbdedup.pairs p WHERE p.hash_kind = 'phash' AND p.similarity IS NOT NULL;
    -- (read first: Citus takes no subquery in INSERT ... VALUES)
    index_kind := coalesce((SELECT index_method FROM dbdedup.embedding_reductions ORDER BY fitted_at DESC LIMIT 1), 'hnsw');
    INSERT INTO dbdedup.signal_state AS x (signal, min_similarity, neighbours, matched_seq, base_full_match_at, method, mode,
                                           candidates, pairs, seconds, matched_at)
    VALUES ('embeddings', keep_similarity, keep_neighbours, mark, ms.full_match_at, index_kind,
            CASE WHEN is_full THEN 'full' ELSE 'incremental' END,
            n_candidates, n_pairs, extract(epoch FROM clock_timestamp() - started), now())
    ON CONFLICT (signal) DO UPDATE SET
        min_similarity = excluded.min_similarity, neighbours = excluded.neighbours, matched_seq = excluded.matched_seq,
        base_full_match_at = excluded.base_full_match_at, method = excluded.method, mode = excluded.mode,
        candidates = excluded.candidates, pairs = excluded.pairs, seconds = excluded.seconds, matched_at = excluded.matched_at;
    DROP TABLE em_probe, em_found, em_image;
    RETURN QUERY SELECT CASE WHEN is_full THEN 'full' ELSE 'incremental' END, keep_similarity, n_probe, n_candidates, n_pairs,
                        extract(epoch FROM clock_timestamp() - started)::double precision;
END
$$;
COMMENT ON FUNCTION dbdedup.match_embeddings(real, integer, boolean) IS
    'For each image, its k nearest embedding vectors through the pgvector index (LATERAL k-NN, cosine); pairs with '
    'similarity >= min_similarity get pairs.similarity (exact cosine of the stored vectors), with their pHash distance; '
    'an image and one of its 3 nearest whose pHash is within 8 bits of a crop window of the other (10 bits when one is '
    'the other''s nearest) '
    '(image_embeddings.crop_windows) are a pair with transform crop_window, for the check by pixels. '
    'Over-common and flat images are left out, as in dbdedup.match. Incremental: changed images against all.';

CREATE OR REPLACE FUNCTION dbdedup.match_same_size(neighbours integer DEFAULT 8) RETURNS bigint
    LANGUAGE plpgsql
    AS $$
DECLARE
    s record;
    n_pairs bigint;
BEGIN
    IF neighbours IS NULL OR neighbours < 1 OR neighbours > 1000 THEN
        RAISE EXCEPTION 'neighbours must be from 1 to 1000, not %', neighbours;
    END IF;
    SELECT * INTO s FROM dbdedup.verify_settings();
    -- Images with no hash signal of their own (flat, one colour, almost no detail) share a pHash that
    -- is over-common or says nothing, so no hash or embedding pairs them; they may match only as the
    -- same pixels. Candidates: images of one size (or that size turned by a quarter), each with its
    -- neighbours by mean colour (the colour signature's mean L, a and b), one image per file.
    -- Every run looks at all of them (read through images_low_signal_idx), and adds the pairs
    -- not stored yet: the pairs of changed images were deleted by dbdedup.match, so this is incremental.
    -- (the threshold as a literal: the plan then reads images_low_signal_idx)
    EXECUTE format($q$
        CREATE TEMP TABLE ss_image ON COMMIT DROP AS
        SELECT i.id, i.sha256, i.phash, least(i.width, i.height) AS short_side, greatest(i.width, i.height) AS long_side,
               (SELECT avg(v) FROM unnest(i.colour_signature[1:256]) v) AS light,
               (SELECT avg(v) FROM unnest(i.colour_signature[257:320]) v) AS a,
               (SELECT avg(v) FROM unnest(i.colour_signature[321:384]) v) AS b
        FROM dbdedup.images i
        WHERE i.status = 'ok' AND i.quality < %s AND i.width > 0 AND i.height > 0
          AND cardinality(i.colour_signature) = 384 $q$, s.min_quality);
    DELETE FROM ss_image x
    USING (SELECT y.sha256, min(y.id) AS first_id FROM pg_temp.ss_image y GROUP BY y.sha256) f
    WHERE f.sha256 = x.sha256 AND f.first_id < x.id;
    -- each image with the next ones of its size in the order of mean colour: linear in the images, where the
    -- nearest by colour distance would compare every two of a size (a scanner's blank pages are thousands)
    CREATE TEMP TABLE ss_ranked ON COMMIT DROP AS
    SELECT x.id, x.phash, x.short_side, x.long_side,
           row_number() OVER (PARTITION BY x.short_side, x.long_side ORDER BY x.light, x.a, x.b, x.id) AS r
    FROM pg_temp.ss_image x;
    CREATE INDEX ON ss_ranked (short_side, long_side, r);
    ANALYZE ss_ranked;
    INSERT INTO dbdedup.pairs (hash_kind, image_a, image_b, distance, is_exact, transform, transform_distance)
    SELECT 'phash', least(x.id, y.id), greatest(x.id, y.id), bit_count((x.phash # y.phash)::bit(64)), false,
           'same_size', 0
    FROM pg_temp.ss_ranked x
    JOIN pg_temp.ss_ranked y ON y.short_side = x.short_side AND y.long_side = x.long_side
                            AND y.r > x.r AND y.r <= x.r + neighbours
    ON CONFLICT ON CONSTRAINT pairs_pkey DO NOTHING;
    GET DIAGNOSTICS n_pairs = ROW_COUNT;
    DROP TABLE ss_image, ss_ranked;
    RETURN n_pairs;
END
$$;
COMMENT ON FUNCTION dbdedup.match_same_size(integer) IS
    'Pairs of images with no hash signal of their own (images.quality below dbdedup.verify_settings().min_quality: '
    'flat, one colour, almost no detail) that have the same size, or that size turned by a quarter: each with its '
    '`neighbours` next such images in the order of mean colour (L, then a and b), one image per file, as pairs with transform ''same_size'' '
    '(transform_distance 0). Such a pair is verified only by its pixels: the check by pixels '
    '(dbdedup.verify_workers) compares the two in each orientation their sizes allow (verify_reason pixels when they '
    'are the same pixels up to re-encoding, else low_quality). Adds the pairs not stored yet; returns how many.';
