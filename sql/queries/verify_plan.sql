-- Queries of the plan of the check by pixels (dbdedup/verify_plan.py).

-- name: defer_pending
-- Every pending pair is unchecked until the plan needs it (verified false: it links nothing).
UPDATE dbdedup.pairs SET verified = false, verify_reason = 'unchecked', verify_score = NULL WHERE verified IS NULL;

-- name: clusters_stale
-- The clusters are built again by the next command when this one stops before its build.
UPDATE dbdedup.cluster_parameters SET pending_at_build = pending_at_build + %(deferred)s;

-- name: reopen_all
UPDATE dbdedup.pairs SET verified = NULL, verify_reason = NULL WHERE verify_reason = 'unchecked';

-- name: reopen
-- The pairs a round needs checked: pending again, for verify_workers.verify_pending_pairs.
UPDATE dbdedup.pairs p SET verified = NULL, verify_reason = NULL
FROM unnest(%(image_a)s::bigint[], %(image_b)s::bigint[]) AS x (image_a, image_b)
WHERE p.hash_kind = %(hash_kind)s AND p.image_a = x.image_a AND p.image_b = x.image_b AND p.verify_reason = 'unchecked';

-- name: verdicts
SELECT p.image_a, p.image_b, p.verified, p.verify_reason
FROM dbdedup.pairs p
JOIN unnest(%(image_a)s::bigint[], %(image_b)s::bigint[]) AS x (image_a, image_b)
  ON p.image_a = x.image_a AND p.image_b = x.image_b
WHERE p.hash_kind = %(hash_kind)s;

-- name: unchecked
SELECT count(*) FROM dbdedup.pairs WHERE verify_reason = 'unchecked';

-- name: prepare_graph
SELECT dbdedup.prepare_cluster_graph(%(hash_kind)s, %(max_distance)s, %(keeper_rule)s, %(reference_paths)s::text[],
                                     %(rule)s, %(min_similarity)s::real, %(confirm_distance)s, %(transform_distance)s,
                                     true);

-- name: graph_edges
-- The graph's links once per two nodes (the better-ranked first), an open one with its pair; and whether
-- the build's greyscale rule drops it unless an alignment verifies it (geometry or dense: its colour picture framed).
-- An open link that rule drops whatever its verdict (a greyscale keeper of a picture with colours in its middle) is
-- no link of the graph; a closed one left in cc_edge is a reviewer's, which the build keeps (see
-- dbdedup.prepare_cluster_graph).
SELECT e.a, e.b, e.open, e.image_a, e.image_b, e.greyscale_keeper
FROM cc_edge e
WHERE e.a < e.b AND NOT (e.open AND e.greyscale_keeper AND NOT e.colour_framed);

-- name: any_unchecked
SELECT EXISTS (SELECT 1 FROM dbdedup.pairs WHERE verify_reason = 'unchecked');

-- name: graph_apart
SELECT a, b FROM cc_apart;
