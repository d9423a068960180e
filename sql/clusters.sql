-- Clusters: one keeper per group of near-duplicates, built from dbdedup.pairs by a rule.
--
--   SELECT * FROM dbdedup.build_clusters(8);         -- clusters at 8, largest image kept
--   CALL dbdedup.refresh();                          -- match + cluster with the stored parameters (pg_cron)

CREATE OR REPLACE FUNCTION dbdedup.is_under(path text, prefixes text[]) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT coalesce(bool_or(path = rtrim(p, '/') OR starts_with(path, rtrim(p, '/') || '/')), false)
        FROM unnest(prefixes) p
    $$;
COMMENT ON FUNCTION dbdedup.is_under(text, text[]) IS 'True when path is one of the prefixes or lies under one of them (whole path components).';

CREATE OR REPLACE FUNCTION dbdedup.pair_is_edge(rule text, max_distance integer, transform_max_distance integer, min_similarity real,
                                     confirm_distance integer, distance integer, transform_distance integer, similarity real,
                                     verified boolean)
    RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT coalesce(verified, false) AND CASE rule
            WHEN 'hash' THEN distance <= max_distance
            WHEN 'transforms' THEN distance <= max_distance OR coalesce(transform_distance <= transform_max_distance, false)
            WHEN 'embedding' THEN coalesce(similarity >= min_similarity, false)
            ELSE distance <= max_distance OR coalesce(transform_distance <= transform_max_distance, false)
                 OR (coalesce(similarity >= min_similarity, false) AND distance <= confirm_distance)
        END
    $$;
COMMENT ON FUNCTION dbdedup.pair_is_edge(text, integer, integer, real, integer, integer, integer, real, boolean) IS
    'Whether a pair joins two images under a clustering rule (see dbdedup.cluster_parameters.rule): only a verified pair '
    '(pairs.verified true, dbdedup.verify_pairs) does, when its signals are within the rule''s bounds.';

CREATE OR REPLACE FUNCTION dbdedup.prepare_cluster_graph(pair_kind text, max_distance integer, keeper_rule text,
                                                reference_paths text[], rule text, min_similarity real,
                                                confirm_distance integer, transform_distance integer,
                                                with_unchecked boolean DEFAULT false)
    RETURNS void
    LANGUAGE plpgsql
    SET work_mem = '256MB'
    AS $$
BEGIN
    -- the pairs that join images under the rule, with what links them
    CREATE TEMP TABLE cc_pair ON COMMIT DROP AS
    SELECT p.image_a, p.image_b, (with_unchecked AND (p.verified IS NULL OR p.verify_reason = 'unchecked')) AS open,
           CASE WHEN p.transform_distance <= prepare_cluster_graph.transform_distance AND p.transform_distance < p.distance
                THEN p.transform_distance ELSE p.distance END AS d,
           CASE WHEN p.transform_distance <= prepare_cluster_graph.transform_distance AND p.transform_distance < p.distance
                THEN p.transform END AS transform,
           p.similarity, p.verify_reason, p.verify_score
    FROM dbdedup.pairs p
    WHERE p.hash_kind = pair_kind
      AND dbdedup.pair_is_edge(rule, max_distance, prepare_cluster_graph.transform_distance, min_similarity, confirm_distance,
                               p.distance, p.transform_distance, p.similarity,
                               CASE WHEN with_unchecked AND (p.verified IS NULL OR p.verify_reason = 'unchecked') THEN true
                                    ELSE p.verified END);
    -- reviewers' verdicts, by content: a pair judged not a duplicate never links; an image judged
    -- not in its cluster links by no signal; a confirmed pair links whatever its distance
    -- (the images the verdicts name are read once into cc_verdict_image, and the images to rank
    -- into cc_image_row: Citus joins no temporary table with images on another column than its id)
    CREATE TEMP TABLE cc_verdict ON COMMIT DROP AS SELECT v.kind, v.sha256_a, v.sha256_b FROM dbdedup.verdicts v;
    CREATE TEMP TABLE cc_verdict_image ON COMMIT DROP AS
    SELECT i.id, i.sha256, i.phash, i.dhash, i.ahash FROM dbdedup.images i
    WHERE i.status = 'ok' AND i.sha256 IN (SELECT v.sha256_a FROM cc_verdict v UNION SELECT v.sha256_b FROM cc_verdict v);
    IF EXISTS (SELECT 1 FROM cc_verdict) THEN
        DELETE FROM cc_pair p
        USING (SELECT least(a.id, b.id) AS x, greatest(a.id, b.id) AS y
               FROM cc_verdict v
               JOIN cc_verdict_image a ON a.sha256 = v.sha256_a
               JOIN cc_verdict_image b ON b.sha256 = v.sha256_b
               WHERE v.kind = 'not_duplicate') n
        WHERE p.image_a = n.x AND p.image_b = n.y;
        DELETE FROM cc_pair p
        WHERE p.image_a IN (SELECT i.id FROM cc_verdict v JOIN cc_verdict_image i ON i.sha256 = v.sha256_a
                            WHERE v.kind = 'not_in_cluster')
           OR p.image_b IN (SELECT i.id FROM cc_verdict v JOIN cc_verdict_image i ON i.sha256 = v.sha256_a
                            WHERE v.kind = 'not_in_cluster');
        INSERT INTO cc_pair (image_a, image_b, open, d, transform, similarity, verify_reason, verify_score)
        SELECT least(a.id, b.id), greatest(a.id, b.id), false,
               CASE pair_kind
                   WHEN 'dhash' THEN dbdedup.hamming(a.dhash, b.dhash)
                   WHEN 'ahash' THEN dbdedup.hamming(a.ahash, b.ahash)
                   ELSE dbdedup.hamming(a.phash, b.phash) END,
               NULL, NULL, 'reviewer', NULL
        FROM cc_verdict v
        CROSS JOIN LATERAL (SELECT i.id, i.phash, i.dhash, i.ahash FROM cc_verdict_image i
                            WHERE i.sha256 = v.sha256_a ORDER BY i.id LIMIT 1) a
        CROSS JOIN LATERAL (SELECT i.id, i.phash, i.dhash, i.ahash FROM cc_verdict_image i
                            WHERE i.sha256 = v.sha256_b ORDER BY i.id LIMIT 1) b
        WHERE v.kind = 'duplicate';
    END IF;

    -- every image of a linking pair and every exact copy (is_exact pairs are the stars of the exact
    -- groups), ranked by the keeper order; the copies of one file are one node, known by the best rank
    CREATE TEMP TABLE cc_image_row ON COMMIT DROP AS
    SELECT i.id, i.sha256, i.path, i.mtime_ns, i.width, i.height, i.size_bytes,
           i.colour_signature[257:384] AS chroma_cells
    FROM dbdedup.images i
    WHERE i.status = 'ok' AND i.id IN (SELECT image_a FROM cc_pair UNION SELECT image_b FROM cc_pair
                                       UNION SELECT p.image_a FROM dbdedup.pairs p WHERE p.hash_kind = pair_kind AND p.is_exact
                                       UNION SELECT p.image_b FROM dbdedup.pairs p WHERE p.hash_kind = pair_kind AND p.is_exact);
    CREATE TEMP TABLE cc_image (image_id bigint PRIMARY KEY, rank_key bigint NOT NULL UNIQUE, node bigint NOT NULL) ON COMMIT DROP;
    INSERT INTO cc_image (image_id, rank_key, node)
    SELECT r.id, r.rank_key, min(r.rank_key) OVER (PARTITION BY r.sha256)
    FROM (SELECT i.id, i.sha256,
                 row_number() OVER (ORDER BY i.sha256 IN (SELECT v.sha256_a FROM cc_verdict v WHERE v.kind = 'keeper') DESC,
                     dbdedup.is_under(i.path, reference_paths) DESC,
                     CASE keeper_rule WHEN 'newest' THEN -i.mtime_ns WHEN 'oldest' THEN i.mtime_ns END,
                     CASE keeper_rule WHEN 'largest' THEN -coalesce(i.width::bigint * i.height, 0) END,
                     CASE keeper_rule WHEN 'largest' THEN -i.size_bytes END,
                     i.mtime_ns, i.id) AS rank_key
          FROM cc_image_row i) r;
    CREATE TEMP TABLE cc_member (node bigint PRIMARY KEY, images integer NOT NULL, done boolean NOT NULL DEFAULT false) ON COMMIT DROP;
    INSERT INTO cc_member (node, images) SELECT c.node, count(*) FROM cc_image c GROUP BY c.node;
    -- nodes are known by their keeper rank from here on: a smaller rank is a better keeper. One
    -- edge per ordered pair of nodes (copies may bring the same link twice); an edge read from b's
    -- side: a is b under the inverse variant
    CREATE TEMP TABLE cc_edge ON COMMIT DROP AS
    SELECT DISTINCT ON (e.a, e.b) e.a, e.b, e.d, e.transform, e.similarity, e.verify_reason, e.verify_score, e.open,
           e.image_a, e.image_b
    FROM (SELECT ma.node AS a, mb.node AS b, p.d, p.transform, p.similarity, p.verify_reason, p.verify_score, p.open,
                 p.image_a, p.image_b
          FROM cc_pair p JOIN cc_image ma ON ma.image_id = p.image_a JOIN cc_image mb ON mb.image_id = p.image_b
          UNION ALL
          SELECT mb.node, ma.node, p.d, dbdedup.inverse_transform(p.transform), p.similarity, p.verify_reason,
                 p.verify_score, p.open, p.image_a, p.image_b
          FROM cc_pair p JOIN cc_image ma ON ma.image_id = p.image_a JOIN cc_image mb ON mb.image_id = p.image_b) e
    WHERE e.a <> e.b
    ORDER BY e.a, e.b, e.open, e.d, e.transform NULLS FIRST, e.similarity DESC NULLS LAST;
    -- A colour picture is never kept as a copy of a greyscale one (a greyscale copy of it may be
    -- kept as its copy, and nobody should delete the colours for the grey): the link is dropped
    -- when the greyscale picture would rank first. Without it, an icon set's grey folder keeps
    -- every coloured folder whose greyscale conversion it resembles. Only a frame may add the colour:
    -- round a pair an alignment verified (the geometric check, a dense alignment), or round a
    -- pair found through a trimmed variant, when the colour picture's middle is grey (centre_grey:
    -- the middle 4x4 of its 8x8 chroma cells under min_chroma RMS; a coloured mat round a greyscale
    -- picture leaves them grey, where a card with red pips beside one with black pips does not:
    -- session 34, the accuracy set's seed-6 draw joined tango's red ten of diamonds to the black ten
    -- of clubs so, its greyscale conversion agreeing with the clubs' signature).
    -- Reviewers' verdicts still link.
    CREATE TEMP TABLE cc_tone ON COMMIT DROP AS
    SELECT c.node, bool_and(t.chroma < vs.grey_chroma) AS grey, bool_and(t.chroma >= vs.min_chroma) AS colour,
           bool_and(m.chroma < vs.min_chroma) AS centre_grey
    FROM cc_image c
    JOIN cc_image_row r ON r.id = c.image_id
    CROSS JOIN LATERAL (SELECT sqrt(sum(x * x) / 64) AS chroma FROM unnest(r.chroma_cells) AS x) t
    -- (chroma_cells: the 64 a* cells, then the 64 b* cells, row by row)
    CROSS JOIN LATERAL (SELECT sqrt(sum(u.x * u.x) / 16) AS chroma
                        FROM unnest(r.chroma_cells) WITH ORDINALITY AS u (x, k)
                        WHERE ((u.k - 1) % 64) / 8 BETWEEN 2 AND 5 AND (u.k - 1) % 8 BETWEEN 2 AND 5) m
    CROSS JOIN dbdedup.verify_settings() vs
    WHERE cardinality(r.chroma_cells) = 128
    GROUP BY c.node;
    -- the links the rule concerns, marked once (the planner of the checks by pixels reads the mark of its open
    -- links: sql/queries/verify_plan.sql, graph_edges): the better-ranked node greyscale, the other colour
    ALTER TABLE cc_edge ADD COLUMN greyscale_keeper boolean NOT NULL DEFAULT false;
    -- framed: the colour picture's middle is grey, so an alignment (which compares the overlap's lightness
    -- when one side is grey) may keep the link: the colours are a frame's. A colour picture whose middle is in
    -- colour is not kept by a greyscale keeper by any verdict: an icon set's turned grey folder, aligned with
    -- each coloured folder in turn, kept twelve of them (bench/accuracy/cli_score.py --lone-copies, session 44).
    ALTER TABLE cc_edge ADD COLUMN colour_framed boolean NOT NULL DEFAULT false;
    UPDATE cc_edge e SET greyscale_keeper = true, colour_framed = coalesce(c.centre_grey, false)
    FROM cc_tone g, cc_tone c
    WHERE g.node = least(e.a, e.b) AND c.node = greatest(e.a, e.b) AND g.grey AND c.colour
      AND NOT (coalesce(e.transform, '') LIKE 'trim%' AND c.centre_grey);
    DELETE FROM cc_edge e
    WHERE e.greyscale_keeper AND NOT e.open AND e.verify_reason IS DISTINCT FROM 'reviewer'
      AND NOT (coalesce(e.verify_reason, '') IN ('geometry', 'dense') AND e.colour_framed);
    CREATE INDEX ON cc_edge (a);
    -- nodes judged not duplicates of each other (verdicts) never share a cluster, even when both link to its keeper
    CREATE TEMP TABLE cc_apart ON COMMIT DROP AS
    SELECT DISTINCT least(ia.node, ib.node) AS a, greatest(ia.node, ib.node) AS b
    FROM cc_verdict v
    JOIN cc_verdict_image x ON x.sha256 = v.sha256_a JOIN cc_image ia ON ia.image_id = x.id
    JOIN cc_verdict_image y ON y.sha256 = v.sha256_b JOIN cc_image ib ON ib.image_id = y.id
    WHERE v.kind = 'not_duplicate';
END
$$;
COMMENT ON FUNCTION dbdedup.prepare_cluster_graph(text, integer, text, text[], text, real, integer, integer, boolean) IS
    'The graph dbdedup.build_clusters clusters, in temporary tables of the transaction (dropped at its end): cc_image '
    '(each image of a linking pair and each exact copy, its keeper rank, and its node: the copies of one file are one node), '
    'cc_member (the nodes), cc_edge (one row per ordered pair of linked nodes a, b; a smaller node ranks first as keeper; '
    'greyscale_keeper: a link the greyscale-keeper rule concerns; colour_framed: its colour picture''s middle is grey, '
    'so that an alignment''s verdict keeps it) '
    'and cc_apart (the nodes reviewers judged not duplicates, a < b: never in one cluster), '
    'after reviewers'' verdicts and the greyscale-keeper rule. pair_kind is a hash column (dbdedup.hash_column), rule as '
    'build_clusters applies it. With with_unchecked, the pairs that have no verdict yet (pending, or left unchecked: '
    'verify_reason ''unchecked'') are edges too, marked open (and kept whatever the greyscale rule, which their verdict '
    'decides): the graph the check by pixels is planned on (dbdedup/verify_plan.py).';

-- Here because a build is its one caller in SQL; the loader calls it too (dbdedup/db.py), for images and
-- image_embeddings.
CREATE OR REPLACE FUNCTION dbdedup.analyze_if_changed(target regclass, changed bigint) RETURNS boolean
    LANGUAGE plpgsql
    AS $$
BEGIN
    -- Autovacuum analyses a table this changed, but later: what runs next (the projection and match after a
    -- load, the joins on cluster_assignments after a build) would plan on the statistics from before.
    IF target IS NULL OR changed IS NULL
       OR changed <= 50 + 0.1 * greatest((SELECT c.reltuples::bigint FROM pg_class c WHERE c.oid = target), 0) THEN
        RETURN false;
    END IF;
    EXECUTE format('ANALYZE %s', target);
    RETURN true;
END
$$;
COMMENT ON FUNCTION dbdedup.analyze_if_changed(regclass, bigint) IS
    'ANALYZE the table when changed, the rows written or deleted in it, exceeds autovacuum''s default threshold: '
    '50 rows + 10% of those its statistics count (pg_class.reltuples). Returns true when it analysed; a smaller '
    'change, or no table (NULL), is left alone. dbdedup.build_clusters calls it for cluster_assignments, a load for '
    'images and image_embeddings.';

CREATE OR REPLACE FUNCTION dbdedup.build_clusters(max_distance integer DEFAULT 8, hash_kind text DEFAULT 'phash',
                                       keeper_rule text DEFAULT 'largest', reference_paths text[] DEFAULT '{}',
                                       rule text DEFAULT 'fused', min_similarity real DEFAULT 0.85,
                                       confirm_distance integer DEFAULT 64, transform_distance integer DEFAULT 2)
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
    n_pending bigint;
    n_replaced bigint;
    signals_mark bigint;
    has_apart boolean;
BEGIN
    -- (refused before anything is stored: cluster_parameters is what refresh() builds with next;
    -- the wording is dbdedup.match's, match_transforms' and match_embeddings')
    IF max_distance IS NULL OR max_distance < 0 OR max_distance > 64 THEN
        RAISE EXCEPTION 'threshold must be a Hamming distance from 0 to 64, not %', max_distance;
    END IF;
    IF kind IS NULL THEN
        RAISE EXCEPTION 'unknown hash kind %', hash_kind USING HINT = 'use phash, dhash or ahash';
    END IF;
    IF keeper_rule IS NULL OR keeper_rule NOT IN ('largest', 'newest', 'oldest') THEN
        RAISE EXCEPTION 'unknown keeper rule %', keeper_rule USING HINT = 'use largest, newest or oldest';
    END IF;
    IF rule IS NULL OR rule NOT IN ('hash', 'transforms', 'embedding', 'fused') THEN
        RAISE EXCEPTION 'unknown clustering rule %', rule USING HINT = 'use hash, transforms, embedding or fused';
    END IF;
    IF rule IN ('embedding', 'fused') AND min_similarity IS NULL THEN
        RAISE EXCEPTION 'rule % needs min_similarity', rule;
    END IF;
    IF min_similarity <= 0 OR min_similarity > 1 THEN
        RAISE EXCEPTION 'minimum similarity must be in (0, 1], not %', min_similarity;
    END IF;
    IF confirm_distance < 0 OR confirm_distance > 64 THEN
        RAISE EXCEPTION 'confirm distance must be a Hamming distance from 0 to 64, not %', confirm_distance;
    END IF;
    IF transform_distance < 0 OR transform_distance > 32 THEN
        RAISE EXCEPTION 'transform threshold must be a Hamming distance from 0 to 32, not %', transform_distance;
    END IF;
    IF reference_paths IS NULL THEN
        reference_paths := '{}';
    END IF;
    IF kind <> 'phash' THEN
        rule := 'hash';  -- dHash and aHash have no variants or embedding pairs: the hash distance alone links
    END IF;
    confirm_distance := coalesce(confirm_distance, max_distance);
    transform_distance := coalesce(transform_distance, 2);
    SELECT * INTO st FROM dbdedup.match_state s WHERE s.hash_kind = kind;
    IF st.hash_kind IS NULL OR st.max_distance < max_distance THEN
        PERFORM dbdedup.match(max_distance, kind);
        SELECT * INTO st FROM dbdedup.match_state s WHERE s.hash_kind = kind;
    END IF;
    -- pairs found since the last verdicts get theirs (the ones the stored signals cannot settle
    -- stay pending, and unlinked, until the geometric check gives them one)
    PERFORM dbdedup.verify_pairs(kind);
    PERFORM pg_advisory_xact_lock(7220003);

    -- the graph: pairs that join images under the rule, reviewers' verdicts, the nodes and their ranks
    PERFORM dbdedup.prepare_cluster_graph(kind, max_distance, keeper_rule, reference_paths, rule, min_similarity,
                                          confirm_distance, transform_distance);
    CREATE TEMP TABLE cc_keeper (node bigint PRIMARY KEY) ON COMMIT DROP;
    CREATE TEMP TABLE cc_assign (node bigint PRIMARY KEY, keeper bigint NOT NULL, d integer NOT NULL, transform text,
                                 similarity real, verify_reason text, verify_score real) ON COMMIT DROP;
    DELETE FROM dbdedup.cluster_assignments;
    GET DIAGNOSTICS n_replaced = ROW_COUNT;
    -- (without not_duplicate verdicts, cc_apart empty, the check below is skipped: it joins the assignments with themselves)
    has_apart := EXISTS (SELECT 1 FROM cc_apart);

    -- Greedy stars, set-based, over nodes: the best remaining node (smallest rank) keeps every
    -- remaining node it is linked to; repeated on what is left. In each round every node with no
    -- better remaining neighbour is a keeper (keepers are never neighbours of each other), and
    -- each neighbour joins its best keeper, in few rounds. (Not always the sequential pass's clusters:
    -- in a chain 1-4-11-34 with 12-34, 12 keeps 34 in the first round while 11 waits for 4, which 1
    -- keeps; the sequential pass would give 34 to 11. Both are stars of direct links.) A chain of weak
    -- links is split, so every member is directly linked to its keeper.
    -- The copies of a file share every link, so the pass over images would keep them together:
    -- one node gives the same clusters.
    LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM cc_edge);
        rounds := rounds + 1;
        TRUNCATE cc_keeper;
        INSERT INTO cc_keeper SELECT e.a FROM cc_edge e GROUP BY e.a HAVING min(e.b) > e.a;
        INSERT INTO cc_assign (node, keeper, d, transform, similarity, verify_reason, verify_score)
        SELECT k.node, k.node, 0, NULL, NULL, NULL, NULL FROM cc_keeper k
        UNION ALL
        SELECT * FROM (SELECT DISTINCT ON (e.b) e.b, e.a, e.d, e.transform, e.similarity, e.verify_reason, e.verify_score
                       FROM cc_edge e JOIN cc_keeper k ON k.node = e.a
                       ORDER BY e.b, e.a) j;
        -- a member judged not a duplicate of a better member of the same keeper waits for a later round
        IF has_apart THEN
            DELETE FROM cc_assign j
            USING cc_assign o, cc_apart x
            WHERE o.keeper = j.keeper AND o.node < j.node AND j.node <> j.keeper
              AND x.a = least(o.node, j.node) AND x.b = greatest(o.node, j.node);
        END IF;
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
    INSERT INTO cc_assign (node, keeper, d, transform, similarity, verify_reason, verify_score)
    SELECT m.node, m.node, 0, NULL, NULL, NULL, NULL FROM cc_member m WHERE m.images > 1 AND NOT m.done;

    -- every copy goes where its node went; copies of the keeper are at distance 0, verified as exact
    INSERT INTO dbdedup.cluster_assignments (image_id, cluster_id, is_keeper, distance_to_keeper, transform, similarity,
                                             verify_reason, verify_score)
    SELECT i.image_id, k.image_id, i.rank_key = a.keeper,
           CASE WHEN a.node = a.keeper THEN 0 ELSE a.d END,
           CASE WHEN a.node = a.keeper THEN NULL ELSE a.transform END,
           CASE WHEN a.node = a.keeper THEN NULL ELSE a.similarity END,
           CASE WHEN i.rank_key = a.keeper THEN NULL WHEN a.node = a.keeper THEN 'exact' ELSE a.verify_reason END,
           CASE WHEN i.rank_key = a.keeper THEN NULL WHEN a.node = a.keeper THEN 1 ELSE a.verify_score END
    FROM cc_assign a
    JOIN cc_image i ON i.node = a.node
    JOIN cc_image k ON k.rank_key = a.keeper;

    SELECT count(DISTINCT a.cluster_id), count(*) INTO n_clusters, n_members FROM dbdedup.cluster_assignments a;
    -- the last build's assignments deleted and these written: the joins on them that follow (keeper pairs,
    -- review pages, verdicts, reports) plan on fresh statistics
    PERFORM dbdedup.analyze_if_changed('dbdedup.cluster_assignments', n_replaced + n_members);
    signals_mark := (SELECT min(s.matched_seq) FROM dbdedup.signal_state s);  -- (Citus takes no subquery in VALUES)
    -- pairs left to the geometric check link nothing yet: the next command builds again (its verdicts
    -- may come from a `dbdedup verify` in between)
    SELECT count(*) INTO n_pending FROM dbdedup.pairs p WHERE p.hash_kind = kind AND p.verified IS NULL;
    INSERT INTO dbdedup.cluster_parameters AS p (singleton, max_distance, hash_kind, keeper_rule, reference_paths, matched_seq,
                                                 clusters, members, split_rounds, seconds, built_at, rule, min_similarity,
                                                 confirm_distance, transform_distance, signals_seq, pending_at_build)
    VALUES (true, max_distance, kind, keeper_rule, reference_paths, st.matched_seq, n_clusters, n_members, greatest(rounds - 1, 0),
            extract(epoch FROM clock_timestamp() - started), now(), rule, min_similarity, confirm_distance,
            transform_distance, signals_mark, n_pending)
    ON CONFLICT (singleton) DO UPDATE SET
        max_distance = excluded.max_distance, hash_kind = excluded.hash_kind, keeper_rule = excluded.keeper_rule,
        reference_paths = excluded.reference_paths, matched_seq = excluded.matched_seq, clusters = excluded.clusters,
        members = excluded.members, split_rounds = excluded.split_rounds, seconds = excluded.seconds, built_at = excluded.built_at,
        rule = excluded.rule, min_similarity = excluded.min_similarity, confirm_distance = excluded.confirm_distance,
        transform_distance = excluded.transform_distance, signals_seq = excluded.signals_seq,
        pending_at_build = excluded.pending_at_build;
    DROP TABLE cc_pair, cc_verdict, cc_verdict_image, cc_image_row, cc_image, cc_member, cc_edge, cc_tone, cc_keeper, cc_assign,
               cc_apart;
    RETURN QUERY SELECT n_clusters, n_members, greatest(rounds - 1, 0), extract(epoch FROM clock_timestamp() - started)::double precision;
END
$$;
COMMENT ON FUNCTION dbdedup.build_clusters(integer, text, text, text[], text, real, integer, integer) IS
    'Cluster the verified pairs that join images under a rule (hash, transforms, embedding, fused; see cluster_parameters.rule), '
    'matching pHash pairs first if needed (run dbdedup.match_transforms / match_embeddings before for those signals), and '
    'verifying the pairs that have no verdict yet (dbdedup.verify_pairs: a pending pair links nothing). '
    'Keeper order: a keeper verdict first, then reference paths, then the keeper rule (largest = most pixels, then largest file, then oldest; '
    'newest; oldest). Greedy stars: the best image keeps every image linked to it, repeated on the rest, so chains of weak '
    'links are split and every member is directly linked to its keeper; a colour picture never joins a greyscale keeper '
    '(RMS chroma under verify_settings().grey_chroma: the link is dropped when the greyscale one ranks first), unless an '
    'alignment (verdict geometry or dense: a frame or a crop may add the colours) verified it, or a trimmed variant found it and the '
    'colour one''s middle is grey (its colours in its frame). Byte-identical copies (one exact group: a star in '
    'dbdedup.pairs) are one node: they always share a cluster, any of them can be its keeper, and copies of the keeper '
    'are at distance 0. Verdicts (dbdedup.verdicts) are honoured: a not_duplicate pair never links, a not_in_cluster '
    'image links only by duplicate verdicts, a duplicate pair links at any distance. '
    'Replaces the current clustering, and analyses cluster_assignments when that rewrote enough of it '
    '(dbdedup.analyze_if_changed). '
    'The defaults are the command line''s (threshold 8, rule fused, '
    'similarity 0.85 with no pHash bound, since such pairs are verified by their pixels, variants within 2); dHash and aHash cluster by rule hash.';

CREATE OR REPLACE FUNCTION dbdedup.keeper_cluster_floor()
    RETURNS integer
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT 4 $$;
COMMENT ON FUNCTION dbdedup.keeper_cluster_floor() IS
    'The size from which a cluster draws keeper pairs through near neighbours, turn signatures and crop windows '
    '(dbdedup.propose_keeper_pairs): 4 images. Smaller clusters (a photo and its resized copy, the commonest) sit '
    'among unrelated photos whose proposals would each cost a check by pixels and verify none; there only each image''s '
    'single nearest neighbour proposes, at stricter floors.';

CREATE OR REPLACE FUNCTION dbdedup.propose_keeper_pairs(near_neighbours integer DEFAULT 5, near_limit integer DEFAULT NULL,
                                                        crop_keepers bigint[] DEFAULT NULL, crop_windows bigint[] DEFAULT NULL)
    RETURNS bigint
    LANGUAGE plpgsql
    AS $$
DECLARE
    n bigint;
    wanted bigint[];
    near_floor constant real := 0.6;
    near_cluster constant integer := dbdedup.keeper_cluster_floor();
    -- ivfflat lists searched per probe: a crop's family sits at similarity 0.6-0.85, often in lists
    -- that 4 (enough for near-duplicates) miss. On the accuracy set (156 lists): recall 0.781 with
    -- 4, 0.789 with 16, 0.791 with 40 or all; the search 0.26 / 0.61 / 1.37 s a round for 3,376 probes.
    near_probes constant integer := 16;
    -- the turn signatures' neighbours (dbdedup/turn_signature.py) count from a cosine similarity of
    -- 0.95: on the accuracy set, 385 proposals no other signal made, 146 of them a copy and its keeper
    -- (0.90: 2,339 and 170)
    turn_floor constant real := 0.95;
    -- so near, they sit in the probe's own lists: 4 lists found 1,921 of the 1,927 neighbours 16 find
    -- in clusters of 4 or more (0.4 s against 1.6 s for 3,649 probes, each round)
    turn_probes constant integer := 4;
    -- an image outside them proposes its pair with its single nearest turn signature (lk_lone below) from this
    -- similarity, searched in the signatures' own list when no large cluster asks for more (so near, a copy sits
    -- in the probe's list: 10,000 probes 0.28 s in 1 list, 0.64 s in 4), and when their embeddings agree at
    -- lone_near_bar or more (0.34-0.95 for copies turned by 10-20 degrees), where an unrelated photo's nearest
    -- turn signature is far by the embedding: on 10,000 unrelated small photos, 51 such pairs without the bar,
    -- 1 with it (bench/RESULTS.md, session 44)
    lone_turn_floor constant real := 0.98;
    lone_turn_probes constant integer := 1;
    lone_near_bar constant real := 0.4;
    -- ... unless the turn signatures are this near: the embedding is fitted to the collection (PCA), and in a
    -- collection of clip-art a folder icon turned by 10-20 degrees can agree with its original at -0.16 to 0.35
    -- (cut to one copy an original, the accuracy set's turned copies: 6 and 8 of the 90 a draw, turn signatures
    -- 0.994-0.9994);
    -- no two of 10,000 unrelated small photos are nearest at 0.99 (28 pairs at 0.98), and of the accuracy set's
    -- look-alikes, 4 pairs a draw more are proposed, for the check by pixels to refuse
    lone_turn_sure constant real := 0.99;
    lone_ids bigint[];
    has_large boolean;
    -- bits between a probe's pHash and a window of a keeper (dbdedup/crop_windows.py): on the
    -- accuracy set 899 proposals no other signal made, 126 of them a half-area crop and its keeper
    -- (10 bits: 346 and 95; 14: 1,865 and 133)
    crop_distance constant integer := 12;
    -- the search compares every probe with every window (about 50 ns each): past this many comparisons
    -- (about a minute) it is skipped, with a notice, rather than hold the report for hours; the
    -- setting dbdedup.crop_window_budget changes it (SET dbdedup.crop_window_budget = ...)
    crop_budget constant bigint := coalesce(nullif(current_setting('dbdedup.crop_window_budget', true), '')::bigint,
                                            1000000000);
    per_keeper integer;
    comparisons bigint;
BEGIN
    -- A member must be verified with its keeper itself, and a pair is only checked when a signal
    -- found it: a copy cropped by a quarter is far from the keeper (an upscaled copy) by every
    -- hash, though verified with the original, a member. Such pairs are proposed here (transform
    -- 'linked'), and checked like any other pair before they may link anything. A member's pair
    -- that the keypoints could not align (no_geometry) proposes too: a crop and a turned copy of
    -- one original often do not align with each other, and each does with the original; a pair
    -- found apart in colour, layout or detail proposes nothing; a pair left unchecked (the clusters did
    -- not need it, see dbdedup/verify_plan.py) proposes, as it would have verified or not aligned. Each table is
    -- read into a temporary one first: Citus joins no temporary table with a distributed one.
    -- Pairs are written as a match writes them, never during a load (loads hold the load lock
    -- shared, a match exclusively): while one runs, nothing is proposed; the next build will.
    IF NOT pg_try_advisory_xact_lock(7220002) THEN
        RETURN 0;
    END IF;
    CREATE TEMP TABLE lk_assign ON COMMIT DROP AS
    SELECT a.image_id, a.cluster_id, a.is_keeper FROM dbdedup.cluster_assignments a;
    CREATE TEMP TABLE lk_paired ON COMMIT DROP AS
    SELECT p.image_a, p.image_b FROM dbdedup.pairs p
    WHERE p.hash_kind = 'phash' AND (p.verified OR p.verify_reason IN ('no_geometry', 'unchecked'));
    -- An image in no cluster (or in a cluster of fewer than near_cluster images) whose nearest
    -- embedding neighbours (near_neighbours of them, at a similarity of near_floor or more: below the
    -- pairing floor, which makes no pair of them) include an image of a cluster of near_cluster images
    -- or more, the keeper itself or a member, proposes its pair with that keeper: a copy cropped by
    -- half or turned by 10-20 degrees is far from its original by every hash and ranks behind the
    -- original's other copies among its neighbours, but the original's family is usually nearest to
    -- it; two such copies of one original often make a cluster of two of their own. (No search
    -- without such clusters: an image can join none. The probes are the images
    -- dbdedup.match_embeddings probes, less those in the large clusters: 0.6 s for 3,376 of them on 10,800.)
    -- Only clusters of near_cluster images or more draw proposals: the photos near a pair of copies
    -- (a photo and its resized copy, the commonest cluster) are mostly other photos, and would each
    -- cost a check by pixels (10,000 photos with 300 such pairs: 857 proposals, none verified, 17 s).
    CREATE TEMP TABLE lk_near (image_id bigint, neighbour_id bigint, similarity real) ON COMMIT DROP;
    CREATE TEMP TABLE lk_large ON COMMIT DROP AS
    SELECT a.image_id FROM lk_assign a
    WHERE a.cluster_id IN (SELECT c.cluster_id FROM lk_assign c GROUP BY c.cluster_id HAVING count(*) >= near_cluster);
    has_large := EXISTS (SELECT 1 FROM lk_large);
    -- No crop windows given (CALL dbdedup.refresh(): SQL has no DCT to cut them): the large clusters' keepers'
    -- stored ones (image_embeddings.crop_windows, written at load), read into a temporary table first
    IF crop_keepers IS NULL AND has_large AND to_regclass('dbdedup.image_embeddings') IS NOT NULL THEN
        CREATE TEMP TABLE lk_stored_windows ON COMMIT DROP AS
        SELECT e.image_id, e.crop_windows FROM dbdedup.image_embeddings e
        WHERE e.image_id IN (SELECT a.cluster_id FROM lk_assign a JOIN lk_large l USING (image_id))
          AND cardinality(e.crop_windows) > 0;
        SELECT array_agg(w.image_id ORDER BY w.image_id) INTO crop_keepers FROM lk_stored_windows w;
        SELECT array_agg(x.phash ORDER BY w.image_id, x.n) INTO crop_windows
        FROM lk_stored_windows w CROSS JOIN LATERAL unnest(w.crop_windows) WITH ORDINALITY AS x (phash, n);
        DROP TABLE lk_stored_windows;
    END IF;
    -- the probes of every search: images outside the large clusters with a pHash of their own
    IF near_neighbours > 0 OR (has_large AND crop_keepers IS NOT NULL) THEN
        CREATE TEMP TABLE lk_outside ON COMMIT DROP AS
        SELECT i.id AS image_id, i.phash FROM dbdedup.images i
        WHERE i.status = 'ok' AND i.phash IS NOT NULL AND NOT dbdedup.is_low_information(i.phash)
          AND i.phash NOT IN (SELECT h.value FROM dbdedup.hash_values h WHERE h.hash_kind = 'phash' AND h.is_common)
          AND i.id NOT IN (SELECT l.image_id FROM lk_large l);
    ELSE
        CREATE TEMP TABLE lk_outside (image_id bigint, phash bigint) ON COMMIT DROP;
    END IF;
    -- An image with no large family to join (most pictures of a collection have one or two copies) proposes its
    -- pair with its single nearest turn signature, whatever that neighbour's cluster, when very near (lone_* above):
    -- most copies turned by 10-20 degrees have no other pair (bench/accuracy/cli_score.py --lone-copies: turns of
    -- 10 degrees found 0.33 of the time without it). (A neighbour in the same cluster proposes nothing.)
    CREATE TEMP TABLE lk_lone (image_id bigint, neighbour_id bigint, similarity real) ON COMMIT DROP;
    IF near_neighbours > 0 AND to_regclass('dbdedup.image_embeddings') IS NOT NULL
       AND EXISTS (SELECT 1 FROM lk_outside) THEN
        -- the probes of both searches (the embeddings' only for large clusters), read once
        CREATE TEMP TABLE lk_probe ON COMMIT DROP AS
        SELECT e.image_id, e.embedding, e.turn_signature
        FROM dbdedup.image_embeddings e
        WHERE e.image_id IN (SELECT o.image_id FROM lk_outside o);
        CREATE TEMP TABLE em_found (a bigint, b bigint, similarity real) ON COMMIT DROP;
        IF has_large THEN
            CREATE TEMP TABLE em_probe ON COMMIT DROP AS
            SELECT p.image_id, p.embedding FROM lk_probe p WHERE p.embedding IS NOT NULL;
            PERFORM dbdedup.embedding_neighbours(near_neighbours + 1, near_probes);
            INSERT INTO lk_near
            SELECT f.a, f.b, f.similarity FROM em_found f
            WHERE f.similarity >= near_floor AND f.b IN (SELECT l.image_id FROM lk_large l);
            TRUNCATE em_found;
            DROP TABLE em_probe;
        END IF;
        -- Likewise through the turn signatures: a copy turned by 10-20 degrees is far from its family
        -- by the hashes and the embedding, and as near as its unturned copies by this signature.
        -- (Their similarity ranks these proposals as the embedding's do: both are a neighbour's cosine.)
        CREATE TEMP TABLE em_probe ON COMMIT DROP AS
        SELECT p.image_id, p.turn_signature AS embedding FROM lk_probe p WHERE p.turn_signature IS NOT NULL;
        PERFORM dbdedup.ensure_turn_index();
        IF has_large THEN
            PERFORM dbdedup.embedding_neighbours(near_neighbours + 1, turn_probes, 'turn_signature');
        ELSE
            PERFORM dbdedup.embedding_neighbours(2, lone_turn_probes, 'turn_signature');
        END IF;
        INSERT INTO lk_near
        SELECT f.a, f.b, f.similarity FROM em_found f
        WHERE f.similarity >= turn_floor AND f.b IN (SELECT l.image_id FROM lk_large l);
        INSERT INTO lk_lone
        SELECT n.a, n.b, n.similarity
        FROM (SELECT DISTINCT ON (f.a) f.a, f.b, f.similarity FROM em_found f ORDER BY f.a, f.similarity DESC, f.b) n
        WHERE n.similarity >= lone_turn_floor;
        DROP TABLE lk_probe, em_probe, em_found;
        -- the embeddings' bar (both vectors read into a temporary table: see above)
        SELECT array_agg(DISTINCT i) INTO lone_ids
        FROM (SELECT image_id AS i FROM lk_lone WHERE similarity < lone_turn_sure
              UNION ALL SELECT neighbour_id FROM lk_lone WHERE similarity < lone_turn_sure) u;
        IF lone_ids IS NOT NULL THEN
            CREATE TEMP TABLE lk_vector ON COMMIT DROP AS
            SELECT e.image_id, e.embedding FROM dbdedup.image_embeddings e WHERE e.image_id = ANY (lone_ids);
            EXECUTE format($q$
                DELETE FROM pg_temp.lk_lone l
                WHERE l.similarity < %3$s::real
                  AND NOT coalesce((SELECT 1 - (a.embedding OPERATOR(%1$I.<=>) b.embedding) >= %2$s
                                    FROM pg_temp.lk_vector a, pg_temp.lk_vector b
                                    WHERE a.image_id = l.image_id AND b.image_id = l.neighbour_id), false) $q$,
                dbdedup.vector_schema(), lone_near_bar, lone_turn_sure);
            DROP TABLE lk_vector;
        END IF;
    END IF;
    -- Likewise through the keepers' windows: a copy cropped to half the picture is far from its
    -- original by every whole-frame signal, and within crop_distance bits of the window it was cut
    -- from. crop_windows holds the same number of window pHashes for each of crop_keepers, in order
    -- (computed by the caller from the stored thumbnails, or the stored ones above); the nearest keeper
    -- of a large cluster proposes, its similarity the share of bits that agree.
    IF crop_keepers IS NOT NULL AND cardinality(crop_keepers) > 0 AND EXISTS (SELECT 1 FROM lk_outside) THEN
        per_keeper := coalesce(cardinality(crop_windows), 0) / cardinality(crop_keepers);
        IF per_keeper = 0 OR cardinality(crop_windows) <> per_keeper * cardinality(crop_keepers) THEN
            RAISE EXCEPTION 'crop_windows holds % window hashes for % keepers', cardinality(crop_windows),
                cardinality(crop_keepers) USING HINT = 'give each keeper the same number of windows, in order';
        END IF;
        CREATE TEMP TABLE lk_window ON COMMIT DROP AS
        SELECT k.keeper, w.phash
        FROM unnest(crop_keepers) WITH ORDINALITY AS k(keeper, n)
        CROSS JOIN LATERAL unnest(crop_windows[(k.n - 1) * per_keeper + 1 : k.n * per_keeper]) AS w(phash)
        WHERE k.keeper IN (SELECT a.cluster_id FROM lk_assign a JOIN lk_large l USING (image_id));
        comparisons := (SELECT count(*) FROM lk_outside) * (SELECT count(*) FROM lk_window);
        IF comparisons > crop_budget THEN
            RAISE NOTICE 'crop windows not searched: % comparisons (% probes) is more than %', comparisons,
                (SELECT count(*) FROM lk_outside), crop_budget
                USING HINT = 'the crop windows search every probe against every window; collections this large need an index for it';
            TRUNCATE lk_window;
        END IF;
        INSERT INTO lk_near
        SELECT DISTINCT ON (o.image_id) o.image_id, w.keeper,
               1 - bit_count((o.phash # w.phash)::bit(64)) / 64.0
        FROM lk_outside o
        JOIN lk_window w ON bit_count((o.phash # w.phash)::bit(64)) <= crop_distance
        ORDER BY o.image_id, bit_count((o.phash # w.phash)::bit(64)), w.keeper;
        DROP TABLE lk_window;
    END IF;
    CREATE TEMP TABLE lk_linked ON COMMIT DROP AS
    SELECT DISTINCT least(l.x, l.keeper) AS image_a, greatest(l.x, l.keeper) AS image_b
    FROM (SELECT v.image_b AS x, m.cluster_id AS keeper
          FROM lk_paired v JOIN lk_assign m ON m.image_id = v.image_a AND NOT m.is_keeper
          UNION ALL
          SELECT v.image_a, m.cluster_id
          FROM lk_paired v JOIN lk_assign m ON m.image_id = v.image_b AND NOT m.is_keeper) l
    LEFT JOIN lk_assign x ON x.image_id = l.x
    WHERE l.x <> l.keeper AND x.cluster_id IS DISTINCT FROM l.keeper;
    -- the near neighbours' pairs (the probes of lk_near are in no large cluster, their neighbours in
    -- one; those of lk_lone anywhere), the closest first; with near_limit, only that many not stored yet: a sample whose checks
    -- tell whether the rest are worth theirs (clusters.link_keepers)
    CREATE TEMP TABLE lk_stored (image_a bigint, image_b bigint) ON COMMIT DROP;
    IF near_limit IS NOT NULL THEN
        -- (any pair stored: one a signal found, or proposed before, would take a place of the sample and add nothing;
        -- but one the keys alone found and could not align, which a proposal checks again, below)
        INSERT INTO lk_stored SELECT p.image_a, p.image_b FROM dbdedup.pairs p
        WHERE p.hash_kind = 'phash'
          AND NOT (p.transform = 'keypoints' AND p.similarity IS NULL AND p.verify_reason = 'no_geometry');
    END IF;
    INSERT INTO lk_linked
    SELECT n.image_a, n.image_b
    FROM (SELECT least(v.image_id, v.target) AS image_a, greatest(v.image_id, v.target) AS image_b,
                 max(v.similarity) AS similarity
          FROM (SELECT v.image_id, m.cluster_id AS target, m.cluster_id AS target_cluster, v.similarity
                FROM lk_near v JOIN lk_assign m ON m.image_id = v.neighbour_id
                UNION ALL
                -- a lone neighbour is proposed itself; one in a cluster, through its keeper
                SELECT v.image_id, coalesce(m.cluster_id, v.neighbour_id), m.cluster_id, v.similarity
                FROM lk_lone v LEFT JOIN lk_assign m ON m.image_id = v.neighbour_id) v
          LEFT JOIN lk_assign x ON x.image_id = v.image_id
          WHERE v.image_id <> v.target AND (x.cluster_id IS NULL OR x.cluster_id IS DISTINCT FROM v.target_cluster)
          GROUP BY 1, 2) n
    WHERE NOT EXISTS (SELECT 1 FROM lk_linked l WHERE l.image_a = n.image_a AND l.image_b = n.image_b)
      AND NOT EXISTS (SELECT 1 FROM lk_stored t WHERE t.image_a = n.image_a AND t.image_b = n.image_b)
    ORDER BY n.similarity DESC, n.image_a, n.image_b
    LIMIT near_limit;
    SELECT array_agg(DISTINCT i) INTO wanted
    FROM (SELECT image_a AS i FROM lk_linked UNION ALL SELECT image_b FROM lk_linked) u;
    n := 0;
    IF wanted IS NOT NULL THEN
        CREATE TEMP TABLE lk_hash ON COMMIT DROP AS
        SELECT i.id, i.phash FROM dbdedup.images i WHERE i.id = ANY (wanted) AND i.status = 'ok' AND i.phash IS NOT NULL;
        -- a pair already stored (found by a signal, or proposed before) is left as it is, but one the keys alone found
        -- (load --keypoints) and could not align: proposed through a member, it is checked again as a keeper pair, by
        -- the pixels too (a flat picture turned by 90 degrees, verified `dense` so without the keys, was lost with them)
        INSERT INTO dbdedup.pairs AS p (hash_kind, image_a, image_b, distance, is_exact, transform, transform_distance)
        SELECT 'phash', k.image_a, k.image_b, bit_count((ia.phash # ib.phash)::bit(64)), false, 'linked', 0
        FROM lk_linked k
        JOIN lk_hash ia ON ia.id = k.image_a
        JOIN lk_hash ib ON ib.id = k.image_b
        ON CONFLICT ON CONSTRAINT pairs_pkey DO UPDATE
            SET transform = excluded.transform, transform_distance = excluded.transform_distance,
                verified = NULL, verify_score = NULL, verify_reason = NULL
            WHERE p.transform = 'keypoints' AND p.similarity IS NULL AND p.verify_reason = 'no_geometry';
        GET DIAGNOSTICS n = ROW_COUNT;
        DROP TABLE lk_hash;
    END IF;
    DROP TABLE lk_assign, lk_paired, lk_near, lk_lone, lk_large, lk_outside, lk_stored, lk_linked;
    RETURN n;
END
$$;
COMMENT ON FUNCTION dbdedup.propose_keeper_pairs(integer, integer, bigint[], bigint[]) IS
    'After dbdedup.build_clusters: for every image verified as the same picture as a member of a cluster (a verified '
    'pHash-kind pair, one rejected only because its keypoints could not align: no_geometry, or one left unchecked) but outside that cluster '
    'and with no pair of its own with the keeper, store that pair, unverified, '
    'and, for every image in no cluster of 4 images or more, its pair with its single nearest turn signature anywhere (through that '
    'neighbour''s keeper when it is in a cluster) at 0.98 or more when their embeddings agree at 0.4 or more, or at 0.99 or more '
    'whatever the embeddings (a turned copy with no family), '
    'and likewise for every image in no cluster of 4 images or more whose near_neighbours nearest embedding neighbours (similarity 0.6 or '
    'more, dbdedup.embedding_neighbours searching 16 lists of an ivfflat index; none asked for 0), or nearest turn signatures '
    '(image_embeddings.turn_signature, similarity 0.95 or more, 4 lists searched), include an image of a cluster of 4 images or more '
    '(dbdedup.keeper_cluster_floor), or whose pHash is within 12 bits of a window of such a cluster''s keeper (crop_windows: the same '
    'number of window pHashes for each of crop_keepers, in order, computed by dbdedup/crop_windows.py from the stored thumbnails; '
    'none given, as in dbdedup.refresh, the keepers'' stored ones, image_embeddings.crop_windows; an empty array, none; '
    'skipped with a notice past 10^9 probe-window comparisons, or the setting dbdedup.crop_window_budget), '
    'with transform ''linked'' (transform_distance 0); with near_limit, at most that many of the latter that are not stored yet, '
    'the most similar first. It links nothing until checked like any other pair (dbdedup.verify_pairs, '
    'then the geometric check); verified, it may bring the image into the cluster at the next build. Returns the pairs stored '
    '(none while a load or a match runs: they hold the load lock, and the next build proposes them).';

CREATE OR REPLACE PROCEDURE dbdedup.refresh(max_distance integer DEFAULT NULL, hash_kind text DEFAULT NULL)
    LANGUAGE plpgsql
    AS $$
DECLARE
    cs dbdedup.cluster_settings;
    kind text;
    threshold integer;
    clustering text;
    similarity real;
    vectors boolean;
BEGIN
    -- the settings every command uses (clusters.current_settings): the stored ones, else the defaults of
    -- clusters.ClusterSettings, which are build_clusters' (tests/test_cluster_settings.py checks them)
    SELECT * INTO cs FROM dbdedup.cluster_settings WHERE singleton;
    IF cs.singleton IS NULL THEN
        cs.threshold := 8; cs.hash_kind := 'phash'; cs.rule := 'fused'; cs.keeper_rule := 'largest';
        cs.reference_paths := '{}'; cs.min_similarity := 0.85; cs.confirm_distance := 64; cs.transform_distance := 2;
    END IF;
    kind := coalesce(hash_kind, cs.hash_kind);
    threshold := coalesce(max_distance, cs.threshold);
    similarity := cs.min_similarity;
    -- the rule as the commands apply it (clusters.effective_rule): without vectors, fused is transforms
    clustering := CASE WHEN kind = 'phash' THEN cs.rule ELSE 'hash' END;
    IF clustering IN ('embedding', 'fused') THEN
        vectors := to_regclass('dbdedup.image_embeddings') IS NOT NULL;
        IF vectors THEN
            EXECUTE 'SELECT EXISTS (SELECT 1 FROM dbdedup.image_embeddings WHERE embedding IS NOT NULL)' INTO vectors;
        END IF;
        IF NOT vectors AND clustering = 'embedding' THEN
            RAISE EXCEPTION 'rule ''embedding'' needs embedding vectors, and none are stored'
                USING HINT = 'load with an embedder on a server with pgvector, or store another rule (dbdedup report --rule fused)';
        ELSIF NOT vectors THEN
            clustering := 'transforms';
        END IF;
    END IF;
    PERFORM dbdedup.match(threshold, kind);
    IF kind = 'phash' THEN
        -- flat and detail-free images by size: the check by pixels (dbdedup verify) verifies them as the same pixels
        PERFORM dbdedup.match_same_size();
    END IF;
    IF clustering IN ('transforms', 'fused') THEN
        PERFORM dbdedup.match_transforms(cs.transform_distance);
        -- keypoint pairs (images loaded with --keypoints) wait for `dbdedup verify`: only geometry verifies them
        PERFORM dbdedup.match_keypoints();
    END IF;
    IF clustering IN ('embedding', 'fused') THEN
        PERFORM dbdedup.match_embeddings(similarity,
                                         coalesce((SELECT s.neighbours FROM dbdedup.signal_state s WHERE s.signal = 'embeddings'), 10));
    END IF;
    -- (build_clusters verifies the new pairs first)
    PERFORM dbdedup.build_clusters(threshold, kind, cs.keeper_rule, cs.reference_paths, clustering, similarity,
                                   cs.confirm_distance, cs.transform_distance);
    IF clustering IN ('transforms', 'fused') AND kind = 'phash' THEN
        -- keeper pairs through verified members: verified from the stored signals now, or left to
        -- `dbdedup verify`; they link from the next build on
        IF dbdedup.propose_keeper_pairs() > 0 THEN
            PERFORM dbdedup.verify_pairs(kind);
        END IF;
    END IF;
    -- left undecided by this build, which has no check by pixels: the pairs pending (the keeper pairs just
    -- proposed among them), and those a report's plan left unchecked, which a keeper gone since may make
    -- needed (only a plan says which: dbdedup/verify_plan.py). The next command plans and builds again,
    -- as `dbdedup verify` then the next refresh() do.
    UPDATE dbdedup.cluster_parameters p
    SET pending_at_build = (SELECT count(*) FROM dbdedup.pairs x
                            WHERE x.hash_kind = kind AND (x.verified IS NULL OR x.verify_reason = 'unchecked'))
    WHERE p.singleton;
END
$$;
COMMENT ON PROCEDURE dbdedup.refresh(integer, text) IS
    'Incremental matching of new and changed images (pHash pairs, images with no hash signal of their own by size, then '
    'the transform, keypoint and embedding signals the stored rule uses), the new pairs verified from the stored signals (dbdedup.verify_pairs; pairs that need the geometric check '
    'stay pending and unlinked until the geometric check of dbdedup match gives them one), then the clusters rebuilt with the stored settings '
    '(dbdedup.cluster_settings, as every command uses them; without any, the commands'' defaults: pHash within 8, rule fused, '
    'applied as transforms without embedding vectors; max_distance and hash_kind given here override them), '
    'then (rules transforms and fused) keeper pairs through verified members proposed (dbdedup.propose_keeper_pairs), linked from the next build once verified. '
    'The pairs left pending, and those a report left unchecked, count in cluster_parameters.pending_at_build: `dbdedup verify` '
    'checks the ones the clusters need, and the next refresh or command builds again. '
    'For pg_cron: SELECT cron.schedule(''dbdedup'', ''*/15 * * * *'', ''CALL dbdedup.refresh()'').';

-- The keeper's file is read from the keeper's own row of its cluster (a window over the cluster)
-- rather than by joining images a second time on cluster_id: on Citus that join would move every
-- row between the workers, where the window gathers only the members.
CREATE OR REPLACE VIEW dbdedup.cluster_members AS
    SELECT m.cluster_id,
           m.image_id,
           m.path,
           m.path_bytes,
           m.is_keeper,
           m.distance_to_keeper,
           m.width,
           m.height,
           m.size_bytes,
           m.sha256,
           m.mtime_ns,
           (NOT m.is_keeper AND m.sha256 = m.keeper_sha256) AS is_exact_duplicate,
           -- a picture a reviewer chose as keeper is never removed, though another chosen one (a cluster merged
           -- since, or a verdict named by its SHA-256) took its cluster: only byte-identical copies of the keeper go
           (m.is_under_reference OR (m.has_keeper_verdict AND NOT m.is_keeper AND m.sha256 <> m.keeper_sha256))
               AS is_protected,
           m.transform,
           m.similarity,
           (NOT m.is_keeper AND m.device IS NOT NULL AND m.inode IS NOT NULL AND m.nth_path_of_file > 1) AS is_same_file,
           m.verify_reason,
           m.verify_score,
           m.has_keeper_verdict,
           m.inode,
           m.is_under_reference
    FROM (SELECT a.cluster_id, i.id AS image_id, i.path, i.path_bytes, a.is_keeper, a.distance_to_keeper, i.width,
                 i.height, i.size_bytes, i.sha256, i.mtime_ns, a.transform, a.similarity, i.device, i.inode,
                 a.verify_reason, a.verify_score, dbdedup.is_under(i.path, p.reference_paths) AS is_under_reference,
                 i.sha256 IN (SELECT v.sha256_a FROM dbdedup.verdicts v WHERE v.kind = 'keeper') AS has_keeper_verdict,
                 first_value(i.sha256) OVER keeper_first AS keeper_sha256,
                 -- one file reached by several paths (hard links, or symbolic links the loader followed) counts at
                 -- its first path: the keeper's, else a protected one (removing the others frees nothing), else the
                 -- lowest image id
                 row_number() OVER (PARTITION BY a.cluster_id, i.device, i.inode
                                    ORDER BY a.is_keeper DESC, dbdedup.is_under(i.path, p.reference_paths) DESC, i.id)
                     AS nth_path_of_file
          FROM dbdedup.cluster_assignments a
          JOIN dbdedup.images i ON i.id = a.image_id
          CROSS JOIN dbdedup.cluster_parameters p
          WINDOW keeper_first AS (PARTITION BY a.cluster_id ORDER BY a.is_keeper DESC)) m;
COMMENT ON VIEW dbdedup.cluster_members IS
    'Members of the current clustering, keeper included (distance 0); only clusters of 2+ images. '
    'is_exact_duplicate: same SHA-256 as the keeper (false for the keeper itself); is_protected: under a reference path, '
    'or chosen as keeper by a verdict (has_keeper_verdict) and not a byte-identical copy of its cluster''s keeper; '
    'transform: the flip, rotation or trim that links it to the keeper; similarity: embedding similarity to the keeper; '
    'is_same_file: another path to a file already listed in the cluster (same device and inode: a hard link, or a '
    'symbolic link the loader followed), listed first at the keeper, else at a protected path, else at the lowest '
    'image id: its bytes count once, at that first path; '
    'verify_reason, verify_score: how its link to the keeper was verified (exact, signature, geometry, reviewer); '
    'inode: as loaded (apply refuses a path that names another file now); is_under_reference: under a reference path.';

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
    'One row per cluster: its keeper and the bytes freed by removing the other, unprotected members (a file reached '
    'by several paths counts once, and not at all when one of them is the keeper''s: is_same_file).';

CREATE OR REPLACE VIEW dbdedup.common_hashes AS
    SELECT v.hash_kind, v.value, v.images, v.distinct_files, v.common_reason,
           lpad(to_hex(v.value), 16, '0') AS hex
    FROM dbdedup.hash_values v
    WHERE v.is_common;
COMMENT ON VIEW dbdedup.common_hashes IS
    'Over-common hash values (blank, flat or tiny images, or one value shared by many different files): '
    'reported apart and kept out of near-duplicate pairs so they cannot chain unrelated images together.';

-- The over-common values (few) are read once, then joined with images by one branch per hash kind
-- on a column: an index join on one server; on Citus the few values go to every shard instead of
-- images moving between the workers (a join of two distributed tables on a hash value).
CREATE OR REPLACE VIEW dbdedup.common_hash_images AS
    WITH common AS MATERIALIZED (
        SELECT v.hash_kind, v.value, v.common_reason FROM dbdedup.hash_values v WHERE v.is_common
    )
    SELECT c.hash_kind, c.value, c.common_reason, i.id AS image_id, i.path, i.width, i.height, i.size_bytes
    FROM common c JOIN dbdedup.images i ON i.status = 'ok' AND i.phash = c.value
    WHERE c.hash_kind = 'phash'
    UNION ALL
    SELECT c.hash_kind, c.value, c.common_reason, i.id, i.path, i.width, i.height, i.size_bytes
    FROM common c JOIN dbdedup.images i ON i.status = 'ok' AND i.dhash = c.value
    WHERE c.hash_kind = 'dhash'
    UNION ALL
    SELECT c.hash_kind, c.value, c.common_reason, i.id, i.path, i.width, i.height, i.size_bytes
    FROM common c JOIN dbdedup.images i ON i.status = 'ok' AND i.ahash = c.value
    WHERE c.hash_kind = 'ahash';
COMMENT ON VIEW dbdedup.common_hash_images IS 'The images whose hash value is over-common (see dbdedup.common_hashes).';

CREATE OR REPLACE VIEW dbdedup.verdicts_current AS
    SELECT v.id,
           v.kind,
           v.sha256_a,
           v.sha256_b,
           v.decided_by,
           v.decided_at,
           v.note,
           v.given_on,
           a.image_ids AS image_ids_a,
           a.paths AS paths_a,
           b.image_ids AS image_ids_b,
           b.paths AS paths_b,
           a.cluster_id AS cluster_id_a,
           b.cluster_id AS cluster_id_b,
           (a.image_ids IS NULL OR (v.sha256_b IS NOT NULL AND b.image_ids IS NULL)) AS stale
    FROM dbdedup.verdicts v
    -- the named files' images and clusters, grouped once (no correlated subquery: Citus runs none here)
    LEFT JOIN (SELECT i.sha256, array_agg(i.id ORDER BY i.id) AS image_ids, array_agg(i.path ORDER BY i.id) AS paths,
                      min(c.cluster_id) AS cluster_id
               FROM dbdedup.images i LEFT JOIN dbdedup.cluster_assignments c ON c.image_id = i.id
               WHERE i.status = 'ok'
                 AND i.sha256 IN (SELECT w.sha256_a FROM dbdedup.verdicts w UNION SELECT w.sha256_b FROM dbdedup.verdicts w)
               GROUP BY i.sha256) a ON a.sha256 = v.sha256_a
    LEFT JOIN (SELECT i.sha256, array_agg(i.id ORDER BY i.id) AS image_ids, array_agg(i.path ORDER BY i.id) AS paths,
                      min(c.cluster_id) AS cluster_id
               FROM dbdedup.images i LEFT JOIN dbdedup.cluster_assignments c ON c.image_id = i.id
               WHERE i.status = 'ok'
                 AND i.sha256 IN (SELECT w.sha256_a FROM dbdedup.verdicts w UNION SELECT w.sha256_b FROM dbdedup.verdicts w)
               GROUP BY i.sha256) b ON b.sha256 = v.sha256_b;
COMMENT ON VIEW dbdedup.verdicts_current IS
    'Each verdict with the loaded images it names now (every ok image with that SHA-256: copies and renamed files '
    'included), their current clusters (NULL: in none), and stale = true when an image it names is not loaded any more '
    '(moved away, deleted, not loaded into this database). A stale verdict is kept: it applies again when the file returns.';
