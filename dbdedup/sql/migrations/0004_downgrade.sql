-- 0004 down: every pair of exact copies stored again (0002's dbdedup.match, 0003's dbdedup.build_clusters).
-- The star layout goes with the pairs: the next dbdedup.match is a full one.
DELETE FROM dbdedup.match_state;

COMMENT ON TABLE dbdedup.pairs IS
    'Every pair of ok images (image_a < image_b) whose hashes of hash_kind are within match_state.max_distance. '
    'Images with an over-common hash value pair only with their exact copies.';
COMMENT ON COLUMN dbdedup.pairs.is_exact IS 'Same SHA-256: byte-identical files.';

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

CREATE OR REPLACE FUNCTION dbdedup.build_clusters(max_distance integer, hash_kind text DEFAULT 'phash', keeper_rule text DEFAULT 'largest',
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

CREATE OR REPLACE FUNCTION dbdedup.is_low_information(value bigint) RETURNS boolean
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT bit_count(value::bit(64)) <= 3 OR bit_count(value::bit(64)) >= 61 $$;
