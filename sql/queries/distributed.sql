-- Queries of dbdedup/distributed.py: the schema on a Citus cluster.
--
-- On a Citus coordinator the tables of sql/tables.sql are made as usual, then spread over the
-- workers here (every command checks, so a table a later migration adds is spread too):
--   images and what is per image (image_embeddings, pairs by image_a, cluster_assignments, load_errors)
--       hash-distributed by image id, co-located: a join on the image id runs on each shard;
--   hash_values by value, value_pairs by value_a, and the block/LSH key tables of the matching
--       methods (dbdedup.match_keys, sql/distributed.sql) by key: the equi-joins run on the shards;
--   image_paths by path_bytes: the one place a path is unique (a unique index of a distributed
--       table must contain its distribution column, so images.path_bytes cannot be one);
--   every other table (state, parameters, settings, reductions, run history, bookkeeping) a
--       reference table, copied to every node.

-- name: citus_state
-- Whether the citus extension is installed in this database, and whether the schema needs
-- distributing: a table of schema dbdedup is still a plain table, or a table of the cluster
-- (made by the distribute query below) is missing.
SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') AS citus,
       EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')
       AND to_regnamespace('dbdedup') IS NOT NULL
       AND (EXISTS (SELECT 1 FROM pg_class c
                    WHERE c.relnamespace = to_regnamespace('dbdedup') AND c.relkind IN ('r', 'p')
                      AND NOT c.relpersistence = 't'
                      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition d WHERE d.logicalrelid = c.oid))
            OR EXISTS (SELECT 1 FROM unnest(ARRAY['image_paths', 'match_keys', 'match_copies']) t
                       WHERE to_regclass('dbdedup.' || t) IS NULL)) AS pending;

-- name: is_distributed
SELECT to_regclass('dbdedup.image_paths') IS NOT NULL;

-- name: worker_count
SELECT count(*) FROM pg_dist_node WHERE noderole = 'primary' AND isactive AND shouldhaveshards;

-- name: describe
-- Worker nodes, distributed tables and their shard count, reference tables of schema dbdedup.
SELECT (SELECT count(*) FROM pg_dist_node WHERE noderole = 'primary' AND isactive AND shouldhaveshards) AS workers,
       count(*) FILTER (WHERE p.partmethod = 'h') AS distributed,
       (SELECT count(*) FROM pg_dist_shard s WHERE s.logicalrelid = 'dbdedup.images'::regclass) AS shards,
       count(*) FILTER (WHERE p.partmethod = 'n') AS reference
FROM pg_dist_partition p
WHERE p.logicalrelid::regclass::text LIKE 'dbdedup.%';

-- name: distribute
-- Spread every plain table of schema dbdedup over the cluster (idempotent: tables already
-- distributed are left alone). Runs inside the migration transaction; Citus asks for one
-- connection per node there, as reference tables are involved. Foreign keys among dbdedup
-- tables are dropped first, as Citus can only convert a table whose foreign keys point at
-- tables of the same kind. Those between co-located tables are made again after; those from a
-- distributed table to a reference table (images and load_errors -> load_runs) are not: Citus
-- would then refuse the loader's transaction (rows of images, then the counts of its load_runs
-- row) unless every statement in it ran over one connection per node. The loader writes only
-- the id of the run it inserted, and runs are never deleted.
DO $$
DECLARE
    fk record;
    fks text[] := '{}';
    t record;
    spec text[];
    -- table, distribution column, co-located with (NULL: a reference table)
    distributed text[][] := ARRAY[
        ['images', 'id', NULL],
        ['image_paths', 'path_bytes', 'none'],
        ['image_embeddings', 'image_id', 'images'],
        ['pairs', 'image_a', 'images'],
        ['cluster_assignments', 'image_id', 'images'],
        ['load_errors', 'id', 'images'],
        ['hash_values', 'value', 'images'],
        ['value_pairs', 'value_a', 'hash_values'],
        ['match_keys', 'key', 'hash_values'],
        ['match_copies', 'image_id', 'images']];
    i integer;
BEGIN
    SET LOCAL citus.multi_shard_modify_mode TO 'sequential';
    -- the one table of paths, filled from the images there are (an existing database)
    IF to_regclass('dbdedup.image_paths') IS NULL THEN
        CREATE TABLE dbdedup.image_paths (
            path_bytes bytea PRIMARY KEY,
            image_id   bigint NOT NULL
        );
        COMMENT ON TABLE dbdedup.image_paths IS
            'Citus only: the image id of each path (images is distributed by id, so its path_bytes cannot be UNIQUE; '
            'this table, distributed by path, is). The loader claims an id here before it writes the image row.';
        INSERT INTO dbdedup.image_paths (path_bytes, image_id) SELECT path_bytes, id FROM dbdedup.images;
        ALTER TABLE dbdedup.images DROP CONSTRAINT IF EXISTS images_path_bytes_key;
        CREATE INDEX IF NOT EXISTS images_path_bytes_idx ON dbdedup.images (path_bytes);
    END IF;
    IF to_regclass('dbdedup.match_keys') IS NULL THEN
        CREATE UNLOGGED TABLE dbdedup.match_keys (
            part    smallint NOT NULL,
            key     bigint NOT NULL,
            value   bigint NOT NULL,
            pending boolean NOT NULL,
            probed  boolean NOT NULL
        );
        COMMENT ON TABLE dbdedup.match_keys IS
            'Citus only: the join keys of one step of a matching method (a block key or an LSH key of every distinct '
            'value, part 0; the probes of the values'' Hamming balls, part 1), distributed by key so that the '
            'equi-join runs shard by shard. Filled and emptied by each step.';
    END IF;
    IF to_regclass('dbdedup.match_copies') IS NULL THEN
        CREATE UNLOGGED TABLE dbdedup.match_copies (image_id bigint NOT NULL);
        COMMENT ON TABLE dbdedup.match_copies IS
            'Citus only: the images the embedding k-NN searches skip (copies of a file whose first image has a smaller '
            'id), distributed like image_embeddings so that each shard filters during its own index search. '
            'Filled and emptied by dbdedup.embedding_neighbours_distributed.';
    END IF;
    FOR fk IN
        SELECT c.conrelid::regclass AS tab, c.confrelid::regclass AS ref, c.conname, pg_get_constraintdef(c.oid) AS def
        FROM pg_constraint c
        WHERE c.contype = 'f' AND c.connamespace = 'dbdedup'::regnamespace
          AND NOT EXISTS (SELECT 1 FROM pg_dist_partition d WHERE d.logicalrelid = c.conrelid)
    LOOP
        IF fk.tab::text IN (SELECT 'dbdedup.' || distributed[k][1] FROM generate_subscripts(distributed, 1) k)
           AND fk.ref::text IN (SELECT 'dbdedup.' || distributed[k][1] FROM generate_subscripts(distributed, 1) k) THEN
            fks := fks || format('ALTER TABLE %s ADD CONSTRAINT %I %s', fk.tab, fk.conname, fk.def);
        END IF;
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', fk.tab, fk.conname);
    END LOOP;
    -- reference tables first: distributed tables may point at them
    FOR t IN
        SELECT c.oid::regclass AS tab
        FROM pg_class c
        WHERE c.relnamespace = 'dbdedup'::regnamespace AND c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
          AND NOT EXISTS (SELECT 1 FROM pg_dist_partition d WHERE d.logicalrelid = c.oid)
          AND c.relname <> ALL (SELECT distributed[k][1] FROM generate_subscripts(distributed, 1) k)
        ORDER BY c.relname
    LOOP
        PERFORM create_reference_table(t.tab);
        PERFORM truncate_local_data_after_distributing_table(t.tab);
    END LOOP;
    FOR i IN 1 .. array_length(distributed, 1) LOOP
        IF to_regclass('dbdedup.' || distributed[i][1]) IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM pg_dist_partition d WHERE d.logicalrelid = ('dbdedup.' || distributed[i][1])::regclass) THEN
            PERFORM create_distributed_table(('dbdedup.' || distributed[i][1])::regclass, distributed[i][2],
                                             colocate_with => coalesce(CASE WHEN distributed[i][3] IN ('none', 'default') THEN distributed[i][3]
                                                                            ELSE 'dbdedup.' || distributed[i][3] END, 'default'));
            PERFORM truncate_local_data_after_distributing_table(('dbdedup.' || distributed[i][1])::regclass);
        END IF;
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(fks, 1), 0) LOOP
        EXECUTE fks[i];
    END LOOP;
    -- joins on a column other than the distribution column (images on a hash value or a SHA-256,
    -- the clusters' keepers): Citus moves the rows between workers instead of refusing the query.
    -- For every session of this database, psql users' included.
    EXECUTE format('ALTER DATABASE %I SET citus.enable_repartition_joins = on', current_database());
    SET LOCAL citus.enable_repartition_joins = on;
END
$$;

-- ------------------------------------------------------------------ the loader on a Citus cluster
-- dbdedup/load.py runs these instead of load.sql's upsert_stage and upsert_stage_embeddings:
-- the same rows, with the image id claimed in image_paths first (the path is unique there),
-- then the image row upserted by id. change_seq and loaded_at come from the inserted row (Citus
-- runs no volatile or stable function in ON CONFLICT ... DO UPDATE), which is what the
-- single-server upsert gives them too. Both are run on the coordinator, so nextval() takes the
-- coordinator's sequences: change_seq stays one increasing counter for the whole cluster.

-- name: claim_paths
INSERT INTO dbdedup.image_paths (path_bytes, image_id)
-- (every staged path takes a number, the ones already there too: an anti-join of the batch
-- with image_paths would make Citus fetch all of image_paths)
-- (in path order, as the single-server upsert numbers new rows)
SELECT s.path_bytes, nextval(pg_get_serial_sequence('dbdedup.images', 'id'))
FROM (SELECT DISTINCT path_bytes FROM dbdedup_stage ORDER BY path_bytes) s
ON CONFLICT (path_bytes) DO NOTHING;

-- name: upsert_stage
INSERT INTO dbdedup.images AS i
    (id, path, path_bytes, size_bytes, mtime_ns, device, inode, status, sha256, format,
     width, height, frames, phash, dhash, ahash, phash_variants, error, error_detail, load_run_id, change_seq,
     quality, colour_signature, signature_error, keypoint_keys, structure)
OVERRIDING SYSTEM VALUE
SELECT DISTINCT ON (s.path_bytes)
       p.image_id, s.path, s.path_bytes, s.size_bytes, s.mtime_ns, s.device, s.inode, s.status, s.sha256, s.format,
       s.width, s.height, s.frames, s.phash, s.dhash, s.ahash, s.phash_variants, s.error, s.error_detail, %(run_id)s,
       nextval('dbdedup.change_seq'), s.quality, s.colour_signature, s.signature_error, s.keypoint_keys, s.structure
FROM dbdedup_stage s
JOIN dbdedup.image_paths p ON p.path_bytes = s.path_bytes
ORDER BY s.path_bytes
ON CONFLICT (id) DO UPDATE SET
    path = EXCLUDED.path,
    size_bytes = EXCLUDED.size_bytes,
    mtime_ns = EXCLUDED.mtime_ns,
    device = EXCLUDED.device,
    inode = EXCLUDED.inode,
    status = EXCLUDED.status,
    sha256 = EXCLUDED.sha256,
    format = EXCLUDED.format,
    width = EXCLUDED.width,
    height = EXCLUDED.height,
    frames = EXCLUDED.frames,
    phash = EXCLUDED.phash,
    dhash = EXCLUDED.dhash,
    ahash = EXCLUDED.ahash,
    phash_variants = EXCLUDED.phash_variants,
    error = EXCLUDED.error,
    error_detail = EXCLUDED.error_detail,
    load_run_id = EXCLUDED.load_run_id,
    quality = EXCLUDED.quality,
    colour_signature = EXCLUDED.colour_signature,
    signature_error = EXCLUDED.signature_error,
    keypoint_keys = EXCLUDED.keypoint_keys,
    structure = EXCLUDED.structure,
    loaded_at = EXCLUDED.loaded_at,
    missing_since = NULL,
    change_seq = EXCLUDED.change_seq;

-- name: upsert_stage_embeddings
DELETE FROM dbdedup.image_embeddings e
WHERE e.image_id IN (SELECT p.image_id FROM dbdedup_stage s JOIN dbdedup.image_paths p ON p.path_bytes = s.path_bytes
                     WHERE s.raw IS NULL);
-- (no turn signature: Citus fails on pgvector's cast from real[] here, with "unexpected null value in
-- cached tuple for catalog pg_proc"; the projection after the load writes it from the stored thumbnail,
-- and the crop windows with it)
INSERT INTO dbdedup.image_embeddings AS e (image_id, embedder, raw, embedding)
SELECT DISTINCT ON (p.image_id) p.image_id, s.embedder, s.raw, NULL
FROM dbdedup_stage s
JOIN dbdedup.image_paths p ON p.path_bytes = s.path_bytes
WHERE s.raw IS NOT NULL
ORDER BY p.image_id
ON CONFLICT (image_id) DO UPDATE SET embedder = EXCLUDED.embedder, raw = EXCLUDED.raw, embedding = NULL,
    turn_signature = NULL, crop_windows = NULL;

-- name: mark_missing
-- As load.sql's mark_missing, with one change_seq for the statement (Citus runs no volatile
-- function per row of a distributed UPDATE; a shared value marks the rows as changed alike)
-- and the seen paths as a NOT IN list (Citus sends the temporary table to the shards once).
UPDATE dbdedup.images AS i
SET status = 'missing',
    missing_since = now(),
    load_run_id = %(run_id)s,
    change_seq = (SELECT nextval('dbdedup.change_seq'))
WHERE i.status <> 'missing' AND i.change_seq <= %(start_seq)s
  AND (i.path_bytes = %(root)s
       OR (substr(i.path_bytes, 1, length(%(prefix)s)) = %(prefix)s
           AND (%(recursive)s
                OR position('\x2f'::bytea IN substr(i.path_bytes, length(%(prefix)s) + 1)) = 0)))
  AND i.path_bytes NOT IN (SELECT s.path_bytes FROM dbdedup_seen s)
  AND NOT EXISTS (SELECT 1 FROM unnest(%(skip_prefixes)s::bytea[]) AS p(prefix)
                  WHERE substr(i.path_bytes, 1, length(p.prefix)) = p.prefix);
