-- The analysts' API: views and lookups for psql users, and the read-only role's grants.

CREATE OR REPLACE VIEW dbdedup.errors AS
    SELECT path, error AS reason, error_detail AS detail, size_bytes, mtime, load_run_id, loaded_at
    FROM dbdedup.images
    WHERE status = 'error';
COMMENT ON VIEW dbdedup.errors IS 'Files that currently cannot be loaded, with the reason.';

CREATE OR REPLACE VIEW dbdedup.exact_duplicates AS
    SELECT sha256,
           count(*) AS copies,
           max(size_bytes) AS size_bytes,
           array_agg(path ORDER BY mtime_ns, path) AS paths
    FROM dbdedup.images
    WHERE status = 'ok'
    GROUP BY sha256
    HAVING count(*) > 1;
COMMENT ON VIEW dbdedup.exact_duplicates IS 'Groups of byte-identical files (same SHA-256), oldest first.';

-- ------------------------------------------------------------------ one-image lookups, from indexes
--
-- "Is this picture already here?" Multi-index hashing, the lookup form of dbdedup.match's blocks
-- method: the 64 bits of a pHash fall in 4 interleaved blocks of 16 (dbdedup.interleaved_mask(4, b)),
-- each with a btree on (pHash & mask, pHash) over the ok images (images_phash_block0_idx .. 3, and
-- images_trimmed_block0_idx .. 3 for the border-trimmed pHash). An image within t of the query is
-- within r_b bits of it in some block b when sum(r_b + 1) = t + 1 (pigeonhole), so each block's
-- index is probed with the query's Hamming ball of radius r_b (= ANY(keys)), and each candidate is
-- re-checked exactly from the index tuple (an index-only scan): exact, for t up to 15 (radius 3 a
-- block); beyond, a scan. PostgreSQL keeps the indexes current on every write of dbdedup.images.

CREATE OR REPLACE FUNCTION dbdedup.lookup_radius(max_distance integer, block integer) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    -- one expression and not STRICT, so that PostgreSQL inlines it into the queries that call it
    AS $$ SELECT (max_distance + 1) / 4 + CASE WHEN block < (max_distance + 1) % 4 THEN 1 ELSE 0 END - 1 $$;
COMMENT ON FUNCTION dbdedup.lookup_radius(integer, integer) IS
    'The Hamming radius r_b a lookup within max_distance probes in block 0-3: sum(r_b + 1) = max_distance + 1 spread '
    'evenly over the 4 blocks, the first (max_distance + 1) % 4 blocks one more (-1: the block is not probed). '
    'Exact up to max_distance 15 (radius 3 a block, the rows of dbdedup.lookup_flips).';

CREATE OR REPLACE FUNCTION dbdedup.lookup_flips(max_distance integer, block integer) RETURNS bigint[]
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
        SELECT coalesce((SELECT f.flips FROM dbdedup.lookup_flips f
                         WHERE f.block = $2 AND f.radius = dbdedup.lookup_radius($1, $2)),
                        '{}')
    $$;
COMMENT ON FUNCTION dbdedup.lookup_flips(integer, integer) IS
    'The XOR masks a lookup within max_distance (0-15) probes in block 0-3: the block''s Hamming ball of radius '
    'dbdedup.lookup_radius(max_distance, block) (empty when it is < 0). From dbdedup.lookup_flips.';

-- the table's rows: constants of bits.sql, kept in step with it whenever the definitions are applied
DELETE FROM dbdedup.lookup_flips;
INSERT INTO dbdedup.lookup_flips (block, radius, flips)
SELECT b, r, dbdedup.ball_masks(dbdedup.interleaved_mask(4, b), r) FROM generate_series(0, 3) b, generate_series(0, 3) r;

CREATE OR REPLACE FUNCTION dbdedup.near_values_distributed(hashes bigint[], max_distance integer, trimmed boolean)
    RETURNS bigint[]
    LANGUAGE plpgsql STABLE
    AS $$
DECLARE
    col text := CASE WHEN trimmed THEN 'i.phash_variants[8]' ELSE 'i.phash' END;
    probes text;
    found bigint[];
BEGIN
    -- Citus plans neither the single-server probes (a subquery correlated with unnest(hashes) beside
    -- a distributed table) nor a generic plan's parameters: the keys of each block's ball are made
    -- here on the coordinator and sent as literals, so each shard probes its block indexes (the masks
    -- are literal too, to match the index expressions) and re-checks its candidates
    IF max_distance > 15 THEN
        probes := 'true';
    ELSE
        SELECT string_agg(format('(%s & %s) = ANY(%L::bigint[])', col, m.mask,
                                 ARRAY(SELECT DISTINCT (h & m.mask) # x FROM unnest(hashes) h, unnest(m.flips) x)), ' OR ')
          INTO probes
        FROM (SELECT dbdedup.interleaved_mask(4, f.block) AS mask, f.flips FROM dbdedup.lookup_flips f
              WHERE f.radius = dbdedup.lookup_radius(max_distance, f.block)) m;
    END IF;
    EXECUTE format($q$
        SELECT ARRAY(SELECT %2$s FROM dbdedup.images i
                     WHERE i.status = 'ok' AND %1$s IS NOT NULL AND (%3$s)
                       AND EXISTS (SELECT FROM unnest(%4$L::bigint[]) h WHERE bit_count((%1$s # h)::bit(64)) <= %5$s)) $q$,
        col, CASE WHEN trimmed THEN 'i.id' ELSE 'i.phash' END, probes, hashes, max_distance)
      INTO found;
    RETURN found;
END
$$;
COMMENT ON FUNCTION dbdedup.near_values_distributed(bigint[], integer, boolean) IS
    'dbdedup.near_phash_values (trimmed: dbdedup.near_trimmed_images) on a Citus cluster: the same rows, each value '
    'or id once; the block probes are made on the coordinator and each shard searches its own block indexes.';

CREATE OR REPLACE FUNCTION dbdedup.near_phash_values(hashes bigint[], max_distance integer) RETURNS bigint[]
    LANGUAGE plpgsql STABLE
    -- one plan a session: the custom plan of one hash looks cheaper than the generic one (10 hashes
    -- estimated), so PostgreSQL would plan the 4 probes again on every call, which took longer than
    -- running them (1 ms against 0.6 ms at a million images, threshold 8)
    SET plan_cache_mode = force_generic_plan
    AS $$
DECLARE
    f0 bigint[];
    f1 bigint[];
    f2 bigint[];
    f3 bigint[];
BEGIN
    IF dbdedup.is_distributed() THEN
        RETURN dbdedup.near_values_distributed(hashes, max_distance, false);
    END IF;
    -- each block's ball at its radius (dbdedup.lookup_radius): one read of the 16 constants
    SELECT coalesce(max(f.flips) FILTER (WHERE f.block = 0), '{}'), coalesce(max(f.flips) FILTER (WHERE f.block = 1), '{}'),
           coalesce(max(f.flips) FILTER (WHERE f.block = 2), '{}'), coalesce(max(f.flips) FILTER (WHERE f.block = 3), '{}')
      INTO f0, f1, f2, f3
    FROM dbdedup.lookup_flips f
    WHERE f.radius = dbdedup.lookup_radius(max_distance, f.block);
    IF max_distance > 15 THEN
        RETURN ARRAY(SELECT DISTINCT i.phash FROM dbdedup.images i, unnest(hashes) h
                     WHERE i.status = 'ok' AND bit_count((i.phash # h)::bit(64)) <= max_distance);
    END IF;
    -- the masks are the literal values of the index expressions (dbdedup.interleaved_mask(4, b))
    RETURN ARRAY(
        SELECT i.phash FROM unnest(hashes) h, dbdedup.images i
        WHERE i.status = 'ok' AND (i.phash & -8608480569735442159) = ANY(ARRAY(SELECT (h & -8608480569735442159) # f FROM unnest(f0) f))
          AND bit_count((i.phash # h)::bit(64)) <= max_distance
        UNION ALL
        SELECT i.phash FROM unnest(hashes) h, dbdedup.images i
        WHERE i.status = 'ok' AND (i.phash & 1229782938533634594) = ANY(ARRAY(SELECT (h & 1229782938533634594) # f FROM unnest(f1) f))
          AND bit_count((i.phash # h)::bit(64)) <= max_distance
        UNION ALL
        SELECT i.phash FROM unnest(hashes) h, dbdedup.images i
        WHERE i.status = 'ok' AND (i.phash & 2459565877067269188) = ANY(ARRAY(SELECT (h & 2459565877067269188) # f FROM unnest(f2) f))
          AND bit_count((i.phash # h)::bit(64)) <= max_distance
        UNION ALL
        SELECT i.phash FROM unnest(hashes) h, dbdedup.images i
        WHERE i.status = 'ok' AND (i.phash & 4919131754134538376) = ANY(ARRAY(SELECT (h & 4919131754134538376) # f FROM unnest(f3) f))
          AND bit_count((i.phash # h)::bit(64)) <= max_distance);
END
$$;
COMMENT ON FUNCTION dbdedup.near_phash_values(bigint[], integer) IS
    'The pHash values of ok images within max_distance of any of the hashes (a value may repeat): multi-index hashing on '
    'images_phash_block0_idx .. 3 (exact; index-only scans), a scan above 15.';

CREATE OR REPLACE FUNCTION dbdedup.near_trimmed_images(hashes bigint[], max_distance integer) RETURNS bigint[]
    LANGUAGE plpgsql STABLE
    -- one plan a session: the custom plan of one hash looks cheaper than the generic one (10 hashes
    -- estimated), so PostgreSQL would plan the 4 probes again on every call, which took longer than
    -- running them (1 ms against 0.6 ms at a million images, threshold 8)
    SET plan_cache_mode = force_generic_plan
    AS $$
DECLARE
    f0 bigint[];
    f1 bigint[];
    f2 bigint[];
    f3 bigint[];
BEGIN
    IF dbdedup.is_distributed() THEN
        RETURN dbdedup.near_values_distributed(hashes, max_distance, true);
    END IF;
    -- each block's ball at its radius (dbdedup.lookup_radius): one read of the 16 constants
    SELECT coalesce(max(f.flips) FILTER (WHERE f.block = 0), '{}'), coalesce(max(f.flips) FILTER (WHERE f.block = 1), '{}'),
           coalesce(max(f.flips) FILTER (WHERE f.block = 2), '{}'), coalesce(max(f.flips) FILTER (WHERE f.block = 3), '{}')
      INTO f0, f1, f2, f3
    FROM dbdedup.lookup_flips f
    WHERE f.radius = dbdedup.lookup_radius(max_distance, f.block);
    IF max_distance > 15 THEN
        RETURN ARRAY(SELECT DISTINCT i.id FROM dbdedup.images i, unnest(hashes) h
                     WHERE i.status = 'ok' AND i.phash_variants[8] IS NOT NULL
                       AND bit_count((i.phash_variants[8] # h)::bit(64)) <= max_distance);
    END IF;
    RETURN ARRAY(
        SELECT i.id FROM unnest(hashes) h, dbdedup.images i
        WHERE i.status = 'ok' AND i.phash_variants[8] IS NOT NULL AND (i.phash_variants[8] & -8608480569735442159) = ANY(ARRAY(SELECT (h & -8608480569735442159) # f FROM unnest(f0) f))
          AND bit_count((i.phash_variants[8] # h)::bit(64)) <= max_distance
        UNION ALL
        SELECT i.id FROM unnest(hashes) h, dbdedup.images i
        WHERE i.status = 'ok' AND i.phash_variants[8] IS NOT NULL AND (i.phash_variants[8] & 1229782938533634594) = ANY(ARRAY(SELECT (h & 1229782938533634594) # f FROM unnest(f1) f))
          AND bit_count((i.phash_variants[8] # h)::bit(64)) <= max_distance
        UNION ALL
        SELECT i.id FROM unnest(hashes) h, dbdedup.images i
        WHERE i.status = 'ok' AND i.phash_variants[8] IS NOT NULL AND (i.phash_variants[8] & 2459565877067269188) = ANY(ARRAY(SELECT (h & 2459565877067269188) # f FROM unnest(f2) f))
          AND bit_count((i.phash_variants[8] # h)::bit(64)) <= max_distance
        UNION ALL
        SELECT i.id FROM unnest(hashes) h, dbdedup.images i
        WHERE i.status = 'ok' AND i.phash_variants[8] IS NOT NULL AND (i.phash_variants[8] & 4919131754134538376) = ANY(ARRAY(SELECT (h & 4919131754134538376) # f FROM unnest(f3) f))
          AND bit_count((i.phash_variants[8] # h)::bit(64)) <= max_distance);
END
$$;
COMMENT ON FUNCTION dbdedup.near_trimmed_images(bigint[], integer) IS
    'The ok images whose border-trimmed pHash (phash_variants[8]) is within max_distance of any of the hashes (an id may repeat): '
    'images_trimmed_block0_idx .. 3, as dbdedup.near_phash_values.';

CREATE OR REPLACE FUNCTION dbdedup.lookup(hash bigint, variants bigint[] DEFAULT NULL, embedding real[] DEFAULT NULL,
                               max_distance integer DEFAULT 8, transform_max_distance integer DEFAULT 2,
                               min_similarity real DEFAULT 0.92, confirm_distance integer DEFAULT 20,
                               neighbours integer DEFAULT 10)
    RETURNS TABLE (image_id bigint, path text, distance integer, width integer, height integer, size_bytes bigint,
                   matched_by text, transform text, transform_distance integer, similarity real)
    LANGUAGE plpgsql STABLE
    -- the static queries planned once a session (see dbdedup.near_phash_values)
    SET plan_cache_mode = force_generic_plan
    AS $$
DECLARE
    s name;
    by_hash bigint[];
    by_transform bigint[] := '{}';
    by_trim bigint[] := '{}';
    by_embedding bigint[] := '{}';
    hits bigint[];
    sim_ids bigint[] := '{}';
    sims real[] := '{}';
    use_embedding boolean;
BEGIN
    IF hash IS NULL THEN
        RAISE EXCEPTION 'a lookup needs a pHash' USING HINT = 'give the image''s 64-bit pHash as a bigint';
    END IF;
    IF max_distance IS NULL OR max_distance < 0 OR max_distance > 64 THEN
        RAISE EXCEPTION 'threshold must be a Hamming distance from 0 to 64, not %', max_distance;
    END IF;
    IF transform_max_distance IS NOT NULL AND (transform_max_distance < 0 OR transform_max_distance > 32) THEN
        RAISE EXCEPTION 'transform threshold must be a Hamming distance from 0 to 32, not %', transform_max_distance;
    END IF;
    IF neighbours IS NULL OR neighbours < 1 OR neighbours > 1000 THEN
        RAISE EXCEPTION 'neighbours must be from 1 to 1000, not %', neighbours;
    END IF;
    IF min_similarity IS NOT NULL AND (min_similarity <= 0 OR min_similarity > 1) THEN
        RAISE EXCEPTION 'minimum similarity must be in (0, 1], not %', min_similarity
            USING HINT = 'NULL leaves the embedding out';
    END IF;
    IF confirm_distance IS NULL OR confirm_distance < 0 OR confirm_distance > 64 THEN
        RAISE EXCEPTION 'confirm distance must be a Hamming distance from 0 to 64, not %', confirm_distance;
    END IF;
    -- (a shorter array silently compared fewer orientations; images.phash_variants holds the 7 orientations, then
    -- the trimmed picture's pHash and its orientations)
    IF variants IS NOT NULL AND coalesce(cardinality(variants), 0) NOT BETWEEN 7 AND 15 THEN
        RAISE EXCEPTION 'variants must be 7 to 15 pHashes, as images.phash_variants holds them, not %',
            coalesce(cardinality(variants), 0) USING HINT = 'NULL leaves the flipped and rotated copies out';
    END IF;
    IF dbdedup.is_distributed() THEN
        -- Citus plans a query over a distributed table only with its parameters' values (a custom plan);
        -- this setting ends with the call, as the function's own does
        PERFORM set_config('plan_cache_mode', 'force_custom_plan', true);
    END IF;
    by_hash := dbdedup.near_phash_values(ARRAY[hash], max_distance);
    IF variants IS NOT NULL AND transform_max_distance IS NOT NULL THEN
        -- this image's other orientations and trimmed crop against the others' pHash, and all of them
        -- with its own pHash against the others' trimmed pHash: the pairs dbdedup.match_transforms
        -- finds from this image's side (the 8 orientations are a group, so a variant of the other
        -- image is this image's inverse variant, up to pHash rounding)
        by_transform := dbdedup.near_phash_values(variants, transform_max_distance);
        by_trim := dbdedup.near_trimmed_images(hash || variants, transform_max_distance);
    END IF;
    IF embedding IS NOT NULL AND min_similarity IS NOT NULL THEN
        s := dbdedup.vector_schema();
    END IF;
    use_embedding := s IS NOT NULL AND to_regclass('dbdedup.image_embeddings') IS NOT NULL;
    IF use_embedding THEN
        IF current_setting('hnsw.ef_search', true)::integer < neighbours + 1 THEN
            PERFORM set_config('hnsw.ef_search', (neighbours + 1)::text, true);
        END IF;
        -- an ivfflat index (the default) is searched as dbdedup.match_embeddings searches it: 4 lists
        IF current_setting('ivfflat.probes', true)::integer < 4 THEN
            PERFORM set_config('ivfflat.probes', '4', true);
        END IF;
        EXECUTE format($q$
            SELECT ARRAY(SELECT e.image_id FROM dbdedup.image_embeddings e WHERE e.embedding IS NOT NULL
                         ORDER BY e.embedding OPERATOR(%1$I.<=>) $1::%1$I.vector LIMIT $2) $q$, s)
            INTO by_embedding USING embedding, neighbours + 1;
    END IF;
    hits := ARRAY(SELECT i.id FROM dbdedup.images i WHERE i.status = 'ok' AND i.phash = ANY(by_hash || by_transform))
            || by_trim || by_embedding;
    IF use_embedding THEN
        -- the cosine of every hit (pgvector's operator lives in a schema known only at run time)
        EXECUTE format($q$
            SELECT coalesce(array_agg(e.image_id), '{}'),
                   coalesce(array_agg((1 - (e.embedding OPERATOR(%1$I.<=>) $1::%1$I.vector))::real), '{}')
            FROM dbdedup.image_embeddings e WHERE e.image_id = ANY($2) $q$, s)
            INTO sim_ids, sims USING embedding, hits;
    END IF;
    -- static, so planned once a session: a dynamic query here was planned on every call
    RETURN QUERY
    WITH hit AS (
        SELECT i.id, i.path, i.phash, i.phash_variants, i.width, i.height, i.size_bytes
        FROM dbdedup.images i
        WHERE i.status = 'ok' AND i.id = ANY(hits)
    ), signal AS (
        SELECT h.*, bit_count((h.phash # hash)::bit(64))::integer AS d, t.distance AS td, t.transform AS tname, e.sim
        FROM hit h
        LEFT JOIN LATERAL dbdedup.best_transform(hash, variants, h.phash, h.phash_variants) t ON variants IS NOT NULL
        LEFT JOIN unnest(sim_ids, sims) e (id, sim) ON e.id = h.id
    ), judged AS (
        SELECT x.*, CASE WHEN x.d <= max_distance THEN 'hash'
                         WHEN x.td <= transform_max_distance THEN 'transform'
                         WHEN x.sim >= min_similarity AND least(x.d, x.td) <= confirm_distance THEN 'embedding' END AS how
        FROM signal x
    )
    SELECT j.id, j.path, j.d, j.width, j.height, j.size_bytes, j.how,
           CASE WHEN j.td < j.d THEN j.tname END, CASE WHEN j.td < j.d THEN j.td END, j.sim
    FROM judged j
    WHERE j.how IS NOT NULL
    ORDER BY least(j.d, j.td), j.sim DESC NULLS LAST, j.path;
END
$$;
COMMENT ON FUNCTION dbdedup.lookup(bigint, bigint[], real[], integer, integer, real, integer, integer) IS
    'The ok images that look like one picture, by the signals of the clusters (the fused rule), from indexes: '
    'pHash within max_distance (multi-index hashing, exact up to 15); a flipped, rotated or border-trimmed variant '
    '(variants: as images.phash_variants) within transform_distance; or among the embedding''s `neighbours` nearest '
    'vectors (pgvector index) with similarity >= min_similarity and a pHash or variant distance <= confirm_distance. '
    'matched_by says which (hash, transform, embedding); transform: the hit looks like this picture after it; '
    'similarity: cosine of the embedding vectors. Closest first. NULL variants, embedding or min_similarity leave '
    'that signal out. Example: SELECT * FROM dbdedup.lookup(-1234567890123456789, NULL, NULL, 8).';

CREATE OR REPLACE FUNCTION dbdedup.similar_to_hash(hash bigint, max_distance integer DEFAULT 8, hash_kind text DEFAULT 'phash')
    RETURNS TABLE (image_id bigint, path text, distance integer, width integer, height integer, size_bytes bigint)
    LANGUAGE plpgsql STABLE
    SET plan_cache_mode = force_generic_plan
    AS $$
DECLARE
    kind text := dbdedup.hash_column(hash_kind);
    near bigint[];
BEGIN
    IF hash IS NULL THEN
        RAISE EXCEPTION 'similar_to_hash needs a hash' USING HINT = 'give a 64-bit hash as a bigint';
    END IF;
    -- (as dbdedup.lookup: a negative threshold found nothing and NULL or 100 everything, silently)
    IF max_distance IS NULL OR max_distance < 0 OR max_distance > 64 THEN
        RAISE EXCEPTION 'threshold must be a Hamming distance from 0 to 64, not %', max_distance;
    END IF;
    IF kind = 'phash' THEN
        IF dbdedup.is_distributed() THEN
            -- as in dbdedup.lookup: Citus plans the query below only with the values of its parameters
            PERFORM set_config('plan_cache_mode', 'force_custom_plan', true);
        END IF;
        -- a variable, not the call in the query: the planner would run the (stable) lookup once more
        -- to estimate the rows of = ANY(...), doubling the work of every call
        near := dbdedup.near_phash_values(ARRAY[hash], max_distance);
        RETURN QUERY
        SELECT i.id, i.path, bit_count((i.phash # hash)::bit(64))::integer, i.width, i.height, i.size_bytes
        FROM dbdedup.images i
        WHERE i.status = 'ok' AND i.phash = ANY(near)
        ORDER BY 3, 2;
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format($q$
        SELECT i.id, i.path, bit_count((i.%1$I # $1)::bit(64))::integer AS distance, i.width, i.height, i.size_bytes
        FROM dbdedup.images i
        WHERE i.status = 'ok' AND bit_count((i.%1$I # $1)::bit(64)) <= $2
        ORDER BY 3, i.path
        $q$, kind)
    USING hash, max_distance;
END
$$;
COMMENT ON FUNCTION dbdedup.similar_to_hash(bigint, integer, text) IS
    'The ok images whose hash is within max_distance of a hash value, closest first. pHash: from the block indexes '
    '(dbdedup.near_phash_values: exact, milliseconds at a million images up to 8); dHash and aHash: a scan.';

CREATE OR REPLACE FUNCTION dbdedup.lookup_image(target bigint, max_distance integer, hash_kind text, transform_max_distance integer,
                                     min_similarity real, confirm_distance integer, neighbours integer)
    RETURNS TABLE (image_id bigint, path text, distance integer, width integer, height integer, size_bytes bigint,
                   matched_by text, transform text, transform_distance integer, similarity real)
    LANGUAGE plpgsql STABLE
    AS $$
DECLARE
    img dbdedup.images;
    vec real[];
BEGIN
    SELECT * INTO img FROM dbdedup.images i WHERE i.id = target AND i.status = 'ok';
    IF img.id IS NULL THEN
        RETURN;
    END IF;
    IF dbdedup.hash_column(hash_kind) <> 'phash' THEN
        RETURN QUERY
        SELECT s.*, 'hash'::text, NULL::text, NULL::integer, NULL::real
        FROM dbdedup.similar_to_hash(CASE hash_kind WHEN 'dhash' THEN img.dhash ELSE img.ahash END, max_distance, hash_kind) s
        WHERE s.image_id <> img.id;
        RETURN;
    END IF;
    IF to_regclass('dbdedup.image_embeddings') IS NOT NULL THEN
        EXECUTE 'SELECT e.embedding::real[] FROM dbdedup.image_embeddings e WHERE e.image_id = $1' INTO vec USING img.id;
    END IF;
    RETURN QUERY
    SELECT l.* FROM dbdedup.lookup(img.phash, img.phash_variants, vec, max_distance, transform_max_distance, min_similarity,
                                   confirm_distance, neighbours) l
    WHERE l.image_id <> img.id;
END
$$;
COMMENT ON FUNCTION dbdedup.lookup_image(bigint, integer, text, integer, real, integer, integer) IS
    'dbdedup.lookup with the pHash, variants and embedding vector of a stored image (itself left out); the body of '
    'dbdedup.similar.';

CREATE OR REPLACE FUNCTION dbdedup.similar(image_id bigint, max_distance integer DEFAULT 8, hash_kind text DEFAULT 'phash',
                                transform_max_distance integer DEFAULT 2, min_similarity real DEFAULT 0.92,
                                confirm_distance integer DEFAULT 20, neighbours integer DEFAULT 10)
    RETURNS TABLE (image_id bigint, path text, distance integer, width integer, height integer, size_bytes bigint,
                   matched_by text, transform text, transform_distance integer, similarity real)
    LANGUAGE sql STABLE
    AS $$ SELECT * FROM dbdedup.lookup_image($1, $2, $3, $4, $5, $6, $7) $$;
COMMENT ON FUNCTION dbdedup.similar(bigint, integer, text, integer, real, integer, integer) IS
    'The images that look like one stored image (itself excluded), closest first, from indexes: for the pHash every '
    'signal of dbdedup.lookup (matched_by: hash, transform or embedding); dHash and aHash compare that hash only. '
    'Example: SELECT * FROM dbdedup.similar(42, 8).';

CREATE OR REPLACE FUNCTION dbdedup.image_at(path text) RETURNS bigint
    LANGUAGE plpgsql STABLE
    AS $$
DECLARE
    target bigint;
BEGIN
    -- by path_bytes (unique index); the displayed path only when it has the \xNN escapes of a
    -- path that is not UTF-8 (no index on path: that is a scan)
    SELECT p.id INTO target FROM dbdedup.images p WHERE p.path_bytes = convert_to(image_at.path, 'UTF8') AND p.status = 'ok';
    IF target IS NULL AND strpos(image_at.path, '\x') > 0 THEN
        SELECT p.id INTO target FROM dbdedup.images p WHERE p.path = image_at.path AND p.status = 'ok';
    END IF;
    RETURN target;
END
$$;
COMMENT ON FUNCTION dbdedup.image_at(text) IS
    'The id of the ok image stored at this path (as stored, or as displayed with \xNN escapes), or NULL.';

CREATE OR REPLACE FUNCTION dbdedup.similar(path text, max_distance integer DEFAULT 8, hash_kind text DEFAULT 'phash',
                                transform_max_distance integer DEFAULT 2, min_similarity real DEFAULT 0.92,
                                confirm_distance integer DEFAULT 20, neighbours integer DEFAULT 10)
    RETURNS TABLE (image_id bigint, path text, distance integer, width integer, height integer, size_bytes bigint,
                   matched_by text, transform text, transform_distance integer, similarity real)
    LANGUAGE sql STABLE
    -- the path is read by dbdedup.image_at (plpgsql): Citus plans no query of a sql function that reads a
    -- distributed table with its parameters
    AS $$ SELECT * FROM dbdedup.similar(dbdedup.image_at($1), $2, $3, $4, $5, $6, $7) $$;
COMMENT ON FUNCTION dbdedup.similar(text, integer, text, integer, real, integer, integer) IS
    'dbdedup.similar of the image stored at this path. Example: SELECT * FROM dbdedup.similar(''/photos/a.jpg'').';

CREATE OR REPLACE FUNCTION dbdedup.grant_read_access(role_name text) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA dbdedup TO %I', role_name);
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA dbdedup TO %I', role_name);
    EXECUTE format('GRANT EXECUTE ON FUNCTION dbdedup.hamming(bigint, bigint), '
                   'dbdedup.similar(bigint, integer, text, integer, real, integer, integer), '
                   'dbdedup.similar(text, integer, text, integer, real, integer, integer), '
                   'dbdedup.lookup(bigint, bigint[], real[], integer, integer, real, integer, integer), '
                   'dbdedup.lookup_image(bigint, integer, text, integer, real, integer, integer), dbdedup.image_at(text), '
                   'dbdedup.near_phash_values(bigint[], integer), dbdedup.near_trimmed_images(bigint[], integer), '
                   'dbdedup.near_values_distributed(bigint[], integer, boolean), '
                   'dbdedup.lookup_flips(integer, integer), dbdedup.lookup_radius(integer, integer), '
                   'dbdedup.similar_to_hash(bigint, integer, text), '
                   'dbdedup.is_under(text, text[]), dbdedup.hash_column(text), dbdedup.transform_name(integer, boolean), '
                   'dbdedup.best_transform(bigint, bigint[], bigint, bigint[]), dbdedup.vector_schema() TO %I', role_name);
END
$$;
COMMENT ON FUNCTION dbdedup.grant_read_access(text) IS
    'Let an existing role read every dbdedup table and view and call hamming() and similar(), without write rights. '
    'Example: CREATE ROLE analyst LOGIN; SELECT dbdedup.grant_read_access(''analyst'');';

-- Alembic makes this table (dbdedup/db.py stamps or upgrades it before these definitions are applied); its comment
-- is here so that every table an analyst lists in psql says what it is.
COMMENT ON TABLE dbdedup.alembic_version IS
    'The migration the tables are at (Alembic''s record: migrations/versions). dbdedup migrate and every command '
    'bring it to the head; not data.';
