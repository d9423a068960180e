-- Keypoint candidates: pairs of images that share many keypoint keys (crops, small rotations).
--
-- pHash, its variants and the embedding see the whole frame: a copy cropped to half its area or
-- turned by ten degrees lands far from its original. Images loaded with `dbdedup load
-- --keypoints` store their ORB keypoint keys (images.keypoint_keys, dbdedup.keypoints): short
-- bands of the binary descriptors, which two views of the same corner often share exactly. Two
-- images sharing at least min_shared keys, among the top_k partners of either, are a candidate
-- pair; keys held by more than max_df images are stop words. The pair is only a candidate: it is
-- stored pending (transform 'keypoints', shared_keys) and only the geometric check
-- (dbdedup.verify_workers: keypoints, RANSAC, colours over the overlap) may verify it.
--
--   SELECT * FROM dbdedup.match_keypoints();          -- after dbdedup.match, new images against all

CREATE OR REPLACE FUNCTION dbdedup.match_keypoints(min_shared integer DEFAULT 5, top_k integer DEFAULT 20,
                                                   max_df integer DEFAULT 50, full_rematch boolean DEFAULT false)
    RETURNS TABLE (mode text, probes bigint, candidates bigint, pairs bigint, seconds double precision)
    LANGUAGE plpgsql
    SET work_mem = '256MB'
    AS $$
DECLARE
    started timestamptz := clock_timestamp();
    st dbdedup.signal_state;
    ms dbdedup.match_state;
    setting text := format('shared>=%s top%s df<=%s', min_shared, top_k, max_df);
    is_full boolean;
    mark bigint;
    n_probe bigint;
    n_candidates bigint;
    n_pairs bigint;
BEGIN
    IF min_shared IS NULL OR min_shared < 1 OR top_k IS NULL OR top_k < 1 OR max_df IS NULL OR max_df < 2 THEN
        RAISE EXCEPTION 'min_shared and top_k must be at least 1 and max_df at least 2, not %, %, %',
            min_shared, top_k, max_df;
    END IF;
    -- no image was ever loaded with keys: nothing to do, and no state to keep
    IF NOT EXISTS (SELECT 1 FROM dbdedup.load_runs r WHERE (r.parameters ->> 'keypoints') IS NOT NULL) THEN
        RETURN QUERY SELECT 'none'::text, 0::bigint, 0::bigint, 0::bigint, 0::double precision;
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(7220010);
    SELECT * INTO ms FROM dbdedup.match_state m WHERE m.hash_kind = 'phash';
    IF ms.hash_kind IS NULL THEN
        RAISE EXCEPTION 'pHash pairs are not matched yet' USING HINT = 'run SELECT * FROM dbdedup.match(8) first';
    END IF;
    SELECT * INTO st FROM dbdedup.signal_state x WHERE x.signal = 'keypoints';
    mark := ms.matched_seq;
    -- a full run: asked, never run, the pHash pairs rebuilt, another setting, or a full transform run
    -- since the last one (it clears every pair with a transform, these included)
    is_full := dbdedup.signal_is_full(st, full_rematch) OR st.method IS DISTINCT FROM setting
               OR EXISTS (SELECT 1 FROM dbdedup.signal_state t
                          WHERE t.signal = 'transforms' AND t.mode = 'full' AND t.matched_at > st.matched_at);

    IF is_full THEN
        -- (the verdicts of the pairs only the keys found are kept aside: a pair found again keeps
        -- its verdict, which the geometric check gave from its pixels)
        CREATE TEMP TABLE kp_before ON COMMIT DROP AS
        SELECT p.image_a, p.image_b, p.verified, p.verify_score, p.verify_reason
        FROM dbdedup.pairs p
        WHERE p.hash_kind = 'phash' AND p.transform = 'keypoints' AND p.verified IS NOT NULL;
        DELETE FROM dbdedup.pairs p WHERE p.hash_kind = 'phash' AND p.transform = 'keypoints' AND p.similarity IS NULL;
        UPDATE dbdedup.pairs p SET transform = NULL, transform_distance = NULL
        WHERE p.hash_kind = 'phash' AND p.transform = 'keypoints';
        UPDATE dbdedup.pairs p SET shared_keys = NULL WHERE p.hash_kind = 'phash' AND p.shared_keys IS NOT NULL;
    END IF;

    -- the images that may pair: ok, with keys, one per group of byte-identical files (the smallest
    -- id: its copies share its pairs), matched up to the pHash mark
    CREATE TEMP TABLE kp_image ON COMMIT DROP AS
    SELECT i.id, i.keypoint_keys AS keys, i.phash, i.sha256, (is_full OR i.change_seq > st.matched_seq) AS probe
    FROM dbdedup.images i
    WHERE i.status = 'ok' AND cardinality(i.keypoint_keys) > 0 AND i.change_seq <= mark;
    DELETE FROM kp_image k
    USING (SELECT j.sha256, min(j.id) AS first_id FROM dbdedup.images j
           WHERE j.status = 'ok' AND j.sha256 IN (SELECT q.sha256 FROM pg_temp.kp_image q) GROUP BY j.sha256) f
    WHERE f.sha256 = k.sha256 AND f.first_id < k.id;
    CREATE INDEX ON kp_image (id);
    SELECT count(*) INTO n_probe FROM kp_image WHERE probe;

    -- postings of the keys held by 2 to max_df images (the df counted over every image), then the
    -- keys shared by a probe and any other image, each unordered pair once
    CREATE TEMP TABLE kp_posting ON COMMIT DROP AS
    WITH posting AS (
        SELECT u.key, k.id AS image_id, k.probe
        FROM kp_image k CROSS JOIN LATERAL unnest(k.keys) AS u(key)
        WHERE n_probe > 0
    )
    SELECT p.key, p.image_id, p.probe
    FROM posting p
    JOIN (SELECT q.key FROM posting q GROUP BY q.key
          HAVING count(*) BETWEEN 2 AND max_df AND bool_or(q.probe)) u ON u.key = p.key;
    ANALYZE kp_posting;
    CREATE TEMP TABLE kp_shared ON COMMIT DROP AS
    SELECT least(a.image_id, b.image_id) AS image_a, greatest(a.image_id, b.image_id) AS image_b, count(*) AS shared
    FROM kp_posting a
    JOIN kp_posting b ON b.key = a.key AND b.image_id <> a.image_id AND (NOT b.probe OR b.image_id > a.image_id)
    WHERE a.probe
    GROUP BY 1, 2
    HAVING count(*) >= min_shared;
    SELECT count(*) INTO n_candidates FROM kp_shared;

    -- a pair is kept when it is among the top_k partners (most shared keys) of either image (in an
    -- incremental run, among the partners this run found: new images against all)
    CREATE TEMP TABLE kp_found ON COMMIT DROP AS
    SELECT r.image_a, r.image_b, r.shared
    FROM (SELECT s.image_a, s.image_b, s.shared,
                 row_number() OVER (PARTITION BY s.image_a ORDER BY s.shared DESC, s.image_b) AS rank_a,
                 row_number() OVER (PARTITION BY s.image_b ORDER BY s.shared DESC, s.image_a) AS rank_b
          FROM kp_shared s) r
    WHERE r.rank_a <= top_k OR r.rank_b <= top_k;

    -- new pairs wait for the geometric check (transform 'keypoints', which the clustering rules
    -- transforms and fused link by once verified); a pair already found by a hash or a variant only
    -- records its shared keys; an embedding-only pair takes the keypoint route, and its verdict is
    -- given again unless geometry gave it (a signature must not verify a pair the keys link). Its
    -- similarity stays: the check by pixels gives it an embedding neighbour's routes as well as the
    -- keypoints' (verify_workers.routed_transform: the dense, window and framed checks)
    INSERT INTO dbdedup.pairs AS p (hash_kind, image_a, image_b, distance, is_exact, transform, transform_distance,
                                    shared_keys)
    SELECT 'phash', f.image_a, f.image_b, bit_count((ia.phash # ib.phash)::bit(64)), false, 'keypoints', 0,
           least(f.shared, 32767)
    FROM kp_found f
    JOIN kp_image ia ON ia.id = f.image_a
    JOIN kp_image ib ON ib.id = f.image_b
    ON CONFLICT ON CONSTRAINT pairs_pkey DO UPDATE
        SET shared_keys = excluded.shared_keys,
            transform = CASE WHEN p.transform IS NULL AND p.distance > ms.max_distance AND NOT p.is_exact
                             THEN 'keypoints' ELSE p.transform END,
            transform_distance = CASE WHEN p.transform IS NULL AND p.distance > ms.max_distance AND NOT p.is_exact
                                      THEN 0 ELSE p.transform_distance END,
            verified = CASE WHEN p.transform IS NULL AND p.distance > ms.max_distance AND NOT p.is_exact
                                 AND p.verify_reason IS DISTINCT FROM 'geometry' THEN NULL ELSE p.verified END,
            verify_score = CASE WHEN p.transform IS NULL AND p.distance > ms.max_distance AND NOT p.is_exact
                                     AND p.verify_reason IS DISTINCT FROM 'geometry' THEN NULL ELSE p.verify_score END,
            verify_reason = CASE WHEN p.transform IS NULL AND p.distance > ms.max_distance AND NOT p.is_exact
                                      AND p.verify_reason IS DISTINCT FROM 'geometry' THEN NULL ELSE p.verify_reason END;

    IF is_full THEN
        UPDATE dbdedup.pairs p SET verified = b.verified, verify_score = b.verify_score, verify_reason = b.verify_reason
        FROM kp_before b
        WHERE p.hash_kind = 'phash' AND p.image_a = b.image_a AND p.image_b = b.image_b AND p.verified IS NULL
          AND p.transform = 'keypoints';
        DROP TABLE kp_before;
    END IF;
    SELECT count(*) INTO n_pairs FROM dbdedup.pairs p WHERE p.hash_kind = 'phash' AND p.shared_keys IS NOT NULL;
    INSERT INTO dbdedup.signal_state AS x (signal, matched_seq, base_full_match_at, method, mode, candidates, pairs,
                                           seconds, matched_at)
    VALUES ('keypoints', mark, ms.full_match_at, setting, CASE WHEN is_full THEN 'full' ELSE 'incremental' END,
            n_candidates, n_pairs, extract(epoch FROM clock_timestamp() - started), now())
    ON CONFLICT (signal) DO UPDATE SET
        matched_seq = excluded.matched_seq, base_full_match_at = excluded.base_full_match_at, method = excluded.method,
        mode = excluded.mode, candidates = excluded.candidates, pairs = excluded.pairs, seconds = excluded.seconds,
        matched_at = excluded.matched_at;
    DROP TABLE kp_image, kp_posting, kp_shared, kp_found;
    RETURN QUERY SELECT CASE WHEN is_full THEN 'full' ELSE 'incremental' END, n_probe, n_candidates, n_pairs,
                        extract(epoch FROM clock_timestamp() - started)::double precision;
END
$$;
COMMENT ON FUNCTION dbdedup.match_keypoints(integer, integer, integer, boolean) IS
    'Candidate pairs from keypoint keys (images.keypoint_keys, stored by `dbdedup load --keypoints`): two ok images '
    'sharing >= min_shared keys, among the top_k partners of either, over keys held by 2 to max_df images (more: stop '
    'words), one image per group of byte-identical files. A new pair is stored pending with transform ''keypoints'', '
    'transform_distance 0 and shared_keys, for the geometric check (dbdedup.verify_workers) only; a pair the hashes '
    'already found records shared_keys. Incremental: new and changed images against all (top_k among the partners a '
    'run finds); full when asked, on the first run, after a full pHash or transform re-match, or for another setting. '
    'Returns mode none when no load stored keys. Run after dbdedup.match (and match_transforms).';
