-- 0004: exact copies stored as stars, and clusters built over exact groups.
--
-- A group of k byte-identical files (same SHA-256 among the ok images) used to be k(k-1)/2 rows of
-- dbdedup.pairs (601 copies: 180,300 rows). Now each group is a star: every copy is paired with
-- the group's representative (its smallest image id), and only the representative carries the
-- group's near-duplicate pairs; the copies inherit them. dbdedup.build_clusters collapses each
-- group into one node before the greedy-star rounds and expands it afterwards.

-- the pairs of the old layout go: the next dbdedup.match is a full one (pairs are derived data)
DELETE FROM dbdedup.match_state;

COMMENT ON TABLE dbdedup.pairs IS
    'Image pairs (image_a < image_b) found by matching. Exact copies are stored as stars: every ok image with the same '
    'SHA-256 as a smaller ok image is paired (is_exact, distance 0) with the smallest one, the representative of its '
    'group, and with nothing else; near-duplicate pairs (hashes of hash_kind within match_state.max_distance) are stored '
    'between representatives only, and every copy of a group has the pairs of its representative. Images with an '
    'over-common hash value pair only with their exact copies. The transform and embedding signals may add pairs of '
    'any two images (see pairs.transform, pairs.similarity).';
COMMENT ON COLUMN dbdedup.pairs.is_exact IS
    'Same SHA-256: byte-identical files; image_a is the representative (smallest id) of the group, image_b a copy.';

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
        EXECUTE format($q$
            CREATE TEMP TABLE match_member ON COMMIT DROP AS
            SELECT i.id, i.sha256, i.%1$I AS value,
                   i.id = min(i.id) OVER (PARTITION BY i.sha256) AS is_rep,
                   c.id IS NOT NULL AS changed,
                   EXISTS (SELECT 1 FROM dbdedup.pairs e WHERE e.hash_kind = %2$L AND e.image_b = i.id AND e.is_exact) AS was_copy
            FROM dbdedup.images i
            LEFT JOIN pg_temp.match_changed c ON c.id = i.id
            WHERE i.status = 'ok' AND i.sha256 IN (
                SELECT x.sha256 FROM pg_temp.match_changed m JOIN dbdedup.images x ON x.id = m.id WHERE x.sha256 IS NOT NULL
                UNION
                SELECT x.sha256
                FROM pg_temp.match_changed m
                JOIN dbdedup.pairs e ON e.hash_kind = %2$L AND e.is_exact AND m.id IN (e.image_a, e.image_b)
                JOIN dbdedup.images x ON x.id = CASE WHEN e.image_a = m.id THEN e.image_b ELSE e.image_a END
                WHERE x.sha256 IS NOT NULL) $q$, kind, kind);

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
        ELSE dbdedup.match_values_lsh(kind, keep_distance, is_full) END;
    RAISE DEBUG 'dbdedup.match: % after % s', 'method done', round(extract(epoch FROM clock_timestamp() - started)::numeric, 2);
    IF NOT is_full THEN
        UPDATE dbdedup.hash_values v SET pending = false WHERE v.hash_kind = kind AND v.pending;
    END IF;

    -- image pairs: exact groups as stars (each copy with its representative, the smallest id),
    -- then near pairs between representatives: same value (different files), and the value pairs expanded
    IF is_full THEN
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
        DELETE FROM match_rep r
        WHERE EXISTS (SELECT 1 FROM dbdedup.images o WHERE o.status = 'ok' AND o.sha256 = r.sha256 AND o.id < r.id);
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
            ON CONFLICT DO NOTHING
            $q$, kind, kind);
    ELSE
        -- stars of the groups that changed, then the near pairs of every representative that is
        -- new or changed, or was a copy before (it inherits nothing: its pairs are computed)
        INSERT INTO dbdedup.pairs (hash_kind, image_a, image_b, distance, is_exact)
        SELECT kind, r.id, m.id, 0, true
        FROM match_member m JOIN match_member r ON r.sha256 = m.sha256 AND r.is_rep
        WHERE NOT m.is_rep
        ON CONFLICT DO NOTHING;
        EXECUTE format($q$
            INSERT INTO dbdedup.pairs (hash_kind, image_a, image_b, distance, is_exact)
            SELECT %1$L, least(x.id, y.id), greatest(x.id, y.id), 0, false
            FROM pg_temp.match_member x
            JOIN dbdedup.hash_values v ON v.hash_kind = %1$L AND v.value = x.value AND NOT v.is_common
            JOIN dbdedup.images y ON y.status = 'ok' AND y.%2$I = x.value AND y.sha256 <> x.sha256
            WHERE x.is_rep AND (x.changed OR x.was_copy)
              AND NOT EXISTS (SELECT 1 FROM dbdedup.images r WHERE r.status = 'ok' AND r.sha256 = y.sha256 AND r.id < y.id)
            UNION ALL
            SELECT %1$L, least(x.id, y.id), greatest(x.id, y.id), vp.distance, false
            FROM pg_temp.match_member x
            JOIN dbdedup.value_pairs vp ON vp.hash_kind = %1$L AND vp.value_a = x.value
            JOIN dbdedup.images y ON y.status = 'ok' AND y.%2$I = vp.value_b AND y.sha256 <> x.sha256
            WHERE x.is_rep AND (x.changed OR x.was_copy)
              AND NOT EXISTS (SELECT 1 FROM dbdedup.images r WHERE r.status = 'ok' AND r.sha256 = y.sha256 AND r.id < y.id)
            UNION ALL
            SELECT %1$L, least(x.id, y.id), greatest(x.id, y.id), vp.distance, false
            FROM pg_temp.match_member x
            JOIN dbdedup.value_pairs vp ON vp.hash_kind = %1$L AND vp.value_b = x.value
            JOIN dbdedup.images y ON y.status = 'ok' AND y.%2$I = vp.value_a AND y.sha256 <> x.sha256
            WHERE x.is_rep AND (x.changed OR x.was_copy)
              AND NOT EXISTS (SELECT 1 FROM dbdedup.images r WHERE r.status = 'ok' AND r.sha256 = y.sha256 AND r.id < y.id)
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
    DROP TABLE IF EXISTS match_fresh;
    DROP TABLE match_changed;
    DROP TABLE IF EXISTS match_diff;
    DROP TABLE IF EXISTS match_member;
    DROP TABLE IF EXISTS match_rep;
    RETURN QUERY SELECT chosen, CASE WHEN is_full THEN 'full' ELSE 'incremental' END, keep_distance, n_total, n_pending,
                        n_candidates, n_value_pairs, n_pairs, extract(epoch FROM clock_timestamp() - started)::double precision;
END
$$;
COMMENT ON FUNCTION dbdedup.match(integer, text, text, boolean, integer) IS
    'Find every pair of ok images within max_distance for one hash kind and store it in dbdedup.pairs, exact copies as '
    'stars (see the table''s comment). Incremental: only images changed since the last match are compared (against '
    'all), and the stars of the exact groups they join or leave are redrawn; a larger threshold than before, a new '
    'common_limit or full_rematch re-matches everything. method: auto, scan, blocks (exact, 0-15) or lsh (approximate). '
    'Pairs are kept up to the largest threshold asked so far. Waits for a running load (same advisory lock).';

-- ------------------------------------------------------------------ clusters over exact groups

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

    -- every image of a linking pair and every exact copy (is_exact pairs are the stars of the exact
    -- groups), ranked by the keeper order; the copies of one file are one node, known by the best rank
    CREATE TEMP TABLE cc_image (image_id bigint PRIMARY KEY, rank_key bigint NOT NULL UNIQUE, node bigint NOT NULL) ON COMMIT DROP;
    INSERT INTO cc_image (image_id, rank_key, node)
    SELECT r.id, r.rank_key, min(r.rank_key) OVER (PARTITION BY r.sha256)
    FROM (SELECT i.id, i.sha256,
                 row_number() OVER (ORDER BY dbdedup.is_under(i.path, reference_paths) DESC,
                     CASE keeper_rule WHEN 'newest' THEN -i.mtime_ns WHEN 'oldest' THEN i.mtime_ns END,
                     CASE keeper_rule WHEN 'largest' THEN -coalesce(i.width::bigint * i.height, 0) END,
                     CASE keeper_rule WHEN 'largest' THEN -i.size_bytes END,
                     i.mtime_ns, i.id) AS rank_key
          FROM dbdedup.images i
          WHERE i.status = 'ok' AND i.id IN (SELECT image_a FROM cc_pair UNION SELECT image_b FROM cc_pair
                                             UNION SELECT p.image_a FROM dbdedup.pairs p WHERE p.hash_kind = kind AND p.is_exact
                                             UNION SELECT p.image_b FROM dbdedup.pairs p WHERE p.hash_kind = kind AND p.is_exact)) r;
    CREATE TEMP TABLE cc_member (node bigint PRIMARY KEY, images integer NOT NULL, done boolean NOT NULL DEFAULT false) ON COMMIT DROP;
    INSERT INTO cc_member (node, images) SELECT c.node, count(*) FROM cc_image c GROUP BY c.node;
    -- nodes are known by their keeper rank from here on: a smaller rank is a better keeper. One
    -- edge per ordered pair of nodes (copies may bring the same link twice); an edge read from b's
    -- side: a is b under the inverse variant
    CREATE TEMP TABLE cc_edge ON COMMIT DROP AS
    SELECT DISTINCT ON (e.a, e.b) e.a, e.b, e.d, e.transform, e.similarity
    FROM (SELECT ma.node AS a, mb.node AS b, p.d, p.transform, p.similarity
          FROM cc_pair p JOIN cc_image ma ON ma.image_id = p.image_a JOIN cc_image mb ON mb.image_id = p.image_b
          UNION ALL
          SELECT mb.node, ma.node, p.d, dbdedup.inverse_transform(p.transform), p.similarity
          FROM cc_pair p JOIN cc_image ma ON ma.image_id = p.image_a JOIN cc_image mb ON mb.image_id = p.image_b) e
    WHERE e.a <> e.b
    ORDER BY e.a, e.b, e.d, e.transform NULLS FIRST, e.similarity DESC NULLS LAST;
    CREATE INDEX ON cc_edge (a);
    CREATE TEMP TABLE cc_keeper (node bigint PRIMARY KEY) ON COMMIT DROP;
    CREATE TEMP TABLE cc_assign (node bigint PRIMARY KEY, keeper bigint NOT NULL, d integer NOT NULL, transform text,
                                 similarity real) ON COMMIT DROP;
    DELETE FROM dbdedup.cluster_assignments;

    -- Greedy stars, set-based, over nodes: the best remaining node (smallest rank) keeps every
    -- remaining node it is linked to; repeated on what is left. In each round every node with no
    -- better remaining neighbour is a keeper (keepers are never neighbours of each other), and
    -- each neighbour joins its best keeper: the same clusters as the sequential greedy pass, in
    -- few rounds. A chain of weak links is split, so every member is directly linked to its keeper.
    -- The copies of a file share every link, so the pass over images would keep them together:
    -- one node gives the same clusters.
    LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM cc_edge);
        rounds := rounds + 1;
        TRUNCATE cc_keeper;
        INSERT INTO cc_keeper SELECT e.a FROM cc_edge e GROUP BY e.a HAVING min(e.b) > e.a;
        INSERT INTO cc_assign (node, keeper, d, transform, similarity)
        SELECT k.node, k.node, 0, NULL, NULL FROM cc_keeper k
        UNION ALL
        SELECT * FROM (SELECT DISTINCT ON (e.b) e.b, e.a, e.d, e.transform, e.similarity
                       FROM cc_edge e JOIN cc_keeper k ON k.node = e.a
                       ORDER BY e.b, e.a) j;
        -- a keeper whose neighbours all joined better keepers is no cluster (a group of copies
        -- still is: added after the rounds)
        DELETE FROM cc_assign a
        USING cc_keeper k
        WHERE a.node = k.node
          AND NOT EXISTS (SELECT 1 FROM cc_assign o WHERE o.keeper = a.node AND o.node <> a.node);
        UPDATE cc_member m SET done = true
        FROM cc_assign a WHERE a.node = m.node AND NOT m.done;
        DELETE FROM cc_edge e USING cc_member m WHERE m.done AND m.node = e.a;
        DELETE FROM cc_edge e USING cc_member m WHERE m.done AND m.node = e.b;
    END LOOP;
    -- copies of one file that joined no other image: a cluster of their own
    INSERT INTO cc_assign (node, keeper, d, transform, similarity)
    SELECT m.node, m.node, 0, NULL, NULL FROM cc_member m WHERE m.images > 1 AND NOT m.done;

    -- every copy goes where its node went; copies of the keeper are at distance 0
    INSERT INTO dbdedup.cluster_assignments (image_id, cluster_id, is_keeper, distance_to_keeper, transform, similarity)
    SELECT i.image_id, k.image_id, i.rank_key = a.keeper,
           CASE WHEN a.node = a.keeper THEN 0 ELSE a.d END,
           CASE WHEN a.node = a.keeper THEN NULL ELSE a.transform END,
           CASE WHEN a.node = a.keeper THEN NULL ELSE a.similarity END
    FROM cc_assign a
    JOIN cc_image i ON i.node = a.node
    JOIN cc_image k ON k.rank_key = a.keeper;

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
    DROP TABLE cc_pair, cc_image, cc_member, cc_edge, cc_keeper, cc_assign;
    RETURN QUERY SELECT n_clusters, n_members, greatest(rounds - 1, 0), extract(epoch FROM clock_timestamp() - started)::double precision;
END
$$;
COMMENT ON FUNCTION dbdedup.build_clusters(integer, text, text, text[], text, real, integer, integer) IS
    'Cluster the pairs that join images under a rule (hash, transforms, embedding, fused; see cluster_parameters.rule), '
    'matching pHash pairs first if needed (run dbdedup.match_transforms / match_embeddings before for those signals). '
    'Keeper order: reference paths first, then the keeper rule (largest = most pixels, then largest file, then oldest; '
    'newest; oldest). Greedy stars: the best image keeps every image linked to it, repeated on the rest, so chains of weak '
    'links are split and every member is directly linked to its keeper. Byte-identical copies (one exact group: a star in '
    'dbdedup.pairs) are one node: they always share a cluster, any of them can be its keeper, and copies of the keeper '
    'are at distance 0. Replaces the current clustering.';

-- Not STRICT: PostgreSQL inlines a SQL function only when it is not STRICT or its body is
-- strict, and an OR is not. Inlined, the check costs 0.1 s a million values instead of 1.2 s
-- (matching calls it twice per distinct value).
CREATE OR REPLACE FUNCTION dbdedup.is_low_information(value bigint) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT bit_count(value::bit(64)) <= 3 OR bit_count(value::bit(64)) >= 61 $$;
