-- 0003: transform-robust matching (flips, rotations, borders) and embeddings in pgvector.
--
-- Two more signals beside the stored hashes, both written to dbdedup.pairs (one row per image
-- pair, every signal it has in its own column):
--   transform_distance / transform   the pHash of one image under another orientation, or with its
--                                    uniform borders trimmed, against the other's (dbdedup.match_transforms)
--   similarity                       cosine similarity of the reduced embedding vectors, from a k-NN
--                                    search through a pgvector index (dbdedup.match_embeddings)
-- dbdedup.build_clusters then joins images by a rule: hash, transforms, embedding or fused.
--
-- A pair row exists while one of its signals holds: distance <= match_state.max_distance, or
-- transform_distance set (<= the transforms' threshold), or similarity set (>= the embeddings' floor).

-- ------------------------------------------------------------------ stored variants and signals

ALTER TABLE dbdedup.images ADD COLUMN phash_variants bigint[];
COMMENT ON COLUMN dbdedup.images.phash_variants IS
    'pHash of the image under the 7 other orientations (flip_h, flip_v, rotate_90, rotate_180, rotate_270, transpose, '
    'transverse; see dbdedup.transform_name), then, when uniform borders were trimmed, the trimmed image''s pHash and its '
    '7 orientations (16 values in all). NULL when loaded with --no-orientations.';

ALTER TABLE dbdedup.pairs
    ADD COLUMN transform text,
    ADD COLUMN transform_distance smallint,
    ADD COLUMN similarity real;
COMMENT ON COLUMN dbdedup.pairs.transform IS
    'Which variant matched when the pair was found by transform matching: image_b looks like image_a after this '
    '(flip_h, rotate_90, ..., trim, trim+flip_h, ...). NULL when no variant is closer than the stored hashes.';
COMMENT ON COLUMN dbdedup.pairs.transform_distance IS 'Hamming distance at that variant (smaller than distance).';
COMMENT ON COLUMN dbdedup.pairs.similarity IS
    'Cosine similarity of the two images'' embedding vectors (1 = same direction) when the k-NN search found the pair; NULL otherwise.';
CREATE INDEX pairs_similarity_idx ON dbdedup.pairs (similarity) WHERE similarity IS NOT NULL;

CREATE TABLE dbdedup.signal_state (
    signal             text PRIMARY KEY CHECK (signal IN ('transforms', 'embeddings')),
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
    'Per signal (transforms, embeddings): pairs.transform_distance is complete up to max_distance, and pairs.similarity down '
    'to min_similarity (k = neighbours), for images with change_seq <= matched_seq. base_full_match_at is the pHash '
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

CREATE FUNCTION dbdedup.vector_schema() RETURNS name
    LANGUAGE sql STABLE
    AS $$ SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector' $$;
COMMENT ON FUNCTION dbdedup.vector_schema() IS 'The schema pgvector is installed in, or NULL when the server has no pgvector (hash-only mode).';

CREATE FUNCTION dbdedup.enable_embeddings() RETURNS boolean
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
            embedding %I.vector(64)
        ) $q$, s);
    COMMENT ON TABLE dbdedup.image_embeddings IS
        'One embedding per ok image: the embedder''s raw descriptor (kept so a refit can re-project) and the reduced, '
        'unit-length vector searched through a pgvector index (cosine). Exists only on servers with pgvector.';
    COMMENT ON COLUMN dbdedup.image_embeddings.raw IS 'Raw descriptor, float16 little-endian (dbdedup.embedding.raw_to_bytes).';
    COMMENT ON COLUMN dbdedup.image_embeddings.embedding IS 'Reduced vector (64 dimensions, L2-normalised); NULL until projected after the load.';
    CREATE INDEX image_embeddings_pending_idx ON dbdedup.image_embeddings (image_id) WHERE embedding IS NULL;
    RETURN true;
END
$$;
COMMENT ON FUNCTION dbdedup.enable_embeddings() IS
    'Create dbdedup.image_embeddings when pgvector is available (creating the extension if allowed); false in hash-only mode.';

SELECT dbdedup.enable_embeddings();

CREATE FUNCTION dbdedup.build_embedding_index(method text DEFAULT 'hnsw', lists integer DEFAULT NULL) RETURNS text
    LANGUAGE plpgsql
    SET maintenance_work_mem = '256MB'
    AS $$
DECLARE
    s name := dbdedup.vector_schema();
    n bigint;
BEGIN
    IF to_regclass('dbdedup.image_embeddings') IS NULL THEN
        RETURN 'none';
    END IF;
    IF method NOT IN ('hnsw', 'ivfflat') THEN
        RAISE EXCEPTION 'unknown embedding index method %', method USING HINT = 'use hnsw or ivfflat';
    END IF;
    DROP INDEX IF EXISTS dbdedup.image_embeddings_vector_idx;
    IF method = 'hnsw' THEN
        EXECUTE format('CREATE INDEX image_embeddings_vector_idx ON dbdedup.image_embeddings USING hnsw (embedding %I.vector_cosine_ops)', s);
        RETURN 'hnsw';
    END IF;
    SELECT count(*) INTO n FROM dbdedup.image_embeddings WHERE embedding IS NOT NULL;
    IF n < 1000 AND lists IS NULL THEN
        -- IVFFlat trains its lists on the rows there are; a few hundred (or two opposite vectors,
        -- whose mean is zero) make a useless or failing index. HNSW needs no training.
        EXECUTE format('CREATE INDEX image_embeddings_vector_idx ON dbdedup.image_embeddings USING hnsw (embedding %I.vector_cosine_ops)', s);
        RETURN 'hnsw (ivfflat needs 1,000 vectors to train its lists: built when there are)';
    END IF;
    -- pgvector's advice: rows / 1000 lists up to 1M rows, sqrt(rows) beyond
    lists := coalesce(lists, greatest(1, CASE WHEN n <= 1000000 THEN n / 1000 ELSE sqrt(n)::bigint END)::integer);
    EXECUTE format('CREATE INDEX image_embeddings_vector_idx ON dbdedup.image_embeddings USING ivfflat (embedding %I.vector_cosine_ops) WITH (lists = %s)', s, lists);
    RETURN 'ivfflat (' || lists || ' lists)';
END
$$;
COMMENT ON FUNCTION dbdedup.build_embedding_index(text, integer) IS
    'Build (or rebuild) the pgvector index on dbdedup.image_embeddings: hnsw (cosine, the default) or ivfflat with lists '
    'from the row count (rows/1000, sqrt(rows) above 1M; hnsw stands in below 1,000 rows). Called after bulk loads, not '
    'row by row.';

-- ------------------------------------------------------------------ transform variants

CREATE FUNCTION dbdedup.transform_name(variant integer, inverse boolean DEFAULT false) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
        SELECT CASE WHEN variant >= 8 THEN 'trim' || CASE WHEN variant > 8 THEN '+' ELSE '' END ELSE '' END
            || CASE (CASE WHEN variant > 8 THEN variant - 8 ELSE variant END)
                   WHEN 1 THEN 'flip_h' WHEN 2 THEN 'flip_v'
                   WHEN 3 THEN CASE WHEN inverse THEN 'rotate_270' ELSE 'rotate_90' END
                   WHEN 4 THEN 'rotate_180'
                   WHEN 5 THEN CASE WHEN inverse THEN 'rotate_90' ELSE 'rotate_270' END
                   WHEN 6 THEN 'transpose' WHEN 7 THEN 'transverse' ELSE '' END
    $$;
COMMENT ON FUNCTION dbdedup.transform_name(integer, boolean) IS
    'Name of position 1-15 of images.phash_variants (1-7 orientations, 8 trimmed, 9-15 trimmed and oriented); inverse '
    'names the opposite rotation (the variant was of image_b, not image_a).';

CREATE FUNCTION dbdedup.best_transform(hash_a bigint, variants_a bigint[], hash_b bigint, variants_b bigint[],
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

CREATE FUNCTION dbdedup.signal_is_full(st dbdedup.signal_state, full_rematch boolean) RETURNS boolean
    LANGUAGE sql STABLE
    AS $$
        SELECT full_rematch OR st.signal IS NULL
            OR st.base_full_match_at IS DISTINCT FROM (SELECT m.full_match_at FROM dbdedup.match_state m WHERE m.hash_kind = 'phash')
    $$;
COMMENT ON FUNCTION dbdedup.signal_is_full(dbdedup.signal_state, boolean) IS
    'Whether a signal must be recomputed for every image: asked to, never computed, or the pHash pairs were rebuilt since.';

CREATE FUNCTION dbdedup.match_transforms(max_distance integer, method text DEFAULT 'auto', full_rematch boolean DEFAULT false)
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
        DELETE FROM dbdedup.pairs p
        WHERE p.hash_kind = 'phash' AND p.transform_distance IS NOT NULL AND p.distance > ms.max_distance AND p.similarity IS NULL;
        UPDATE dbdedup.pairs p SET transform = NULL, transform_distance = NULL
        WHERE p.hash_kind = 'phash' AND p.transform_distance IS NOT NULL;
    END IF;

    -- probes: every variant of the images to match (and their own pHash, against trimmed targets only);
    -- targets: the pHash and trimmed pHash of every image. Over-common and flat values stay out.
    CREATE TEMP TABLE tf_probe ON COMMIT DROP AS
    SELECT i.id AS image_id, (v.pos - 1)::smallint AS pos, v.value  -- 0 = the pHash itself, 1-15 = phash_variants
    FROM dbdedup.images i
    CROSS JOIN LATERAL unnest(i.phash || i.phash_variants) WITH ORDINALITY v(value, pos)
    WHERE i.status = 'ok' AND i.phash_variants IS NOT NULL
      AND (is_full OR i.change_seq > st.matched_seq) AND i.change_seq <= mark
      AND NOT dbdedup.is_low_information(v.value)
      AND NOT EXISTS (SELECT 1 FROM dbdedup.hash_values h WHERE h.hash_kind = 'phash' AND h.value = i.phash AND h.is_common);
    CREATE TEMP TABLE tf_target ON COMMIT DROP AS
    SELECT i.id AS image_id, t.pos::smallint AS pos, t.value
    FROM dbdedup.images i
    CROSS JOIN LATERAL (VALUES (0, i.phash), (8, i.phash_variants[8])) t(pos, value)
    WHERE i.status = 'ok' AND t.value IS NOT NULL AND NOT dbdedup.is_low_information(t.value)
      AND NOT EXISTS (SELECT 1 FROM dbdedup.hash_values h WHERE h.hash_kind = 'phash' AND h.value = i.phash AND h.is_common);
    CREATE INDEX ON tf_probe (value);
    CREATE INDEX ON tf_target (value);
    CREATE TEMP TABLE tf_probe_values ON COMMIT DROP AS SELECT DISTINCT value FROM tf_probe;
    CREATE TEMP TABLE tf_target_values ON COMMIT DROP AS SELECT DISTINCT value FROM tf_target;
    CREATE TEMP TABLE tf_value_pairs (probe bigint, target bigint, distance smallint) ON COMMIT DROP;
    SELECT count(*) INTO n_probe FROM tf_probe_values;
    SELECT count(*) INTO n_target FROM tf_target_values;
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
            SELECT * INTO plan FROM dbdedup.plan_lsh(n_target, n_probe, max_distance, 0.99);
            FOR block IN 1 .. plan.tables LOOP
                mask := dbdedup.sampled_mask(block, plan.key_bits);
                EXECUTE format($q$
                    WITH c AS (
                        SELECT p.value AS pv, t.value AS tv, bit_count((p.value # t.value)::bit(64)) AS d
                        FROM pg_temp.tf_probe_values p
                        JOIN pg_temp.tf_target_values t ON (t.value & %1$s) = (p.value & %1$s)
                    ), ins AS (
                        INSERT INTO pg_temp.tf_value_pairs SELECT pv, tv, d FROM c WHERE d <= %2$s
                    )
                    SELECT count(*) FROM c $q$, mask, max_distance) INTO c;
                n_candidates := n_candidates + c;
            END LOOP;
        END IF;
    END IF;

    -- value pairs -> image pairs: the closest variant per pair, kept when it beats the stored hashes
    INSERT INTO dbdedup.pairs AS p (hash_kind, image_a, image_b, distance, is_exact, transform, transform_distance)
    SELECT 'phash', a, b, plain, exact, name, d
    FROM (
        SELECT DISTINCT ON (least(pr.image_id, tg.image_id), greatest(pr.image_id, tg.image_id))
               least(pr.image_id, tg.image_id) AS a, greatest(pr.image_id, tg.image_id) AS b,
               vp.distance AS d,
               bit_count((ia.phash # ib.phash)::bit(64))::smallint AS plain,
               ia.sha256 = ib.sha256 AS exact,
               -- name the variant as applied to image_a; a variant of image_b is the inverse rotation
               CASE WHEN pr.pos = 0 THEN 'trim'
                    WHEN tg.pos = 8 AND pr.pos < 8 THEN 'trim+' || dbdedup.transform_name(pr.pos, pr.image_id > tg.image_id)
                    ELSE dbdedup.transform_name(pr.pos, pr.image_id > tg.image_id) END AS name
        FROM tf_value_pairs vp
        JOIN tf_probe pr ON pr.value = vp.probe
        JOIN tf_target tg ON tg.value = vp.target AND tg.image_id <> pr.image_id
        JOIN dbdedup.images ia ON ia.id = least(pr.image_id, tg.image_id)
        JOIN dbdedup.images ib ON ib.id = greatest(pr.image_id, tg.image_id)
        WHERE NOT (pr.pos = 0 AND tg.pos = 0)
        ORDER BY least(pr.image_id, tg.image_id), greatest(pr.image_id, tg.image_id), vp.distance, pr.pos, tg.pos
    ) x
    WHERE d < plain AND NOT exact
    ON CONFLICT ON CONSTRAINT pairs_pkey DO UPDATE
        SET transform = excluded.transform, transform_distance = excluded.transform_distance
        WHERE p.transform_distance IS NULL OR excluded.transform_distance < p.transform_distance;

    SELECT count(*) INTO n_pairs FROM dbdedup.pairs p WHERE p.hash_kind = 'phash' AND p.transform_distance IS NOT NULL;
    INSERT INTO dbdedup.signal_state AS s (signal, max_distance, matched_seq, base_full_match_at, method, mode,
                                           candidates, pairs, seconds, matched_at)
    VALUES ('transforms', keep_distance, mark, ms.full_match_at, chosen, CASE WHEN is_full THEN 'full' ELSE 'incremental' END,
            n_candidates, n_pairs, extract(epoch FROM clock_timestamp() - started), now())
    ON CONFLICT (signal) DO UPDATE SET
        max_distance = excluded.max_distance, matched_seq = excluded.matched_seq,
        base_full_match_at = excluded.base_full_match_at, method = excluded.method, mode = excluded.mode,
        candidates = excluded.candidates, pairs = excluded.pairs, seconds = excluded.seconds, matched_at = excluded.matched_at;
    DROP TABLE tf_probe, tf_target, tf_probe_values, tf_target_values, tf_value_pairs;
    RETURN QUERY SELECT chosen, CASE WHEN is_full THEN 'full' ELSE 'incremental' END, keep_distance, n_probe, n_target,
                        n_candidates, n_pairs, extract(epoch FROM clock_timestamp() - started)::double precision;
END
$$;
COMMENT ON FUNCTION dbdedup.match_transforms(integer, text, boolean) IS
    'Find the image pairs where a variant of one image (another orientation, or trimmed borders: images.phash_variants) '
    'is within max_distance of the other''s pHash or trimmed pHash, closer than their stored pHashes, and record the '
    'variant in pairs.transform / transform_distance. Incremental after dbdedup.match (changed images against all). '
    'Methods as in dbdedup.match: scan, blocks (exact, 0-15) or lsh (recall >= 0.99 at the threshold).';

-- ------------------------------------------------------------------ embeddings

CREATE FUNCTION dbdedup.match_embeddings(min_similarity real, neighbours integer DEFAULT 10, full_rematch boolean DEFAULT false)
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
    s name := dbdedup.vector_schema();
    n_probe bigint;
    n_candidates bigint;
    n_pairs bigint;
    lists integer;
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
        DELETE FROM dbdedup.pairs p
        WHERE p.hash_kind = 'phash' AND p.similarity IS NOT NULL AND p.distance > ms.max_distance AND p.transform_distance IS NULL;
        UPDATE dbdedup.pairs p SET similarity = NULL WHERE p.hash_kind = 'phash' AND p.similarity IS NOT NULL;
    END IF;

    CREATE TEMP TABLE em_probe ON COMMIT DROP AS
    SELECT e.image_id, e.embedding
    FROM dbdedup.image_embeddings e
    JOIN dbdedup.images i ON i.id = e.image_id
    WHERE e.embedding IS NOT NULL AND i.status = 'ok'
      AND (is_full OR i.change_seq > st.matched_seq) AND i.change_seq <= mark
      AND NOT dbdedup.is_low_information(i.phash)
      AND NOT EXISTS (SELECT 1 FROM dbdedup.hash_values h WHERE h.hash_kind = 'phash' AND h.value = i.phash AND h.is_common)
      -- one image per group of byte-identical files (the smallest id): copies share its pairs
      AND NOT EXISTS (SELECT 1 FROM dbdedup.images j WHERE j.sha256 = i.sha256 AND j.status = 'ok' AND j.id < i.id);
    SELECT count(*) INTO n_probe FROM em_probe;

    -- the index returns ef_search (hnsw) or the probed lists' (ivfflat) candidates per probe
    PERFORM set_config('hnsw.ef_search', greatest(40, keep_neighbours * 2)::text, true);
    -- copies are filtered out of each search; pgvector 0.8 keeps scanning until k rows pass the filter
    -- (older pgvector returns fewer: a little recall lost where many byte-identical copies exist)
    PERFORM set_config('hnsw.iterative_scan', 'relaxed_order', true);
    PERFORM set_config('ivfflat.iterative_scan', 'relaxed_order', true);
    SELECT (regexp_match(pg_get_indexdef(x.indexrelid), 'lists=''?(\d+)'))[1]::integer INTO lists
    FROM pg_index x WHERE x.indexrelid = to_regclass('dbdedup.image_embeddings_vector_idx');
    IF lists IS NOT NULL THEN
        PERFORM set_config('ivfflat.probes', greatest(1, ceil(sqrt(lists)))::text, true);
    END IF;

    CREATE TEMP TABLE em_found (a bigint, b bigint, similarity real) ON COMMIT DROP;
    EXECUTE format($q$
        INSERT INTO pg_temp.em_found
        SELECT p.image_id, n.image_id, n.similarity
        FROM pg_temp.em_probe p
        CROSS JOIN LATERAL (
            SELECT e.image_id, (1 - (e.embedding OPERATOR(%1$I.<=>) p.embedding))::real AS similarity
            FROM dbdedup.image_embeddings e
            WHERE e.embedding IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM dbdedup.images c JOIN dbdedup.images j ON j.sha256 = c.sha256
                              WHERE c.id = e.image_id AND j.status = 'ok' AND j.id < c.id)
            ORDER BY e.embedding OPERATOR(%1$I.<=>) p.embedding
            LIMIT %2$s
        ) n
        WHERE n.image_id <> p.image_id $q$, s, keep_neighbours + 1);
    SELECT count(*) INTO n_candidates FROM em_found;

    INSERT INTO dbdedup.pairs AS p (hash_kind, image_a, image_b, distance, is_exact, similarity)
    SELECT 'phash', f.a, f.b, bit_count((ia.phash # ib.phash)::bit(64)), ia.sha256 = ib.sha256, f.similarity
    FROM (SELECT least(a, b) AS a, greatest(a, b) AS b, max(similarity) AS similarity
          FROM em_found WHERE similarity >= keep_similarity GROUP BY 1, 2) f
    JOIN dbdedup.images ia ON ia.id = f.a AND ia.status = 'ok'
    JOIN dbdedup.images ib ON ib.id = f.b AND ib.status = 'ok'
    WHERE NOT dbdedup.is_low_information(ib.phash) AND NOT dbdedup.is_low_information(ia.phash)
      AND NOT EXISTS (SELECT 1 FROM dbdedup.hash_values h
                      WHERE h.hash_kind = 'phash' AND h.value IN (ia.phash, ib.phash) AND h.is_common)
    ON CONFLICT ON CONSTRAINT pairs_pkey DO UPDATE
        SET similarity = greatest(p.similarity, excluded.similarity);

    SELECT count(*) INTO n_pairs FROM dbdedup.pairs p WHERE p.hash_kind = 'phash' AND p.similarity IS NOT NULL;
    INSERT INTO dbdedup.signal_state AS x (signal, min_similarity, neighbours, matched_seq, base_full_match_at, method, mode,
                                           candidates, pairs, seconds, matched_at)
    VALUES ('embeddings', keep_similarity, keep_neighbours, mark, ms.full_match_at,
            coalesce((SELECT index_method FROM dbdedup.embedding_reductions ORDER BY fitted_at DESC LIMIT 1), 'hnsw'),
            CASE WHEN is_full THEN 'full' ELSE 'incremental' END,
            n_candidates, n_pairs, extract(epoch FROM clock_timestamp() - started), now())
    ON CONFLICT (signal) DO UPDATE SET
        min_similarity = excluded.min_similarity, neighbours = excluded.neighbours, matched_seq = excluded.matched_seq,
        base_full_match_at = excluded.base_full_match_at, method = excluded.method, mode = excluded.mode,
        candidates = excluded.candidates, pairs = excluded.pairs, seconds = excluded.seconds, matched_at = excluded.matched_at;
    DROP TABLE em_probe, em_found;
    RETURN QUERY SELECT CASE WHEN is_full THEN 'full' ELSE 'incremental' END, keep_similarity, n_probe, n_candidates, n_pairs,
                        extract(epoch FROM clock_timestamp() - started)::double precision;
END
$$;
COMMENT ON FUNCTION dbdedup.match_embeddings(real, integer, boolean) IS
    'For each image, its k nearest embedding vectors through the pgvector index (LATERAL k-NN, cosine); pairs with '
    'similarity >= min_similarity get pairs.similarity (exact cosine of the stored vectors), with their pHash distance. '
    'Over-common and flat images are left out, as in dbdedup.match. Incremental: changed images against all.';

-- ------------------------------------------------------------------ clusters by rule

ALTER TABLE dbdedup.cluster_parameters
    ADD COLUMN rule text NOT NULL DEFAULT 'hash' CHECK (rule IN ('hash', 'transforms', 'embedding', 'fused')),
    ADD COLUMN min_similarity real,
    ADD COLUMN confirm_distance smallint,
    ADD COLUMN transform_distance smallint,
    ADD COLUMN signals_seq bigint;
COMMENT ON COLUMN dbdedup.cluster_parameters.rule IS
    'Which pairs join images: hash (pHash within max_distance), transforms (also a flipped, rotated or trimmed variant '
    'within transform_distance), embedding (similarity >= min_similarity), fused (transforms, or similarity >= '
    'min_similarity confirmed by a pHash distance <= confirm_distance).';
COMMENT ON COLUMN dbdedup.cluster_parameters.transform_distance IS
    'Largest distance at which a flipped, rotated or trimmed variant links two images (tighter than max_distance: '
    '16 variants give 16 chances to match by accident).';
COMMENT ON COLUMN dbdedup.cluster_parameters.signals_seq IS 'signal_state matched_seq of the signals the clustering used.';

ALTER TABLE dbdedup.cluster_assignments
    ADD COLUMN transform text,
    ADD COLUMN similarity real;
COMMENT ON COLUMN dbdedup.cluster_assignments.distance_to_keeper IS
    'pHash distance to the keeper, at the matched variant when transform is set (0 for exact copies).';
COMMENT ON COLUMN dbdedup.cluster_assignments.transform IS
    'The variant that links the image to its keeper: the image looks like the keeper after this (flip_h, rotate_90, ...); '
    'trim: one of the two has a uniform border the other lacks. NULL when the plain pHash links them.';
COMMENT ON COLUMN dbdedup.cluster_assignments.similarity IS 'Embedding similarity to the keeper when known.';

DROP PROCEDURE dbdedup.refresh(integer, text);
DROP FUNCTION dbdedup.build_clusters(integer, text, text, text[]);

CREATE FUNCTION dbdedup.pair_is_edge(rule text, max_distance integer, transform_max_distance integer, min_similarity real,
                                     confirm_distance integer, distance integer, transform_distance integer, similarity real)
    RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT CASE rule
            WHEN 'hash' THEN distance <= max_distance
            WHEN 'transforms' THEN distance <= max_distance OR coalesce(transform_distance <= transform_max_distance, false)
            WHEN 'embedding' THEN coalesce(similarity >= min_similarity, false)
            ELSE distance <= max_distance OR coalesce(transform_distance <= transform_max_distance, false)
                 OR (coalesce(similarity >= min_similarity, false) AND distance <= confirm_distance)
        END
    $$;
COMMENT ON FUNCTION dbdedup.pair_is_edge(text, integer, integer, real, integer, integer, integer, real) IS
    'Whether a pair joins two images under a clustering rule (see dbdedup.cluster_parameters.rule).';

CREATE FUNCTION dbdedup.inverse_transform(transform text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT replace(replace(replace(transform, 'rotate_90', '#'), 'rotate_270', 'rotate_90'), '#', 'rotate_270') $$;
COMMENT ON FUNCTION dbdedup.inverse_transform(text) IS
    'The variant name seen from the other image of a pair (rotate_90 and rotate_270 swap; flips, transposes and trims are their own inverse).';

CREATE FUNCTION dbdedup.build_clusters(max_distance integer, hash_kind text DEFAULT 'phash', keeper_rule text DEFAULT 'largest',
                                       reference_paths text[] DEFAULT '{}', rule text DEFAULT 'hash',
                                       min_similarity real DEFAULT NULL, confirm_distance integer DEFAULT NULL,
                                       transform_distance integer DEFAULT NULL)
    RETURNS TABLE (clusters bigint, members bigint, split_rounds integer, seconds double precision)
    LANGUAGE plpgsql
    SET work_mem = '256MB'
    AS $$
DECLARE
    kind text := dbdedup.hash_column(hash_kind);
    started timestamptz := clock_timestamp();
    st dbdedup.match_state;
    rounds integer := 0;
    n_clusters bigint;
    n_members bigint;
BEGIN
    IF keeper_rule NOT IN ('largest', 'newest', 'oldest') THEN
        RAISE EXCEPTION 'unknown keeper rule %', keeper_rule USING HINT = 'use largest, newest or oldest';
    END IF;
    IF rule NOT IN ('hash', 'transforms', 'embedding', 'fused') THEN
        RAISE EXCEPTION 'unknown clustering rule %', rule USING HINT = 'use hash, transforms, embedding or fused';
    END IF;
    IF rule IN ('embedding', 'fused') AND min_similarity IS NULL THEN
        RAISE EXCEPTION 'rule % needs min_similarity', rule;
    END IF;
    IF rule <> 'hash' AND kind <> 'phash' THEN
        RAISE EXCEPTION 'rule % works on phash pairs, not %', rule, kind USING HINT = 'use rule hash for dhash and ahash';
    END IF;
    confirm_distance := coalesce(confirm_distance, max_distance);
    transform_distance := coalesce(transform_distance, 2);
    SELECT * INTO st FROM dbdedup.match_state s WHERE s.hash_kind = kind;
    IF st.hash_kind IS NULL OR st.max_distance < max_distance THEN
        PERFORM dbdedup.match(max_distance, kind);
        SELECT * INTO st FROM dbdedup.match_state s WHERE s.hash_kind = kind;
    END IF;
    PERFORM pg_advisory_xact_lock(7220003);

    -- the pairs that join images under the rule, with what links them
    CREATE TEMP TABLE cc_pair ON COMMIT DROP AS
    SELECT p.image_a, p.image_b,
           CASE WHEN p.transform_distance <= build_clusters.transform_distance AND p.transform_distance < p.distance
                THEN p.transform_distance ELSE p.distance END AS d,
           CASE WHEN p.transform_distance <= build_clusters.transform_distance AND p.transform_distance < p.distance
                THEN p.transform END AS transform,
           p.similarity
    FROM dbdedup.pairs p
    WHERE p.hash_kind = kind
      AND dbdedup.pair_is_edge(rule, max_distance, build_clusters.transform_distance, min_similarity, confirm_distance, p.distance,
                               p.transform_distance, p.similarity);

    CREATE TEMP TABLE cc_member (image_id bigint PRIMARY KEY, sha256 bytea, rank_key bigint NOT NULL UNIQUE,
                                 done boolean NOT NULL DEFAULT false) ON COMMIT DROP;
    INSERT INTO cc_member (image_id, sha256, rank_key)
    SELECT i.id, i.sha256,
           row_number() OVER (ORDER BY dbdedup.is_under(i.path, reference_paths) DESC,
               CASE keeper_rule WHEN 'newest' THEN -i.mtime_ns WHEN 'oldest' THEN i.mtime_ns END,
               CASE keeper_rule WHEN 'largest' THEN -coalesce(i.width::bigint * i.height, 0) END,
               CASE keeper_rule WHEN 'largest' THEN -i.size_bytes END,
               i.mtime_ns, i.id)
    FROM dbdedup.images i
    WHERE i.status = 'ok' AND i.id IN (SELECT image_a FROM cc_pair UNION SELECT image_b FROM cc_pair);
    -- images are known by their keeper rank from here on: a smaller rank is a better keeper
    CREATE TEMP TABLE cc_edge ON COMMIT DROP AS
    SELECT ma.rank_key AS a, mb.rank_key AS b, p.d, p.transform, p.similarity
    FROM cc_pair p
    JOIN cc_member ma ON ma.image_id = p.image_a
    JOIN cc_member mb ON mb.image_id = p.image_b;
    -- an edge read from b's side: a is b under the inverse variant
    INSERT INTO cc_edge SELECT b, a, d, dbdedup.inverse_transform(transform), similarity FROM cc_edge;
    CREATE INDEX ON cc_edge (a);
    CREATE TEMP TABLE cc_keeper (node bigint PRIMARY KEY) ON COMMIT DROP;
    DELETE FROM dbdedup.cluster_assignments;

    -- Greedy stars, set-based: the best remaining image (smallest rank) keeps every remaining
    -- image it is paired with; repeated on what is left. In each round every image with no
    -- better remaining neighbour is a keeper (keepers are never neighbours of each other), and
    -- each neighbour joins its best keeper: the same clusters as the sequential greedy pass, in
    -- few rounds. A chain of weak links is split, so every member is directly linked to its keeper.
    LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM cc_edge);
        rounds := rounds + 1;
        TRUNCATE cc_keeper;
        INSERT INTO cc_keeper SELECT e.a FROM cc_edge e GROUP BY e.a HAVING min(e.b) > e.a;
        INSERT INTO dbdedup.cluster_assignments (image_id, cluster_id, is_keeper, distance_to_keeper, transform, similarity)
        SELECT m.image_id, m.image_id, true, 0, NULL, NULL
        FROM cc_keeper k JOIN cc_member m ON m.rank_key = k.node
        UNION ALL
        SELECT m.image_id, km.image_id, false,
               CASE WHEN m.sha256 = km.sha256 THEN 0 ELSE j.d END,
               CASE WHEN m.sha256 = km.sha256 THEN NULL ELSE j.transform END, j.similarity
        FROM (SELECT DISTINCT ON (e.b) e.b AS node, e.a AS keeper, e.d, e.transform, e.similarity
              FROM cc_edge e JOIN cc_keeper k ON k.node = e.a
              ORDER BY e.b, e.a) j
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
                                                 clusters, members, split_rounds, seconds, built_at, rule, min_similarity,
                                                 confirm_distance, transform_distance, signals_seq)
    VALUES (true, max_distance, kind, keeper_rule, reference_paths, st.matched_seq, n_clusters, n_members, greatest(rounds - 1, 0),
            extract(epoch FROM clock_timestamp() - started), now(), rule, min_similarity, confirm_distance,
            transform_distance, (SELECT min(s.matched_seq) FROM dbdedup.signal_state s))
    ON CONFLICT (singleton) DO UPDATE SET
        max_distance = excluded.max_distance, hash_kind = excluded.hash_kind, keeper_rule = excluded.keeper_rule,
        reference_paths = excluded.reference_paths, matched_seq = excluded.matched_seq, clusters = excluded.clusters,
        members = excluded.members, split_rounds = excluded.split_rounds, seconds = excluded.seconds, built_at = excluded.built_at,
        rule = excluded.rule, min_similarity = excluded.min_similarity, confirm_distance = excluded.confirm_distance,
        transform_distance = excluded.transform_distance, signals_seq = excluded.signals_seq;
    DROP TABLE cc_pair, cc_member, cc_edge, cc_keeper;
    RETURN QUERY SELECT n_clusters, n_members, greatest(rounds - 1, 0), extract(epoch FROM clock_timestamp() - started)::double precision;
END
$$;
COMMENT ON FUNCTION dbdedup.build_clusters(integer, text, text, text[], text, real, integer, integer) IS
    'Cluster the pairs that join images under a rule (hash, transforms, embedding, fused; see cluster_parameters.rule), '
    'matching pHash pairs first if needed (run dbdedup.match_transforms / match_embeddings before for those signals). '
    'Keeper order: reference paths first, then the keeper rule (largest = most pixels, then largest file, then oldest; '
    'newest; oldest). Greedy stars: the best image keeps every image linked to it, repeated on the rest, so chains of weak '
    'links are split and every member is directly linked to its keeper. Replaces the current clustering.';

CREATE PROCEDURE dbdedup.refresh(max_distance integer DEFAULT NULL, hash_kind text DEFAULT NULL)
    LANGUAGE plpgsql
    AS $$
DECLARE
    cp dbdedup.cluster_parameters;
    kind text;
    threshold integer;
    clustering text;
BEGIN
    SELECT * INTO cp FROM dbdedup.cluster_parameters WHERE singleton;
    kind := coalesce(hash_kind, cp.hash_kind, 'phash');
    threshold := coalesce(max_distance, cp.max_distance, 8);
    clustering := CASE WHEN kind = 'phash' THEN coalesce(cp.rule, 'hash') ELSE 'hash' END;
    PERFORM dbdedup.match(threshold, kind);
    IF clustering IN ('transforms', 'fused') THEN
        PERFORM dbdedup.match_transforms(coalesce(cp.transform_distance, 2));
    END IF;
    IF clustering IN ('embedding', 'fused') AND cp.min_similarity IS NOT NULL THEN
        PERFORM dbdedup.match_embeddings(cp.min_similarity,
                                         coalesce((SELECT s.neighbours FROM dbdedup.signal_state s WHERE s.signal = 'embeddings'), 10));
    END IF;
    PERFORM dbdedup.build_clusters(threshold, kind, coalesce(cp.keeper_rule, 'largest'), coalesce(cp.reference_paths, '{}'),
                                   clustering, cp.min_similarity, cp.confirm_distance, cp.transform_distance);
END
$$;
COMMENT ON PROCEDURE dbdedup.refresh(integer, text) IS
    'Incremental matching of new and changed images (pHash pairs, then the transform and embedding signals the stored '
    'rule uses), then the clusters rebuilt with the stored parameters. '
    'For pg_cron: SELECT cron.schedule(''dbdedup'', ''*/15 * * * *'', ''CALL dbdedup.refresh()'').';

-- ------------------------------------------------------------------ views

CREATE OR REPLACE VIEW dbdedup.cluster_members AS
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
           dbdedup.is_under(i.path, p.reference_paths) AS is_protected,
           a.transform,
           a.similarity,
           (NOT a.is_keeper AND i.device = k.device AND i.inode = k.inode) AS is_same_file
    FROM dbdedup.cluster_assignments a
    JOIN dbdedup.images i ON i.id = a.image_id
    JOIN dbdedup.images k ON k.id = a.cluster_id
    CROSS JOIN dbdedup.cluster_parameters p;
COMMENT ON VIEW dbdedup.cluster_members IS
    'Members of the current clustering, keeper included (distance 0); only clusters of 2+ images. '
    'is_exact_duplicate: same SHA-256 as the keeper (false for the keeper itself); is_protected: under a reference path; '
    'transform: the flip, rotation or trim that links it to the keeper; similarity: embedding similarity to the keeper; '
    'is_same_file: a hard link to the keeper''s file (same device and inode: removing it frees nothing).';

CREATE OR REPLACE VIEW dbdedup.clusters AS
    SELECT cluster_id,
           cluster_id AS keeper_image_id,
           min(path) FILTER (WHERE is_keeper) AS keeper_path,
           count(*)::integer AS member_count,
           coalesce(sum(size_bytes) FILTER (WHERE NOT is_keeper AND NOT is_protected AND NOT coalesce(is_same_file, false)), 0)::bigint
               AS reclaimable_bytes
    FROM dbdedup.cluster_members
    GROUP BY cluster_id;
COMMENT ON VIEW dbdedup.clusters IS
    'One row per cluster: its keeper and the bytes freed by removing the other, unprotected members (hard links to the '
    'keeper''s file free nothing and are not counted).';

-- ------------------------------------------------------------------ access

CREATE OR REPLACE FUNCTION dbdedup.grant_read_access(role_name text) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA dbdedup TO %I', role_name);
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA dbdedup TO %I', role_name);
    EXECUTE format('GRANT EXECUTE ON FUNCTION dbdedup.hamming(bigint, bigint), dbdedup.similar(bigint, integer, text), '
                   'dbdedup.similar(text, integer, text), dbdedup.similar_to_hash(bigint, integer, text), '
                   'dbdedup.is_under(text, text[]), dbdedup.hash_column(text), dbdedup.transform_name(integer, boolean), '
                   'dbdedup.best_transform(bigint, bigint[], bigint, bigint[]), dbdedup.vector_schema() TO %I', role_name);
END
$$;
