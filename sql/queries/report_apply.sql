-- Queries of `dbdedup apply` / `dbdedup undo` (acting on the non-keepers of the current clusters).

-- name: apply_candidates
-- Every non-keeper of the current clustering with what apply re-checks on disk,
-- and its keeper's facts (the keeper must still be there before a duplicate is removed). The inodes
-- tell a file from another one moved to its path since, with the same bytes and times.
SELECT m.cluster_id, m.image_id, m.path, m.path_bytes, m.size_bytes, m.mtime_ns, m.sha256,
       m.distance_to_keeper, m.is_exact_duplicate, m.is_protected, m.is_same_file, m.inode, m.has_keeper_verdict,
       m.is_under_reference,
       k.image_id AS keeper_id, k.path AS keeper_path, k.path_bytes AS keeper_path_bytes,
       k.size_bytes AS keeper_size_bytes, k.mtime_ns AS keeper_mtime_ns, k.sha256 AS keeper_sha256,
       k.inode AS keeper_inode
FROM dbdedup.cluster_members m
JOIN dbdedup.cluster_members k ON k.cluster_id = m.cluster_id AND k.is_keeper
WHERE NOT m.is_keeper
ORDER BY m.cluster_id, m.path, m.image_id

-- name: mark_gone
-- Files apply moved away or deleted are missing from their path now (a later load would find the same).
-- One change_seq for the statement (a subquery): Citus runs no volatile function per row of a distributed UPDATE.
UPDATE dbdedup.images
SET status = 'missing', missing_since = now(), change_seq = (SELECT nextval('dbdedup.change_seq'))
WHERE id = ANY(%(image_ids)s) AND status = 'ok'

-- name: mark_restored
-- Files undo put back where they were, unchanged: they are images again (moved ones), with the device and inode
-- they have now (a copy across file systems, or a hard-linked file's own copy again, is a new inode).
UPDATE dbdedup.images
SET status = 'ok', missing_since = NULL, device = %(device)s, inode = %(inode)s,
    change_seq = (SELECT nextval('dbdedup.change_seq'))
WHERE path_bytes = %(path_bytes)s AND status IN ('ok', 'missing') AND size_bytes = %(size_bytes)s
  AND mtime_ns = %(mtime_ns)s AND sha256 = %(sha256)s
